//! `AlignedBytes`: an rkyv field wrapper for a nested archive's bytes. They
//! are written at a 16-byte aligned position of the outer archive, so a
//! receiver can view the nested archive in place, inside the outer
//! message's receive buffer, without copying it out first.

use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer, WriterExt};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, DeserializeWith, SerializeWith};
use rkyv::{Archived, Place};

use super::codec::{ALIGN, Buffer};

/// Archives a [`Buffer`] as `ArchivedVec<u8>` whose bytes start on a
/// 16-byte boundary of the archive: `#[rkyv(with = AlignedBytes)]`.
#[derive(Debug, Clone, Copy)]
pub struct AlignedBytes;

impl ArchiveWith<Buffer> for AlignedBytes {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve_with(field: &Buffer, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out)
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> SerializeWith<Buffer, S> for AlignedBytes {
    fn serialize_with(field: &Buffer, serializer: &mut S) -> Result<VecResolver, S::Error> {
        let pos = serializer.align(ALIGN)?;
        serializer.write(field.as_slice())?;
        Ok(VecResolver::from_pos(pos))
    }
}

impl<D: Fallible + ?Sized> DeserializeWith<Archived<Vec<u8>>, Buffer, D> for AlignedBytes {
    fn deserialize_with(field: &Archived<Vec<u8>>, _: &mut D) -> Result<Buffer, D::Error> {
        let mut out = Buffer::with_capacity(field.len());
        out.extend_from_slice(field.as_slice());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use rkyv::{Archive, Deserialize, Serialize};

    use super::*;
    use crate::wire::{decode, decode_owned, encode};

    #[derive(Archive, Serialize, Deserialize, Debug)]
    struct Outer {
        odd: u8,
        #[rkyv(with = AlignedBytes)]
        inner: Buffer,
        name: String,
    }

    #[test]
    fn nested_bytes_start_aligned_and_round_trip() {
        for len in [0usize, 1, 3, 17, 100] {
            let inner = encode(&(0..len as u32).collect::<Vec<u32>>()).unwrap();
            let outer = Outer {
                odd: 7,
                inner: inner.clone(),
                name: "x".repeat(len),
            };
            let bytes = encode(&outer).unwrap();
            let archived = decode::<Outer>(&bytes).unwrap();
            let offset = archived.inner.as_slice().as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(offset % ALIGN, 0, "inner bytes at {offset}");
            assert_eq!(archived.inner.as_slice(), inner.as_slice());
            let nested = decode::<Vec<u32>>(archived.inner.as_slice()).unwrap();
            assert_eq!(nested.len(), len);
            let back = decode_owned::<Outer>(&bytes).unwrap();
            assert_eq!(
                (back.odd, back.inner.as_slice(), back.name),
                (7, inner.as_slice(), outer.name)
            );
        }
    }
}
