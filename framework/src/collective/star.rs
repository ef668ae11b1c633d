//! `reduce`, `broadcast`, `gather`, `all_gather` and `scatter` over the
//! QUIC links, for a group with a child on another host (or with
//! `PARALLEL_COLLECTIVE_TRANSPORT=quic`): a star through the parent, rank 0,
//! which has a link to every child. One call is two hops:
//!
//! ```text
//! parent ── Begin ──▶ each child    the parent's call: kind, root, length, element size, op
//! parent ◀── Part ─── each child    its contribution (empty if it has none), or Refused
//! parent: fold, concatenate or split, in rank order
//! parent ── Part ──▶ each child     its result (empty if it gets none)
//! ```
//!
//! Every child posts once and hears once. The up hop is also the check
//! that every rank made the same call: a child whose call differs from the
//! parent's `Begin` (another collective, length, element type, operation or
//! root), or a root that passes a `send` of the wrong length to scatter,
//! posts `Refused`, and every rank returns the same
//! [`ProcessError::Misuse`], as the same-host group's
//! `GroupError::Mismatch` does. A bad root is refused before the call
//! begins (an `Abort` of round 0).
//!
//! Results equal the same-host group's ([`super::local`]): the reduce
//! is the left fold in rank order, `((x0 ⊕ x1) ⊕ x2) ⊕ …`, computed once by
//! the parent; the others move bytes. Elements travel as their bytes (an
//! [`Element`]'s archived bytes are its native ones on the little-endian
//! machines para||el runs on), and every length that comes from the network
//! is checked before it is read.
//!
//! Failure: while the parent waits for a child's `Part`, it checks that the
//! child's process runs and its link is up, with the machinery of
//! all_reduce ([`super::relay`]); a dead or departed child makes it post
//! an `Abort` to every other child, and every rank returns an error. No
//! child gets a result before every rank's contribution has arrived, so a
//! call either gives every live rank its full result or fails.

use std::fmt;
use std::mem::size_of;

use crate::actor::Element;
use crate::reduce::{ReduceOp, Reducible};

use super::local::GroupError;
use super::posts::{
    abort_all, bytes_of, fail_all, failure, lock_inboxes, next_posts, next_round, post_to,
};
use crate::process::Child;
use crate::process::ProcessError;
use crate::process::link::ChildLink;
use crate::process::message::{CollectiveMsg, StarKind};

/// One rank's call of a star collective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Call {
    kind: StarKind,
    ranks: usize,
    root: usize,
    /// Elements of every rank's buffer (for scatter: of `recv`).
    len: usize,
    /// Bytes of one element.
    elem: usize,
    /// [`ReduceOp::code`], or 0.
    op: u32,
}

impl Call {
    /// A call of `kind` on `ranks` ranks with elements of type `T`.
    pub(super) fn new<T: Element>(
        kind: StarKind,
        ranks: usize,
        root: usize,
        len: usize,
        op: u32,
    ) -> Self {
        Self {
            kind,
            ranks,
            root,
            len,
            elem: size_of::<T>(),
            op,
        }
    }

    /// Bytes of one rank's buffer (saturated: an impossible length from the
    /// network then matches nothing).
    fn one(&self) -> usize {
        self.len.saturating_mul(self.elem)
    }

    /// Bytes of every rank's buffer together.
    fn all(&self) -> usize {
        self.one().saturating_mul(self.ranks)
    }

    /// Bytes rank `rank` posts to the parent.
    fn up(&self, rank: usize) -> usize {
        let root = rank == self.root;
        match self.kind {
            StarKind::Reduce | StarKind::Gather | StarKind::AllGather => self.one(),
            StarKind::Broadcast if root => self.one(),
            StarKind::Scatter if root => self.all(),
            StarKind::Broadcast | StarKind::Scatter => 0,
        }
    }

    /// Bytes rank `rank` gets back.
    fn down(&self, rank: usize) -> usize {
        let root = rank == self.root;
        match self.kind {
            StarKind::Reduce | StarKind::Gather if !root => 0,
            StarKind::Reduce => self.one(),
            StarKind::Gather | StarKind::AllGather => self.all(),
            StarKind::Broadcast if root => 0,
            StarKind::Broadcast | StarKind::Scatter => self.one(),
        }
    }

