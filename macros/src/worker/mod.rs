//! `#[parallel::worker]` on `impl Worker for T { .. }`: keeps the impl and
//! registers `T`, so that the program started as a cluster worker runs it.

use proc_macro2::TokenStream;
use quote::quote;

#[cfg(test)]
mod tests;

/// Expands the attribute: the impl as written, plus `T`'s registration.
pub(crate) fn attribute(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            "#[parallel::worker] takes no arguments: write it alone above `impl Worker for T`",
        ));
    }
    let block: syn::ItemImpl = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[parallel::worker] goes on an `impl Worker for T { .. }` block",
        )
    })?;
    let Some((_, trait_path, _)) = &block.trait_ else {
        return Err(syn::Error::new_spanned(
            &block.self_ty,
            "#[parallel::worker] goes on an `impl Worker for T` block, not on an inherent impl",
        ));
    };
    let named_worker = trait_path
        .segments
        .last()
        .is_some_and(|s| s.ident == "Worker");
    if !named_worker {
        return Err(syn::Error::new_spanned(
            trait_path,
            "#[parallel::worker] goes on an `impl Worker for T` block (parallel::pool::Worker)",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &block.generics,
            "a registered worker type cannot be generic: register each concrete type",
        ));
    }
    let ty = &block.self_ty;
    Ok(quote! {
        #block
        ::parallel::register_worker!(#ty);
    })
}
