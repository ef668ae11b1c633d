//! Keeps the function and submits a `RemoteFn` that decodes the argument
//! tuple, calls it and encodes the result.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};

use super::RemoteDef;

pub(super) fn expand(def: &RemoteDef) -> TokenStream {
    let func = &def.func;
    let name = &func.sig.ident;
    let args = &def.args;
    let output = def.output();
    let vars = (0..args.len())
        .map(|i| format_ident!("__a{}", i, span = Span::mixed_site()))
        .collect::<Vec<_>>();
    let bytes = quote::format_ident!("__bytes", span = Span::mixed_site());
    quote! {
        #func
        ::parallel::__private::inventory::submit! {
            ::parallel::__private::RemoteFn::new(
                || ::core::any::type_name_of_val(&#name),
                |#bytes: &[u8]| ::parallel::__private::invoke_remote::<(#(#args,)*), #output>(
                    #bytes,
                    |(#(#vars,)*)| #name(#(#vars),*),
                ),
            )
        }
    }
}
