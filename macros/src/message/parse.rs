//! Reads `#[message(result = Type, name = "..")]` (the derive's helper) or
//! the same options written in `#[parallel::message(..)]`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Attribute, Data, DeriveInput, Error, LitStr, Token, Type};

use super::MessageDef;
use crate::util::{self, Form};

const KEYS: &[&str] = &["result = Type", "name = \"..\""];

/// Options collected from the attributes.
#[derive(Default)]
struct Options {
    result: Option<Type>,
    name: Option<LitStr>,
}

/// `#[derive(Message)]`: the options are in every `#[message(..)]` on the type.
pub(super) fn from_derive(input: &DeriveInput) -> syn::Result<MessageDef> {
    check(input, Form::Derive)?;
    let mut opts = Options::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("message")) {
        attr.parse_nested_meta(|meta| opts.apply(meta, Form::Derive))?;
    }
    Ok(def(input, opts))
}

/// `#[parallel::message(args)]`: the options are the attribute's arguments,
/// plus those of `#[message(..)]` helpers the item carried by mistake (already
/// reported; counted so the expansion is what the user meant).
pub(super) fn from_attribute(
    args: TokenStream,
    input: &DeriveInput,
    helpers: &[Attribute],
) -> syn::Result<MessageDef> {
    check(input, Form::Attribute)?;
    let mut opts = Options::default();
    syn::meta::parser(|meta| opts.apply(meta, Form::Attribute)).parse2(args)?;
    for attr in helpers {
        attr.parse_nested_meta(|meta| opts.apply(meta, Form::Attribute))?;
    }
    Ok(def(input, opts))
}

fn def(input: &DeriveInput, opts: Options) -> MessageDef {
    MessageDef {
        ident: input.ident.clone(),
        result: opts.result,
        name: opts.name,
    }
}

/// A message is a concrete struct or enum.
fn check(input: &DeriveInput, form: Form) -> syn::Result<()> {
    let this = form.name("Message");
    if let Data::Union(u) = &input.data {
        return Err(Error::new(
            u.union_token.span,
            format!("{this} works on structs and enums, not unions: wrap the union in a struct"),
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &input.generics,
            format!(
                "{this} needs a concrete type: every instantiation of `{}` would share one wire \
                 name and tag; remove the generic parameters or use a concrete wrapper struct",
                input.ident
            ),
        ));
    }
    Ok(())
}

impl Options {
    fn apply(&mut self, meta: ParseNestedMeta, form: Form) -> syn::Result<()> {
        if meta.path.is_ident("result") {
            once(&meta, self.result.is_some())?;
            self.result = Some(result_type(&meta)?);
        } else if meta.path.is_ident("name") {
            once(&meta, self.name.is_some())?;
            self.name = Some(util::string_value(&meta, "name")?);
        } else {
            return Err(util::unknown_key(&meta, &form.options("message"), KEYS));
        }
        Ok(())
    }
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
