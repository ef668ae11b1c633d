//! Unit tests of `#[parallel::main]`.

use proc_macro2::TokenStream;
use quote::quote;

use super::main;

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

fn error(attr: TokenStream, item: TokenStream) -> String {
    match main(attr, item) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wraps_body_and_keeps_signature() {
    let out = main(
        quote!(),
        quote! {
            /// Docs.
            #[allow(unused)]
            pub async fn main() -> Result<(), String> { work().await?; Ok(()) }
        },
    )
    .expect("expands");
    assert_eq!(
        squash(&out.to_string()),
        squash(
            "#[doc = r\" Docs.\"] #[allow(unused)] pub fn main() -> Result<(), String> { \
             ::parallel::__private::run_main(async move { work().await?; Ok(()) }) }"
        )
    );
}

#[test]
fn no_return_type() {
    let out = main(
        quote!(),
        quote!(
            async fn main() {}
        ),
    )
    .expect("expands");
    assert_eq!(
        squash(&out.to_string()),
        squash("fn main() { ::parallel::__private::run_main(async move {}) }")
    );
}

#[test]
fn errors_say_what_to_write() {
    let cases = [
        (
            quote!(),
            quote!(
                fn main() {}
            ),
            "write `async fn main()`",
        ),
        (
            quote!(),
            quote!(
                async fn main(n: u32) {}
            ),
            "takes no parameters",
        ),
        (
            quote!(),
            quote!(
                async fn main<T>() {}
            ),
            "cannot be generic",
        ),
        (
            quote!(threads = 4),
            quote!(
                async fn main() {}
            ),
            "takes no arguments",
        ),
        (
            quote!(),
            quote!(
                struct Main;
            ),
            "goes on a function",
        ),
    ];
    for (attr, item, want) in cases {
        let e = error(attr, item);
        assert!(e.contains(want), "wanted {want:?}, got {e:?}");
    }
}
