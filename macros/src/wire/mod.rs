//! `#[parallel::wire]`: a type that crosses the wire, with rkyv's three
//! derives named through `::parallel`, so the user's crate needs no rkyv
//! dependency. `#[parallel::message]` and `#[parallel::actor]` build on it:
//! [`item`] checks the item an attribute is put on ([`parse::Checked`]) and
//! [`derives`] writes the derives.

mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) use expand::derives;
pub(crate) use parse::{fallback, item};

/// One of the attribute forms, for the checks and errors they share.
pub(crate) struct Shorthand {
    /// The attribute as users write it, without `#[..]`: `parallel::message`.
    pub(crate) attr: &'static str,
    /// What it goes on, for errors: "the message type".
    pub(crate) what: &'static str,
    /// The derive this attribute stands for and that derive's helper
    /// attribute (`Message`, `message`); `None` for `#[parallel::wire]`.
    pub(crate) replaces: Option<(&'static str, &'static str)>,
    /// Options to show in errors: `result = u64`.
    pub(crate) example: &'static str,
}

/// `#[parallel::wire]` itself.
pub(crate) const SHORTHAND: Shorthand = Shorthand {
    attr: "parallel::wire",
    what: "a struct or enum that crosses the wire",
    replaces: None,
    example: "",
};

/// Entry point of `#[parallel::wire]`: the item with rkyv's derives.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    parse::no_args(args)?;
    let mut checked = parse::item(item, &SHORTHAND)?;
    checked.take_rkyv_derives(&SHORTHAND);
    let derives = expand::derives(&checked.input);
    let input = &checked.input;
    let out = quote! {
        #derives
        #input
    };
    Ok(checked.finish(out))
}
