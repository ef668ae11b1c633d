//! The bytes of one encoded message as the transport sends them, and the
//! writer capability that lets a large run of bytes join them without a
//! copy.
//!
//! A value that owns a large, immutable run of bytes (a [`crate::Tensor`]'s
//! elements) hands it to its serializer with [`WriteShared::write_shared`]
//! as a [`Bytes`] that keeps it alive. A writer that gathers (the remote
//! send path's) keeps that run as one part of the [`Payload`] instead of
//! copying it; every other writer copies it, so the archive's bytes are the
//! same either way and the receiver cannot tell.

use bytes::Bytes;
use rkyv::rancor::Strategy;
use rkyv::ser::{Serializer, Writer};
use rkyv::util::AlignedVec;

use super::codec::Buffer;

/// Runs of at least this many bytes are worth handing over shared
/// ([`WriteShared::write_shared`]): below it, a copy costs less than
/// keeping a part apart.
pub const SHARE_FROM: usize = 256 << 10;

/// A writer that may take a run of bytes it does not copy.
pub trait WriteShared<E>: Writer<E> {
    /// Writes `bytes` as [`Writer::write`] would. A writer that gathers
    /// keeps `bytes` (and so the memory it holds) instead of copying it; the
    /// default copies.
    fn write_shared(&mut self, bytes: Bytes) -> Result<(), E> {
        self.write(&bytes)
    }
}

impl<E, const A: usize> WriteShared<E> for AlignedVec<A> {}

impl<E> WriteShared<E> for Vec<u8> {}

impl<E: rkyv::rancor::Source> WriteShared<E> for rkyv::ser::writer::Buffer<'_> {}

impl<T: WriteShared<E> + ?Sized, E> WriteShared<E> for &mut T {
    fn write_shared(&mut self, bytes: Bytes) -> Result<(), E> {
        (**self).write_shared(bytes)
    }
}

impl<T: WriteShared<E> + ?Sized, E> WriteShared<E> for Strategy<T, E> {
    fn write_shared(&mut self, bytes: Bytes) -> Result<(), E> {
        (**self).write_shared(bytes)
    }
}

impl<W: WriteShared<E>, A, H, E> WriteShared<E> for Serializer<W, A, H> {
    fn write_shared(&mut self, bytes: Bytes) -> Result<(), E> {
        self.writer.write_shared(bytes)
    }
}

/// One encoded message: a single buffer, or runs of bytes that follow each
/// other (large runs shared with the value they came from). Either way its
/// bytes are those [`super::encode`] gives for the same value.
#[derive(Debug, Clone)]
pub enum Payload {
    /// All the bytes in one buffer.
    Whole(Buffer),
    /// The bytes in order, in several runs.
    Parts(Vec<Bytes>),
}

impl Payload {
    /// Number of bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Whole(buf) => buf.len(),
            Self::Parts(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// True when there is no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The runs of bytes, in order.
    pub fn runs(&self) -> impl Iterator<Item = &[u8]> {
        let (whole, parts) = match self {
            Self::Whole(buf) => (Some(&buf[..]), &[][..]),
            Self::Parts(parts) => (None, &parts[..]),
        };
        whole.into_iter().chain(parts.iter().map(|p| &p[..]))
    }

    /// The runs as [`Bytes`] to hand to a stream, in order, without a copy.
    pub fn into_chunks(self) -> Vec<Bytes> {
        match self {
            Self::Whole(buf) => vec![Bytes::from_owner(buf)],
            Self::Parts(parts) => parts,
        }
    }

    /// All the bytes in one aligned buffer (copied unless they already are).
    pub fn into_buffer(self) -> Buffer {
        match self {
            Self::Whole(buf) => buf,
            Self::Parts(parts) => {
                let mut buf = Buffer::with_capacity(parts.iter().map(Bytes::len).sum());
                for part in &parts {
                    buf.extend_from_slice(part);
                }
                buf
            }
        }
    }
}

impl From<Buffer> for Payload {
    fn from(buf: Buffer) -> Self {
        Self::Whole(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_the_same_whole_or_in_parts() {
        let mut whole = Buffer::new();
        whole.extend_from_slice(b"headbodytail");
        let parts = Payload::Parts(vec![
            Bytes::from_static(b"head"),
            Bytes::from_static(b"body"),
            Bytes::from_static(b"tail"),
        ]);
        let whole = Payload::from(whole);
        assert_eq!(whole.len(), 12);
        assert_eq!(parts.len(), 12);
        assert_eq!(
            parts.runs().collect::<Vec<_>>(),
            [b"head", b"body", b"tail"]
        );
        assert_eq!(whole.runs().collect::<Vec<_>>().concat(), b"headbodytail");
        assert_eq!(&parts.clone().into_buffer()[..], b"headbodytail");
        let chunks = whole.into_chunks();
        assert_eq!(chunks.len(), 1);
        assert_eq!(&chunks[0][..], b"headbodytail");
        assert!(Payload::Parts(Vec::new()).is_empty());
    }

    #[test]
    fn a_writer_that_does_not_gather_copies_what_is_shared() {
        let mut out = Vec::new();
        WriteShared::<rkyv::rancor::Error>::write_shared(&mut out, Bytes::from_static(b"abc"))
            .unwrap();
        let mut aligned = Buffer::new();
        WriteShared::<rkyv::rancor::Error>::write_shared(&mut aligned, Bytes::from_static(b"xy"))
            .unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(&aligned[..], b"xy");
    }
}
