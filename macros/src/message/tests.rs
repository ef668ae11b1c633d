//! Unit tests of `#[derive(Message)]`.

use quote::quote;

use super::derive;

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

fn expand(input: proc_macro2::TokenStream) -> String {
    squash(&derive(input).expect("derive succeeds").to_string())
}

fn error(input: proc_macro2::TokenStream) -> String {
    match derive(input) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn default_result_is_unit_and_name_is_module_path() {
    let out = expand(quote!(
        struct Ping;
    ));
    assert!(out.contains(&squash(
        "#[automatically_derived] impl ::parallel::__private::actix::Message for Ping { type Result = (); }"
    )));
    assert!(out.contains(&squash(
        r#"impl ::parallel::Message for Ping { const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", "Ping"); }"#
    )));
}

#[test]
fn result_as_type_or_string_and_name() {
    let out = expand(quote! {
        #[message(result = Result<Vec<u8>, String>, name = "demo.add")]
        enum Add { One, Two }
    });
    assert!(out.contains(&squash("type Result = Result<Vec<u8>, String>;")));
    assert!(out.contains(&squash(r#"const NAME: &'static str = "demo.add";"#)));
    let out = expand(quote! {
        #[message(result = "Option<u64>")]
        struct Get;
    });
    assert!(out.contains(&squash("type Result = Option<u64>;")));
}

#[test]
fn errors_say_what_to_write() {
    let cases = [
        (
            quote!(
                #[message(reply = u8)]
                struct A;
            ),
            "unknown key `reply`",
        ),
        (
            quote!(
                #[message(resutl = u8)]
                struct A;
            ),
            "did you mean `result = Type`?",
        ),
        (
            quote!(
                #[message(result)]
                struct A;
            ),
            "`result` needs a value",
        ),
        (
            quote!(
                #[message(result = )]
                struct A;
            ),
            "missing type after `result =`",
        ),
        (
            quote!(
                #[message(result = , name = "x")]
                struct A;
            ),
            "missing type after",
        ),
        (
            quote!(
                #[message(result = "Vec<")]
                struct A;
            ),
            "`Vec<` is not a type",
        ),
        (
            quote!(
                #[message(result = u8, result = u16)]
                struct A;
            ),
            "given twice",
        ),
        (
            quote!(
                #[message(name = 3)]
                struct A;
            ),
            "expected a string",
        ),
        (quote!(union U { a: u8 }), "not unions"),
        (
            quote!(
                struct G<T>(T);
            ),
            "needs a concrete type",
        ),
    ];
    for (input, want) in cases {
        let e = error(input);
        assert!(e.contains(want), "wanted {want:?}, got {e:?}");
    }
}

fn attribute(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    squash(
        &super::attribute(args, item)
            .expect("attribute expands")
            .to_string(),
    )
}

#[test]
fn attribute_derives_rkyv_and_message_in_one_line() {
    let out = attribute(
        quote!(result = u64, name = "demo.add"),
        quote! {
            #[derive(Debug)]
            pub struct Add(u64);
        },
    );
    assert!(out.starts_with(&squash(
        "#[derive(::parallel::__private::rkyv::Archive, ::parallel::__private::rkyv::Serialize, \
         ::parallel::__private::rkyv::Deserialize)] \
         #[rkyv(crate = ::parallel::__private::rkyv)] #[derive(Debug)] pub struct Add(u64);"
    )));
    assert!(out.contains(&squash(
        "#[automatically_derived] impl ::parallel::__private::actix::Message for Add { type Result = u64; }"
    )));
    assert!(out.contains(&squash(r#"const NAME: &'static str = "demo.add";"#)));
    assert!(!out.contains("compile_error"), "{out}");
}

#[test]
fn attribute_reports_the_derive_and_helper_it_replaces() {
    let out = attribute(
        quote!(),
        quote! {
            #[derive(Clone, parallel::Message)]
            #[message(result = u8)]
            struct Get;
        },
    );
    assert!(out.contains(&squash(
        "already implements `Message`: remove `parallel::Message`"
    )));
    assert!(out.contains(&squash(
        "`#[message(..)]` holds the options of `#[derive(Message)]`"
    )));
    // Taken off the item, the helper's options still count.
    assert!(
        out.contains(&squash("#[derive(Clone)] struct Get;")),
        "{out}"
    );
    assert!(!out.contains(&squash("#[message(result")), "{out}");
    assert!(out.contains(&squash("type Result = u8;")), "{out}");
}

#[test]
fn attribute_errors_quote_the_attribute() {
    let e = match super::attribute(
        quote!(reply = u8),
        quote!(
            struct A;
        ),
    ) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("unknown key `reply` in `#[parallel::message(..)]`"),
        "{e}"
    );
    let e = match super::attribute(
        quote!(),
        quote!(
            struct G<T>(T);
        ),
    ) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with("`#[parallel::message]` needs a concrete type"),
        "{e}"
    );
}
