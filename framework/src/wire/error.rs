//! Errors of the wire layer: what went wrong with some bytes, and what to do.

/// A frame header that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a header needs.
    #[error(
        "truncated frame: {have} of {need} header bytes; the peer closed mid-frame or sent garbage"
    )]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes a header needs.
        need: usize,
    },
    /// The frame does not start with the para||el magic.
    #[error(
        "bytes {0:02x?} are not a para||el frame; is the peer a para||el node of this version?"
    )]
    BadMagic([u8; 4]),
    /// The peer speaks another wire version.
    #[error(
        "peer speaks wire version {theirs}, this node {ours}; run the same para||el version on both nodes"
    )]
    Version {
        /// The peer's version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// The peer archives data differently (rkyv version, byte order, pointer width).
    #[error(
        "peer archive format {theirs:#x} differs from ours {ours:#x} (rkyv version, byte order or pointer width); build both nodes with the same para||el and rkyv for the same kind of machine"
    )]
    Format {
        /// The peer's format fingerprint.
        theirs: u64,
        /// Ours.
        ours: u64,
    },
    /// A kind byte no version of the wire uses.
    #[error("unknown frame kind {0}; the peer runs an incompatible para||el version")]
    UnknownKind(u8),
    /// The declared payload is over the limit; nothing was allocated for it.
    #[error(
        "frame of {declared} bytes exceeds the {limit}-byte limit; raise `max_frame` on both nodes"
    )]
    TooLarge {
        /// Payload size the header declares.
        declared: u64,
        /// The receiving node's limit.
        limit: u64,
    },
    /// A lane opened with a short header: it repeats a header that never came.
    #[error(
        "a short frame header came first on its lane, with no header before it to repeat; is the peer a para||el node of this version?"
    )]
    NothingToRepeat,
    /// A frame on a lane starts with a byte that opens no header.
    #[error(
        "bytes starting with {0:#04x} are not a para||el frame (no frame header of this wire version starts so); is the peer a para||el node of this version?"
    )]
    UnknownHeader(u8),
}

/// A payload that cannot be read as the message type it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes failed rkyv validation for the expected type.
    #[error(
        "message of type {type_name} failed validation ({reason}); the peer sent corrupt data or a different type under this name — build both nodes from the same source"
    )]
    Invalid {
        /// The type the bytes were checked as.
        type_name: &'static str,
        /// What the validator said.
        reason: String,
    },
    /// Validated bytes that could not be turned into an owned value.
    #[error("message of type {type_name} could not be deserialized: {reason}")]
    Deserialize {
        /// The type being deserialized.
        type_name: &'static str,
        /// What the deserializer said.
        reason: String,
    },
}

/// A value that could not be archived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not serialize a {type_name}: {reason}")]
pub struct EncodeError {
    /// The type being serialized.
    pub type_name: &'static str,
    /// What the serializer said.
    pub reason: String,
}

impl EncodeError {
    /// A `type_name` whose archive breaks the frame-size rule
    /// ([`super::check_len`]): not sent, and so not lost.
    pub fn too_large(type_name: &'static str, rule: &FrameError) -> Self {
        Self {
            type_name,
            reason: format!(
                "its archive is too large to send: {rule} (`TransportConfig::max_frame`), or send it in parts"
            ),
        }
    }
}
