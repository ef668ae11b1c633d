//! Derive and attribute macros of para||el.
//!
//! Users reach these through the `parallel` crate: `#[parallel::message]`,
//! `#[parallel::actor]` and `#[parallel::wire]` (one line per type, rkyv's
//! derives included), the derives they stand for (`#[derive(parallel::Actor)]`,
//! `#[derive(parallel::Message)]`), `#[parallel::main]` and
//! `#[parallel::remote]`. Each macro lives in its own module, split into
//! `parse` (tokens → a small description, every error spanned on the offending
//! token) and `expand` (description → tokens). Generated code names only
//! absolute `::parallel::…` paths, so it works whatever the user imported and
//! needs no dependency but `parallel`.

use proc_macro::TokenStream;

mod actor;
mod entry;
mod message;
mod remote;
mod util;
mod wire;
mod worker;

/// Makes a type a message that can cross process and machine boundaries, in
/// one line: rkyv's `Archive`, `Serialize` and `Deserialize` plus
/// [`Message`](derive@Message), all named through `parallel`, so the crate
/// needs no rkyv or actix dependency.
///
/// The options are those of `#[derive(Message)]`, written in the attribute
/// itself: `result = Reply` (default `()`) and `name = "stable.name"`. Other
/// `#[rkyv(..)]` options on the type still apply.
///
/// ```
/// use parallel::prelude::*;
///
/// #[parallel::message(result = u64)]
/// struct Add(u64);
///
/// assert!(<Add as Message>::NAME.ends_with("::Add"));
/// ```
#[proc_macro_attribute]
pub fn message(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    message::attribute(attr.into(), item.clone())
        .unwrap_or_else(|e| wire::fallback(e, item, &message::SHORTHAND))
        .into()
}

/// Makes a type an actor that local and remote peers can send messages to,
/// in one line: [`Actor`](derive@Actor) with its options written in the
/// attribute itself, plus rkyv's `Archive`, `Serialize` and `Deserialize`
/// (named through `parallel`) when the actor is `spawn`able, since its value
/// is then sent to the node that starts it. Without `spawn` its fields may
/// hold anything, rkyv or not.
///
/// The options (`messages(..)`, `view(..)`, `spawn`, `gpu`, `name = ".."`,
/// `lifecycle`) are described at [`Actor`](derive@Actor).
///
/// ```
/// use parallel::prelude::*;
///
/// #[parallel::message(result = u64)]
/// struct Add(u64);
///
/// #[parallel::actor(messages(Add), spawn)]
/// struct Counter {
///     total: u64,
/// }
///
/// impl Handler<Add> for Counter {
///     type Result = u64;
///
///     fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
///         self.total += n;
///         self.total
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    actor::attribute(attr.into(), item.clone())
        .unwrap_or_else(|e| wire::fallback(e, item, &actor::SHORTHAND))
        .into()
}

/// Makes a struct or enum a wire type (sent by `send` / `receive`, inside
/// messages, as a remote function's argument or result) in one line: rkyv's
/// `Archive`, `Serialize` and `Deserialize`, named through `parallel`, so the
/// crate needs no rkyv dependency. Other `#[rkyv(..)]` options still apply.
///
/// ```
/// #[parallel::wire]
/// struct Reading {
///     sensor: String,
///     values: Vec<f32>,
/// }
///
/// let bytes = parallel::wire::encode(&Reading { sensor: "t1".into(), values: vec![1.5] })?;
/// let back: Reading = parallel::wire::decode_owned(&bytes)?;
/// assert_eq!((back.sensor.as_str(), back.values), ("t1", vec![1.5]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[proc_macro_attribute]
pub fn wire(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    wire::attribute(attr.into(), item.clone())
        .unwrap_or_else(|e| wire::fallback(e, item, &wire::SHORTHAND))
        .into()
}

