//! Unit tests of `#[parallel::wire]` and the checks the attribute forms share.

use proc_macro2::TokenStream;
use quote::quote;

use super::{SHORTHAND, attribute, fallback};

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

fn expand(args: TokenStream, item: TokenStream) -> String {
    squash(&attribute(args, item).expect("expands").to_string())
}

fn error(args: TokenStream, item: TokenStream) -> String {
    match attribute(args, item) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    }
}

const DERIVES: &str = "#[derive(::parallel::__private::rkyv::Archive, \
     ::parallel::__private::rkyv::Serialize, ::parallel::__private::rkyv::Deserialize)]";
const CRATE: &str = "#[rkyv(crate = ::parallel::__private::rkyv)]";

#[test]
fn derives_rkyv_through_parallel_before_the_items_attributes() {
    let out = expand(
        quote!(),
        quote! {
            /// Docs.
            #[derive(Debug)]
            #[rkyv(derive(Debug))]
            pub struct Reading<T> { values: Vec<T> }
        },
    );
    let want = squash(&format!(
        "{DERIVES} {CRATE} #[doc = r\" Docs.\"] #[derive(Debug)] #[rkyv(derive(Debug))] \
         pub struct Reading<T> {{ values: Vec<T> }}"
    ));
    assert_eq!(out, want);
}

#[test]
fn a_crate_path_given_by_the_user_is_kept() {
    let out = expand(
        quote!(),
        quote! {
            #[rkyv(compare(PartialEq), crate = my::rkyv)]
            enum Kind { A, B }
        },
    );
    assert!(out.starts_with(&squash(DERIVES)), "{out}");
    assert!(!out.contains("crate=::parallel"), "{out}");
    assert!(out.contains("crate=my::rkyv"), "{out}");
}

#[test]
fn rkyv_derives_are_taken_off_and_reported() {
    let out = expand(
        quote!(),
        quote! {
            #[derive(Debug, Archive, Serialize, Deserialize, Clone)]
            struct A;
        },
    );
    assert!(out.contains(&squash("compile_error!")), "{out}");
    assert!(out.contains(&squash("already derives rkyv's")), "{out}");
    assert!(
        out.contains(&squash("#[derive(Debug, Clone)] struct A;")),
        "{out}"
    );
    // A bare `Serialize` without `Archive` may be serde's: it stays.
    let out = expand(
        quote!(),
        quote! {
            #[derive(serde::Serialize, Serialize)]
            #[derive(rkyv::Deserialize)]
            struct B;
        },
    );
    assert!(
        out.contains(&squash("#[derive(serde::Serialize, Serialize)] struct B;")),
        "{out}"
    );
    assert!(out.contains(&squash("compile_error!")), "{out}");
    assert!(
        !out.contains(&squash("#[derive(rkyv::Deserialize)]")),
        "{out}"
    );
}

#[test]
fn misuse_says_what_to_write() {
    let e = error(
        quote!(result = u64),
        quote!(
            struct A;
        ),
    );
    assert!(
        e.contains("takes no arguments: write `#[parallel::wire]`"),
        "{e}"
    );
    let e = error(quote!(), quote!(union U { a: u8 }));
    assert!(e.contains("not unions: wrap the union in a struct"), "{e}");
    let e = error(
        quote!(),
        quote!(
            fn f() {}
        ),
    );
    assert!(
        e.contains("put it on a `struct` or `enum` definition"),
        "{e}"
    );
    let out = expand(
        quote!(),
        quote! {
            #[parallel::wire]
            struct Twice;
        },
    );
    assert!(out.contains(&squash("is given twice: keep one")), "{out}");
    assert_eq!(out.matches("#[derive(").count(), 1, "{out}");
}

#[test]
fn fallback_keeps_the_item_after_the_error() {
    let out = squash(
        &fallback(
            syn::Error::new(proc_macro2::Span::call_site(), "bad"),
            quote!(
                struct A;
            ),
            &SHORTHAND,
        )
        .to_string(),
    );
    assert!(out.starts_with("::core::compile_error!"), "{out}");
    assert!(out.ends_with("structA;"), "{out}");
}
