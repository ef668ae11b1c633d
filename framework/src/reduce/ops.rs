//! Reduce operations over slices: [`ReduceOp`] (`Sum`, `Prod`, `Min`, `Max`
//! or a user closure) for every [`Reducible`] element type.
//!
//! An operation combines two slices element by element, the left operand
//! being the accumulator: `apply(acc, other)` sets `acc[i] = acc[i] ⊕ other[i]`.
//! Integers use wrapping arithmetic; floats use IEEE 754 arithmetic, so a sum
//! of floats depends on the order of its terms. The schedules in this module
//! therefore fix the order in which contributions are combined (see
//! [`Schedule::reference`](super::Schedule::reference)) and never combine in
//! arrival order: every rank ends with the same bits whatever the timing.

use std::fmt;
use std::sync::Arc;

use crate::actor::Element;

mod sealed {
    pub trait Sealed {}
}

/// An element type the collectives can reduce: `i32`, `i64`, `f32`, `f64`.
pub trait Reducible: Element + PartialEq + fmt::Debug + sealed::Sealed {
    /// `a + b`: wrapping for integers, IEEE for floats.
    fn sum(a: Self, b: Self) -> Self;
    /// `a * b`: wrapping for integers, IEEE for floats.
    fn prod(a: Self, b: Self) -> Self;
    /// The smaller of `a` and `b`. Floats follow IEEE 754-2019 `minimum`:
    /// a NaN operand gives NaN (the left one if both are) and `-0.0 < +0.0`.
    fn min(a: Self, b: Self) -> Self;
    /// The larger of `a` and `b`. Floats follow IEEE 754-2019 `maximum`:
    /// a NaN operand gives NaN (the left one if both are) and `-0.0 < +0.0`.
    fn max(a: Self, b: Self) -> Self;
    /// The raw bit pattern, widened to 64 bits, for bit-identity checks.
    fn bits(self) -> u64;
    /// The value whose [`Reducible::bits`] are `bits` (carries elements between processes).
    fn from_bits(bits: u64) -> Self;
}

macro_rules! integers {
    ($($t:ty => $u:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Reducible for $t {
            fn sum(a: Self, b: Self) -> Self { a.wrapping_add(b) }
            fn prod(a: Self, b: Self) -> Self { a.wrapping_mul(b) }
            fn min(a: Self, b: Self) -> Self { Ord::min(a, b) }
            fn max(a: Self, b: Self) -> Self { Ord::max(a, b) }
            fn bits(self) -> u64 { self as $u as u64 }
            fn from_bits(bits: u64) -> Self { bits as $u as $t }
        }
    )*};
}
integers!(i32 => u32, i64 => u64);

macro_rules! floats {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Reducible for $t {
            fn sum(a: Self, b: Self) -> Self { a + b }
            fn prod(a: Self, b: Self) -> Self { a * b }
            fn min(a: Self, b: Self) -> Self {
                if a.is_nan() { a } else if b.is_nan() || b.total_cmp(&a).is_lt() { b } else { a }
            }
            fn max(a: Self, b: Self) -> Self {
                if a.is_nan() { a } else if b.is_nan() || b.total_cmp(&a).is_gt() { b } else { a }
            }
            fn bits(self) -> u64 { self.to_bits() as u64 }
            fn from_bits(bits: u64) -> Self { <$t>::from_bits(bits as _) }
        }
    )*};
}
floats!(f32, f64);

/// A user reduction: combines `other` into `acc` element by element.
pub type ReduceFn<T> = Arc<dyn Fn(&mut [T], &[T]) + Send + Sync>;

