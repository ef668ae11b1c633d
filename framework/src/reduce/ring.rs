//! The bandwidth-optimal ring allreduce as a pure schedule.
//!
//! Ranks stand on a ring `order[0] → order[1] → … → order[n−1] → order[0]`
//! and the buffer is cut into `n` chunks. In reduce-scatter step `s`
//! (`0..n−1`) position `p` sends chunk `(p − s) mod n` to position `p+1`,
//! which reduces it (`incoming ⊕ local`); afterwards position `p` holds
//! chunk `(p+1) mod n` fully reduced. In all-gather step `s` position `p`
//! sends chunk `(p + 1 − s) mod n` to `p+1`, which copies it. Every link
//! carries `2(n−1)` chunks, so each rank sends `2(n−1)/n` of the buffer.
//!
//! Chunk `c` is folded along the ring from position `c`:
//! `x[order[c]] ⊕ x[order[c+1]] ⊕ … ⊕ x[order[c−1]]`, always, so float sums
//! do not depend on timing and all-gather copies make every rank bit-equal.

use std::ops::Range;

use super::schedule::{Action, Kind, Phase, Schedule, ScheduleError, Step, Transfer};

/// Cuts `len` elements into `n` contiguous chunks, the first `len % n` one
/// element longer than the rest; chunks are empty when `len < n`.
///
/// ```
/// assert_eq!(parallel::collective::chunk_bounds(7, 3), vec![0..3, 3..5, 5..7]);
/// assert_eq!(parallel::collective::chunk_bounds(1, 3), vec![0..1, 1..1, 1..1]);
/// ```
pub fn chunk_bounds(len: usize, n: usize) -> Vec<Range<usize>> {
    let n = n.max(1);
    let (base, extra) = (len / n, len % n);
    let mut start = 0;
    (0..n)
        .map(|c| {
            let end = start + base + usize::from(c < extra);
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

impl Schedule {
    /// Ring allreduce of `len` elements over ranks `0..n` in rank order.
    ///
    /// ```
    /// use parallel::collective::Schedule;
    /// let ring = Schedule::ring(10, 4).unwrap();
    /// assert_eq!(ring.steps().len(), 2 * (4 - 1));
    /// ```
    pub fn ring(len: usize, n: usize) -> Result<Self, ScheduleError> {
        Self::ring_over(len, &(0..n).collect::<Vec<_>>())
    }

    /// Ring allreduce of `len` elements with ranks placed on the ring in
    /// `order` (a permutation of `0..n`; see
    /// [`Topology::ring_order`](super::Topology::ring_order) to keep ranks
    /// of one host adjacent).
    pub fn ring_over(len: usize, order: &[usize]) -> Result<Self, ScheduleError> {
        let n = order.len();
        if n == 0 {
            return Err(ScheduleError::NoRanks);
        }
        let mut seen = vec![false; n];
        for &r in order {
            if r >= n || std::mem::replace(&mut seen[r], true) {
                return Err(ScheduleError::NotAPermutation {
                    order: order.to_vec(),
                    n,
                });
            }
        }
        let step = |phase, action, chunk_of: &dyn Fn(usize) -> usize| Step {
            phase,
            transfers: (0..n)
                .map(|p| Transfer {
                    from: order[p],
                    to: order[(p + 1) % n],
                    chunk: chunk_of(p),
                    action,
                })
                .collect(),
        };
        let mut steps = Vec::with_capacity(2 * (n - 1));
        for s in 0..n - 1 {
            steps.push(step(
                Phase::ReduceScatter,
                Action::ReduceIncomingFirst,
                &|p| (p + n - s) % n,
            ));
        }
        for s in 0..n - 1 {
            steps.push(step(Phase::AllGather, Action::Copy, &|p| {
                (p + 1 + n - s) % n
            }));
        }
        Ok(Self {
            n,
            len,
            chunks: chunk_bounds(len, n),
            steps,
            kind: Kind::Ring {
                order: order.to_vec(),
            },
        })
    }
}
