//! [`Schedule`]: the steps of a collective as data — who sends which chunk
//! to whom, and what the receiver does with it — plus a simulator that runs
//! the steps over in-memory buffers and a sequential reference to check it.

use std::ops::Range;

use super::ops::{ReduceOp, Reducible};
use super::tree::Tree;

/// Why a schedule could not be built or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Zero ranks.
    #[error("a collective needs at least one rank")]
    NoRanks,
    /// A ring order that misses or repeats a rank.
    #[error("ring order {order:?} is not a permutation of 0..{n}; list every rank exactly once")]
    NotAPermutation {
        /// The order given.
        order: Vec<usize>,
        /// Its length.
        n: usize,
    },
    /// A tree that is not a tree over `0..n`.
    #[error("not a tree over 0..{n}: {why}; give every rank but the root exactly one parent")]
    NotATree {
        /// Ranks the tree was meant to span.
        n: usize,
        /// What is wrong.
        why: String,
    },
    /// [`Schedule::simulate`] got a buffer count other than the rank count.
    #[error("{got} buffers for a schedule over {expected} ranks; pass one buffer per rank")]
    Ranks {
        /// Ranks in the schedule.
        expected: usize,
        /// Buffers given.
        got: usize,
    },
    /// A buffer whose length is not the schedule's.
    #[error("buffer of rank {rank} holds {got} elements but the schedule is for {expected}")]
    Length {
        /// The rank whose buffer is wrong.
        rank: usize,
        /// Elements the schedule covers.
        expected: usize,
        /// Elements given.
        got: usize,
    },
}

/// The part of a collective a [`Step`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Ring, first half: each chunk travels the ring once, reduced at every hop.
    ReduceScatter,
    /// Ring, second half: each reduced chunk travels the ring once, copied.
    AllGather,
    /// Tree, upward: subtrees are reduced into their parents.
    Reduce,
    /// Tree, downward: the root's buffer is copied to every rank.
    Broadcast,
}

/// What the receiver of a [`Transfer`] does with the chunk it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `local = incoming ⊕ local`: the incoming partial result holds the
    /// ranks before this one in the fold order (ring reduce-scatter).
    ReduceIncomingFirst,
    /// `local = local ⊕ incoming`: the incoming partial result holds the
    /// ranks after this one in the fold order (tree reduce, child to parent).
    ReduceLocalFirst,
    /// `local = incoming` (all-gather and broadcast).
    Copy,
}

impl Action {
    /// Applies a received chunk `incoming` to this rank's `local` chunk
    /// (equal lengths) as the action says. `incoming` may lie where it
    /// arrived (a received message, read in place); a built-in operation
    /// reduces into `local` in place ([`ReduceOp::apply_first`]).
    pub fn apply<T: Reducible>(self, op: &ReduceOp<T>, local: &mut [T], incoming: &[T]) {
        match self {
            Action::ReduceIncomingFirst => op.apply_first(incoming, local),
            Action::ReduceLocalFirst => op.apply(local, incoming),
            Action::Copy => local.copy_from_slice(incoming),
        }
    }
}

/// One message of a step: `from` sends its chunk `chunk` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// Sending rank.
    pub from: usize,
    /// Receiving rank.
    pub to: usize,
    /// Index into [`Schedule::chunks`].
    pub chunk: usize,
    /// What the receiver does with it.
    pub action: Action,
}

/// A round of transfers that may all be in flight at once.
///
/// Every transfer of a step sends the sender's chunk as it stood when the
/// step began. A rank that receives several reducing transfers in one step
/// (a tree parent with two children) applies them in the order they are
/// listed, buffering any that arrive early: never in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The part of the collective.
    pub phase: Phase,
    /// The transfers, in the order receivers apply them.
    pub transfers: Vec<Transfer>,
}

/// One rank's share of a [`Step`] (see [`Schedule::program`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankStep {
    /// Index into [`Schedule::steps`].
    pub step: usize,
    /// The step's phase.
    pub phase: Phase,
    /// Transfers this rank sends (its chunk as it stood when the step began).
    pub sends: Vec<Transfer>,
    /// Transfers this rank receives, in the order to apply them.
    pub receives: Vec<Transfer>,
}

/// Which family of schedule: see [`choose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Bandwidth-optimal ring (reduce-scatter, then all-gather).
    Ring,
    /// Latency-optimal tree (reduce to the root, then broadcast).
    Tree,
}

/// What a schedule computes and along which shape, for the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Ring { order: Vec<usize> },
    TreeAllReduce(Tree),
    TreeReduce(Tree),
    TreeBroadcast(Tree),
}

