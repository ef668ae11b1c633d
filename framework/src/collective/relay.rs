//! The AllReduce runtime over the process tree: the parent is rank 0 and
//! its children, in group order, ranks 1..n. Each rank runs its
//! [`Schedule::program`] (ring or tree, as [`Schedule::allreduce`] picks),
//! applying the receives of each step in the listed order, so every rank ends
//! with the bits of [`Schedule::reference`].
//!
//! Transport, the simplest correct one: every transfer goes through the
//! parent, which has a link to every child. A child posts its chunk to the
//! parent with [`op::COLLECTIVE`]; the parent keeps chunks for rank 0 and
//! forwards the others to the target child. Collective posts have their own
//! queue on both sides, so they never take values from `join`/`send`.
//! Direct child-to-child links are the next step for bandwidth.
//!
//! Failure: when a child's process exits or its link closes while it still
//! owes chunks, the parent posts an abort to every other child and returns an
//! error; the children return an error too. The link closing is bounded by
//! the transport's heartbeat timeout, and a child whose parent dies exits
//! with it (its lease), so no rank waits forever on a dead one.

use std::collections::HashMap;
use std::ops::Range;

use crate::reduce::{ReduceOp, Reducible, Schedule};

use crate::process::Child;
use crate::process::ProcessError;
use crate::process::message::CollectiveMsg;

/// A buffer a collective works on in place: `Vec<T>`, `[T]`, `[T; N]` or
/// `Tensor<T>`.
pub trait ReduceBuffer<T> {
    /// Its elements.
    fn elements_mut(&mut self) -> &mut [T];
}

impl<T> ReduceBuffer<T> for Vec<T> {
    fn elements_mut(&mut self) -> &mut [T] {
        self
    }
}

impl<T, const N: usize> ReduceBuffer<T> for [T; N] {
    fn elements_mut(&mut self) -> &mut [T] {
        self
    }
}

impl<T> ReduceBuffer<T> for [T] {
    fn elements_mut(&mut self) -> &mut [T] {
        self
    }
}

