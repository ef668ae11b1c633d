//! Reads `#[message(result = Type, name = "..")]`.

use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Data, DeriveInput, Error, LitStr, Token, Type};

use super::MessageDef;
use crate::util;

const KEYS: &[&str] = &["result = Type", "name = \"..\""];

pub(super) fn parse(input: DeriveInput) -> syn::Result<MessageDef> {
    if let Data::Union(u) = &input.data {
        return Err(Error::new(
            u.union_token.span,
            "`#[derive(Message)]` works on structs and enums, not unions: wrap the union in a struct",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &input.generics,
            format!(
                "`#[derive(Message)]` needs a concrete type: every instantiation of `{}` would \
                 share one wire name and tag; remove the generic parameters or derive on a \
                 concrete wrapper struct",
                input.ident
            ),
        ));
    }
    let mut result = None;
    let mut name = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("message")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("result") {
                once(&meta, result.is_some())?;
                result = Some(result_type(&meta)?);
            } else if meta.path.is_ident("name") {
                once(&meta, name.is_some())?;
                name = Some(util::string_value(&meta, "name")?);
            } else {
                return Err(util::unknown_key(&meta, "message", KEYS));
            }
            Ok(())
        })?;
    }
    Ok(MessageDef {
        ident: input.ident,
        result,
        name,
    })
}

fn once(meta: &ParseNestedMeta, seen: bool) -> syn::Result<()> {
    if seen {
        let key = meta.path.to_token_stream();
        return Err(Error::new_spanned(
            &meta.path,
            format!("`{key}` is given twice: keep one"),
        ));
    }
    Ok(())
}

/// Reads `result = Type` or `result = "Type"`.
fn result_type(meta: &ParseNestedMeta) -> syn::Result<Type> {
    let form = "write the reply type, e.g. `result = u64` or `result = Result<Vec<u8>, MyError>`";
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("`result` needs a value: {form}")));
    }
    let value = meta.value()?;
    if value.is_empty() || value.peek(Token![,]) {
        return Err(value.error(format!("missing type after `result =`: {form}")));
    }
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        return lit.parse::<Type>().map_err(|_| {
            Error::new(
                lit.span(),
                format!("`{}` is not a type: {form}", lit.value()),
            )
        });
    }
    value.parse::<Type>()
}
