//! # para||el
//!
//! An actor-model framework for parallel and distributed computing. Every
//! worker is an actor addressed by an [`ActorId`]; actors on other processes
//! and machines are reached through QUIC-backed remote mailboxes carrying rkyv
//! zero-copy messages.
//!
//! Layers (lower never imports higher): [`id`](mod@id) and
//! [`wire`](mod@wire) (bytes only), [`transport`] (QUIC, TLS, authenticated
//! join), [`actor`](mod@actor) (local actors, zero-copy [`Received`] views,
//! [`Tensor`]) and [`remote`](mod@remote) (nodes, [`ActorRef`], spawn by
//! name, remote calls) and [`process`] (the seed's fork / exec / join / send /
//! receive / sync / close, shared memory).
//!
//! A program needs no dependency but this crate: [`prelude`] brings what
//! actors and messages use into scope, one attribute per type derives the
//! rest (rkyv's traits included), and [`rkyv`] and [`actix`] are re-exported
//! for anything beyond that.
//!
//! ```
//! use parallel::prelude::*;
//!
//! #[parallel::message(result = u64)]
//! struct Add(u64);
//!
//! #[parallel::actor(messages(Add), spawn)]
//! #[derive(Default)]
//! struct Counter {
//!     total: u64,
//! }
//!
//! impl Handler<Add> for Counter {
//!     type Result = u64;
//!
//!     fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
//!         self.total += n;
//!         self.total
//!     }
//! }
//!
//! #[parallel::wire]
//! struct Reading {
//!     values: Vec<f32>,
//! }
//! ```

pub mod actor;
pub mod client;
pub mod cluster;
pub mod collective;
pub mod config;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod id;
pub mod launch;
pub mod map;
pub mod net;
pub mod pool;
pub mod prelude;
pub mod process;
pub mod reduce;
pub mod remote;
pub mod supervision;
pub mod transport;
pub mod tree;
pub mod wire;
pub mod workqueue;

#[doc(hidden)]
pub mod __private;

/// The actor runtime under para||el, for what [`prelude`] does not bring
/// (`Addr`, `AsyncContext`, ..), so a program needs no actix dependency.
pub use actix;
/// The zero-copy serialization under para||el, for archived types and
/// `#[rkyv(..)]` options, so a program needs no rkyv dependency.
pub use rkyv;

pub use actor::{Accepts, Down, ExitReason, Message, Received, RemoteActor, Tensor};
pub use config::{CollectiveTransport, Config};
pub use id::{ActorId, NodeId};
pub use launch::{Remote, addremote, calibrate, remote_cores, remote_speeds, remotes, sfork};
pub use map::{MapError, Mapped, map};
pub use parallel_macros::{Actor, Message, actor, main, message, remote, wire, worker};
pub use process::{Child, Children, ForkError, ProcessError, Tree, id, ip, parent, yield_value};
pub use remote::{
    ActorRef, AskError, CallError, Node, RemoteNode, RequestError, SendError, SpawnError,
    StartError,
};
pub use transport::{ConnectError, JoinLine, Password};
pub use tree::{children, close, fork, nchildren, nfork};
pub use workqueue::WorkQueue;

// Lets macro output name `::parallel` from inside this crate too.
extern crate self as parallel;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