impl<T: crate::actor::Element> ReduceBuffer<T> for crate::Tensor<T> {
    fn elements_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

/// Chunks received and not yet applied, by (step, chunk, from).
type Pending = HashMap<(usize, usize, usize), Vec<u8>>;

/// The `len` elements of chunk `chunk` that rank `from` sent, or what is
/// wrong with them.
fn chunk_elements<T: Reducible>(
    bytes: &[u8],
    len: usize,
    from: usize,
    chunk: usize,
) -> Result<Vec<T>, String> {
    crate::actor::elements_from_bytes::<T>(bytes)
        .filter(|v| v.len() == len)
        .ok_or_else(|| {
            format!(
                "rank {from} sent {} bytes for chunk {chunk}, expected {len} elements of {} bytes",
                bytes.len(),
                std::mem::size_of::<T>()
            )
        })
}

fn schedule_for<T>(len: usize, ranks: usize) -> Result<Schedule, ProcessError> {
    Schedule::allreduce(len, ranks, std::mem::size_of::<T>())
        .map_err(|e| ProcessError::Misuse(format!("all_reduce: {e}")))
}

fn chunk_range(
    schedule: &Schedule,
    chunk: usize,
    len: usize,
) -> Result<Range<usize>, ProcessError> {
    schedule
        .chunks()
        .get(chunk)
        .filter(|r| r.end <= len)
        .cloned()
        .ok_or_else(|| ProcessError::Aborted(format!("chunk {chunk} is not in the schedule")))
}

/// A new collective's number in the tree of `children` (never 0: round 0
/// is a refusal before a call begins).
pub(super) fn next_round(children: &[Child]) -> u64 {
    super::state::TreeGroups::of(children)
        .rounds
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The children's collective posts, held for the whole call so no other
/// call of this process takes them.
pub(super) async fn lock_inboxes(children: &[Child]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
    let mut held = Vec::with_capacity(children.len());
    for c in children {
        held.push(c.lock_collective().await);
    }
    held
}

/// Posts a collective message to `child`.
pub(super) async fn post_to(child: &Child, msg: &CollectiveMsg) -> Result<(), ProcessError> {
    child.post_collective(msg.clone()).await
}

/// The parent's side of `Children::all_reduce`.
pub(super) async fn parent_all_reduce<T: Reducible>(
    children: &[Child],
    data: &mut [T],
    op: &ReduceOp<T>,
) -> Result<(), ProcessError> {
    if children.is_empty() {
        return Ok(());
    }
    let ranks = children.len() + 1;
    let schedule = schedule_for::<T>(data.len(), ranks)?;
    let round = next_round(children);
    let mut inboxes = lock_inboxes(children).await;
    let mut run = ParentRun {
        children,
        round,
        pending: HashMap::new(),
        owed: vec![0; ranks],
        forwards: 0,
    };
    // Every child also owes its `Done`.
    for owed in &mut run.owed[1..] {
        *owed += 1;
    }
    for step in schedule.steps() {
        for t in &step.transfers {
            if t.from != 0 {
                run.owed[t.from] += 1;
                if t.to != 0 {
                    run.forwards += 1;
                }
            }
        }
    }
    let result = run
        .run(&mut inboxes, &schedule, data, op, ranks as u32)
        .await;
    if let Err(e) = &result {
        fail_all(children, round, e).await;
    }
    result
}

/// Tells every child that collective `round` failed with `e`: a
/// [`ProcessError::Misuse`] (the ranks made different calls) as a
/// `Refused`, so every rank returns that same error, anything else as an
/// `Abort`.
pub(super) async fn fail_all(children: &[Child], round: u64, e: &ProcessError) {
    let msg = match e {
        ProcessError::Misuse(reason) => CollectiveMsg::Refused {
            round,
            reason: reason.clone(),
        },
        other => CollectiveMsg::Abort {
            round,
            reason: other.to_string(),
        },
    };
    post_all(children, &msg).await;
}

/// The error a child returns for `msg` when it ends collective `round`
/// (the parent's `Abort` or `Refused` of it); `None` for anything else.
pub(super) fn failure(msg: CollectiveMsg, round: u64) -> Option<ProcessError> {
    match msg {
        CollectiveMsg::Abort { round: r, reason } if r == round => {
            Some(ProcessError::Aborted(reason))
        }
        CollectiveMsg::Refused { round: r, reason } if r == round => {
            Some(ProcessError::Misuse(reason))
        }
        _ => None,
    }
}

/// Waits until children have posted collective messages and returns them
/// as (rank, post), in child order; fails when a child for which
/// `owes(rank)` holds is gone or its function ended.
pub(super) async fn next_posts(
    children: &[Child],
    _held: &mut [tokio::sync::MutexGuard<'_, ()>],
    owes: impl Fn(usize) -> bool,
) -> Result<Vec<(usize, CollectiveMsg)>, ProcessError> {
    loop {
        // Registered before looking, so a post filed in between wakes us.
        let mut changed: Vec<_> = children.iter().map(Child::changed).collect();
        let mut posts = Vec::new();
        let mut failure = None;
        for (i, child) in children.iter().enumerate() {
            match child.take_collective() {
                Ok(msgs) => posts.extend(msgs.into_iter().map(|m| (i + 1, m))),
                Err(ended) if owes(i + 1) && failure.is_none() => {
                    if let Some(reason) = child.exited_reason() {
                        failure = Some(ProcessError::Gone {
                            id: child.id(),
                            reason,
                        });
                    } else if let Some(e) = ended {
                        failure = Some(ProcessError::Aborted(format!(
                            "rank {} left the collective: {e}",
                            i + 1
                        )));
                    }
                }
                Err(_) => {}
            }
        }
        if !posts.is_empty() {
            return Ok(posts);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !(1..=children.len()).any(&owes) {
            return Err(ProcessError::Aborted(
                "waiting for a post no rank owes (a protocol error)".into(),
            ));
        }
        std::future::poll_fn(|cx| {
            for f in changed.iter_mut() {
                if f.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        })
        .await;
    }
}

/// Tells every child that collective `round` failed, and why (best effort:
/// a child that is gone is skipped).
pub(super) async fn abort_all(children: &[Child], round: u64, reason: String) {
    post_all(children, &CollectiveMsg::Abort { round, reason }).await;
}

/// Posts `msg` to every child, best effort: a child that is gone is skipped.
async fn post_all(children: &[Child], msg: &CollectiveMsg) {
    for c in children {
        let _ = c.post_collective(msg.clone()).await;
    }
}

struct ParentRun<'a> {
    children: &'a [Child],
    round: u64,
    pending: Pending,
    /// Chunks each rank still has to post to the parent.
    owed: Vec<usize>,
    /// Child-to-child chunks still to forward.
    forwards: usize,
}

impl ParentRun<'_> {
    async fn post(&self, rank: usize, msg: &CollectiveMsg) -> Result<(), ProcessError> {
        post_to(&self.children[rank - 1], msg).await
    }

    async fn run<T: Reducible>(
        &mut self,
        inboxes: &mut [tokio::sync::MutexGuard<'_, ()>],
        schedule: &Schedule,
        data: &mut [T],
        op: &ReduceOp<T>,
        ranks: u32,
    ) -> Result<(), ProcessError> {
        for rank in 1..ranks as usize {
            let start = CollectiveMsg::Start {
                round: self.round,
                rank: rank as u32,
                ranks,
                len: data.len() as u64,
            };
            self.post(rank, &start).await?;
        }
        for rs in schedule.program(0) {
            for t in &rs.sends {
                let range = chunk_range(schedule, t.chunk, data.len())?;
                let msg = CollectiveMsg::Chunk {
                    round: self.round,
                    step: rs.step as u32,
                    chunk: t.chunk as u32,
                    from: 0,
                    to: t.to as u32,
                    bytes: super::star::bytes_of(&data[range]),
                };
                self.post(t.to, &msg).await?;
            }
            for t in &rs.receives {
                let key = (rs.step, t.chunk, t.from);
                let bytes = loop {
                    if let Some(bytes) = self.pending.remove(&key) {
                        break bytes;
                    }
                    self.wait(inboxes).await?;
                };
                let range = chunk_range(schedule, t.chunk, data.len())?;
                let incoming = chunk_elements(&bytes, range.len(), t.from, t.chunk)
                    .map_err(ProcessError::Aborted)?;
                t.action.apply(op, &mut data[range], incoming);
            }
        }
        while self.forwards > 0 || self.owed.iter().any(|&o| o > 0) {
            self.wait(inboxes).await?;
        }
        // Every rank holds the result: let them return. A child that dies
        // now has its result already; the others still get theirs.
        let done = CollectiveMsg::Done { round: self.round };
        for rank in 1..ranks as usize {
            let _ = self.post(rank, &done).await;
        }
        Ok(())
    }

    /// Handles what the children posted; waits for more when nothing is there.
    async fn wait(
        &mut self,
        inboxes: &mut [tokio::sync::MutexGuard<'_, ()>],
    ) -> Result<(), ProcessError> {
        let owed = &self.owed;
        let posts = next_posts(self.children, inboxes, |rank| owed[rank] > 0).await?;
        for (rank, msg) in posts {
            self.handle(rank, msg).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, sender: usize, msg: CollectiveMsg) -> Result<(), ProcessError> {
        match msg {
            CollectiveMsg::Chunk { round, from, .. } if round == self.round => {
                if from as usize != sender {
                    return Err(ProcessError::Aborted(format!(
                        "rank {sender} posted a chunk as rank {from}"
                    )));
                }
                self.owed[sender] = self.owed[sender].saturating_sub(1);
                match msg {
                    CollectiveMsg::Chunk {
                        to: 0,
                        step,
                        chunk,
                        bytes,
                        ..
                    } => {
                        self.pending
                            .insert((step as usize, chunk as usize, sender), bytes);
                    }
                    CollectiveMsg::Chunk { to, .. } if (to as usize) <= self.children.len() => {
                        // Forwarded as it came.
                        self.forwards = self.forwards.saturating_sub(1);
                        self.post(to as usize, &msg).await?;
                    }
                    _ => {}
                }
                Ok(())
            }
            CollectiveMsg::Done { round } if round == self.round => {
                self.owed[sender] = self.owed[sender].saturating_sub(1);
                Ok(())
            }
            CollectiveMsg::Abort { round, reason } if round == self.round => Err(
                ProcessError::Aborted(format!("rank {sender} aborted: {reason}")),
            ),
            CollectiveMsg::Refused { round, reason } if round == self.round => {
                Err(ProcessError::Misuse(reason))
            }
            _ => Ok(()),
        }
    }
}

/// A child's side of a message-path all_reduce whose `Start` (round, rank,
/// ranks, len) has arrived.
pub(super) fn child_all_reduce<T: Reducible>(
    ctx: &crate::process::link::ChildLink,
    (round, rank, ranks, len): (u64, usize, usize, usize),
    data: &mut [T],
    op: ReduceOp<T>,
) -> Result<(), ProcessError> {
    let abort = |reason: String| -> ProcessError {
        let _ = ctx.post_collective(CollectiveMsg::Abort {
            round,
            reason: reason.clone(),
        });
        ProcessError::Aborted(reason)
    };
    if len != data.len() {
        return Err(abort(format!(
            "rank {rank} has {} elements, rank 0 has {len}",
            data.len()
        )));
    }
    let schedule = match schedule_for::<T>(len, ranks) {
        Ok(s) => s,
        Err(e) => return Err(abort(e.to_string())),
    };
    let mut pending = Pending::new();
    for rs in schedule.program(rank) {
        for t in &rs.sends {
            let range = chunk_range(&schedule, t.chunk, len)?;
            let msg = CollectiveMsg::Chunk {
                round,
                step: rs.step as u32,
                chunk: t.chunk as u32,
                from: rank as u32,
                to: t.to as u32,
                bytes: super::star::bytes_of(&data[range]),
            };
            ctx.post_collective(msg)?;
        }
        for t in &rs.receives {
            let key = (rs.step, t.chunk, t.from);
            let bytes = loop {
                if let Some(bytes) = pending.remove(&key) {
                    break bytes;
                }
                match ctx.next_collective()? {
                    CollectiveMsg::Chunk {
                        round: r,
                        step,
                        chunk,
                        from,
                        bytes,
                        ..
                    } if r == round => {
                        pending.insert((step as usize, chunk as usize, from as usize), bytes);
                    }
                    msg => {
                        if let Some(e) = failure(msg, round) {
                            return Err(e);
                        }
                    }
                }
            };
            let range = chunk_range(&schedule, t.chunk, len)?;
            let incoming = chunk_elements(&bytes, range.len(), t.from, t.chunk).map_err(abort)?;
            t.action.apply(&op, &mut data[range], incoming);
        }
    }
    // Returns only once every rank has finished: a rank that dies before
    // makes every other one fail.
    ctx.post_collective(CollectiveMsg::Done { round })?;
    loop {
        match ctx.next_collective()? {
            CollectiveMsg::Done { round: r } if r == round => return Ok(()),
            msg => {
                if let Some(e) = failure(msg, round) {
                    return Err(e);
                }
            }
        }
    }
}
