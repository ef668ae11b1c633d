//! `Tensor<T>`: an n-dimensional numeric buffer that crosses processes as one
//! binary copy and is read on the other side without copying.
//!
//! Its elements are shared (`Arc`) between clones, so cloning a tensor to
//! send it costs nothing, and a large tensor is handed to QUIC from its own
//! memory: the remote send path's writer keeps the elements as a part of the
//! payload ([`crate::wire::WriteShared`]) instead of copying them into the
//! archive. Writing into a tensor whose elements are shared copies them
//! first, so no clone (or send in progress) ever sees them change.

use std::sync::Arc;

use bytes::Bytes;
use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer, WriterExt};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, DeserializeWith, SerializeWith};
use rkyv::{Archive, Archived, Deserialize, Place, Serialize};

use crate::wire::{SHARE_FROM, WriteShared};

/// A numeric element type a [`Tensor`] can hold. Its archived form has the
/// same bytes as the type itself on little-endian machines, which is what lets
/// a received tensor be read as `&[T]` in place.
pub trait Element: Archive + Copy + Send + Sync + 'static + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! elements {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {}
        const _: () = assert!(
            std::mem::size_of::<$t>() == std::mem::size_of::<rkyv::Archived<$t>>()
                && std::mem::align_of::<$t>() == std::mem::align_of::<rkyv::Archived<$t>>()
        );
    )*};
}
elements!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// The bytes of `data`, each element's native bytes in order (no copy).
pub fn element_bytes<T: Element>(data: &[T]) -> &[u8] {
    // SAFETY: `Element` is sealed to primitive numbers, which have no
    // padding: every byte of `data` is initialised, and the slice covers
    // exactly its `size_of_val` bytes for the borrow's lifetime.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

/// `bytes` read back as elements, or `None` unless they are a whole number
/// of elements. Any bytes are accepted otherwise: every bit pattern is a
/// valid number.
pub fn elements_from_bytes<T: Element>(bytes: &[u8]) -> Option<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    let n = bytes.len() / size;
    let mut out: Vec<T> = Vec::with_capacity(n);
    // SAFETY: `out` has room for `n` elements (`n * size == bytes.len()`
    // bytes) and is aligned for `T`; the buffers are distinct. `Element` is
    // sealed to primitive numbers, for which every bit pattern is a valid
    // value, so the `n` copied elements are initialised and `set_len` is
    // sound.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().cast::<u8>(), bytes.len());
        out.set_len(n);
    }
    Some(out)
}

/// `bytes` seen as elements where they lie, or `None` unless they start on
/// an element boundary and are a whole number of elements (then
/// [`elements_from_bytes`] copies them). Any bytes are accepted otherwise:
/// every bit pattern is a valid number.
pub fn elements_view<T: Element>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: the pointer is aligned for `T` and the slice covers exactly
    // `bytes.len() / size` elements of initialised bytes, borrowed for the
    // result's lifetime (shared, so nothing writes them meanwhile);
    // `Element` is sealed to primitive numbers, for which every bit pattern
    // is a valid value.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Copies `bytes` over `out`; `false` (and nothing copied) unless they are
/// exactly `out.len()` elements.
pub fn copy_elements<T: Element>(out: &mut [T], bytes: &[u8]) -> bool {
    if bytes.len() != std::mem::size_of_val(out) {
        return false;
    }
    // SAFETY: `out` spans exactly `bytes.len()` bytes, the buffers are
    // distinct (`out` is borrowed mutably), and any bit pattern is a valid
    // `T` (`Element` is sealed to primitive numbers).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().cast::<u8>(), bytes.len())
    };
    true
}

/// Error for a shape that does not match the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "shape {shape:?} holds {expected} elements but {got} were given; pass data of the shape's size"
)]
pub struct ShapeError {
    /// The shape asked for.
    pub shape: Vec<usize>,
    /// Elements the shape holds.
    pub expected: usize,
    /// Elements given.
    pub got: usize,
}

/// An n-dimensional array in row-major order.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<u64>,
    #[rkyv(with = SharedElements)]
    data: Arc<Vec<T>>,
}

/// How a tensor's elements are archived: as the `ArchivedVec` a `Vec<T>`
/// archives to (the same bytes), with a large run of them handed to the
/// writer shared rather than copied.
pub struct SharedElements;

/// A tensor's elements as bytes that keep them alive.
struct ElementBytes<T>(Arc<Vec<T>>);

impl<T: Element> AsRef<[u8]> for ElementBytes<T> {
    fn as_ref(&self) -> &[u8] {
        element_bytes(&self.0)
    }
}

impl<T: Element> ArchiveWith<Arc<Vec<T>>> for SharedElements {
    type Archived = ArchivedVec<Archived<T>>;
    type Resolver = VecResolver;

    fn resolve_with(field: &Arc<Vec<T>>, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out);
    }
}

impl<T, S> SerializeWith<Arc<Vec<T>>, S> for SharedElements
where
    T: Element + Serialize<S>,
    S: Fallible + Allocator + Writer + WriteShared<S::Error> + ?Sized,
{
    fn serialize_with(field: &Arc<Vec<T>>, serializer: &mut S) -> Result<VecResolver, S::Error> {
        // On a little-endian machine an element's archived bytes are its own
        // (`Element` is checked for it), so the run written is the one a
        // copy would write, after the same alignment.
        if cfg!(target_endian = "little") && std::mem::size_of_val(field.as_slice()) >= SHARE_FROM {
            let pos = serializer.align_for::<Archived<T>>()?;
            serializer.write_shared(Bytes::from_owner(ElementBytes(field.clone())))?;
            Ok(VecResolver::from_pos(pos))
        } else {
            ArchivedVec::serialize_from_slice(field.as_slice(), serializer)
        }
    }
}

