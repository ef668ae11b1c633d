//! `#[derive(Message)]`: read `#[message(result = .., name = "..")]`
//! ([`parse`]), then write the actix and para||el `Message` impls ([`expand`]).

mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::{Ident, TokenStream};
use syn::{LitStr, Type};

/// What the derive needs to know about one message type.
pub(crate) struct MessageDef {
    pub(crate) ident: Ident,
    /// The reply type; `None` means `()`.
    pub(crate) result: Option<Type>,
    pub(crate) name: Option<LitStr>,
}

/// Entry point of `#[derive(Message)]`.
pub(crate) fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let def = parse::parse(syn::parse2(input)?)?;
    Ok(expand::expand(&def))
}
