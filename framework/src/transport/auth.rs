//! The join proof, as pure functions: transcript building, HMAC and its
//! constant-time check. No I/O here, so it can be tested and fuzzed alone.
//!
//! Both sides compute `HMAC-SHA256(key = password, label || hello nonce ||
//! challenge nonce || connector id || listener id || TLS exporter)`. The
//! exporter value binds the proof to this one TLS session, so a proof can
//! neither be replayed nor relayed through a man in the middle.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::id::NodeId;

/// Label of the exporter secret both ends derive from the TLS session.
pub(crate) const EXPORTER_LABEL: &[u8] = b"parallel join";

/// Which side a proof comes from; each signs under its own label, so a
/// proof of one side can never be reflected back as the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The connecting node (sends `Proof`).
    Client,
    /// The listening node (sends `Welcome`).
    Server,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Client => b"parallel-join-client",
            Self::Server => b"parallel-join-server",
        }
    }
}

/// Everything both sides of one handshake agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transcript {
    /// Nonce from the connector's `Hello`.
    pub hello_nonce: [u8; 32],
    /// Nonce from the listener's `Challenge`.
    pub challenge_nonce: [u8; 32],
    /// The connecting node.
    pub connector: NodeId,
    /// The listening node.
    pub listener: NodeId,
    /// Keying material exported from the TLS session.
    pub exporter: [u8; 32],
}

impl Transcript {
    /// The bytes a `role` signs.
    pub fn bytes(&self, role: Role) -> Vec<u8> {
        let label = role.label();
        let mut out = Vec::with_capacity(label.len() + 32 * 3 + 16 * 2);
        out.extend_from_slice(label);
        out.extend_from_slice(&self.hello_nonce);
        out.extend_from_slice(&self.challenge_nonce);
        out.extend_from_slice(&self.connector.to_bytes());
        out.extend_from_slice(&self.listener.to_bytes());
        out.extend_from_slice(&self.exporter);
        out
    }
}

/// The MAC `role` sends for `transcript`, keyed by the password.
pub(crate) fn sign(password: &[u8], role: Role, transcript: &Transcript) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, password);
    let tag = hmac::sign(&key, &transcript.bytes(role));
    let mut mac = [0u8; 32];
    mac.copy_from_slice(tag.as_ref());
    mac
}

/// Checks in constant time that `mac` is what `role` must send.
pub(crate) fn verify(password: &[u8], role: Role, transcript: &Transcript, mac: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, password);
    hmac::verify(&key, &transcript.bytes(role), mac).is_ok()
}

/// A fresh random nonce from the system's secure generator.
pub(crate) fn nonce() -> Result<[u8; 32], ring::error::Unspecified> {
    let mut n = [0u8; 32];
    SystemRandom::new().fill(&mut n)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> Transcript {
        Transcript {
            hello_nonce: [1; 32],
            challenge_nonce: [2; 32],
            connector: NodeId::new(),
            listener: NodeId::new(),
            exporter: [3; 32],
        }
    }

    #[test]
    fn right_password_accepts() {
        let t = transcript();
        let mac = sign(b"pw", Role::Client, &t);
        assert!(verify(b"pw", Role::Client, &t, &mac));
        let mac = sign(b"pw", Role::Server, &t);
        assert!(verify(b"pw", Role::Server, &t, &mac));
    }

    #[test]
    fn wrong_password_refuses() {
        let t = transcript();
        let mac = sign(b"wrong", Role::Client, &t);
        assert!(!verify(b"pw", Role::Client, &t, &mac));
    }

    #[test]
    fn tampered_transcript_refuses() {
        let t = transcript();
        let mac = sign(b"pw", Role::Client, &t);
        let mut bad = t;
        bad.challenge_nonce[5] ^= 1;
        assert!(!verify(b"pw", Role::Client, &bad, &mac));
        let mut bad = t;
        bad.hello_nonce[0] ^= 1;
        assert!(!verify(b"pw", Role::Client, &bad, &mac));
        let mut bad = t;
        bad.exporter[31] ^= 1;
        assert!(!verify(b"pw", Role::Client, &bad, &mac));
        let mut bad = t;
        std::mem::swap(&mut bad.connector, &mut bad.listener);
        assert!(!verify(b"pw", Role::Client, &bad, &mac));
        assert!(!verify(b"pw", Role::Client, &t, &mac[..31]));
    }

    #[test]
    fn roles_cannot_be_reflected() {
        let t = transcript();
        let mac = sign(b"pw", Role::Client, &t);
        assert!(!verify(b"pw", Role::Server, &t, &mac));
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }
}