impl<T, D> DeserializeWith<ArchivedVec<Archived<T>>, Arc<Vec<T>>, D> for SharedElements
where
    T: Element,
    D: Fallible + ?Sized,
    ArchivedVec<Archived<T>>: Deserialize<Vec<T>, D>,
{
    fn deserialize_with(
        field: &ArchivedVec<Archived<T>>,
        deserializer: &mut D,
    ) -> Result<Arc<Vec<T>>, D::Error> {
        Ok(Arc::new(field.deserialize(deserializer)?))
    }
}

impl<T: Element> Tensor<T> {
    /// A tensor of `shape` holding `data` (row-major).
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Self, ShapeError> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
            return Err(ShapeError {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: Arc::new(data),
        })
    }

    /// A one-dimensional tensor of `data`.
    pub fn from_vec(data: Vec<T>) -> Self {
        Self {
            shape: vec![data.len() as u64],
            data: Arc::new(data),
        }
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        let n = shape.iter().product::<usize>();
        Self {
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: Arc::new(vec![value; n]),
        }
    }

    /// The size of each dimension.
    pub fn shape(&self) -> Vec<usize> {
        self.shape.iter().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The elements, mutable. Copies them first when a clone of this tensor
    /// (or a send still in progress) shares them.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        Arc::make_mut(&mut self.data).as_mut_slice()
    }

    /// The elements as a vector (copied only when a clone shares them).
    pub fn into_vec(self) -> Vec<T> {
        Arc::try_unwrap(self.data).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl<T: Element + Into<f64>> Tensor<T> {
    /// The Euclidean norm of all elements.
    pub fn norm(&self) -> f64 {
        self.data
            .iter()
            .map(|&x| x.into() * x.into())
            .sum::<f64>()
            .sqrt()
    }
}

impl<T: Element> ArchivedTensor<T> {
    /// The size of each dimension.
    pub fn shape(&self) -> Vec<usize> {
        self.shape.iter().map(|d| d.to_native() as usize).collect()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The received elements, read in place: no copy.
    #[cfg(target_endian = "little")]
    pub fn as_slice(&self) -> &[T] {
        let data: &[rkyv::Archived<T>] = self.data.as_slice();
        // SAFETY: `Element` is implemented only for primitive numbers whose
        // archived form (rkyv's little-endian wrappers) has the same size and
        // alignment (checked at compile time above) and, on a little-endian
        // machine, the same bytes; every bit pattern is a valid number.
        unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<T>(), data.len()) }
    }
}

impl<T: Element + Into<f64>> ArchivedTensor<T> {
    /// The Euclidean norm of all elements, computed in place.
    #[cfg(target_endian = "little")]
    pub fn norm(&self) -> f64 {
        self.as_slice()
            .iter()
            .map(|&x| x.into() * x.into())
            .sum::<f64>()
            .sqrt()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn elements_round_trip_through_bytes_and_bad_lengths_are_refused() {
        let v = [1.5f32, -2.0, 3.25];
        let bytes = super::element_bytes(&v);
        assert_eq!(bytes.len(), 12);
        assert_eq!(super::elements_from_bytes::<f32>(bytes).unwrap(), v);
        assert_eq!(super::elements_from_bytes::<f32>(&bytes[..11]), None);
        let mut out = [0f32; 3];
        assert!(super::copy_elements(&mut out, bytes));
        assert_eq!(out, v);
        assert!(!super::copy_elements(&mut out[..2], bytes));
        assert!(super::elements_from_bytes::<u64>(&[]).unwrap().is_empty());
    }

    #[test]
    fn aligned_bytes_are_seen_as_elements_in_place_and_others_are_refused() {
        let v = [1.5f64, -2.0, 3.25, 4.0];
        let bytes = super::element_bytes(&v);
        let view = super::elements_view::<f64>(bytes).expect("aligned whole elements");
        assert_eq!(view, v);
        assert_eq!(view.as_ptr().cast::<u8>(), bytes.as_ptr(), "not a copy");
        // Not on an element boundary, or not whole elements: no view.
        assert_eq!(super::elements_view::<f64>(&bytes[1..25]), None);
        assert_eq!(super::elements_view::<f64>(&bytes[..12]), None);
        assert_eq!(super::elements_view::<u8>(&bytes[1..4]), Some(&bytes[1..4]));
    }

    use super::*;
    use crate::actor::Received;
    use crate::wire::encode;

    #[test]
    fn received_tensor_is_read_in_place() {
        let t = Tensor::new(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let view = Received::<Tensor<f32>>::new(encode(&t).unwrap()).unwrap();
        assert_eq!(view.shape(), vec![2, 3]);
        assert_eq!(view.as_slice(), t.as_slice());
        let inside = view.bytes().as_ptr_range();
        assert!(inside.contains(&view.as_slice().as_ptr().cast::<u8>()));
        assert!((view.norm() - t.norm()).abs() < 1e-9);
        assert_eq!(view.to_owned().unwrap(), t);
    }

    #[test]
    fn shape_must_match() {
        let err = Tensor::new(&[2, 2], vec![1i32; 3]).unwrap_err();
        assert_eq!(err.expected, 4);
        assert!(Tensor::<u8>::new(&[0], vec![]).unwrap().is_empty());
    }
}
