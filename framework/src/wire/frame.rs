//! The fixed-size frame header: pure functions over bytes. (On a lane that
//! carries many frames, a header that repeats the one before it may go
//! short instead: [`super::LaneEncoder`].)
//!
//! Layout (little endian, [`HEADER_LEN`] bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `PRLL` |
//! | 4 | 2 | wire version |
//! | 6 | 1 | kind |
//! | 7 | 1 | flags |
//! | 8 | 8 | format fingerprint |
//! | 16 | 8 | payload length |
//! | 24 | 16 | target actor id |
//! | 40 | 16 | source actor id |
//! | 56 | 8 | correlation id |
//! | 64 | 8 | message type tag |
//! | 72 | 8 | sequence number (set by the transport) |

use crate::id::ActorId;

use super::error::FrameError;

/// Four bytes that open every frame.
pub const MAGIC: [u8; 4] = *b"PRLL";
/// Version of this frame layout, of the message kinds and of the protocol
/// around them; bumped on any change. 2: the side that accepted a
/// connection sends its heartbeats (in 1, the side that opened it did: a
/// pair of the two would have had nobody beating, so they refuse each other
/// in the handshake instead). 3: a frame on a lane may have a short header
/// that repeats the one before it ([`super::LaneEncoder`]).
pub const WIRE_VERSION: u16 = 3;
/// Size of the encoded header in bytes.
pub const HEADER_LEN: usize = 80;
/// Default hard limit on one frame's payload: 1 GiB.
pub const DEFAULT_MAX_FRAME: u64 = 1 << 30;

/// What a frame carries. Unknown kinds are refused by [`FrameHeader::decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum FrameKind {
    /// Join handshake, first message of the connecting node.
    Hello = 1,
    /// Join handshake: the listener's challenge.
    Challenge = 2,
    /// Join handshake: the connecting node's proof of the password.
    Proof = 3,
    /// Join handshake: the listener accepts, and proves the password back.
    Welcome = 4,
    /// Join handshake or later: the sender refuses and says why.
    Refuse = 5,
    /// Liveness signal on the control lane.
    Heartbeat = 6,
    /// Fire-and-forget message to an actor.
    Tell = 16,
    /// Message to an actor that expects a reply with the same correlation id.
    Ask = 17,
    /// Successful reply to an `Ask`, `Spawn` or `Call`.
    Reply = 18,
    /// Failed reply: the payload is an archived [`super::RemoteFailure`].
    ReplyError = 19,
    /// Request to spawn a registered actor type by name.
    Spawn = 20,
    /// Request to run a registered function by name.
    Call = 21,
    /// Orderly goodbye: the peer is leaving.
    Goodbye = 22,
    /// A payload posted to a mailbox (the process layer's send, join and
    /// yield): `flags` is the operation, `type_tag` the payload's type.
    Post = 23,
}

impl FrameKind {
    /// The kind for a byte, or `None` for a byte no version of the wire uses.
    pub const fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::Challenge,
            3 => Self::Proof,
            4 => Self::Welcome,
            5 => Self::Refuse,
            6 => Self::Heartbeat,
            16 => Self::Tell,
            17 => Self::Ask,
            18 => Self::Reply,
            19 => Self::ReplyError,
            20 => Self::Spawn,
            21 => Self::Call,
            22 => Self::Goodbye,
            23 => Self::Post,
            _ => return None,
        })
    }

    /// True for the kinds that travel on the control lane.
    pub const fn is_control(self) -> bool {
        matches!(
            self,
            Self::Hello
                | Self::Challenge
                | Self::Proof
                | Self::Welcome
                | Self::Refuse
                | Self::Heartbeat
        )
    }
}

/// The fingerprint of the archive format: rkyv's major and minor version, the
/// byte order and the pointer width. Two nodes must agree on it to read each
/// other's messages.
pub const fn format_fingerprint() -> u64 {
    let rkyv_major: u64 = 0;
    let rkyv_minor: u64 = 8;
    let little: u64 = if cfg!(target_endian = "little") { 1 } else { 2 };
    // rkyv archives sizes as 32-bit by default, whatever the host's width.
    let pointer_width: u64 = 32;
    (rkyv_major << 48) | (rkyv_minor << 32) | (little << 16) | pointer_width
}

/// One frame header. The payload (`len` bytes) follows it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame carries.
    pub kind: FrameKind,
    /// Kind-specific bits; zero unless a kind documents otherwise.
    pub flags: u8,
    /// Payload length in bytes.
    pub len: u64,
    /// Actor the frame is for (nil when none).
    pub target: ActorId,
    /// Actor the frame is from (nil when none).
    pub source: ActorId,
    /// Matches a reply to its request; zero for tells.
    pub correlation: u64,
    /// Which message type the payload holds ([`super::type_tag`] of its name).
    pub type_tag: u64,
    /// Per-connection sequence number, set by the transport for ordering.
    pub seq: u64,
}

