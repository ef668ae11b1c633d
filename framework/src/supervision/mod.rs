//! Supervision: OTP-style restart decisions for trees of actors and processes.
//!
//! [`Plan`] is the supervisor's brain as a pure state machine, tested
//! against OTP's documented semantics; the runtime that applies its
//! decisions to local actors, remote actors and forked processes builds on it.

mod plan;

pub use plan::{Decision, ExitReason, Intensity, Plan, PlannedChild, Restart, Strategy};

#[cfg(test)]
mod tests;
