//! `#[parallel::main]`: check the `async fn` ([`parse`]), then wrap its body
//! in the runtime ([`expand`]).

mod expand;
mod parse;
#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;

/// Entry point of `#[parallel::main]`.
pub(crate) fn main(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let func = parse::parse(attr, item)?;
    Ok(expand::expand(func))
}
