//! Accepts a plain, synchronous, non-generic free function.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Error, FnArg, Item, ReturnType, Type};

use super::RemoteDef;
use crate::util;

pub(super) fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<RemoteDef> {
    if let Some(first) = attr.into_iter().next() {
        return Err(Error::new(
            first.span(),
            "`#[parallel::remote]` takes no arguments: write `#[parallel::remote]`",
        ));
    }
    let func = match syn::parse2::<Item>(item)? {
        Item::Fn(func) => func,
        other => {
            return Err(Error::new_spanned(
                other,
                "`#[parallel::remote]` goes on a free function: write `fn name(a: A) -> R { .. }`",
            ));
        }
    };
    let sig = &func.sig;
    if let Some(token) = sig.asyncness {
        return Err(Error::new(
            token.span,
            "remote functions run on a worker thread; make it a plain fn: remove `async`",
        ));
    }
    if let Some(token) = sig.unsafety {
        return Err(Error::new(
            token.span,
            "remote callers cannot uphold an `unsafe fn`'s contract: make it a safe fn",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(
            sig.generics.span(),
            "remote functions cannot be generic: callers send bytes, so every argument needs \
             a concrete type; remove the generic parameters",
        ));
    }
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(recv) => {
                return Err(Error::new_spanned(
                    recv,
                    "remote functions are free functions: remove `self` (use an actor message \
                     to reach state)",
                ));
            }
            FnArg::Typed(arg) => {
                check_type(&arg.ty, "argument")?;
                args.push((*arg.ty).clone());
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        check_type(ty, "return")?;
    }
    Ok(RemoteDef { func, args })
}

/// Argument and return values cross the wire, so they must be nameable,
/// owned types.
fn check_type(ty: &Type, what: &str) -> syn::Result<()> {
    if util::mentions_impl(ty.to_token_stream()) {
        return Err(Error::new_spanned(
            ty,
            format!(
                "remote {what} types are decoded by type: name a concrete type instead of \
                 `impl Trait`"
            ),
        ));
    }
    if let Type::Reference(_) = ty {
        return Err(Error::new_spanned(
            ty,
            format!(
                "remote {what} values cross the wire as owned data: use an owned type instead \
                 of a reference (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`)"
            ),
        ));
    }
    Ok(())
}