/// The steps of one collective over `n` ranks and a buffer of `len`
/// elements, split into [`chunks`](Schedule::chunks).
///
/// Build one with [`Schedule::ring`], [`Schedule::ring_over`],
/// [`Schedule::tree_allreduce`], [`Schedule::tree_reduce`],
/// [`Schedule::tree_broadcast`] or [`Schedule::allreduce`] (which picks by
/// size), run it in memory with [`Schedule::simulate`], and compare with
/// [`Schedule::reference`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub(crate) n: usize,
    pub(crate) len: usize,
    pub(crate) chunks: Vec<Range<usize>>,
    pub(crate) steps: Vec<Step>,
    pub(crate) kind: Kind,
}

impl Schedule {
    /// The allreduce schedule [`choose`] picks for `len` elements of
    /// `elem_bytes` bytes each over ranks `0..n` in rank order.
    ///
    /// ```
    /// use parallel::collective::{Algorithm, Schedule};
    /// assert_eq!(Schedule::allreduce(16, 8, 4).unwrap().algorithm(), Algorithm::Tree);
    /// assert_eq!(Schedule::allreduce(1 << 20, 4, 4).unwrap().algorithm(), Algorithm::Ring);
    /// ```
    pub fn allreduce(len: usize, n: usize, elem_bytes: usize) -> Result<Self, ScheduleError> {
        match choose(len.saturating_mul(elem_bytes), n) {
            Algorithm::Ring => Self::ring(len, n),
            Algorithm::Tree => Ok(Self::tree_allreduce(len, &Tree::binary(n)?)),
        }
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.n
    }

    /// Number of elements in each rank's buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffers hold no element (the steps still run, carrying
    /// empty chunks, so every rank takes part the same way).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ring or tree.
    pub fn algorithm(&self) -> Algorithm {
        match self.kind {
            Kind::Ring { .. } => Algorithm::Ring,
            _ => Algorithm::Tree,
        }
    }

    /// The element ranges the buffer is cut into; [`Transfer::chunk`]
    /// indexes this. Ranges are contiguous, in order, and cover `0..len`;
    /// some are empty when `len` is smaller than the rank count.
    pub fn chunks(&self) -> &[Range<usize>] {
        &self.chunks
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The ranks that hold the result when the schedule is done: every rank,
    /// except for [`Schedule::tree_reduce`], where only the root does.
    pub fn result_ranks(&self) -> Vec<usize> {
        match &self.kind {
            Kind::TreeReduce(tree) => vec![tree.root()],
            _ => (0..self.n).collect(),
        }
    }

    /// What `rank` does in each step, for a runtime that drives one rank:
    /// the transfers it sends and those it receives (to apply in the order
    /// listed). Steps where `rank` has nothing to do are left out.
    ///
    /// ```
    /// use parallel::collective::{Schedule, Tree};
    /// let tree = Schedule::tree_allreduce(8, &Tree::binary(3).unwrap());
    /// let root = tree.program(0);
    /// assert_eq!(root.len(), 2);
    /// assert_eq!(root[0].receives.iter().map(|t| t.from).collect::<Vec<_>>(), [1, 2]);
    /// assert_eq!(root[1].sends.len(), 2);
    /// ```
    pub fn program(&self, rank: usize) -> Vec<RankStep> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(index, step)| {
                let pick = |f: fn(&Transfer) -> usize| -> Vec<Transfer> {
                    step.transfers
                        .iter()
                        .filter(|t| f(t) == rank)
                        .copied()
                        .collect()
                };
                let (sends, receives) = (pick(|t| t.from), pick(|t| t.to));
                (!sends.is_empty() || !receives.is_empty()).then_some(RankStep {
                    step: index,
                    phase: step.phase,
                    sends,
                    receives,
                })
            })
            .collect()
    }

    /// Runs the steps over one buffer per rank (`buffers[r]` is rank `r`'s),
    /// exactly as the runtime does over processes: each step's transfers
    /// read the senders' chunks as they stood at the start of the step and
    /// are applied in the order listed.
    ///
    /// ```
    /// use parallel::collective::{ReduceOp, Schedule};
    /// let schedule = Schedule::ring(5, 3).unwrap();
    /// let mut buffers = vec![vec![1i32; 5], vec![2; 5], vec![3; 5]];
    /// schedule.simulate(&ReduceOp::Sum, &mut buffers).unwrap();
    /// assert!(buffers.iter().all(|b| b == &vec![6; 5]));
    /// ```
    pub fn simulate<T: Reducible>(
        &self,
        op: &ReduceOp<T>,
        buffers: &mut [Vec<T>],
    ) -> Result<(), ScheduleError> {
        self.check(buffers)?;
        for step in &self.steps {
            let sent: Vec<Vec<T>> = step
                .transfers
                .iter()
                .map(|t| buffers[t.from][self.chunks[t.chunk].clone()].to_vec())
                .collect();
            for (t, incoming) in step.transfers.iter().zip(sent) {
                let local = &mut buffers[t.to][self.chunks[t.chunk].clone()];
                t.action.apply(op, local, &incoming);
            }
        }
        Ok(())
    }

    /// What every rank in [`Schedule::result_ranks`] holds at the end,
    /// computed sequentially from the inputs (`inputs[r]` is rank `r`'s) in
    /// the schedule's fixed combination order, never the order messages
    /// arrive in:
    ///
    /// - ring over `order` (positions `0..n`): chunk `c` is the left fold
    ///   over positions `c, c+1, …, c+n−1` (mod `n`), that is
    ///   `((x[order[c]] ⊕ x[order[c+1]]) ⊕ …) ⊕ x[order[c−1]]`;
    /// - tree: a rank `v` with children `c0, c1, …` (in [`Tree::children`]
    ///   order) yields `((x[v] ⊕ R(c0)) ⊕ R(c1)) ⊕ …`, and the result is
    ///   the root's `R`; a broadcast yields the root's input.
    ///
    /// For integers and for `Min`/`Max` on non-NaN values the order does not
    /// change the result; for float sums and products it does, which is why
    /// it is fixed.
    pub fn reference<T: Reducible>(
        &self,
        op: &ReduceOp<T>,
        inputs: &[Vec<T>],
    ) -> Result<Vec<T>, ScheduleError> {
        self.check(inputs)?;
        Ok(match &self.kind {
            Kind::Ring { order } => {
                let n = self.n;
                let mut out = Vec::with_capacity(self.len);
                for (c, range) in self.chunks.iter().enumerate() {
                    let parts: Vec<&[T]> = (0..n)
                        .map(|i| &inputs[order[(c + i) % n]][range.clone()])
                        .collect();
                    out.extend(op.fold(&parts).unwrap_or_default());
                }
                out
            }
            Kind::TreeAllReduce(tree) | Kind::TreeReduce(tree) => tree.fold(op, inputs),
            Kind::TreeBroadcast(tree) => inputs[tree.root()].clone(),
        })
    }

    fn check<T>(&self, buffers: &[Vec<T>]) -> Result<(), ScheduleError> {
        if buffers.len() != self.n {
            return Err(ScheduleError::Ranks {
                expected: self.n,
                got: buffers.len(),
            });
        }
        match buffers.iter().position(|b| b.len() != self.len) {
            Some(rank) => Err(ScheduleError::Length {
                rank,
                expected: self.len,
                got: buffers[rank].len(),
            }),
            None => Ok(()),
        }
    }
}

