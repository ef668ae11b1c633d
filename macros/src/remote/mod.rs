//! `#[parallel::remote]`: check the function ([`parse`]), then register it
//! for calls by name ([`expand`]).

mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use syn::{ItemFn, ReturnType, Type};

/// A checked remote function: the item as written and its argument types.
pub(crate) struct RemoteDef {
    pub(crate) func: ItemFn,
    pub(crate) args: Vec<Type>,
}

impl RemoteDef {
    /// The return type, `()` when none is written.
    fn output(&self) -> TokenStream {
        match &self.func.sig.output {
            ReturnType::Default => quote::quote!(()),
            ReturnType::Type(_, ty) => quote::quote!(#ty),
        }
    }
}

/// Entry point of `#[parallel::remote]`.
pub(crate) fn remote(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let def = parse::parse(attr, item)?;
    Ok(expand::expand(&def))
}
