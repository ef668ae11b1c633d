//! Writes rkyv's three derives, naming rkyv through `::parallel`.

use proc_macro2::{TokenStream, TokenTree};
use quote::quote;
use syn::{DeriveInput, Meta};

/// `#[derive(Archive, Serialize, Deserialize)]` with every path under
/// `::parallel::__private::rkyv`, and `#[rkyv(crate = ..)]` so the derived
/// code names rkyv the same way (unless the item names a crate path itself).
/// Goes before the item's own attributes, so its `#[rkyv(..)]` options come
/// after the derive that reads them.
pub(crate) fn derives(input: &DeriveInput) -> TokenStream {
    let rkyv = quote!(::parallel::__private::rkyv);
    let krate = (!names_crate(input)).then(|| quote!(#[rkyv(crate = #rkyv)]));
    quote! {
        #[derive(#rkyv::Archive, #rkyv::Serialize, #rkyv::Deserialize)]
        #krate
    }
}

/// Whether one of the item's `#[rkyv(..)]` attributes holds `crate`.
fn names_crate(input: &DeriveInput) -> bool {
    input.attrs.iter().any(|attr| match &attr.meta {
        Meta::List(list) if list.path.is_ident("rkyv") => list
            .tokens
            .clone()
            .into_iter()
            .any(|tt| matches!(tt, TokenTree::Ident(i) if i == "crate")),
        _ => false,
    })
}
