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

use super::posts::{bytes_of, fail_all, failure, lock_inboxes, next_posts, next_round, post_to};

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
                    bytes: bytes_of(&data[range]),
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
                t.action.apply(op, &mut data[range], &incoming);
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
                bytes: bytes_of(&data[range]),
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
            t.action.apply(&op, &mut data[range], &incoming);
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
