//! Payloads of the control lane (join handshake) and of failed replies.

use rkyv::{Archive, Deserialize, Serialize};

use crate::id::NodeId;

/// First message of a connecting node, on the control lane.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Hello {
    /// The connecting node's id.
    pub node: NodeId,
    /// The connecting node's own join line, if it listens (empty otherwise).
    pub join_line: String,
    /// Random nonce of the connecting node.
    pub nonce: [u8; 32],
    /// The connecting node's incarnation: a number fixed when its process
    /// started, so a node that was declared dead can be told apart from the
    /// same node id restarted.
    pub incarnation: u64,
}

/// The listener's answer to [`Hello`]: its id and a fresh random nonce.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Challenge {
    /// The listening node's id.
    pub node: NodeId,
    /// The listener's own join line.
    pub join_line: String,
    /// Random nonce the connecting node must sign.
    pub nonce: [u8; 32],
    /// The listener's incarnation (see [`Hello::incarnation`]).
    pub incarnation: u64,
}

/// The connecting node's proof that it knows the cluster password.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Proof {
    /// HMAC-SHA256 over the handshake transcript, keyed by the password.
    pub mac: [u8; 32],
}

/// The listener accepts, proving in turn that it knows the password.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Welcome {
    /// HMAC-SHA256 over the transcript with the listener's role label.
    pub mac: [u8; 32],
}

/// A refusal, with a reason meant for the person running the other node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Refuse {
    /// Why the connection is refused, and what to do about it.
    pub reason: String,
}

/// Why a request (ask, spawn, call) failed on the remote node. Travels in a
/// `ReplyError` frame.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RemoteFailure {
    /// Machine-readable category.
    pub code: u16,
    /// What happened, for the user.
    pub message: String,
    /// Where a panic happened (`file:line`), when the panicking side noted it.
    pub location: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_owned, encode};

    #[test]
    fn control_messages_round_trip() {
        let h = Hello {
            node: NodeId::new(),
            join_line: "x".into(),
            nonce: [7; 32],
            incarnation: 42,
        };
        assert_eq!(decode_owned::<Hello>(&encode(&h).unwrap()).unwrap(), h);
        let f = RemoteFailure {
            location: None,
            code: 3,
            message: "no".into(),
        };
        assert_eq!(
            decode_owned::<RemoteFailure>(&encode(&f).unwrap()).unwrap(),
            f
        );
    }
}