/// How contributions are combined.
#[derive(Clone)]
#[non_exhaustive]
pub enum ReduceOp<T> {
    /// Element-wise sum.
    Sum,
    /// Element-wise product.
    Prod,
    /// Element-wise minimum.
    Min,
    /// Element-wise maximum.
    Max,
    /// A user closure `f(acc, other)` that must write `acc[i] ⊕ other[i]`
    /// into `acc[i]` for every `i`, reading nothing but position `i` of both
    /// slices: a ring allreduce hands it one chunk of the tensor at a time,
    /// so an operation that mixes positions gives a wrong answer. It need not
    /// be commutative: the left operand is always the contributions of the
    /// ranks earlier in the fixed fold order.
    Custom(ReduceFn<T>),
}

impl<T: Reducible> ReduceOp<T> {
    /// A user reduction from a closure (see [`ReduceOp::Custom`]).
    ///
    /// ```
    /// use parallel::collective::ReduceOp;
    /// let mean_of_two = ReduceOp::custom(|acc: &mut [f64], other: &[f64]| {
    ///     for (a, b) in acc.iter_mut().zip(other) {
    ///         *a = (*a + *b) / 2.0;
    ///     }
    /// });
    /// let mut acc = [1.0, 4.0];
    /// mean_of_two.apply(&mut acc, &[3.0, 0.0]);
    /// assert_eq!(acc, [2.0, 2.0]);
    /// ```
    pub fn custom(f: impl Fn(&mut [T], &[T]) + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// Sets `acc[i] = acc[i] ⊕ other[i]` for every `i`.
    ///
    /// # Panics
    /// When the slices differ in length: schedules only ever pair equal
    /// chunks, so a mismatch is a bug in the caller.
    pub fn apply(&self, acc: &mut [T], other: &[T]) {
        assert_eq!(
            acc.len(),
            other.len(),
            "reduce of slices of different lengths; combine equal chunks"
        );
        // One loop per operation, each with the operation inlined, so the
        // compiler vectorises it (a function pointer would cost a call per
        // element).
        fn each<T: Copy>(acc: &mut [T], other: &[T], f: impl Fn(T, T) -> T) {
            for (a, &b) in acc.iter_mut().zip(other) {
                *a = f(*a, b);
            }
        }
        match self {
            Self::Sum => each(acc, other, T::sum),
            Self::Prod => each(acc, other, T::prod),
            Self::Min => each(acc, other, T::min),
            Self::Max => each(acc, other, T::max),
            Self::Custom(f) => f(acc, other),
        }
    }

    /// Sets `acc[i] = first[i] ⊕ acc[i]` for every `i`: the operand order
    /// of a partial result that holds the ranks before this one. A built-in
    /// operation writes it in place; a custom closure (which can only fold
    /// into its first argument) folds into a copy of `first` that is then
    /// copied into `acc`.
    ///
    /// ```
    /// use parallel::collective::ReduceOp;
    /// let mut acc = [10i32, 20];
    /// ReduceOp::Sum.apply_first(&[1, 2], &mut acc);
    /// assert_eq!(acc, [11, 22]);
    /// ```
    ///
    /// # Panics
    /// When the slices differ in length, as [`ReduceOp::apply`].
    pub fn apply_first(&self, first: &[T], acc: &mut [T]) {
        assert_eq!(
            acc.len(),
            first.len(),
            "reduce of slices of different lengths; combine equal chunks"
        );
        fn each<T: Copy>(first: &[T], acc: &mut [T], f: impl Fn(T, T) -> T) {
            for (a, &b) in acc.iter_mut().zip(first) {
                *a = f(b, *a);
            }
        }
        match self {
            Self::Sum => each(first, acc, T::sum),
            Self::Prod => each(first, acc, T::prod),
            Self::Min => each(first, acc, T::min),
            Self::Max => each(first, acc, T::max),
            Self::Custom(f) => {
                let mut folded = first.to_vec();
                f(&mut folded, acc);
                acc.copy_from_slice(&folded);
            }
        }
    }

    /// A number naming the operation, equal on every rank that uses the same
    /// built-in one (collectives check that all ranks agree); every custom
    /// closure has the same code, as closures cannot be compared.
    pub fn code(&self) -> u32 {
        match self {
            Self::Sum => 1,
            Self::Prod => 2,
            Self::Min => 3,
            Self::Max => 4,
            Self::Custom(_) => 5,
        }
    }

    /// Left fold of `parts` in the order given:
    /// `((parts[0] ⊕ parts[1]) ⊕ parts[2]) ⊕ …`. `None` when `parts` is empty.
    ///
    /// ```
    /// use parallel::collective::ReduceOp;
    /// let total = ReduceOp::Sum.fold(&[&[1i32, 2][..], &[10, 20], &[100, 200]]);
    /// assert_eq!(total, Some(vec![111, 222]));
    /// ```
    pub fn fold(&self, parts: &[&[T]]) -> Option<Vec<T>> {
        let (first, rest) = parts.split_first()?;
        let mut acc = first.to_vec();
        for part in rest {
            self.apply(&mut acc, part);
        }
        Some(acc)
    }
}

impl<T> fmt::Debug for ReduceOp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sum => "Sum",
            Self::Prod => "Prod",
            Self::Min => "Min",
            Self::Max => "Max",
            Self::Custom(_) => "Custom(..)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_wrap() {
        let mut acc = [i32::MAX, i32::MIN];
        ReduceOp::Sum.apply(&mut acc, &[1, -1]);
        assert_eq!(acc, [i32::MIN, i32::MAX]);
        let mut acc = [i64::MAX];
        ReduceOp::Prod.apply(&mut acc, &[2]);
        assert_eq!(acc, [-2]);
    }

    #[test]
    fn float_min_max_are_ieee_2019() {
        let mut acc = [0.0f64, -0.0, f64::NAN, 1.0];
        ReduceOp::Min.apply(&mut acc, &[-0.0, 0.0, 1.0, f64::NAN]);
        assert_eq!(acc[0].to_bits(), (-0.0f64).to_bits());
        assert_eq!(acc[1].to_bits(), (-0.0f64).to_bits());
        assert!(acc[2].is_nan() && acc[3].is_nan());
        let mut acc = [0.0f32, -0.0];
        ReduceOp::Max.apply(&mut acc, &[-0.0, 0.0]);
        assert_eq!(acc.map(f32::to_bits), [0.0f32.to_bits(); 2]);
    }

    #[test]
    fn apply_first_puts_the_incoming_operand_first() {
        // A custom op that is not commutative shows the operand order.
        let order = ReduceOp::custom(|acc: &mut [i32], other: &[i32]| {
            for (a, b) in acc.iter_mut().zip(other) {
                *a = a.wrapping_mul(10).wrapping_add(*b);
            }
        });
        let mut acc = [2, 5];
        order.apply_first(&[1, 4], &mut acc);
        assert_eq!(acc, [12, 45]);
        let mut acc = [0.0f64, 1.0];
        ReduceOp::Min.apply_first(&[-0.0, f64::NAN], &mut acc);
        assert_eq!(acc[0].to_bits(), (-0.0f64).to_bits());
        assert!(acc[1].is_nan());
        for op in [ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Min, ReduceOp::Max] {
            let (first, local) = ([3i64, -7, 9], [5i64, 2, -4]);
            let mut expected = first;
            op.apply(&mut expected, &local);
            let mut acc = local;
            op.apply_first(&first, &mut acc);
            assert_eq!(acc, expected, "{op:?}");
        }
    }

    #[test]
    fn custom_keeps_operand_order() {
        let op = ReduceOp::custom(|acc: &mut [i32], other: &[i32]| {
            for (a, b) in acc.iter_mut().zip(other) {
                *a = a.wrapping_mul(10).wrapping_add(*b);
            }
        });
        assert_eq!(op.fold(&[&[1][..], &[2], &[3]]), Some(vec![123]));
        assert_eq!(op.fold(&[]), None);
        assert_eq!(format!("{op:?}"), "Custom(..)");
    }
}
