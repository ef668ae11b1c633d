//! # para||el
//!
//! An actor-model framework for parallel and distributed computing. Every
//! worker is an actor addressed by an [`ActorId`]; actors on other processes
//! and machines are reached through QUIC-backed remote mailboxes carrying rkyv
//! zero-copy messages.
//!
//! Layers (lower never imports higher): [`id`] and [`wire`] (bytes only),
//! [`transport`] (QUIC, TLS, authenticated join), [`actor`] (local actors,
//! `ActorRef`, zero-copy `Received` views) and [`remote`] (nodes, remote
//! mailboxes, spawn by name).

pub mod id;
pub mod wire;

pub use id::{ActorId, NodeId};
pub mod transport;

// Lets macro output name `::parallel` from inside this crate too.
extern crate self as parallel;
