//! `#[derive(Message)]` and `#[parallel::message]`: read the options
//! ([`parse`]), then write the actix and para||el `Message` impls
//! ([`expand`]). The attribute also derives rkyv's traits through
//! [`crate::wire`].

mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::{Ident, TokenStream};
use quote::quote;
use syn::{LitStr, Type};

use crate::wire::{self, Shorthand};

/// What the macros need to know about one message type.
pub(crate) struct MessageDef {
    pub(crate) ident: Ident,
    /// The reply type; `None` means `()`.
    pub(crate) result: Option<Type>,
    pub(crate) name: Option<LitStr>,
}

/// `#[parallel::message]` for the checks it shares with the other attributes.
pub(crate) const SHORTHAND: Shorthand = Shorthand {
    attr: "parallel::message",
    what: "the message type",
    replaces: Some(("Message", "message")),
    example: "result = u64",
};

/// Entry point of `#[derive(Message)]`.
pub(crate) fn derive(input: TokenStream) -> syn::Result<TokenStream> {
    let def = parse::from_derive(&syn::parse2(input)?)?;
    Ok(expand::expand(&def))
}

/// Entry point of `#[parallel::message(..)]`: the item with rkyv's derives,
/// then the `Message` impls.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut checked = wire::item(item, &SHORTHAND)?;
    let def = parse::from_attribute(args, &checked.input, &checked.helpers)?;
    checked.take_rkyv_derives(&SHORTHAND);
    let derives = wire::derives(&checked.input);
    let input = &checked.input;
    let impls = expand::expand(&def);
    let out = quote! {
        #derives
        #input
        #impls
    };
    Ok(checked.finish(out))
}
