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
    /// The handler panicked on this very message; the text is the panic's.
    /// The actor stopped (its supervisor, if any, starts a new incarnation),
    /// and the message is never sent again, not even by a retrying reference.
    #[error(
        "the actor's handler panicked on this message: {0}; the actor stopped and the message is not sent again — fix the handler or the message"
    )]
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
    /// The node has no device for a GPU actor.
    pub const NO_DEVICE: u16 = 9;
}

impl Failure {
    /// The failure as it travels back to the asking node. A panic travels
    /// as its bare text, so that [`Failure::from_remote`] gives the same
    /// [`Failure::Panicked`] on the other side.
    pub fn to_remote(&self) -> RemoteFailure {
        match self {
            Failure::Stopped => RemoteFailure {
                location: None,
                code: code::STOPPED,
                message: self.to_string(),
            },
            Failure::Panicked(text) => RemoteFailure {
                location: None,
                code: code::PANICKED,
                message: text.clone(),
            },
            Failure::Remote(r) => r.clone(),
        }
    }

    /// The failure a remote node answered with, as the asker sees it: a
    /// handler panic or a stop there reads as it would for a local actor
    /// ([`Failure::Panicked`], [`Failure::Stopped`]); anything else stays
    /// [`Failure::Remote`].
    pub fn from_remote(failure: RemoteFailure) -> Failure {
        match failure.code {
            code::PANICKED => Failure::Panicked(failure.message),
            code::STOPPED => Failure::Stopped,
            _ => Failure::Remote(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_the_same_after_crossing_the_wire() {
        for failure in [
            Failure::Stopped,
            Failure::Panicked("boom".into()),
            Failure::Remote(RemoteFailure {
                location: None,
                code: code::UNKNOWN_ACTOR,
                message: "no such actor".into(),
            }),
        ] {
            assert_eq!(Failure::from_remote(failure.to_remote()), failure);
        }
    }
}
