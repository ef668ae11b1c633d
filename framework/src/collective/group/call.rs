//! One call of a group over QUIC: its arguments exchanged, its data moved,
//! its end agreed; a failure breaks the group and tells the others.

use crate::actor::{Element, copy_elements, element_bytes, elements_from_bytes};
use crate::reduce::{ReduceOp, Reducible, Schedule};

use crate::collective::local::kind;

use super::inbox::{BARRIER, Key, Msg, OP, bad_text, encoded, head_text};
use super::{CollectiveError, Group};

impl Group {
    pub(super) fn ready(&self) -> Result<(), CollectiveError> {
        match &self.broken {
            Some(why) => Err(CollectiveError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    /// Records a failure that breaks the group, tells the others, and
    /// returns it.
    pub(super) async fn fail(&mut self, e: CollectiveError) -> CollectiveError {
        if matches!(e, CollectiveError::Mismatch(_)) {
            return e;
        }
        self.broken.get_or_insert_with(|| e.to_string());
        // Members of this machine may wait in its arena for this one.
        if let Some(host) = &mut self.host_local {
            host.leave();
        }
        if let Ok(bytes) = encoded(&Msg::Abort {
            call: self.call,
            reason: e.to_string(),
        }) {
            for m in &self.members {
                if let Some(remote) = &m.remote
                    && remote.is_alive()
                {
                    let _ = remote
                        .post(self.inbox.mailbox.id(), OP, 0, bytes.clone())
                        .await;
                }
            }
        }
        e
    }

    pub(super) async fn post(&self, to: usize, msg: &Msg) -> Result<(), CollectiveError> {
        let m = &self.members[to];
        let Some(remote) = &m.remote else {
            return Ok(());
        };
        remote
            .post(self.inbox.mailbox.id(), OP, 0, encoded(msg)?)
            .await
            .map_err(|e| CollectiveError::RankGone {
                rank: to,
                node: m.node,
                why: e.to_string(),
            })
    }

    pub(super) async fn post_all(&self, msg: &Msg) -> Result<(), CollectiveError> {
        for r in 0..self.members.len() {
            if r != self.rank {
                self.post(r, msg).await?;
            }
        }
        Ok(())
    }

    /// Waits for the post `key` from `from`.
    pub(super) async fn take(&mut self, key: Key, from: usize) -> Result<Msg, CollectiveError> {
        loop {
            if let Some(msg) = self.inbox.pending.remove(&(key, from)) {
                return Ok(msg);
            }
            if let Some((rank, reason)) = self.inbox.aborted.get(&self.call) {
                return Err(CollectiveError::Aborted {
                    rank: *rank,
                    reason: reason.clone(),
                });
            }
            if let Some(rank) = self.inbox.left {
                return Err(CollectiveError::Left {
                    rank,
                    node: self.members[rank].node,
                });
            }
            let m = &self.members[from];
            if let Some(remote) = &m.remote
                && !remote.is_alive()
            {
                // What it posted before it went down may be here already.
                self.inbox.drain();
                if let Some(msg) = self.inbox.pending.remove(&(key, from)) {
                    return Ok(msg);
                }
                return Err(CollectiveError::RankGone {
                    rank: from,
                    node: m.node,
                    why: "its node went down".into(),
                });
            }
            if !self.inbox.pump().await {
                return Err(CollectiveError::Broken("this node shut down".into()));
            }
        }
    }

    /// Runs one call over QUIC: arguments exchanged, `moves` run, `Done`
    /// exchanged. Any failure but a mismatch breaks the group.
    pub(super) async fn exchange_call<R>(
        &mut self,
        head: [u64; 6],
        moves: impl AsyncFnOnce(&mut Self) -> Result<R, CollectiveError>,
    ) -> Result<R, CollectiveError> {
        self.ready()?;
        self.call += 1;
        let result = self.run_call(head, moves).await;
        match result {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e).await),
        }
    }

    pub(super) async fn run_call<R>(
        &mut self,
        head: [u64; 6],
        moves: impl AsyncFnOnce(&mut Self) -> Result<R, CollectiveError>,
    ) -> Result<R, CollectiveError> {
        let call = self.call;
        self.post_all(&Msg::Begin { call, head }).await?;
        let mut disagree = None;
        for r in 0..self.members.len() {
            if r == self.rank {
                continue;
            }
            let Msg::Begin { head: theirs, .. } = self.take(Key::Begin(call), r).await? else {
                continue;
            };
            if theirs != head && disagree.is_none() {
                disagree = Some((r, theirs));
            }
        }
        // Every member compares every member's arguments with its own.
        let mine = head;
        if let Some(bad) = std::iter::once((self.rank, mine))
            .chain(disagree)
            .find(|(_, h)| h[5] != 0)
        {
            return Err(CollectiveError::Mismatch(bad_text(
                bad.0,
                &bad.1,
                self.ranks(),
            )));
        }
        if let Some((r, theirs)) = disagree {
            return Err(CollectiveError::Mismatch(format!(
                "rank {} called {}, rank {r} called {}",
                self.rank,
                head_text(&mine),
                head_text(&theirs)
            )));
        }
        if head[0] == BARRIER {
            return moves(self).await;
        }
        let out = moves(self).await?;
        self.post_all(&Msg::Done { call }).await?;
        for r in 0..self.members.len() {
            if r != self.rank {
                self.take(Key::Done(call), r).await?;
            }
        }
        Ok(out)
    }

    /// Sends this rank's chunks of `schedule` and applies the ones it
    /// receives, in the schedule's order.
    pub(super) async fn run_schedule<T: Reducible>(
        &mut self,
        schedule: &Schedule,
        data: &mut [T],
        op: &ReduceOp<T>,
    ) -> Result<(), CollectiveError> {
        let everyone: Vec<usize> = (0..self.ranks()).collect();
        self.run_schedule_over(schedule, &everyone, data, op).await
    }

    /// [`Group::run_schedule`] among `ranks` only: the schedule's rank `i`
    /// is the member `ranks[i]`.
    pub(super) async fn run_schedule_over<T: Reducible>(
        &mut self,
        schedule: &Schedule,
        ranks: &[usize],
        data: &mut [T],
        op: &ReduceOp<T>,
    ) -> Result<(), CollectiveError> {
        let Some(me) = ranks.iter().position(|&r| r == self.rank) else {
            return Ok(());
        };
        let call = self.call;
        for rs in schedule.program(me) {
            for t in &rs.sends {
                let range = schedule.chunks()[t.chunk].clone();
                let msg = Msg::Chunk {
                    call,
                    step: rs.step as u32,
                    chunk: t.chunk as u32,
                    bytes: element_bytes(&data[range]).to_vec(),
                };
                self.post(ranks[t.to], &msg).await?;
            }
            for t in &rs.receives {
                let key = Key::Chunk(call, rs.step as u32, t.chunk as u32);
                let from = ranks[t.from];
                let Msg::Chunk { bytes, .. } = self.take(key, from).await? else {
                    continue;
                };
                let range = schedule.chunks()[t.chunk].clone();
                let incoming: Vec<T> = elements_from_bytes(&bytes)
                    .filter(|v: &Vec<T>| v.len() == range.len())
                    .ok_or_else(|| self.wrong_size(from, bytes.len()))?;
                t.action.apply(op, &mut data[range], incoming);
            }
        }
        Ok(())
    }

    pub(super) fn wrong_size(&self, from: usize, bytes: usize) -> CollectiveError {
        CollectiveError::Aborted {
            rank: from,
            reason: format!("it sent {bytes} bytes, not the size the call agreed on"),
        }
    }

    pub(super) async fn take_part<T: Element>(
        &mut self,
        from: usize,
        out: &mut [T],
    ) -> Result<(), CollectiveError> {
        let Msg::Part { bytes, .. } = self.take(Key::Part(self.call), from).await? else {
            return Err(self.wrong_size(from, 0));
        };
        if copy_elements(out, &bytes) {
            Ok(())
        } else {
            Err(self.wrong_size(from, bytes.len()))
        }
    }

    pub(super) fn bad_root(&self, root: usize) -> u64 {
        if root >= self.ranks() {
            u64::from(kind::BAD_ROOT)
        } else {
            0
        }
    }

    /// This call's `Part` holding `data`.
    pub(super) fn part<T: Element>(&self, data: &[T]) -> Msg {
        Msg::Part {
            call: self.call,
            bytes: element_bytes(data).to_vec(),
        }
    }
}
