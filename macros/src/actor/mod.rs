//! `#[derive(Actor)]` and `#[parallel::actor]`: read the options
//! ([`parse`]), then write the actix, delivery and `RemoteActor` impls
//! ([`expand`]). The attribute also derives rkyv's traits through
//! [`crate::wire`] when the actor is `spawn`able (its value is then sent).

mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;
use syn::{Generics, LitStr, Type};

use crate::wire::{self, Shorthand};

/// What the macros need to know about one actor type.
pub(crate) struct ActorDef {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    /// Messages delivered remotely as owned values.
    pub(crate) messages: Vec<Type>,
    /// Messages delivered remotely as zero-copy `Received<M>` views.
    pub(crate) views: Vec<Type>,
    /// Where `spawn` was written, if it was.
    pub(crate) spawn: Option<Span>,
    /// It runs on a thread pinned to a GPU (`gpu`).
    pub(crate) gpu: bool,
    pub(crate) name: Option<LitStr>,
    pub(crate) lifecycle: bool,
}

/// `#[parallel::actor]` for the checks it shares with the other attributes.
pub(crate) const SHORTHAND: Shorthand = Shorthand {
    attr: "parallel::actor",
    what: "the actor type",
    replaces: Some(("Actor", "actor")),
    example: "messages(Add), spawn",
};

/// Entry point of `#[derive(Actor)]`.
pub(crate) fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let def = parse::from_derive(&syn::parse2(input)?)?;
    Ok(expand::expand(&def))
}

/// Entry point of `#[parallel::actor(..)]`: the item (with rkyv's derives
/// when it is `spawn`able), then the actor impls.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut checked = wire::item(item, &SHORTHAND)?;
    let def = parse::from_attribute(args, &checked.input, &checked.helpers)?;
    let derives = def.spawn.map(|_| {
        checked.take_rkyv_derives(&SHORTHAND);
        wire::derives(&checked.input)
    });
    let input = &checked.input;
    let impls = expand::expand(&def);
    let out = quote! {
        #derives
        #input
        #impls
    };
    Ok(checked.finish(out))
}