/// The one rule on a frame's size, for the node that reads it (before
/// anything is allocated for it) and for the one that would send it (so
/// that it never sends what its peer refuses): a payload of at most
/// `max_frame` bytes.
pub fn check_len(len: u64, max_frame: u64) -> Result<(), FrameError> {
    if len > max_frame {
        return Err(FrameError::TooLarge {
            declared: len,
            limit: max_frame,
        });
    }
    Ok(())
}

impl FrameHeader {
    /// A header of `kind` with every other field zero or nil.
    pub const fn new(kind: FrameKind) -> Self {
        Self {
            kind,
            flags: 0,
            len: 0,
            target: ActorId::nil(),
            source: ActorId::nil(),
            correlation: 0,
            type_tag: 0,
            seq: 0,
        }
    }

    /// Encodes the header into its fixed-size byte form.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
        b[6] = self.kind as u8;
        b[7] = self.flags;
        b[8..16].copy_from_slice(&format_fingerprint().to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..40].copy_from_slice(&self.target.to_bytes());
        b[40..56].copy_from_slice(&self.source.to_bytes());
        b[56..64].copy_from_slice(&self.correlation.to_le_bytes());
        b[64..72].copy_from_slice(&self.type_tag.to_le_bytes());
        b[72..80].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Decodes and checks a header: magic, version, format, kind, and the
    /// payload length against `max_frame` — before anything is allocated for it.
    pub fn decode(bytes: &[u8], max_frame: u64) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Truncated {
                have: bytes.len(),
                need: HEADER_LEN,
            });
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let id_at = |o: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[o..o + 16]);
            ActorId::from_bytes(a)
        };
        if bytes[0..4] != MAGIC {
            let mut got = [0u8; 4];
            got.copy_from_slice(&bytes[0..4]);
            return Err(FrameError::BadMagic(got));
        }
        let version = u16_at(4);
        if version != WIRE_VERSION {
            return Err(FrameError::Version {
                theirs: version,
                ours: WIRE_VERSION,
            });
        }
        let format = u64_at(8);
        if format != format_fingerprint() {
            return Err(FrameError::Format {
                theirs: format,
                ours: format_fingerprint(),
            });
        }
        let kind = FrameKind::from_u8(bytes[6]).ok_or(FrameError::UnknownKind(bytes[6]))?;
        let len = u64_at(16);
        check_len(len, max_frame)?;
        Ok(Self {
            kind,
            flags: bytes[7],
            len,
            target: id_at(24),
            source: id_at(40),
            correlation: u64_at(56),
            type_tag: u64_at(64),
            seq: u64_at(72),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Ask,
            flags: 3,
            len: 1234,
            target: ActorId::new(),
            source: ActorId::new(),
            correlation: 77,
            type_tag: 0xdead_beef,
            seq: 9,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        assert_eq!(FrameHeader::decode(&h.encode(), DEFAULT_MAX_FRAME), Ok(h));
    }

    #[test]
    fn every_kind_round_trips() {
        for b in 0..=255u8 {
            if let Some(k) = FrameKind::from_u8(b) {
                assert_eq!(k as u8, b);
            }
        }
    }

    #[test]
    fn refuses_bad_input_with_typed_errors() {
        let good = sample().encode();
        assert!(matches!(
            FrameHeader::decode(&good[..10], 100),
            Err(FrameError::Truncated { .. })
        ));
        let mut b = good;
        b[0] = b'X';
        assert!(matches!(
            FrameHeader::decode(&b, 1 << 20),
            Err(FrameError::BadMagic(_))
        ));
        let mut b = good;
        b[4] = 99;
        assert!(matches!(
            FrameHeader::decode(&b, 1 << 20),
            Err(FrameError::Version { .. })
        ));
        let mut b = good;
        b[8] ^= 1;
        assert!(matches!(
            FrameHeader::decode(&b, 1 << 20),
            Err(FrameError::Format { .. })
        ));
        let mut b = good;
        b[6] = 200;
        assert!(matches!(
            FrameHeader::decode(&b, 1 << 20),
            Err(FrameError::UnknownKind(200))
        ));
        let err = FrameHeader::decode(&good, 1000).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                declared: 1234,
                limit: 1000
            }
        ));
        assert!(err.to_string().contains("max_frame"));
    }
}
