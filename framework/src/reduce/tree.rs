//! Trees for the latency-optimal collectives: reduce to a root, broadcast
//! from it, or both (allreduce) — `2·height` rounds carrying the whole
//! buffer, against the ring's `2(n−1)` rounds of `1/n` of it.
//!
//! Rounds are fixed by the shape, not by arrival: every child of `v` sends
//! to `v` in reduce round `height(v) − 1`, in [`Tree::children`] order, and
//! `v` folds them in that order (`x[v] ⊕ R(c0) ⊕ R(c1) ⊕ …`). In broadcast
//! round `d` every rank at depth `d` sends to its children.

use super::ops::{ReduceOp, Reducible};
use super::schedule::{Action, Kind, Phase, Schedule, ScheduleError, Step, Transfer};

/// A rooted tree over ranks `0..n`; children are kept in the order they are
/// folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    root: usize,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
}

impl Tree {
    /// The binary heap over `0..n`: root 0, children of `r` are `2r+1` and
    /// `2r+2`.
    ///
    /// ```
    /// let tree = parallel::collective::Tree::binary(5).unwrap();
    /// assert_eq!(tree.children(1), &[3, 4]);
    /// assert_eq!(tree.height(), 2);
    /// ```
    pub fn binary(n: usize) -> Result<Self, ScheduleError> {
        Self::from_children(
            0,
            (0..n)
                .map(|r| {
                    [2 * r + 1, 2 * r + 2]
                        .into_iter()
                        .filter(|&c| c < n)
                        .collect()
                })
                .collect(),
        )
    }

    /// A tree from `root` and each rank's children (`children[r]`, in fold
    /// order); every rank but the root must appear exactly once as a child
    /// and be reachable from the root.
    pub fn from_children(root: usize, children: Vec<Vec<usize>>) -> Result<Self, ScheduleError> {
        let n = children.len();
        let bad = |why: String| Err(ScheduleError::NotATree { n, why });
        if n == 0 {
            return Err(ScheduleError::NoRanks);
        }
        if root >= n {
            return bad(format!("root {root} is out of range"));
        }
        let mut parent = vec![None; n];
        for (p, kids) in children.iter().enumerate() {
            for &c in kids {
                if c >= n || c == root || parent[c].is_some() {
                    return bad(format!("rank {c} cannot be a child of {p}"));
                }
                parent[c] = Some(p);
            }
        }
        let tree = Self {
            root,
            parent,
            children,
        };
        let reached = tree.top_down().len();
        if reached != n {
            return bad(format!("only {reached} ranks are reachable from the root"));
        }
        Ok(tree)
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.children.len()
    }

    /// The root.
    pub fn root(&self) -> usize {
        self.root
    }

    /// The parent of `rank`, `None` for the root.
    pub fn parent(&self, rank: usize) -> Option<usize> {
        self.parent[rank]
    }

    /// The children of `rank`, in fold order.
    pub fn children(&self, rank: usize) -> &[usize] {
        &self.children[rank]
    }

    /// Links on the longest root-to-leaf path (0 for one rank).
    pub fn height(&self) -> usize {
        self.heights()[self.root]
    }

    /// Ranks in breadth-first order from the root: parents before children.
    pub fn top_down(&self) -> Vec<usize> {
        let mut order = vec![self.root];
        let mut i = 0;
        while i < order.len() && order.len() <= self.ranks() {
            order.extend_from_slice(&self.children[order[i]]);
            i += 1;
        }
        order
    }

    fn heights(&self) -> Vec<usize> {
        let mut h = vec![0; self.ranks()];
        for &v in self.top_down().iter().rev() {
            h[v] = self.children[v]
                .iter()
                .map(|&c| h[c] + 1)
                .max()
                .unwrap_or(0);
        }
        h
    }

    fn depths(&self) -> Vec<usize> {
        let mut d = vec![0; self.ranks()];
        for &v in &self.top_down() {
            for &c in &self.children[v] {
                d[c] = d[v] + 1;
            }
        }
        d
    }

    /// Sequential reference: `R(v) = x[v] ⊕ R(c0) ⊕ R(c1) ⊕ …`, root's `R`.
    pub(crate) fn fold<T: Reducible>(&self, op: &ReduceOp<T>, inputs: &[Vec<T>]) -> Vec<T> {
        let mut r: Vec<Option<Vec<T>>> = vec![None; self.ranks()];
        for &v in self.top_down().iter().rev() {
            let mut acc = inputs[v].clone();
            for &c in &self.children[v] {
                let sub = r[c].take().unwrap_or_default();
                op.apply(&mut acc, &sub);
            }
            r[v] = Some(acc);
        }
        r[self.root].take().unwrap_or_default()
    }

    fn reduce_steps(&self) -> Vec<Step> {
        let heights = self.heights();
        (0..self.height())
            .map(|round| Step {
                phase: Phase::Reduce,
                transfers: self
                    .top_down()
                    .into_iter()
                    .filter(|&v| heights[v] == round + 1)
                    .flat_map(|v| {
                        self.children[v].iter().map(move |&c| Transfer {
                            from: c,
                            to: v,
                            chunk: 0,
                            action: Action::ReduceLocalFirst,
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    fn broadcast_steps(&self) -> Vec<Step> {
        let depths = self.depths();
        (0..self.height())
            .map(|round| Step {
                phase: Phase::Broadcast,
                transfers: self
                    .top_down()
                    .into_iter()
                    .filter(|&v| depths[v] == round)
                    .flat_map(|v| {
                        self.children[v].iter().map(move |&c| Transfer {
                            from: v,
                            to: c,
                            chunk: 0,
                            action: Action::Copy,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

impl Schedule {
    fn tree(len: usize, tree: &Tree, steps: Vec<Step>, kind: Kind) -> Self {
        Self {
            n: tree.ranks(),
            len,
            chunks: std::iter::once(0..len).collect(),
            steps,
            kind,
        }
    }

    /// Allreduce along `tree`: reduce to the root, then broadcast;
    /// `2·height` steps, one chunk (the whole buffer).
    ///
    /// ```
    /// use parallel::collective::{ReduceOp, Schedule, Tree};
    /// let schedule = Schedule::tree_allreduce(2, &Tree::binary(3).unwrap());
    /// let mut buffers = vec![vec![1.5f64, 0.0], vec![2.0, 1.0], vec![4.0, -1.0]];
    /// schedule.simulate(&ReduceOp::Max, &mut buffers).unwrap();
    /// assert!(buffers.iter().all(|b| b == &[4.0, 1.0]));
    /// ```
    pub fn tree_allreduce(len: usize, tree: &Tree) -> Self {
        let mut steps = tree.reduce_steps();
        steps.extend(tree.broadcast_steps());
        Self::tree(len, tree, steps, Kind::TreeAllReduce(tree.clone()))
    }

    /// Reduce along `tree` to its root (only the root's buffer holds the
    /// result afterwards; the others hold partial results).
    pub fn tree_reduce(len: usize, tree: &Tree) -> Self {
        Self::tree(
            len,
            tree,
            tree.reduce_steps(),
            Kind::TreeReduce(tree.clone()),
        )
    }

    /// Broadcast of the root's buffer along `tree`.
    pub fn tree_broadcast(len: usize, tree: &Tree) -> Self {
        Self::tree(
            len,
            tree,
            tree.broadcast_steps(),
            Kind::TreeBroadcast(tree.clone()),
        )
    }
}