/// Link costs that decide between ring and tree: time per message
/// (`latency_s`) and bytes per second on one link (`bandwidth`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Seconds a message costs regardless of size.
    pub latency_s: f64,
    /// Bytes per second over one link.
    pub bandwidth: f64,
}

impl CostModel {
    /// 25 µs per message and 1.25 GB/s (10 Gbit/s): a QUIC hop on a local
    /// network. With these the tree wins below roughly 20–25 KiB for 3–8
    /// ranks and never wins for 2 ranks (see [`choose`]).
    pub const DEFAULT: Self = Self {
        latency_s: 25e-6,
        bandwidth: 1.25e9,
    };

    /// Estimated seconds for a ring allreduce: `2(n−1)` steps, each moving
    /// one chunk of `⌈len/n⌉` bytes per link.
    pub fn ring(&self, len_bytes: usize, n: usize) -> f64 {
        let steps = 2.0 * n.saturating_sub(1) as f64;
        let chunk = len_bytes.div_ceil(n.max(1)) as f64;
        steps * (self.latency_s + chunk / self.bandwidth)
    }

    /// Estimated seconds for a binary-tree allreduce: `2·depth` rounds
    /// (`depth = ⌊log₂ n⌋`), each moving the whole buffer twice over a
    /// parent's link (two children).
    pub fn tree(&self, len_bytes: usize, n: usize) -> f64 {
        let depth = n.max(1).ilog2() as f64;
        2.0 * depth * (self.latency_s + 2.0 * len_bytes as f64 / self.bandwidth)
    }

    /// The cheaper algorithm for `len_bytes` over `n` ranks; ties go to
    /// the ring.
    pub fn choose(&self, len_bytes: usize, n: usize) -> Algorithm {
        if self.tree(len_bytes, n) < self.ring(len_bytes, n) {
            Algorithm::Tree
        } else {
            Algorithm::Ring
        }
    }
}

/// Ring or tree for an allreduce of `len_bytes` over `n` ranks, by
/// [`CostModel::DEFAULT`]: the tree for small buffers on 3 or more ranks
/// (below about 20 KiB: fewer, larger messages cost less than many tiny
/// ones), the ring otherwise (each rank sends only `2(n−1)/n` of the
/// buffer, whatever `n`).
///
/// ```
/// use parallel::collective::{Algorithm, choose};
/// assert_eq!(choose(1024, 8), Algorithm::Tree);
/// assert_eq!(choose(64 << 20, 8), Algorithm::Ring);
/// assert_eq!(choose(8, 2), Algorithm::Ring);
/// ```
pub fn choose(len_bytes: usize, n: usize) -> Algorithm {
    CostModel::DEFAULT.choose(len_bytes, n)
}
