//! `Received<T>`: a read-only, zero-copy view of a message that arrived from
//! another node.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use rkyv::Archived;

use crate::wire::{Buffer, DecodeError, WireType, decode, to_owned};

use super::message::Message;

/// A validated message as it arrived: reading it copies nothing.
///
/// `Received<T>` dereferences to rkyv's `Archived<T>`, a read-only view of the
/// bytes in the receive buffer. Call [`Received::to_owned`] for an owned,
/// mutable `T` (that copies). This is the same caveat ipyparallel documents
/// for arrays it receives without copying: they are read-only.
pub struct Received<T: WireType> {
    // Points into `buf`'s heap allocation, which never moves while `buf` lives.
    root: NonNull<Archived<T>>,
    buf: Buffer,
    _type: PhantomData<T>,
}

// SAFETY: a `Received<T>` owns its buffer; sharing or sending it shares or
// sends only `&Archived<T>`, which is as thread-safe as `Archived<T>` itself.
unsafe impl<T: WireType> Send for Received<T> where Archived<T>: Sync {}
// SAFETY: see `Send`: the view is read-only.
unsafe impl<T: WireType> Sync for Received<T> where Archived<T>: Sync {}

impl<T: WireType> Received<T> {
    /// Validates `buf` as an archived `T` (rkyv bytecheck) and keeps it as a view.
    pub fn new(buf: Buffer) -> Result<Self, DecodeError> {
        let root = NonNull::from(decode::<T>(&buf)?);
        Ok(Self {
            root,
            buf,
            _type: PhantomData,
        })
    }

    /// Deserializes the view into an owned, mutable value (a copy).
    pub fn to_owned(&self) -> Result<T, DecodeError> {
        to_owned::<T>(self)
    }

    /// The validated bytes behind the view.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl<T: WireType> Deref for Received<T> {
    type Target = Archived<T>;

    fn deref(&self) -> &Archived<T> {
        // SAFETY: `root` was produced by validating `buf`, which this value
        // owns and never mutates; its heap storage does not move with `self`.
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
}
