//! `#[derive(Actor)]`: read the `#[actor(..)]` options ([`parse`]), then
//! write the actix, delivery and `RemoteActor` impls ([`expand`]).

mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::{Ident, Span, TokenStream};
use syn::{Generics, LitStr, Type};

/// What the derive needs to know about one actor type.
pub(crate) struct ActorDef {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    /// Messages delivered remotely as owned values.
    pub(crate) messages: Vec<Type>,
    /// Messages delivered remotely as zero-copy `Received<M>` views.
    pub(crate) views: Vec<Type>,
    /// Where `spawn` was written, if it was.
    pub(crate) spawn: Option<Span>,
    pub(crate) name: Option<LitStr>,
    pub(crate) lifecycle: bool,
}

/// Entry point of `#[derive(Actor)]`.
pub(crate) fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let def = parse::parse(syn::parse2(input)?)?;
    Ok(expand::expand(&def))
}