    /// Why rank `rank`'s call, contributing `bytes` bytes, is invalid (the
    /// same words as the same-host group's).
    fn bad(&self, rank: usize, bytes: usize) -> Option<String> {
        if self.root >= self.ranks {
            return Some(format!(
                "rank {rank} named root {}, but there are {} ranks",
                self.root, self.ranks
            ));
        }
        if bytes == self.up(rank) {
            return None;
        }
        Some(match self.kind {
            StarKind::Scatter => format!(
                "the root (rank {rank}) must pass {} × {} elements to scatter",
                self.ranks, self.len
            ),
            _ => format!(
                "rank {rank} contributes {bytes} bytes to {self}, {} expected",
                self.up(rank)
            ),
        })
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            StarKind::Reduce => "reduce",
            StarKind::Broadcast => "broadcast",
            StarKind::Gather => "gather",
            StarKind::AllGather => "all_gather",
            StarKind::Scatter => "scatter",
        };
        write!(
            f,
            "{name} of {} elements of {} bytes (op {}, root {})",
            self.len, self.elem, self.op, self.root
        )
    }
}

/// The error every rank returns for calls that disagree.
fn mismatch(text: String) -> ProcessError {
    GroupError::Mismatch(text).into()
}

/// A rank's contribution when only the root has one: `data`'s bytes on
/// the root, nothing elsewhere.
pub(super) fn if_root<T: Element>(is_root: bool, data: &[T]) -> Vec<u8> {
    if is_root { bytes_of(data) } else { Vec::new() }
}

/// `bytes` when they are the `expected` length; else the error that
/// `whose` bytes (what sent or got them) are not.
fn sized(bytes: Vec<u8>, expected: usize, whose: String) -> Result<Vec<u8>, ProcessError> {
    if bytes.len() == expected {
        return Ok(bytes);
    }
    Err(ProcessError::Aborted(format!(
        "{whose}: {} bytes, {expected} expected",
        bytes.len()
    )))
}

/// `bytes` read back as elements; fails unless they are a whole number of
/// elements.
pub(super) fn elements<T: Element>(bytes: &[u8]) -> Result<Vec<T>, ProcessError> {
    crate::actor::elements_from_bytes(bytes).ok_or_else(|| {
        ProcessError::Aborted(format!(
            "{} bytes arrived, not a whole number of {}-byte elements",
            bytes.len(),
            size_of::<T>()
        ))
    })
}

/// Copies `bytes` over `out`; fails unless they are exactly `out.len()`
/// elements.
pub(super) fn copy_into<T: Element>(out: &mut [T], bytes: &[u8]) -> Result<(), ProcessError> {
    if crate::actor::copy_elements(out, bytes) {
        return Ok(());
    }
    Err(ProcessError::Aborted(format!(
        "{} bytes arrived for {} elements of {} bytes",
        bytes.len(),
        out.len(),
        size_of::<T>()
    )))
}

/// The left fold in rank order of `parts` (each the bytes of equally many
/// elements), as bytes.
pub(super) fn fold_bytes<T: Reducible>(
    op: &ReduceOp<T>,
    parts: &[Vec<u8>],
) -> Result<Vec<u8>, ProcessError> {
    let Some((first, rest)) = parts.split_first() else {
        return Ok(Vec::new());
    };
    let mut acc: Vec<T> = elements(first)?;
    for part in rest {
        let part: Vec<T> = elements(part)?;
        if part.len() != acc.len() {
            return Err(ProcessError::Aborted(format!(
                "parts of {} and {} elements to reduce",
                acc.len(),
                part.len()
            )));
        }
        op.apply(&mut acc, &part);
    }
    Ok(bytes_of(&acc))
}

/// How the parent folds the parts of a reduce (unused by the others).
pub(super) type Fold<'a> = &'a dyn Fn(&[Vec<u8>]) -> Result<Vec<u8>, ProcessError>;

/// For the collectives that fold nothing.
pub(super) fn no_fold(_: &[Vec<u8>]) -> Result<Vec<u8>, ProcessError> {
    Err(ProcessError::Aborted("only a reduce folds".into()))
}

