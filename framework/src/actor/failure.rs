//! Why a request to an actor produced no result.

use crate::wire::RemoteFailure;

/// Why an actor gave no reply: it is gone, it panicked, or the other node
/// refused or could not read the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The actor stopped before it answered.
    #[error("the actor stopped before it answered; it was stopped or crashed — check its logs")]
    Stopped,
    /// The handler panicked; the message is the panic's.
    #[error("the actor's handler panicked: {0}")]
    Panicked(String),
    /// The remote node could not serve the request.
    #[error("{}", .0.message)]
    Remote(RemoteFailure),
}

/// Codes carried by [`RemoteFailure::code`].
pub mod code {
    /// No actor with that id lives on the node.
    pub const UNKNOWN_ACTOR: u16 = 1;
    /// The actor accepts no message of that type.
    pub const UNKNOWN_MESSAGE: u16 = 2;
    /// The payload failed validation.
    pub const INVALID: u16 = 3;
    /// The handler panicked.
    pub const PANICKED: u16 = 4;
    /// The actor stopped before answering.
    pub const STOPPED: u16 = 5;
    /// The node does not allow spawning that actor type.
    pub const NOT_ALLOWED: u16 = 6;
    /// No actor type or function of that name is registered in the binary.
    pub const NOT_REGISTERED: u16 = 7;
    /// The reply could not be encoded.
    pub const ENCODE: u16 = 8;
}

impl Failure {
    /// The failure as it travels back to the asking node.
    pub fn to_remote(&self) -> RemoteFailure {
        match self {
            Failure::Stopped => RemoteFailure {
                code: code::STOPPED,
                message: self.to_string(),
            },
            Failure::Panicked(_) => RemoteFailure {
                code: code::PANICKED,
                message: self.to_string(),
            },
            Failure::Remote(r) => r.clone(),
        }
    }
}
