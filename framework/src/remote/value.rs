//! Values posted to a mailbox on another node (the process layer's
//! send/join/yield, `net`'s client/server): encoded into the post, or —
//! between processes of one machine, from a threshold up — written once
//! into shared memory that the receiver maps and reads in place (the s3
//! design). The receiver gets a validated, read-only `Received<T>` view.

use crate::actor::Received;
use crate::id::ActorId;
use crate::transport::segments::{SegmentCache, SegmentPool};
use crate::transport::shm::{self, ShmError, ShmRef};
use crate::wire::{
    Buffer, DEFAULT_MAX_FRAME, DecodeError, EncodeError, WireType, decode_owned, encode, type_tag,
};

use super::link::RequestError;
use super::mailbox::Delivery;
use super::remote_node::RemoteNode;

/// Bit set in a post's operation code when its payload is a [`ShmRef`] to a
/// shared-memory file holding the value.
pub const SHM_FLAG: u8 = 0x80;

/// The tag that names a value's type in a post.
pub fn tag_of<T: ?Sized>() -> u64 {
    type_tag(std::any::type_name::<T>())
}

/// Why a value could not be posted or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value that arrived is not of the type asked for.
    #[error(
        "a value of another type than the one asked for arrived (tag {got:#018x}, expected {expected}); receive the type the other side sends"
    )]
    TypeMismatch {
        /// The tag of what arrived.
        got: u64,
        /// The type asked for.
        expected: &'static str,
    },
    /// The connection failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The value could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Shared memory failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
}

pub use crate::config::DEFAULT_SHM_THRESHOLD;

