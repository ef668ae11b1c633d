//! `Received<T>`: a read-only, zero-copy view of a message that arrived from
//! another node.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use rkyv::Archived;

use crate::transport::shm::Mapping;
use crate::wire::{Buffer, DecodeError, WireType, decode, to_owned};

use super::message::Message;

/// A validated message as it arrived: reading it copies nothing.
///
/// `Received<T>` dereferences to rkyv's `Archived<T>`, a read-only view of the
/// bytes in the receive buffer, or of the shared memory the sender wrote them
/// to when both run on one host ([`Received::from_mapping`]). Call
/// [`Received::to_owned`] for an owned, mutable `T` (that copies). This is the
/// same caveat ipyparallel documents for arrays it receives without copying:
/// they are read-only.
pub struct Received<T: WireType> {
    // Points into `storage`'s bytes, which never move while `storage` lives.
    root: NonNull<Archived<T>>,
    storage: Storage,
    _type: PhantomData<T>,
}

/// The bytes behind a view. Both kinds keep their bytes at a fixed address
/// for as long as they live, however the owning `Received` is moved: a heap
/// allocation, or a shared-memory mapping unmapped only on drop.
/// A heap view covers `range` of its buffer: a message nested in another
/// one is viewed where it lies in the outer message's buffer.
enum Storage {
    Heap(Buffer, std::ops::Range<usize>),
    Mapped(Mapping),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Heap(buf, range) => &buf[range.clone()],
            Storage::Mapped(map) => map,
        }
    }
}

// SAFETY: a `Received<T>` owns its bytes (a heap buffer or a read-only
// mapping, both `Send + Sync`); sharing or sending it shares or sends only
// `&Archived<T>`, which is as thread-safe as `Archived<T>` itself.
unsafe impl<T: WireType> Send for Received<T> where Archived<T>: Sync {}
// SAFETY: see `Send`: the view is read-only.
unsafe impl<T: WireType> Sync for Received<T> where Archived<T>: Sync {}

impl<T: WireType> Received<T> {
    /// Validates `buf` as an archived `T` (rkyv bytecheck) and keeps it as a view.
    pub fn new(buf: Buffer) -> Result<Self, DecodeError> {
        let all = 0..buf.len();
        Self::validated(Storage::Heap(buf, all))
    }

    /// Validates `buf[range]` as an archived `T` and keeps it as a view in
    /// place: how a value nested in a received message (written at an
    /// aligned position, see [`crate::wire::AlignedBytes`]) is read without a
    /// copy. A range that does not start on a 16-byte boundary is copied
    /// out first; one that does not fit `buf` is refused.
    pub fn new_in(buf: Buffer, range: std::ops::Range<usize>) -> Result<Self, DecodeError> {
        if range.start > range.end || range.end > buf.len() {
            return Err(DecodeError::Invalid {
                type_name: std::any::type_name::<T>(),
                reason: format!(
                    "its bytes at {range:?} do not fit the {}-byte message around them",
                    buf.len()
                ),
            });
        }
        if !range.start.is_multiple_of(crate::wire::ALIGN) {
            return Self::new(crate::wire::aligned_copy(&buf[range]));
        }
        Self::validated(Storage::Heap(buf, range))
    }

    /// The whole receive buffer behind a view that arrived in a message
    /// (`None` for a shared-memory view), to view a part of it with
    /// [`Received::new_in`].
    pub fn into_buffer(self) -> Option<Buffer> {
        match self.storage {
            Storage::Heap(buf, _) => Some(buf),
            Storage::Mapped(_) => None,
        }
    }

    /// Validates a shared-memory payload as an archived `T` and keeps it as a
    /// view: the message is read where the sender wrote it, without a copy.
    /// The memory is freed when the `Received` is dropped, or at once if
    /// validation fails.
    pub fn from_mapping(map: Mapping) -> Result<Self, DecodeError> {
        Self::validated(Storage::Mapped(map))
    }

    fn validated(storage: Storage) -> Result<Self, DecodeError> {
        let root = NonNull::from(decode::<T>(storage.bytes())?);
        Ok(Self {
            root,
            storage,
            _type: PhantomData,
        })
    }

    /// Deserializes the view into an owned, mutable value (a copy).
    pub fn to_owned(&self) -> Result<T, DecodeError> {
        to_owned::<T>(self)
    }

    /// The validated bytes behind the view.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

impl<T: WireType> Deref for Received<T> {
    type Target = Archived<T>;

    fn deref(&self) -> &Archived<T> {
        // SAFETY: `root` was produced by validating `storage`'s bytes, which
        // this value owns and never mutates; they stay at the same address
        // (heap allocation or mapping) when `self` moves, until it drops.
        unsafe { self.root.as_ref() }
    }
}

impl<T: WireType> fmt::Debug for Received<T>
where
    Archived<T>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Received").field(&**self).finish()
    }
}

impl<M: Message> actix::Message for Received<M> {
    type Result = M::Result;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{aligned_copy, encode};

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
    struct Note {
        text: String,
        n: u32,
    }

    #[test]
    fn view_reads_without_copy_and_survives_moves() {
        let buf = encode(&Note {
            text: "hi".into(),
            n: 3,
        })
        .unwrap();
        let addr = buf.as_ptr();
        let view = Received::<Note>::new(buf).unwrap();
        let moved = Box::new(view);
        assert_eq!(moved.text, "hi");
        assert_eq!(moved.n, 3);
        assert_eq!(moved.bytes().as_ptr(), addr);
        assert_eq!(
            moved.to_owned().unwrap(),
            Note {
                text: "hi".into(),
                n: 3
            }
        );
    }

    #[test]
    fn invalid_bytes_are_refused() {
        assert!(Received::<Note>::new(aligned_copy(&[1, 2, 3])).is_err());
    }

    #[test]
    fn view_of_a_mapping_reads_a_tensor_in_place() {
        use crate::actor::Tensor;
        use crate::transport::shm;

        let t = Tensor::new(&[256, 64], (0..256 * 64).map(|i| i as f32).collect()).unwrap();
        let r = shm::write(&t).unwrap();
        let m = shm::open(&r, 1 << 20).unwrap();
        let range = m.as_ptr_range();
        let view = Box::new(Received::<Tensor<f32>>::from_mapping(m).unwrap());
        let data = view.as_slice();
        assert!(range.contains(&data.as_ptr().cast::<u8>()));
        assert!(data.as_ptr_range().end.cast::<u8>() <= range.end);
        assert_eq!(view.bytes().as_ptr_range(), range);
        assert_eq!(view.shape(), vec![256, 64]);
        assert_eq!(data, t.as_slice());
        assert_eq!(view.to_owned().unwrap(), t);
    }

    #[test]
    fn mapping_of_the_wrong_type_is_refused() {
        use crate::transport::shm;

        let r = shm::write(&7u8).unwrap();
        let m = shm::open(&r, 64).unwrap();
        assert!(Received::<Note>::from_mapping(m).is_err());
    }
}
