use quote::quote;

use super::attribute;

#[test]
fn the_impl_is_kept_and_its_type_registered() {
    let out = attribute(
        quote! {},
        quote! { impl Worker for Square { type Init = (); } },
    )
    .unwrap()
    .to_string();
    assert!(out.contains("impl Worker for Square"), "{out}");
    assert!(out.contains("register_worker ! (Square)"), "{out}");
}

#[test]
fn other_items_and_arguments_are_refused_with_what_to_write() {
    let e = attribute(quote! {}, quote! { struct Square; }).unwrap_err();
    assert!(e.to_string().contains("impl Worker for T"), "{e}");
    let e = attribute(quote! {}, quote! { impl Square { } }).unwrap_err();
    assert!(e.to_string().contains("not on an inherent impl"), "{e}");
    let e = attribute(quote! {}, quote! { impl Clone for Square { } }).unwrap_err();
    assert!(e.to_string().contains("parallel::pool::Worker"), "{e}");
    let e = attribute(quote! { x }, quote! { impl Worker for Square { } }).unwrap_err();
    assert!(e.to_string().contains("takes no arguments"), "{e}");
    let e = attribute(quote! {}, quote! { impl<T> Worker for Square<T> { } }).unwrap_err();
    assert!(e.to_string().contains("cannot be generic"), "{e}");
}
