//! Unit tests of `#[derive(Actor)]`: parse errors and the shape of the output.

use quote::quote;

use super::derive;

fn expand(input: proc_macro2::TokenStream) -> String {
    derive(input).expect("derive succeeds").to_string()
}

fn error(input: proc_macro2::TokenStream) -> String {
    match derive(input) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    }
}

/// Token strings with all whitespace removed, for `contains` checks.
fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

#[test]
fn plain_actor_gets_actor_and_remote_impls() {
    let out = squash(&expand(quote! {
        struct Counter { total: u64 }
    }));
    assert!(out.contains(&squash(
        "impl ::parallel::__private::actix::Actor for Counter { \
         type Context = ::parallel::__private::actix::Context<Self>; }"
    )));
    assert!(out.contains(&squash("impl ::parallel::RemoteActor for Counter")));
    assert!(out.contains(&squash(
        r#"::core::concat!(::core::module_path!(), "::", "Counter")"#
    )));
    assert!(out.contains(&squash("const ACCEPTS: &'static [&'static str] = &[];")));
    assert!(out.contains("#[automatically_derived]"));
    assert!(!out.contains("Deliver"));
    assert!(!out.contains("inventory"));
}

#[test]
fn messages_views_spawn_and_name() {
    let out = squash(&expand(quote! {
        #[actor(messages(Add, crate::Reset), view(Frame), spawn, name = "demo.counter")]
        struct Counter;
    }));
    for m in ["Add", "crate::Reset", "Frame"] {
        assert!(
            out.contains(&squash(&format!(
                "impl ::parallel::Accepts<{m}> for Counter"
            ))),
            "no `Accepts` impl for {m}: {out}"
        );
    }
    assert!(!out.contains("Deliver"), "{out}");
    assert!(out.contains(&squash(
        "if tag == <Add as ::parallel::Message>::TAG { \
         return ::parallel::__private::handle_plain::<Self, Add>(self, inbound, ctx); }"
    )));
    assert!(out.contains(&squash(
        "return ::parallel::__private::handle_view::<Self, Frame>(self, inbound, ctx);"
    )));
    assert!(out.contains(&squash(
        "&[<Add as ::parallel::Message>::NAME, <crate::Reset as ::parallel::Message>::NAME, \
         <Frame as ::parallel::Message>::NAME]"
    )));
    assert!(out.contains(&squash(r#"const NAME: &'static str = "demo.counter";"#)));
    assert!(out.contains(&squash(
        "::parallel::__private::inventory::submit! { \
         ::parallel::__private::ActorFactory::new::<Counter>() }"
    )));
}

#[test]
fn gpu_pins_the_type_and_its_factory() {
    let out = squash(&expand(quote! {
        #[actor(messages(Add), spawn, gpu)]
        struct Net;
    }));
    assert!(out.contains(&squash("const GPU: bool = true;")), "{out}");
    assert!(out.contains(&squash(
        "::parallel::__private::ActorFactory::pinned::<Net>()"
    )));
    let plain = squash(&expand(quote! {
        #[actor(messages(Add), spawn)]
        struct Cpu;
    }));
    assert!(!plain.contains("constGPU"), "{plain}");
}

#[test]
fn lifecycle_skips_actor_impl() {
    let out = squash(&expand(quote! {
        #[actor(lifecycle)]
        #[actor(messages(Add))]
        enum Worker { Idle }
    }));
    assert!(!out.contains("actix::ActorforWorker"));
    assert!(out.contains("::parallel::Accepts<Add>forWorker"));
}

#[test]
fn generics_are_propagated_with_handler_bounds() {
    let out = squash(&expand(quote! {
        #[actor(messages(Job<T>))]
        struct Pool<T: Send> where T: 'static { jobs: Vec<T> }
    }));
    assert!(out.contains(&squash(
        "impl<T: Send> ::parallel::__private::actix::Actor for Pool<T> where T: 'static"
    )));
    assert!(out.contains(&squash(
        "for Pool<T> where T: 'static, \
         Self: ::parallel::__private::actix::Actor<Context = ::parallel::__private::actix::Context<Self>,>, \
         Job<T>: ::parallel::Message, \
         Self: ::parallel::__private::actix::Handler<Job<T>>"
    )));
    assert!(out.contains(&squash("Job<T>: ::parallel::Message")));
}

#[test]
fn spawn_on_generic_type_is_rejected() {
    let e = error(quote! {
        #[actor(spawn)]
        struct Pool<T> { jobs: Vec<T> }
    });
    assert!(e.contains("`spawn` needs a concrete type"), "{e}");
    assert!(e.contains("register a concrete alias"), "{e}");
}

#[test]
fn unknown_key_lists_valid_keys_and_suggests() {
    let e = error(quote! {
        #[actor(message(Add))]
        struct Counter;
    });
    assert!(e.contains("unknown key `message`"), "{e}");
    assert!(
        e.contains("`messages(..)`, `view(..)`, `spawn`, `gpu`"),
        "{e}"
    );
    assert!(e.contains("did you mean `messages(..)`?"), "{e}");
    let e = error(quote! {
        #[actor(supervise)]
        struct Counter;
    });
    assert!(!e.contains("did you mean"), "{e}");
}

#[test]
fn malformed_options_say_what_to_write() {
    let cases = [
        (
            quote!(
                #[actor(spawn = true)]
                struct A;
            ),
            "`spawn` is a flag",
        ),
        (
            quote!(
                #[actor(lifecycle(x))]
                struct A;
            ),
            "`lifecycle` is a flag",
        ),
        (
            quote!(
                #[actor(messages = Add)]
                struct A;
            ),
            "write `messages(Ping, Pong)`",
        ),
        (
            quote!(
                #[actor(view())]
                struct A;
            ),
            "`view()` is empty",
        ),
        (
            quote!(
                #[actor(name)]
                struct A;
            ),
            "`name` needs a value",
        ),
        (
            quote!(
                #[actor(name = counter)]
                struct A;
            ),
            "expected a string",
        ),
        (
            quote!(
                #[actor(name = "")]
                struct A;
            ),
            "must not be empty",
        ),
        (
            quote!(
                #[actor(spawn, spawn)]
                struct A;
            ),
            "`spawn` is given twice",
        ),
        (
            quote!(
                #[actor(messages(A), view(A))]
                struct A;
            ),
            "`A` is listed twice",
        ),
        (quote!(union U { a: u8 }), "not unions"),
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
fn attribute_derives_rkyv_only_for_a_spawnable_actor() {
    let spawnable = attribute(
        quote!(messages(Add), spawn),
        quote! {
            #[derive(Default)]
            struct Counter { total: u64 }
        },
    );
    assert!(spawnable.starts_with(&squash(
        "#[derive(::parallel::__private::rkyv::Archive, ::parallel::__private::rkyv::Serialize, \
         ::parallel::__private::rkyv::Deserialize)] \
         #[rkyv(crate = ::parallel::__private::rkyv)] #[derive(Default)] struct Counter"
    )));
    assert!(spawnable.contains(&squash(
        "::parallel::__private::ActorFactory::new::<Counter>()"
    )));
    assert!(spawnable.contains(&squash("::parallel::Accepts<Add>forCounter")));
    let local = attribute(
        quote!(messages(Add)),
        quote! {
            struct Clock { started: std::time::Instant }
        },
    );
    assert!(local.starts_with("structClock"), "{local}");
    assert!(!local.contains(&squash("rkyv")), "{local}");
    assert!(
        local.contains(&squash("impl::parallel::RemoteActorforClock")),
        "{local}"
    );
}

#[test]
fn attribute_reports_what_it_replaces() {
    let out = attribute(
        quote!(spawn),
        quote! {
            #[derive(parallel::Actor, rkyv::Archive, Debug)]
            #[actor(messages(Add))]
            struct Counter;
        },
    );
    assert!(out.contains(&squash("already implements `Actor`")), "{out}");
    assert!(out.contains(&squash("already derives rkyv's")), "{out}");
    assert!(
        out.contains(&squash("holds the options of `#[derive(Actor)]`")),
        "{out}"
    );
    assert!(
        out.contains(&squash("#[derive(Debug)] struct Counter;")),
        "{out}"
    );
    assert!(
        out.contains(&squash("::parallel::Accepts<Add>forCounter")),
        "{out}"
    );
    // Without `spawn`, the user's own rkyv derive is fine.
    let out = attribute(
        quote!(),
        quote! {
            #[derive(rkyv::Archive)]
            struct Local;
        },
    );
    assert!(!out.contains(&squash("compile_error")), "{out}");
    assert!(
        out.contains(&squash("#[derive(rkyv::Archive)] struct Local;")),
        "{out}"
    );
}

#[test]
fn attribute_errors_quote_the_attribute() {
    let e = match super::attribute(
        quote!(supervise),
        quote!(
            struct A;
        ),
    ) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("unknown key `supervise` in `#[parallel::actor(..)]`"),
        "{e}"
    );
    let e = match super::attribute(quote!(), quote!(impl A {})) {
        Ok(out) => panic!("expected an error, got {out}"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("`#[parallel::actor]` goes on the actor type"),
        "{e}"
    );
}
