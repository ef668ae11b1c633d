//! Reads `#[actor(messages(..), view(..), spawn, gpu, name = "..", lifecycle)]`
//! (the derive's helper) or the same options written in
//! `#[parallel::actor(..)]`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Error, LitStr, Token, Type};

use super::ActorDef;
use crate::util::{self, Form};

const KEYS: &[&str] = &[
    "messages(..)",
    "view(..)",
    "spawn",
    "gpu",
    "name = \"..\"",
    "lifecycle",
];

/// Options collected from the attributes.
#[derive(Default)]
struct Options {
    messages: Vec<Type>,
    views: Vec<Type>,
    spawn: Option<Span>,
    gpu: Option<Span>,
    name: Option<LitStr>,
    lifecycle: Option<Span>,
}

/// `#[derive(Actor)]`: the options are in every `#[actor(..)]` on the type.
pub(super) fn from_derive(input: &DeriveInput) -> syn::Result<ActorDef> {
    check(input, Form::Derive)?;
    let mut opts = Options::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("actor")) {
        attr.parse_nested_meta(|meta| opts.apply(meta, Form::Derive))?;
    }
    def(input, opts)
}

/// `#[parallel::actor(args)]`: the options are the attribute's arguments,
/// plus those of `#[actor(..)]` helpers the item carried by mistake (already
/// reported; counted so the expansion is what the user meant).
pub(super) fn from_attribute(
    args: TokenStream,
    input: &DeriveInput,
    helpers: &[Attribute],
) -> syn::Result<ActorDef> {
    check(input, Form::Attribute)?;
    let mut opts = Options::default();
    syn::meta::parser(|meta| opts.apply(meta, Form::Attribute)).parse2(args)?;
    for attr in helpers {
        attr.parse_nested_meta(|meta| opts.apply(meta, Form::Attribute))?;
    }
    def(input, opts)
}

fn check(input: &DeriveInput, form: Form) -> syn::Result<()> {
    if let Data::Union(u) = &input.data {
        return Err(Error::new(
            u.union_token.span,
            format!(
                "{} works on structs and enums, not unions: wrap the union in a struct",
                form.name("Actor")
            ),
        ));
    }
    Ok(())
}

fn def(input: &DeriveInput, opts: Options) -> syn::Result<ActorDef> {
    check_duplicates(&opts.messages, &opts.views)?;
    let generic = !input.generics.params.is_empty();
    if let Some(spawn) = opts.spawn.filter(|_| generic) {
        return Err(Error::new(
            spawn,
            format!(
                "`spawn` needs a concrete type: `{}` has generic parameters, so other nodes \
                 could not tell which version to create; remove the type parameters or \
                 register a concrete alias",
                input.ident
            ),
        ));
    }
    Ok(ActorDef {
        ident: input.ident.clone(),
        generics: input.generics.clone(),
        messages: opts.messages,
        views: opts.views,
        spawn: opts.spawn,
        gpu: opts.gpu.is_some(),
        name: opts.name,
        lifecycle: opts.lifecycle.is_some(),
    })
}

impl Options {
    fn apply(&mut self, meta: ParseNestedMeta, form: Form) -> syn::Result<()> {
        let path = &meta.path;
        if path.is_ident("messages") {
            self.messages.extend(type_list(&meta, "messages")?);
        } else if path.is_ident("view") {
            self.views.extend(type_list(&meta, "view")?);
        } else if path.is_ident("spawn") {
            util::flag(&meta, "spawn")?;
            once(&meta, self.spawn.is_some())?;
            self.spawn = Some(path.span());
        } else if path.is_ident("gpu") {
            util::flag(&meta, "gpu")?;
            once(&meta, self.gpu.is_some())?;
            self.gpu = Some(path.span());
        } else if path.is_ident("lifecycle") {
            util::flag(&meta, "lifecycle")?;
            once(&meta, self.lifecycle.is_some())?;
            self.lifecycle = Some(path.span());
        } else if path.is_ident("name") {
            once(&meta, self.name.is_some())?;
            self.name = Some(util::string_value(&meta, "name")?);
        } else {
            return Err(util::unknown_key(&meta, &form.options("actor"), KEYS));
        }
        Ok(())
    }
}

/// Rejects a key given twice (`spawn, spawn` or two `name`s).
fn once(meta: &ParseNestedMeta, seen: bool) -> syn::Result<()> {
    if seen {
        let key = meta.path.to_token_stream();
        return Err(Error::new_spanned(
            &meta.path,
            format!("`{key}` is given twice: keep one"),
        ));
    }
    Ok(())
}

/// Reads `key(TypeA, TypeB, ..)`.
fn type_list(meta: &ParseNestedMeta, key: &str) -> syn::Result<Vec<Type>> {
    let form = format!("write `{key}(Ping, Pong)` with the message types");
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!("`{key}` takes a list of types: {form}")));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let list = Punctuated::<Type, Token![,]>::parse_terminated(&content)?;
    if list.is_empty() {
        return Err(meta.error(format!("`{key}()` is empty: {form}, or remove it")));
    }
    Ok(list.into_iter().collect())
}

/// Each message type may appear once, in `messages(..)` or in `view(..)`.
fn check_duplicates(messages: &[Type], views: &[Type]) -> syn::Result<()> {
    let mut seen: Vec<String> = Vec::new();
    for ty in messages.iter().chain(views) {
        let key = ty.to_token_stream().to_string();
        if seen.contains(&key) {
            return Err(Error::new(
                ty.span(),
                format!(
                    "`{key}` is listed twice: list each message once, in `view(..)` if its remote \
                     deliveries should be zero-copy views, otherwise in `messages(..)`"
                ),
            ));
        }
        seen.push(key);
    }
    Ok(())
}
