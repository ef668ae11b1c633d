//! Accepts `async fn main() -> R` without parameters or generics.

use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::{Error, Item, ItemFn};

pub(super) fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<ItemFn> {
    if let Some(first) = attr.into_iter().next() {
        return Err(Error::new(
            first.span(),
            "`#[parallel::main]` takes no arguments: write `#[parallel::main]`",
        ));
    }
    let func = match syn::parse2::<Item>(item)? {
        Item::Fn(func) => func,
        other => {
            return Err(Error::new_spanned(
                other,
                "`#[parallel::main]` goes on a function: write `async fn main() { .. }`",
            ));
        }
    };
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span,
            "`#[parallel::main]` runs an async body: write `async fn main()`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(
            sig.generics.span(),
            "`main` cannot be generic: remove the generic parameters",
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(Error::new(
            sig.inputs.span(),
            "`main` takes no parameters: remove them and read `std::env::args()` instead",
        ));
    }
    Ok(func)
}
