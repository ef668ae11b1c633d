//! Writes the impls for one [`ActorDef`].

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Generics, Type, parse_quote};

use super::ActorDef;
use crate::util;

pub(super) fn expand(def: &ActorDef) -> TokenStream {
    let actor_impl = (!def.lifecycle).then(|| actor_impl(def));
    let accepts = def
        .messages
        .iter()
        .chain(&def.views)
        .map(|m| accepts_impl(def, m));
    let remote = remote_impl(def);
    let spawn = def.spawn.map(|span| {
        let ident = &def.ident;
        let factory = if def.gpu {
            quote_spanned!(span=> pinned)
        } else {
            quote_spanned!(span=> new)
        };
        quote_spanned! {span=>
            ::parallel::__private::inventory::submit! {
                ::parallel::__private::ActorFactory::#factory::<#ident>()
            }
        }
    });
    quote! {
        #actor_impl
        #(#accepts)*
        #remote
        #spawn
    }
}

fn actor_impl(def: &ActorDef) -> TokenStream {
    let ident = &def.ident;
    let (impl_g, ty_g, where_c) = def.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_g ::parallel::__private::actix::Actor for #ident #ty_g #where_c {
            type Context = ::parallel::__private::actix::Context<Self>;
        }
    }
}

/// `Accepts<M>`: the actor lists `M`, so an `ActorRef` may send it `M`
/// (the actor's `Handler<M>` handles it from this process, and from another
/// node too). `m` is the type as written in `#[actor(..)]`, so a missing
/// handler is reported there.
fn accepts_impl(def: &ActorDef, m: &Type) -> TokenStream {
    let ident = &def.ident;
    let generics = with_bounds(
        def,
        [
            quote!(#m: ::parallel::Message),
            quote!(Self: ::parallel::__private::actix::Handler<#m>),
        ],
    );
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    quote_spanned! {m.span()=>
        #[automatically_derived]
        impl #impl_g ::parallel::Accepts<#m> for #ident #ty_g #where_c {}
    }
}

fn remote_impl(def: &ActorDef) -> TokenStream {
    let ident = &def.ident;
    let name = match &def.name {
        Some(lit) => quote!(#lit),
        None => util::default_name(ident),
    };
    let all = def.messages.iter().chain(&def.views).collect::<Vec<_>>();
    let handler = |m: TokenStream| quote!(Self: ::parallel::__private::actix::Handler<#m>);
    let bounds = all
        .iter()
        .flat_map(|m| [quote!(#m: ::parallel::Message), handler(quote!(#m))])
        .chain(
            def.views
                .iter()
                .map(|c| handler(quote!(::parallel::Received<#c>))),
        );
    let generics = with_bounds(def, bounds);
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let arms = def
        .messages
        .iter()
        .map(|m| (m, quote!(handle_plain)))
        .chain(def.views.iter().map(|c| (c, quote!(handle_view))))
        .map(|(m, handle)| {
            // Spanned at the message, where a missing handler is reported.
            quote_spanned! {m.span()=>
                if tag == <#m as ::parallel::Message>::TAG {
                    return ::parallel::__private::#handle::<Self, #m>(self, inbound, ctx);
                }
            }
        });
    let body = if all.is_empty() {
        quote! {
            let _ = ctx;
            ::core::result::Result::Err(inbound)
        }
    } else {
        quote! {
            let tag = inbound.type_tag();
            #(#arms)*
            ::core::result::Result::Err(inbound)
        }
    };
    let gpu = def.gpu.then(|| {
        quote!(
            const GPU: bool = true;
        )
    });
    quote! {
        #[automatically_derived]
        impl #impl_g ::parallel::RemoteActor for #ident #ty_g #where_c {
            const NAME: &'static str = #name;
            #gpu
            const ACCEPTS: &'static [&'static str] = &[
                #(<#all as ::parallel::Message>::NAME),*
            ];
            fn handle_inbound(
                &mut self,
                inbound: ::parallel::__private::Inbound,
                ctx: &mut ::parallel::__private::actix::Context<Self>,
            ) -> ::core::result::Result<(), ::parallel::__private::Inbound> {
                #body
            }
        }

        #[automatically_derived]
        impl #impl_g ::parallel::__private::actix::Handler<::parallel::__private::Drain>
            for #ident #ty_g #where_c
        {
            type Result = ();
            fn handle(
                &mut self,
                drain: ::parallel::__private::Drain,
                ctx: &mut Self::Context,
            ) {
                ::parallel::__private::drain::<Self>(self, drain, ctx)
            }
        }
    }
}

/// The actor's generics; for a generic actor, plus the given where-clause
/// predicates, so the impls apply exactly where the user's handlers do. A concrete
/// actor gets no extra bounds: a missing handler is then reported at the
/// message type in `#[actor(..)]`.
fn with_bounds(def: &ActorDef, bounds: impl IntoIterator<Item = TokenStream>) -> Generics {
    let mut generics = def.generics.clone();
    if !generics.params.is_empty() {
        let clause = generics.make_where_clause();
        // Spelled out because a `Self: Handler<..>` bound hides the `Actor`
        // impl's `Context` from the impls' bodies.
        clause.predicates.push(parse_quote!(
            Self: ::parallel::__private::actix::Actor<
                Context = ::parallel::__private::actix::Context<Self>,
            >
        ));
        for bound in bounds {
            clause.predicates.push(parse_quote!(#bound));
        }
    }
    generics
}
