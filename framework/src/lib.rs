//! # para||el
//!
//! An actor-model framework for parallel and distributed computing. Every
//! worker is an actor addressed by an [`ActorId`]; actors on other processes
//! and machines are reached through QUIC-backed remote mailboxes carrying rkyv
//! zero-copy messages.
//!
//! Layers (lower never imports higher): [`id`](mod@id) and [`wire`] (bytes only),
//! [`transport`] (QUIC, TLS, authenticated join), [`actor`] (local actors,
//! zero-copy [`Received`] views, [`Tensor`]) and [`remote`](mod@remote) (nodes,
//! [`ActorRef`], spawn by name, remote calls) and [`process`] (the seed's
//! fork / exec / join / send / receive / sync / close, shared memory).

pub mod actor;
pub mod collective;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod id;
pub mod launch;
pub mod map;
pub mod net;
pub mod process;
pub mod reduce;
pub mod remote;
pub mod supervision;
pub mod transport;
pub mod wire;
pub mod workqueue;

#[doc(hidden)]
pub mod __private;

pub use actor::{Message, Received, RemoteActor, Tensor};
pub use id::{ActorId, NodeId};
pub use launch::{Remote, addremote, calibrate, remote_cores, remote_speeds, remotes, sfork};
pub use map::{MapError, Mapped, map};
pub use parallel_macros::{Actor, Message, main, remote};
pub use process::{
    Child, Children, ForkError, ProcessError, children, close, fork, id, ip, nchildren, nfork,
    parent, yield_value,
};
pub use remote::{ActorRef, AskError, Node, RemoteNode, SendError};
pub use transport::{JoinLine, Password};
pub use workqueue::WorkQueue;

// Lets macro output name `::parallel` from inside this crate too.
extern crate self as parallel;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
