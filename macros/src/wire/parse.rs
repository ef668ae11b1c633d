//! Checks the item an attribute form is put on: a struct or enum. What the
//! attribute already does (its derive, that derive's helper attribute,
//! rkyv's derives, the attribute a second time) is taken off the item and
//! reported, so the expansion still goes ahead and the user sees one error
//! per mistake rather than the conflicts it would cause.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, DeriveInput, Error, Item, Meta, Path, Token};

use super::Shorthand;

/// `#[parallel::wire]` takes no arguments.
pub(super) fn no_args(args: TokenStream) -> syn::Result<()> {
    match args.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(Error::new(
            first.span(),
            "`#[parallel::wire]` takes no arguments: write `#[parallel::wire]` (a message's \
             reply type goes in `#[parallel::message(result = ..)]`)",
        )),
    }
}

/// The item an attribute form is put on, with what the attribute replaces
/// taken off, and the errors that reported.
pub(crate) struct Checked {
    /// The item to emit.
    pub(crate) input: DeriveInput,
    /// Helper attributes of the derive the form stands for
    /// (`#[message(..)]`), taken off the item; their options still count, so
    /// the expansion matches what the user meant.
    pub(crate) helpers: Vec<Attribute>,
    errors: Option<Error>,
}

impl Checked {
    fn report(&mut self, error: Error) {
        match &mut self.errors {
            Some(errors) => errors.combine(error),
            None => self.errors = Some(error),
        }
    }

