//! Supervision: OTP-style restart decisions for trees of actors and processes.
//!
//! [`Plan`] is the supervisor's brain as a pure state machine, tested
//! against OTP's documented semantics; [`Supervisor`] applies its decisions
//! to local actors, actors on other nodes, actors in forked processes and
//! nested supervisors at run time. `ActorRef::watch`
//! delivers a [`Down`] for any actor, local or remote.

mod events;
mod link;
mod plan;
mod remote_child;
mod running;
mod supervisor;

pub use crate::actor::Down;
pub use crate::remote::Home;
pub use events::{EventStream, HISTORY, StampedEvent, SupervisorEvent};
pub use link::{Link, link};
pub use plan::{Decision, ExitReason, Intensity, Plan, PlannedChild, Restart, Strategy};
pub use remote_child::RemotePlacement;
pub use supervisor::{ChildSpec, DEFAULT_SHUTDOWN, NotRunning, Supervisor, SupervisorRef};

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;
