//! What a program needs in scope to define actors and messages and talk to
//! them, without depending on actix or rkyv itself:
//!
//! ```
//! use parallel::prelude::*;
//!
//! #[parallel::message(result = u64)]
//! struct Add(u64);
//!
//! #[parallel::actor(messages(Add))]
//! struct Counter(u64);
//!
//! impl Handler<Add> for Counter {
//!     type Result = u64;
//!
//!     fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
//!         self.0 += n;
//!         self.0
//!     }
//! }
//! ```
//!
//! `Actor` is both the derive and actix's trait (for `Counter(0).start()` or
//! a hand-written `impl Actor` with `#[actor(lifecycle)]`); `Message` is both
//! the derive and para||el's trait. The attribute forms
//! `#[parallel::message]`, `#[parallel::actor]` and `#[parallel::wire]` are
//! left out on purpose: written with their path they cannot be mistaken for
//! the derives' helper attributes `#[message(..)]` and `#[actor(..)]`.

pub use actix::{Actor, Context, Handler};

pub use crate::actor::{Down, ExitReason, Message, Received, Tensor};
pub use crate::process::{ForkError, ProcessError, id, parent, yield_value};
pub use crate::remote::{ActorRef, AskError, Node, RequestError, SendError, SpawnError};
pub use crate::supervision::{ChildSpec, Restart, Strategy, Supervisor};
pub use crate::transport::{ConnectError, Password};
pub use crate::tree::{children, close, fork, nfork};
pub use crate::workqueue::WorkQueue;
pub use parallel_macros::{Actor, Message};
