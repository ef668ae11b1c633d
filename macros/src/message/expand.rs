//! Writes the two `Message` impls for one [`MessageDef`].

use proc_macro2::TokenStream;
use quote::quote;

use super::MessageDef;
use crate::util;

pub(super) fn expand(def: &MessageDef) -> TokenStream {
    let ident = &def.ident;
    let result = match &def.result {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let name = match &def.name {
        Some(lit) => quote!(#lit),
        None => util::default_name(ident),
    };
    quote! {
        #[automatically_derived]
        impl ::parallel::__private::actix::Message for #ident {
            type Result = #result;
        }
        #[automatically_derived]
        impl ::parallel::Message for #ident {
            const NAME: &'static str = #name;
        }
    }
}