/// What each rank gets back (in rank order) from every rank's contribution
/// (`parts`, in rank order, each of `call.up(rank)` bytes).
fn outcome(call: &Call, parts: Vec<Vec<u8>>, fold: Fold<'_>) -> Result<Vec<Vec<u8>>, ProcessError> {
    let ranks = call.ranks;
    if parts.len() != ranks || call.root >= ranks {
        return Err(ProcessError::Aborted(format!(
            "{} parts for {ranks} ranks, root {}",
            parts.len(),
            call.root
        )));
    }
    let mut out = vec![Vec::new(); ranks];
    match call.kind {
        StarKind::Reduce => out[call.root] = fold(&parts)?,
        StarKind::Gather => out[call.root] = parts.concat(),
        StarKind::AllGather => out = vec![parts.concat(); ranks],
        StarKind::Broadcast => {
            for (rank, o) in out.iter_mut().enumerate() {
                if rank != call.root {
                    o.clone_from(&parts[call.root]);
                }
            }
        }
        StarKind::Scatter => {
            let one = call.one();
            for (rank, o) in out.iter_mut().enumerate() {
                let part = parts[call.root]
                    .get(rank * one..(rank + 1) * one)
                    .ok_or_else(|| ProcessError::Aborted("scatter input too short".into()))?;
                *o = part.to_vec();
            }
        }
    }
    Ok(out)
}

/// The parent's side of a star collective: `call` is its call and `mine`
/// rank 0's contribution (`call.up(0)` bytes). Returns rank 0's result
/// (`call.down(0)` bytes).
pub(super) async fn parent_star(
    children: &[Child],
    call: Call,
    mine: Vec<u8>,
    fold: Fold<'_>,
) -> Result<Vec<u8>, ProcessError> {
    if let Some(reason) = call.bad(0, mine.len()) {
        // Round 0: each child gets the error in place of a `Begin`.
        let e = mismatch(reason);
        abort_all(children, 0, e.to_string()).await;
        return Err(e);
    }
    let round = next_round(children);
    let mut inboxes = lock_inboxes(children).await;
    let parts = match collect(children, &mut inboxes, round, &call, mine).await {
        Ok(parts) => parts,
        Err(e) => {
            fail_all(children, round, &e).await;
            return Err(e);
        }
    };
    let mut results = match outcome(&call, parts, fold) {
        Ok(results) => results,
        Err(e) => {
            fail_all(children, round, &e).await;
            return Err(e);
        }
    };
    // Every rank's contribution is in: each child gets its result. One that
    // cannot (its link just closed) is told the call failed, best effort;
    // the others' results are whole.
    for (i, child) in children.iter().enumerate() {
        let bytes = std::mem::take(&mut results[i + 1]);
        if post_to(child, &CollectiveMsg::Part { round, bytes })
            .await
            .is_err()
        {
            let reason = "the parent could not send this rank its result".to_string();
            let _ = post_to(child, &CollectiveMsg::Abort { round, reason }).await;
        }
    }
    Ok(std::mem::take(&mut results[0]))
}

/// Posts `Begin` to every child and waits for each one's contribution;
/// returns every rank's, in rank order (`mine` first).
async fn collect(
    children: &[Child],
    inboxes: &mut [tokio::sync::MutexGuard<'_, ()>],
    round: u64,
    call: &Call,
    mine: Vec<u8>,
) -> Result<Vec<Vec<u8>>, ProcessError> {
    for (i, child) in children.iter().enumerate() {
        let begin = CollectiveMsg::Begin {
            round,
            rank: i as u32 + 1,
            ranks: call.ranks as u32,
            kind: call.kind,
            root: call.root as u32,
            len: call.len as u64,
            elem: call.elem as u32,
            op: call.op,
        };
        post_to(child, &begin).await?;
    }
    let mut parts: Vec<Option<Vec<u8>>> = vec![None; call.ranks];
    parts[0] = Some(mine);
    while parts.iter().any(Option::is_none) {
        let waiting = &parts;
        let posts = next_posts(children, inboxes, |rank| waiting[rank].is_none()).await?;
        for (rank, msg) in posts {
            match msg {
                CollectiveMsg::Part { round: r, bytes } if r == round => {
                    let whose = format!("rank {rank}'s part of {call}");
                    parts[rank] = Some(sized(bytes, call.up(rank), whose)?);
                }
                CollectiveMsg::Refused { round: r, reason } if r == round => {
                    return Err(ProcessError::Misuse(reason));
                }
                CollectiveMsg::Abort { round: r, reason } if r == round => {
                    return Err(ProcessError::Aborted(format!(
                        "rank {rank} aborted: {reason}"
                    )));
                }
                // Posts of an earlier collective that ended.
                _ => {}
            }
        }
    }
    Ok(parts.into_iter().map(Option::unwrap_or_default).collect())
}

/// A star collective's `Begin`, as a child received it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Begun {
    /// Which collective of the parent.
    pub round: u64,
    /// This child's rank.
    pub rank: usize,
    /// The parent's call.
    pub call: Call,
}

