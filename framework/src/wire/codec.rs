//! rkyv encode and validated decode. Received bytes are always checked with
//! `rkyv::access` before anything reads them.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::BoxedError;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Archived, Deserialize, Portable, Serialize};

use super::error::{DecodeError, EncodeError};

/// Alignment of every receive buffer: payloads start 16-byte aligned so any
/// archived root type can be viewed in place.
pub const ALIGN: usize = 16;

/// A 16-byte aligned byte buffer, the unit every payload travels in.
pub type Buffer = AlignedVec<ALIGN>;

/// A type that can travel between nodes: rkyv-archivable, validated on
/// receipt, and deserializable back into an owned value. Implemented for every
/// type that derives rkyv's `Archive`, `Serialize` and `Deserialize` with
/// fields that are themselves wire types.
pub trait WireType:
    Archive<
        Archived: Portable
                      + Send
                      + Sync
                      + for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                      + Deserialize<Self, HighDeserializer<BoxedError>>,
    > + for<'a> Serialize<HighSerializer<Buffer, ArenaHandle<'a>, BoxedError>>
    + for<'a, 'w> Serialize<
        HighSerializer<&'w mut dyn super::WriteShared<BoxedError>, ArenaHandle<'a>, BoxedError>,
    > + Sized
{
}

impl<T> WireType for T where
    T: Archive<
            Archived: Portable
                          + Send
                          + Sync
                          + for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                          + Deserialize<T, HighDeserializer<BoxedError>>,
        > + for<'a> Serialize<HighSerializer<Buffer, ArenaHandle<'a>, BoxedError>>
        + for<'a, 'w> Serialize<
            HighSerializer<&'w mut dyn super::WriteShared<BoxedError>, ArenaHandle<'a>, BoxedError>,
        >
{
}

/// Archives `value` into a fresh aligned buffer.
pub fn encode<T: WireType>(value: &T) -> Result<Buffer, EncodeError> {
    encode_into(value, Buffer::new())
}

/// Archives `value` into `buf` (cleared first), reusing its allocation.
pub fn encode_into<T: WireType>(value: &T, mut buf: Buffer) -> Result<Buffer, EncodeError> {
    buf.clear();
    rkyv::api::high::to_bytes_in::<_, BoxedError>(value, buf).map_err(|e| EncodeError {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

/// Archives `value` into any rkyv writer (the same bytes as [`encode`]),
/// for writers that are not a [`Buffer`]: one that counts, one that streams
/// into a file, one that grows its buffer its own way or keeps large shared
/// runs apart ([`super::WriteShared`]).
pub fn encode_to<T: WireType>(
    value: &T,
    writer: &mut dyn super::WriteShared<BoxedError>,
) -> Result<(), EncodeError> {
    rkyv::util::with_arena(|arena| {
        rkyv::api::high::to_bytes_in_with_alloc::<_, _, BoxedError>(value, writer, arena.acquire())
            .map(|_| ())
    })
    .map_err(|e| EncodeError {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

/// Validates `bytes` as an archived `T` and returns a view of it.
///
/// `bytes` must start at a 16-byte boundary (any [`Buffer`] does); this is the
/// only way received bytes are read.
pub fn decode<T: WireType>(bytes: &[u8]) -> Result<&Archived<T>, DecodeError> {
    rkyv::access::<Archived<T>, BoxedError>(bytes).map_err(|e| DecodeError::Invalid {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

/// Deserializes an already validated archived value into an owned `T`.
pub fn to_owned<T: WireType>(archived: &Archived<T>) -> Result<T, DecodeError> {
    rkyv::deserialize::<T, BoxedError>(archived).map_err(|e| DecodeError::Deserialize {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

/// Validates and deserializes in one step.
pub fn decode_owned<T: WireType>(bytes: &[u8]) -> Result<T, DecodeError> {
    to_owned::<T>(decode::<T>(bytes)?)
}

/// Copies `bytes` into a fresh 16-byte aligned buffer (for bytes that arrived
/// at an arbitrary alignment).
pub fn aligned_copy(bytes: &[u8]) -> Buffer {
    let mut buf = Buffer::with_capacity(bytes.len());
    buf.extend_from_slice(bytes);
    buf
}

/// The 64-bit tag of a type name (FNV-1a): how a frame names its message type.
pub const fn type_tag(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        name: String,
        values: Vec<f32>,
        n: u64,
    }

    #[test]
    fn round_trip() {
        let s = Sample {
            name: "x".into(),
            values: vec![1.0, 2.5],
            n: 7,
        };
        let buf = encode(&s).unwrap();
        let view = decode::<Sample>(&buf).unwrap();
        assert_eq!(view.name, "x");
        assert_eq!(decode_owned::<Sample>(&buf).unwrap(), s);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let buf = aligned_copy(&[0xff; 40]);
        let Err(err) = decode::<Sample>(&buf) else {
            panic!("garbage accepted")
        };
        assert!(err.to_string().contains("validation"), "{err}");
        assert!(decode::<Sample>(&aligned_copy(&[])).is_err());
    }

    #[test]
    fn tags_differ_by_name() {
        assert_ne!(type_tag("a::B"), type_tag("a::C"));
        assert_eq!(type_tag(""), 0xcbf2_9ce4_8422_2325);
    }
}
