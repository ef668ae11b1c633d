//! Helpers shared by the macros: which form the user wrote, option-key
//! errors and default wire names.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::quote;
use syn::meta::ParseNestedMeta;

/// Which spelling of `Message` or `Actor` the user wrote, so that errors
/// quote it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `#[derive(Message)]`, options in the helper attribute `#[message(..)]`.
    Derive,
    /// `#[parallel::message(..)]`, options in the attribute itself.
    Attribute,
}

impl Form {
    /// The macro as written: `` `#[derive(Message)]` `` or
    /// `` `#[parallel::message]` `` for `derive = "Message"`.
    pub(crate) fn name(self, derive: &str) -> String {
        match self {
            Form::Derive => format!("`#[derive({derive})]`"),
            Form::Attribute => format!("`#[parallel::{}]`", derive.to_lowercase()),
        }
    }

    /// The attribute that holds the options: `message` or `parallel::message`.
    pub(crate) fn options(self, helper: &str) -> String {
        match self {
            Form::Derive => helper.to_owned(),
            Form::Attribute => format!("parallel::{helper}"),
        }
    }
}

/// `concat!(module_path!(), "::", "Type")`: the default wire name of a type.
pub(crate) fn default_name(ident: &Ident) -> TokenStream {
    let ty = ident.to_string();
    quote!(::core::concat!(::core::module_path!(), "::", #ty))
}

/// The error for a key that `attr` does not know, listing the valid keys
/// (`keys` holds them as the user would write them, e.g. `messages(..)`) and
/// suggesting the closest one when the key looks like a typo.
pub(crate) fn unknown_key(meta: &ParseNestedMeta, attr: &str, keys: &[&str]) -> syn::Error {
    let path = &meta.path;
    let key = quote!(#path).to_string().replace(' ', "");
    let valid = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let bare = |k: &str| k.split(['(', ' ']).next().unwrap_or(k).to_owned();
    let hint = keys
        .iter()
        .map(|k| (distance(&key, &bare(k)), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    syn::Error::new_spanned(
        path,
        format!("unknown key `{key}` in `#[{attr}(..)]`: expected one of {valid}{hint}"),
    )
}

/// Rejects a value after a flag (`spawn = true`, `spawn(..)`).
pub(crate) fn flag(meta: &ParseNestedMeta, name: &str) -> syn::Result<()> {
    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
        Ok(())
    } else {
        Err(meta.error(format!(
            "`{name}` is a flag and takes no value: write just `{name}`"
        )))
    }
}

/// Reads `key = "text"`, with an error that shows the expected form.
pub(crate) fn string_value(meta: &ParseNestedMeta, key: &str) -> syn::Result<syn::LitStr> {
    let form = format!("write `{key} = \"stable.name\"`");
    if !meta.input.peek(syn::Token![=]) {
        return Err(meta.error(format!("`{key}` needs a value: {form}")));
    }
    let value = meta.value()?;
    if !value.peek(syn::LitStr) {
        return Err(value.error(format!("expected a string: {form}")));
    }
    let lit: syn::LitStr = value.parse()?;
    if lit.value().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("the name must not be empty: {form}"),
        ));
    }
    Ok(lit)
}

/// Whether a type mentions `impl Trait` anywhere, nested types included.
pub(crate) fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => mentions_impl(g.stream()),
        _ => false,
    })
}

/// Edit distance between two short keys, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_quote_what_the_user_wrote() {
        assert_eq!(Form::Derive.name("Message"), "`#[derive(Message)]`");
        assert_eq!(Form::Attribute.name("Actor"), "`#[parallel::actor]`");
        assert_eq!(Form::Derive.options("actor"), "actor");
        assert_eq!(Form::Attribute.options("message"), "parallel::message");
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("messages", "messages"), 0);
        assert_eq!(distance("message", "messages"), 1);
        assert_eq!(distance("veiw", "view"), 2);
        assert_eq!(distance("", "ab"), 2);
    }

    #[test]
    fn finds_nested_impl() {
        assert!(mentions_impl(quote!(Vec<impl Fn()>)));
        assert!(mentions_impl(quote!(impl Iterator<Item = u8>)));
        assert!(!mentions_impl(quote!(Vec<Impl>)));
    }
}
