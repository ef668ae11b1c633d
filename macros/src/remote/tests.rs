//! Unit tests of `#[parallel::remote]`.

use proc_macro2::TokenStream;
use quote::quote;

use super::remote;

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

fn error(item: TokenStream) -> String {
    match remote(quote!(), item) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn keeps_function_and_registers_it() {
    let out = remote(
        quote!(),
        quote!(
            pub fn add((a, b): (u64, u64), mut scale: u64) -> u64 {
                scale *= 2;
                (a + b) * scale
            }
        ),
    )
    .expect("expands");
    assert_eq!(
        squash(&out.to_string()),
        squash(
            "pub fn add((a, b): (u64, u64), mut scale: u64) -> u64 { scale *= 2; (a + b) * scale } \
             ::parallel::__private::inventory::submit! { ::parallel::__private::RemoteFn::new( \
             || ::core::any::type_name_of_val(&add), \
             |__bytes: &[u8]| ::parallel::__private::invoke_remote::<((u64, u64), u64,), u64>( \
             __bytes, |(__a0, __a1,)| add(__a0, __a1), ), ) }"
        )
    );
}

#[test]
fn no_arguments_and_no_return() {
    let out = squash(
        &remote(
            quote!(),
            quote!(
                fn tick() {}
            ),
        )
        .expect("expands")
        .to_string(),
    );
    assert!(
        out.contains(&squash("invoke_remote::<(), ()>(__bytes, |()| tick(),)")),
        "{out}"
    );
}

#[test]
fn errors_say_what_to_write() {
    let cases = [
        (
            quote!(
                async fn f() {}
            ),
            "make it a plain fn",
        ),
        (
            quote!(
                unsafe fn f() {}
            ),
            "make it a safe fn",
        ),
        (
            quote!(
                fn f<T>(t: T) {}
            ),
            "cannot be generic",
        ),
        (
            quote!(
                fn f(&self) {}
            ),
            "remove `self`",
        ),
        (
            quote!(
                fn f(x: impl Into<u8>) {}
            ),
            "instead of `impl Trait`",
        ),
        (
            quote!(
                fn f(x: Vec<impl Into<u8>>) {}
            ),
            "instead of `impl Trait`",
        ),
        (
            quote!(
                fn f() -> impl Send {}
            ),
            "remote return types",
        ),
        (
            quote!(
                fn f(s: &str) {}
            ),
            "use an owned type instead of a reference",
        ),
        (
            quote!(
                struct S;
            ),
            "goes on a free function",
        ),
    ];
    for (item, want) in cases {
        let e = error(item);
        assert!(e.contains(want), "wanted {want:?}, got {e:?}");
    }
    let e = match remote(
        quote!(name = "x"),
        quote!(
            fn f() {}
        ),
    ) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("takes no arguments"), "{e}");
}