/// A value `send` and `join` accept: a reference to any wire type, a `&str`
/// (it arrives as a `String`), or `()`.
pub trait Payload {
    /// The tag of the type the receiver reads it as.
    fn tag(&self) -> u64;
    /// The value archived into a buffer.
    fn encode(&self) -> Result<Buffer, EncodeError>;
    /// The size of the archived value, without archiving it.
    fn archived_len(&self) -> Result<usize, shm::ShmError>;
    /// The value archived straight into a segment lent by `pool` (a fresh
    /// file when the pool has none free).
    fn write_shm(&self, pool: &SegmentPool) -> Result<ShmRef, shm::ShmError>;
    /// The name of the value's type, for errors.
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

impl<T: WireType> Payload for &T {
    fn tag(&self) -> u64 {
        tag_of::<T>()
    }
    fn encode(&self) -> Result<Buffer, EncodeError> {
        encode(*self)
    }
    fn archived_len(&self) -> Result<usize, shm::ShmError> {
        shm::archived_len(*self)
    }
    fn write_shm(&self, pool: &SegmentPool) -> Result<ShmRef, shm::ShmError> {
        pool.write(*self)
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

impl Payload for &str {
    fn tag(&self) -> u64 {
        tag_of::<String>()
    }
    fn encode(&self) -> Result<Buffer, EncodeError> {
        encode(&self.to_string())
    }
    fn archived_len(&self) -> Result<usize, shm::ShmError> {
        Ok(self.len() + 16)
    }
    fn write_shm(&self, pool: &SegmentPool) -> Result<ShmRef, shm::ShmError> {
        pool.write(&self.to_string())
    }
}

impl Payload for () {
    fn tag(&self) -> u64 {
        tag_of::<()>()
    }
    fn encode(&self) -> Result<Buffer, EncodeError> {
        encode(&())
    }
    fn archived_len(&self) -> Result<usize, shm::ShmError> {
        Ok(0)
    }
    fn write_shm(&self, pool: &SegmentPool) -> Result<ShmRef, shm::ShmError> {
        pool.write(&())
    }
}

/// Posts `value` to the mailbox `to` of `remote` with operation `op`,
/// through a segment of `same_host` (the pool of a receiver on this
/// machine) when the value is at least `threshold` bytes.
pub async fn post_value(
    remote: &RemoteNode,
    to: ActorId,
    operation: u8,
    value: &impl Payload,
    same_host: Option<&SegmentPool>,
    threshold: usize,
) -> Result<(), ValueError> {
    let Value { tag, body } = Value::pack(value, same_host, threshold)?;
    let (op, bytes, file) = match body {
        Body::Shm(file) => match encode(&file) {
            Ok(bytes) => (operation | SHM_FLAG, bytes, Some(file)),
            Err(e) => {
                shm::discard(&file);
                return Err(e.into());
            }
        },
        Body::Inline(buf) => (operation, buf, None),
    };
    if let Err(e) = remote.post(to, op, tag, bytes).await {
        if let Some(file) = &file {
            shm::discard(file);
        }
        return Err(match e {
            // Not sent for what it holds: the connection is as it was.
            RequestError::TooLarge { error, .. } => {
                ValueError::Encode(EncodeError::too_large(value.type_name(), &error))
            }
            e => e.into(),
        });
    }
    Ok(())
}

/// Reads a delivered value as a `T`: a validated, read-only view of the
/// post's payload or of the shared-memory file it names (through `cache`'s
/// mapping of its segment, when given).
pub fn open_value<T: WireType>(
    delivery: Delivery,
    cache: Option<&SegmentCache>,
) -> Result<Received<T>, ValueError> {
    if delivery.type_tag != tag_of::<T>() {
        discard(&delivery);
        return Err(ValueError::TypeMismatch {
            got: delivery.type_tag,
            expected: std::any::type_name::<T>(),
        });
    }
    if delivery.op & SHM_FLAG != 0 {
        let file = decode_owned::<ShmRef>(&delivery.payload)?;
        return open_shm(&file, cache);
    }
    Ok(Received::new(delivery.payload)?)
}

/// Maps the shared-memory payload `file` names (through `cache`'s mapping
/// of its segment, when given) and validates it as a `T`.
fn open_shm<T: WireType>(
    file: &ShmRef,
    cache: Option<&SegmentCache>,
) -> Result<Received<T>, ValueError> {
    let limit = DEFAULT_MAX_FRAME.max(1 << 40);
    let mapping = SegmentCache::open_in(cache, file, limit)?;
    Ok(Received::from_mapping(mapping)?)
}

/// Frees the shared-memory file of a delivery that will not be read.
pub fn discard(delivery: &Delivery) {
    if delivery.op & SHM_FLAG != 0
        && let Ok(file) = decode_owned::<ShmRef>(&delivery.payload)
    {
        shm::discard(&file);
    }
}

/// A value of any wire type carried inside a message: its archived bytes
/// (written at an aligned position, so the receiver views them in place),
/// or — between processes of one machine, from the threshold up — the
/// shared-memory file that holds them.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
pub struct Value {
    /// The tag of the value's type ([`tag_of`]).
    pub tag: u64,
    /// Where its archived bytes are.
    pub body: Body,
}

/// Where a [`Value`]'s archived bytes are.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
pub enum Body {
    /// In the message itself.
    Inline(#[rkyv(with = crate::wire::AlignedBytes)] Buffer),
    /// In a shared-memory file the receiver maps (same machine only).
    Shm(ShmRef),
}

impl Value {
    /// Packs `value`: into a segment of `same_host` (the pool of a
    /// receiver on this machine) when its archive is at least `threshold`
    /// bytes, inline otherwise.
    pub fn pack(
        value: &impl Payload,
        same_host: Option<&SegmentPool>,
        threshold: usize,
    ) -> Result<Self, ValueError> {
        let body = if let Some(pool) = same_host
            && value.archived_len()? >= threshold
        {
            Body::Shm(value.write_shm(pool)?)
        } else {
            Body::Inline(value.encode()?)
        };
        Ok(Self {
            tag: value.tag(),
            body,
        })
    }

    /// Frees the shared-memory file of a value that will not be sent.
    pub fn discard(&self) {
        if let Body::Shm(file) = &self.body {
            shm::discard(file);
        }
    }

    /// The shared-memory file that holds the value, if one does.
    pub fn shm_file(&self) -> Option<ShmRef> {
        match &self.body {
            Body::Shm(file) => Some(file.clone()),
            Body::Inline(_) => None,
        }
    }
}

/// A value that arrived in a message, not yet read as a type: the message's
/// receive buffer and where the value lies in it, or its shared-memory file.
#[derive(Debug)]
pub struct Incoming {
    tag: u64,
    body: IncomingBody,
}

#[derive(Debug)]
enum IncomingBody {
    Bytes(Buffer, std::ops::Range<usize>),
    Shm(ShmRef),
}

impl Incoming {
    /// A value that did not cross a wire (sent to an actor of this process).
    pub fn owned(value: Value) -> Self {
        let body = match value.body {
            Body::Inline(buf) => {
                let all = 0..buf.len();
                IncomingBody::Bytes(buf, all)
            }
            Body::Shm(file) => IncomingBody::Shm(file),
        };
        Self {
            tag: value.tag,
            body,
        }
    }

    /// The value `locate` finds inside the received message `message`,
    /// kept where it lies in the message's buffer.
    pub fn received<M: WireType>(
        message: Received<M>,
        locate: impl FnOnce(&rkyv::Archived<M>) -> &ArchivedValue,
    ) -> Self {
        let value = locate(&message);
        let tag = value.tag.to_native();
        let inline = match &value.body {
            ArchivedBody::Shm(file) => Err(ShmRef::from(file)),
            ArchivedBody::Inline(bytes) => {
                let start = bytes.as_ptr() as usize - message.bytes().as_ptr() as usize;
                Ok(start..start + bytes.len())
            }
        };
        let body = match inline {
            Err(file) => IncomingBody::Shm(file),
            Ok(range) => {
                let offset = message.bytes().as_ptr() as usize;
                match message.into_buffer() {
                    // `bytes()` is the whole buffer of a message that arrived.
                    Some(buf) if buf.as_ptr() as usize == offset => IncomingBody::Bytes(buf, range),
                    Some(buf) => {
                        let shift = offset - buf.as_ptr() as usize;
                        IncomingBody::Bytes(buf, range.start + shift..range.end + shift)
                    }
                    // Messages arrive in heap buffers: never a mapping.
                    None => IncomingBody::Bytes(Buffer::new(), 0..usize::MAX),
                }
            }
        };
        Self { tag, body }
    }

    /// The tag of the value's type.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Reads the value as a `T`: a validated, read-only view, in place.
    /// Another type than the one sent is refused (and the value freed).
    pub fn open<T: WireType>(self) -> Result<Received<T>, ValueError> {
        self.open_in(None)
    }

    /// [`open`](Self::open), reading a value in a pool segment through
    /// `cache`'s mapping of it (when given) if the segment was seen before.
    pub fn open_in<T: WireType>(
        self,
        cache: Option<&SegmentCache>,
    ) -> Result<Received<T>, ValueError> {
        if self.tag != tag_of::<T>() {
            let got = self.tag;
            self.discard();
            return Err(ValueError::TypeMismatch {
                got,
                expected: std::any::type_name::<T>(),
            });
        }
        match self.body {
            IncomingBody::Bytes(buf, range) => Ok(Received::new_in(buf, range)?),
            IncomingBody::Shm(file) => open_shm(&file, cache),
        }
    }

    /// Frees the shared-memory file of a value that will not be read.
    pub fn discard(self) {
        if let IncomingBody::Shm(file) = &self.body {
            shm::discard(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    struct Carrier {
        from: u32,
        value: Value,
    }

    #[test]
    fn an_inline_value_is_read_in_place_inside_its_message() {
        let tensor = crate::actor::Tensor::full(&[8, 8], 2.5f32);
        let value = Value::pack(&&tensor, None, 1).unwrap();
        let bytes = encode(&Carrier { from: 3, value }).unwrap();
        let base = bytes.as_ptr_range();
        let message = Received::<Carrier>::new(bytes).unwrap();
        assert_eq!(message.from, 3);
        let incoming = Incoming::received(message, |m| &m.value);
        let view = incoming.open::<crate::actor::Tensor<f32>>().unwrap();
        assert!(base.contains(&view.bytes().as_ptr()), "viewed in place");
        assert_eq!(view.to_owned().unwrap(), tensor);
    }

    #[test]
    fn a_value_of_another_type_is_refused_and_a_shared_one_freed() {
        let pool = SegmentPool::new();
        let value = Value::pack(&&vec![1u64; 64], Some(&pool), 16).unwrap();
        let Body::Shm(file) = &value.body else {
            panic!("a large value on one machine goes through shared memory");
        };
        assert_ne!(file.lease, 0, "lent by the pool");
        assert_eq!(pool.stats().lent, 1);
        let incoming = Incoming::owned(value);
        let err = incoming.open::<String>().unwrap_err();
        assert!(matches!(err, ValueError::TypeMismatch { .. }), "{err}");
        assert_eq!(pool.stats().lent, 0, "the segment is handed back");
    }
}
