//! Supervision: OTP-style restart decisions for trees of actors and processes.
//!
//! [`Plan`] is the supervisor's brain as a pure state machine, tested
//! against OTP's documented semantics; [`Supervisor`] applies its decisions
//! to local actors and nested supervisors at run time. `ActorRef::watch`
//! delivers a [`Down`] for any actor, local or remote.

mod link;
mod plan;
mod supervisor;

pub use crate::actor::Down;
pub use link::{Link, link};
pub use plan::{Decision, ExitReason, Intensity, Plan, PlannedChild, Restart, Strategy};
pub use supervisor::{ChildSpec, DEFAULT_SHUTDOWN, Supervisor, SupervisorEvent, SupervisorRef};

#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;