impl Begun {
    /// The `Begin` in `msg`, if it is one.
    pub(super) fn from_msg(msg: &CollectiveMsg) -> Option<Self> {
        let CollectiveMsg::Begin {
            round,
            rank,
            ranks,
            kind,
            root,
            len,
            elem,
            op,
        } = *msg
        else {
            return None;
        };
        Some(Self {
            round,
            rank: rank as usize,
            call: Call {
                kind,
                ranks: ranks as usize,
                root: root as usize,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                elem: elem as usize,
                op,
            },
        })
    }

    /// How many ranks take part.
    pub(super) fn ranks(&self) -> usize {
        self.call.ranks
    }
}

/// Tells the parent that this rank's call of collective `round` differs
/// from the parent's (`text` says how); every rank returns the same error.
pub(super) fn disagree(ctx: &ChildLink, round: u64, text: String) -> ProcessError {
    let e = mismatch(text);
    let _ = ctx.post_collective(CollectiveMsg::Refused {
        round,
        reason: e.to_string(),
    });
    e
}

/// A child's side of a star collective whose `Begin` has arrived: checks
/// that its call, `mine`, is the parent's, posts its contribution `up`,
/// and returns its result (`mine.down(rank)` bytes).
pub(super) fn child_star(
    ctx: &ChildLink,
    begun: &Begun,
    mine: Call,
    up: Vec<u8>,
) -> Result<Vec<u8>, ProcessError> {
    let (round, rank) = (begun.round, begun.rank);
    if mine != begun.call {
        let text = format!("rank {rank} called {mine}, rank 0 called {}", begun.call);
        return Err(disagree(ctx, round, text));
    }
    if let Some(text) = mine.bad(rank, up.len()) {
        return Err(disagree(ctx, round, text));
    }
    if let Err(e) = ctx.post_collective(CollectiveMsg::Part { round, bytes: up }) {
        let reason = format!("rank {rank} could not send its part: {e}");
        let _ = ctx.post_collective(CollectiveMsg::Abort { round, reason });
        return Err(e);
    }
    loop {
        match ctx.next_collective()? {
            CollectiveMsg::Part { round: r, bytes } if r == round => {
                let whose = format!("rank {rank}'s result of {mine}");
                return sized(bytes, mine.down(rank), whose);
            }
            msg => {
                if let Some(e) = failure(msg, round) {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: StarKind, ranks: usize, root: usize, len: usize) -> Call {
        Call::new::<i32>(kind, ranks, root, len, 0)
    }

    /// Rank `r`'s contribution to `c`: its buffer `[100r, 100r + 1, …]`
    /// where it has one (the root's scatter input holds every rank's part).
    fn parts(c: &Call) -> Vec<Vec<u8>> {
        (0..c.ranks)
            .map(|r| {
                let n = c.up(r) / c.elem;
                let v: Vec<i32> = (0..n).map(|i| (100 * r + i) as i32).collect();
                bytes_of(&v)
            })
            .collect()
    }

    fn ints(bytes: &[u8]) -> Vec<i32> {
        elements(bytes).expect("whole elements")
    }

    #[test]
    fn elements_round_trip_through_bytes() {
        let v = [1.5f64, -0.0, f64::NAN, f64::INFINITY];
        let back: Vec<f64> = elements(&bytes_of(&v)).expect("whole elements");
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&v));
        let mut out = [0u16; 3];
        copy_into(&mut out, &bytes_of(&[7u16, 8, 9])).expect("right length");
        assert_eq!(out, [7, 8, 9]);
        assert!(elements::<u8>(&[]).expect("empty").is_empty());
    }

    #[test]
    fn bytes_that_are_not_whole_elements_are_refused() {
        assert!(matches!(
            elements::<f32>(&[0; 7]),
            Err(ProcessError::Aborted(_))
        ));
        assert!(elements::<u64>(&[0; 12]).is_err());
        let mut out = [0i32; 2];
        assert!(copy_into(&mut out, &[0; 7]).is_err());
        assert!(copy_into(&mut out, &[0; 12]).is_err());
        assert!(copy_into(&mut out, &[0; 4]).is_err());
    }

    #[test]
    fn reduce_is_the_left_fold_in_rank_order_at_the_root() {
        let inputs: Vec<Vec<f32>> = (0..4)
            .map(|r| {
                (0..5)
                    .map(|i| 0.1 * (r * 7 + i) as f32 + 1e7 * r as f32)
                    .collect()
            })
            .collect();
        let parts: Vec<Vec<u8>> = inputs.iter().map(|v| bytes_of(v)).collect();
        let c = Call::new::<f32>(StarKind::Reduce, 4, 2, 5, ReduceOp::<f32>::Sum.code());
        let fold = |p: &[Vec<u8>]| fold_bytes(&ReduceOp::<f32>::Sum, p);
        let out = outcome(&c, parts, &fold).expect("outcome");
        let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let expected = ReduceOp::Sum.fold(&slices).expect("parts");
        let got: Vec<f32> = elements(&out[2]).expect("whole");
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        for (r, o) in out.iter().enumerate() {
            assert_eq!(o.len(), c.down(r));
        }
    }

    #[test]
    fn broadcast_gather_all_gather_and_scatter_move_the_right_bytes() {
        let c = call(StarKind::Broadcast, 3, 1, 2);
        let out = outcome(&c, parts(&c), &no_fold).expect("broadcast");
        assert_eq!(ints(&out[0]), [100, 101]);
        assert!(out[1].is_empty());
        assert_eq!(ints(&out[2]), [100, 101]);

        let c = call(StarKind::Gather, 3, 2, 2);
        let out = outcome(&c, parts(&c), &no_fold).expect("gather");
        assert!(out[0].is_empty() && out[1].is_empty());
        assert_eq!(ints(&out[2]), [0, 1, 100, 101, 200, 201]);

        let c = call(StarKind::AllGather, 3, 0, 1);
        let out = outcome(&c, parts(&c), &no_fold).expect("all_gather");
        for o in &out {
            assert_eq!(ints(o), [0, 100, 200]);
        }

        let c = call(StarKind::Scatter, 3, 1, 2);
        let out = outcome(&c, parts(&c), &no_fold).expect("scatter");
        assert_eq!(ints(&out[0]), [100, 101]);
        assert_eq!(ints(&out[1]), [102, 103]);
        assert_eq!(ints(&out[2]), [104, 105]);
        for (r, o) in out.iter().enumerate() {
            assert_eq!(o.len(), c.down(r));
        }
    }

    #[test]
    fn a_bad_root_or_scatter_length_is_named() {
        let c = call(StarKind::Gather, 3, 3, 4);
        assert!(c.bad(0, 16).expect("bad root").contains("root 3"));
        let c = call(StarKind::Scatter, 3, 0, 4);
        assert_eq!(c.bad(0, 48), None);
        assert!(c.bad(0, 44).expect("short").contains("3 × 4"));
        assert_eq!(c.bad(1, 0), None);
        let e = mismatch(c.bad(0, 44).expect("short"));
        assert!(matches!(e, ProcessError::Misuse(_)));
    }

    #[test]
    fn lengths_from_the_network_never_overflow() {
        let c = Call::new::<u64>(StarKind::AllGather, 8, 0, usize::MAX / 2, 0);
        assert_eq!(c.down(1), usize::MAX);
        assert!(c.bad(0, 0).is_some());
    }
}