/// Makes a type an actor that local and remote peers can send messages to.
///
/// [`#[parallel::actor(..)]`](macro@actor) does the same in one line and
/// derives rkyv's traits for a `spawn`able actor; this derive is for types
/// that derive rkyv's traits themselves.
///
/// Options go in `#[actor(..)]`, all optional:
///
/// * `messages(A, B, ..)`: message types the actor handles (it must
///   `impl actix::Handler<A>` for each); remote deliveries of them are decoded
///   into owned values.
/// * `view(C, ..)`: message types whose remote deliveries stay in the received
///   buffer and arrive as `parallel::Received<C>` (zero-copy); the actor
///   implements `Handler<C>` for local sends and `Handler<Received<C>>` for
///   remote ones.
/// * `spawn`: registers the actor so other nodes can spawn it by name; the
///   type itself is the init value sent with the spawn request.
/// * `gpu`: the actor runs only on a thread pinned to a GPU, for its whole
///   life: start it with `Node::spawn_on`, `RemoteNode::spawn_on` or
///   `ChildSpec::pinned` (it must be `Send`); a plain spawn refuses it.
/// * `name = "stable.name"`: the name used on the wire (default: the module
///   path and type name).
/// * `lifecycle`: you write `impl actix::Actor` yourself (for `started`,
///   `stopping`, ..); its `Context` must be `actix::Context<Self>`.
///
/// With a dependency on rkyv the derives read `rkyv::Archive`, ..; here rkyv
/// is reached through `parallel`, which `#[rkyv(crate = ..)]` tells rkyv:
///
/// ```
/// use parallel::rkyv::{Archive, Deserialize, Serialize};
/// # #[parallel::message(result = u64)]
/// # struct Add(u64);
///
/// #[derive(parallel::Actor, Archive, Serialize, Deserialize)]
/// #[rkyv(crate = parallel::rkyv)]
/// #[actor(messages(Add), spawn)]
/// struct Counter {
///     total: u64,
/// }
///
/// impl parallel::actix::Handler<Add> for Counter {
///     type Result = u64;
///
///     fn handle(&mut self, msg: Add, _ctx: &mut Self::Context) -> u64 {
///         self.total += msg.0;
///         self.total
///     }
/// }
/// ```
#[proc_macro_derive(Actor, attributes(actor))]
pub fn derive_actor(input: TokenStream) -> TokenStream {
    actor::derive(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a type a message that can cross process and machine boundaries.
///
/// [`#[parallel::message(..)]`](macro@message) does the same in one line,
/// rkyv's derives included; this derive is for types that derive rkyv's
/// traits themselves.
///
/// `#[message(result = Reply)]` names the reply type (default `()`); a string
/// such as `result = "Vec<u8>"` is accepted too. `name = "stable.name"` fixes
/// the name used on the wire (default: the module path and type name).
///
/// ```
/// use parallel::rkyv::{Archive, Deserialize, Serialize};
///
/// #[derive(parallel::Message, Archive, Serialize, Deserialize)]
/// #[rkyv(crate = parallel::rkyv)]
/// #[message(result = u64)]
/// struct Add(u64);
///
/// assert!(<Add as parallel::Message>::NAME.ends_with("::Add"));
/// ```
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    message::derive(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Runs `async fn main()` on the para||el runtime.
///
/// The function keeps its attributes, visibility and return type; its body
/// runs to completion inside the actor system before `main` returns.
///
/// ```
/// #[parallel::main]
/// async fn main() -> std::io::Result<()> {
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry::main(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Registers a cluster worker type: put it on `impl Worker for T { .. }`.
/// The impl stays as written; `T` is registered, so that this program,
/// started by a node agent as a worker of a pool of `T`, runs it (the same
/// as `parallel::register_worker!(T)` after the impl).
///
/// ```ignore
/// #[parallel::worker]
/// impl parallel::pool::Worker for Square {
///     type Init = ();
///     type Job = u64;
///     type Output = u64;
///     type Update = ();
///     fn init(_: ()) -> Self { Square }
///     fn run(&mut self, n: u64) -> u64 { n * n }
/// }
/// ```
#[proc_macro_attribute]
pub fn worker(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2 = proc_macro2::TokenStream::from(item);
    worker::attribute(attr.into(), item2.clone())
        .unwrap_or_else(|e| {
            let error = e.into_compile_error();
            quote::quote! { #item2 #error }
        })
        .into()
}

/// Registers a plain function so other nodes can call it by name.
///
/// The function stays as written. Its arguments are decoded from the caller's
/// bytes (so their types must be owned wire types) and it runs on a worker
/// thread, so it must be a synchronous `fn` without generics or `self`.
///
/// ```
/// #[parallel::remote]
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
/// # assert_eq!(add(2, 3), 5);
/// ```
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    // On error the function is kept too, so its callers do not add errors.
    remote::remote(attr.into(), item.clone())
        .unwrap_or_else(|e| {
            let mut out = e.into_compile_error();
            out.extend(item);
            out
        })
        .into()
}
