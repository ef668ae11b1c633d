//! `async fn main() -> R { body }` becomes
//! `fn main() -> R { run_main(async move { body }) }`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

pub(super) fn expand(func: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = func;
    sig.asyncness = None;
    quote! {
        #(#attrs)*
        #vis #sig {
            ::parallel::__private::run_main(async move #block)
        }
    }
}