    /// Takes rkyv's derives off an item that `form` derives them for:
    /// `Archive` by any path, `Serialize` / `Deserialize` named through
    /// `rkyv` or in the same list as an `Archive` (elsewhere a bare
    /// `Serialize` may be serde's, which is fine).
    pub(crate) fn take_rkyv_derives(&mut self, form: &Shorthand) {
        let attr = form.attr;
        let errors = strip_derives(&mut self.input.attrs, |list| {
            let archive = list.iter().any(|p| last_is(p, "Archive"));
            list.iter()
                .filter(|p| {
                    last_is(p, "Archive")
                        || ((last_is(p, "Serialize") || last_is(p, "Deserialize"))
                            && (archive || p.segments.iter().any(|s| s.ident == "rkyv")))
                })
                .cloned()
                .collect()
        })
        .into_iter()
        .map(|paths| {
            Error::new_spanned(
                quote!(#(#paths)*),
                format!(
                    "`#[{attr}]` already derives rkyv's `Archive`, `Serialize` and \
                     `Deserialize`: remove them from this `#[derive(..)]`"
                ),
            )
        })
        .collect::<Vec<_>>();
        errors.into_iter().for_each(|e| self.report(e));
    }

    /// `tokens` with the reported errors in front.
    pub(crate) fn finish(self, tokens: TokenStream) -> TokenStream {
        let errors = self.errors.map(Error::into_compile_error);
        quote!(#errors #tokens)
    }
}

/// Parses the item `form` is put on and takes off what `form` replaces.
pub(crate) fn item(tokens: TokenStream, form: &Shorthand) -> syn::Result<Checked> {
    let attr = form.attr;
    let input = match syn::parse2::<Item>(tokens)? {
        Item::Struct(s) => DeriveInput::from(s),
        Item::Enum(e) => DeriveInput::from(e),
        Item::Union(u) => {
            return Err(Error::new(
                u.union_token.span,
                format!(
                    "`#[{attr}]` works on structs and enums, not unions: wrap the union in a struct"
                ),
            ));
        }
        other => {
            return Err(Error::new(
                kind_span(&other),
                format!(
                    "`#[{attr}]` goes on {}: put it on a `struct` or `enum` definition",
                    form.what
                ),
            ));
        }
    };
    let mut checked = Checked {
        input,
        helpers: Vec::new(),
        errors: None,
    };
    let (again, attrs): (Vec<_>, Vec<_>) = std::mem::take(&mut checked.input.attrs)
        .into_iter()
        .partition(|a| is_form(a.path(), attr));
    checked.input.attrs = attrs;
    for a in again {
        checked.report(Error::new_spanned(
            a,
            format!("`#[{attr}]` is given twice: keep one"),
        ));
    }
    let Some((derive, helper)) = form.replaces else {
        return Ok(checked);
    };
    let derived = strip_derives(&mut checked.input.attrs, |list| {
        list.iter()
            .filter(|p| last_is(p, derive))
            .cloned()
            .collect()
    });
    for path in derived.into_iter().flatten() {
        let written = path.to_token_stream().to_string().replace(' ', "");
        checked.report(Error::new_spanned(
            path,
            format!(
                "`#[{attr}]` already implements `{derive}`: remove `{written}` from this \
                 `#[derive(..)]`"
            ),
        ));
    }
    let (helpers, attrs): (Vec<_>, Vec<_>) = std::mem::take(&mut checked.input.attrs)
        .into_iter()
        .partition(|a| a.path().is_ident(helper));
    checked.input.attrs = attrs;
    for a in &helpers {
        checked.report(Error::new_spanned(
            a,
            format!(
                "`#[{helper}(..)]` holds the options of `#[derive({derive})]`; `#[{attr}]` takes \
                 them itself: move them into it, e.g. `#[{attr}({})]`, and remove this attribute",
                form.example
            ),
        ));
    }
    checked.helpers = helpers;
    Ok(checked)
}

/// The item as written, with a failed attribute's error in front. The
/// derive's helper attributes are dropped unless the item also has the
/// derive, so the one error is not followed by "cannot find attribute".
pub(crate) fn fallback(error: Error, item: TokenStream, form: &Shorthand) -> TokenStream {
    let mut out = error.into_compile_error();
    let kept = match (syn::parse2::<DeriveInput>(item.clone()), form.replaces) {
        (Ok(mut input), Some((derive, helper))) => {
            let has_derive = input
                .attrs
                .iter()
                .filter_map(derive_list)
                .flatten()
                .any(|p| last_is(&p, derive));
            if !has_derive {
                input.attrs.retain(|a| !a.path().is_ident(helper));
            }
            input.into_token_stream()
        }
        _ => item,
    };
    out.extend(kept);
    out
}

/// Takes the paths `pick` chooses out of every `#[derive(..)]` list (a list
/// left empty goes too) and returns them, one group per list they came from.
/// Lists that do not parse are left for the compiler to report.
fn strip_derives(
    attrs: &mut Vec<Attribute>,
    pick: impl Fn(&[Path]) -> Vec<Path>,
) -> Vec<Vec<Path>> {
    let mut taken = Vec::new();
    attrs.retain_mut(|a| {
        let Some(list) = derive_list(a) else {
            return true;
        };
        let list: Vec<Path> = list.into_iter().collect();
        let picked = pick(&list);
        if picked.is_empty() {
            return true;
        }
        let kept: Vec<&Path> = list.iter().filter(|p| !picked.contains(p)).collect();
        taken.push(picked);
        if let Meta::List(meta) = &mut a.meta {
            meta.tokens = quote!(#(#kept),*);
        }
        !kept.is_empty()
    });
    taken
}

/// The paths of a `#[derive(..)]` attribute; `None` for other attributes.
fn derive_list(attr: &Attribute) -> Option<Punctuated<Path, Token![,]>> {
    if !attr.path().is_ident("derive") {
        return None;
    }
    attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated)
        .ok()
}

fn last_is(path: &Path, name: &str) -> bool {
    path.segments.last().is_some_and(|s| s.ident == name)
}

/// Whether `path` names the attribute `attr` (`parallel::message`) again.
fn is_form(path: &Path, attr: &str) -> bool {
    let written = path.to_token_stream().to_string().replace(' ', "");
    written == attr || written == format!("::{attr}")
}

/// The keyword that says what an item is (`fn`, `impl`, `type`, ..), where
/// an error about putting an attribute on it belongs.
fn kind_span(item: &Item) -> Span {
    match item {
        Item::Fn(f) => f.sig.fn_token.span,
        Item::Impl(i) => i.impl_token.span,
        Item::Type(t) => t.type_token.span,
        Item::Trait(t) => t.trait_token.span,
        Item::TraitAlias(t) => t.trait_token.span,
        Item::Mod(m) => m.mod_token.span,
        Item::Const(c) => c.const_token.span,
        Item::Static(s) => s.static_token.span,
        Item::Use(u) => u.use_token.span,
        Item::ExternCrate(e) => e.extern_token.span,
        Item::ForeignMod(f) => f.abi.extern_token.span,
        other => other.span(),
    }
}
