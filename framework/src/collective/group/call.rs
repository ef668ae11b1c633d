//! One call of a group over QUIC: its arguments exchanged, its data moved,
//! its end agreed; a failure breaks the group and tells the others. Every
//! message goes to the other member's actor ([`super::member`]); what the
//! others sent is read from what this member's actor filed.

use std::sync::Arc;

use crate::actor::{
    Accepts, Element, copy_elements, element_bytes, elements_from_bytes, elements_view,
};
use crate::collective::local::kind;
use crate::reduce::{ReduceOp, Reducible, Schedule};
use crate::remote::{ActorRef, SendError};

use super::inbox::{BARRIER, Filed, Key, bad_text, head_text};
use super::member::GroupMember;
use super::message::{Abort, Begin, Chunk, Done, Part};
use super::pieces::{Move, piece_range, pieces, plan};
use super::{CollectiveError, Group, TICK};

impl Group {
    pub(super) fn ready(&self) -> Result<(), CollectiveError> {
        match &self.broken {
            Some(why) => Err(CollectiveError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    /// Records a failure that breaks the group, tells the others (unless a
    /// member dropped it: they hear that themselves), and returns it.
    pub(super) async fn fail(&mut self, e: CollectiveError) -> CollectiveError {
        if matches!(e, CollectiveError::Mismatch(_)) {
            return e;
        }
        self.broken.get_or_insert_with(|| e.to_string());
        if matches!(e, CollectiveError::Left { .. }) {
            // A member dropped the group: every other member hears its
            // `Leave` too, and each one's call fails the same way (a fork
            // tree's child then finds its path again) — an `Abort` from here
            // would give them another error for the same event.
            return e;
        }
        // Members of this machine may wait in its arena for this one.
        if let Some(host) = &mut self.host_local {
            host.leave();
        }
        let abort = Abort {
            from: self.rank as u32,
            call: self.call,
            reason: e.to_string(),
        };
        for r in 0..self.members.len() {
            if let Ok(Some(actor)) = self.reachable(r) {
                let _ = actor.tell(abort.clone()).await;
            }
        }
        e
    }

    /// The actor of rank `to` (`None` for this member itself), while this
    /// node runs and the connection to `to`'s node lives: a group sends
    /// only over its own node's links.
    pub(super) fn reachable(
        &self,
        to: usize,
    ) -> Result<Option<&ActorRef<GroupMember>>, CollectiveError> {
        let m = &self.members[to];
        let (Some(remote), Some(actor)) = (&m.remote, &m.actor) else {
            return Ok(None);
        };
        if self.own.node().is_shut_down() {
            return Err(CollectiveError::Broken("this node shut down".into()));
        }
        if !remote.is_alive() {
            return Err(CollectiveError::RankGone {
                rank: to,
                node: m.node,
                why: "the connection to its node is gone".into(),
            });
        }
        Ok(Some(actor))
    }

    /// Tells `msg` to the member of rank `to` (nothing to this member itself).
    pub(super) async fn post<M>(&self, to: usize, msg: M) -> Result<(), CollectiveError>
    where
        M: crate::Message,
        GroupMember: Accepts<M>,
    {
        let Some(actor) = self.reachable(to)? else {
            return Ok(());
        };
        actor.tell(msg).await.map_err(|e| match e {
            SendError::Encode(_, e) => CollectiveError::Encode(e.to_string()),
            e => CollectiveError::RankGone {
                rank: to,
                node: self.members[to].node,
                why: e.to_string(),
            },
        })
    }

    /// Tells `msg` to every other member.
    pub(super) async fn post_all<M>(&self, msg: &M) -> Result<(), CollectiveError>
    where
        M: crate::Message + Clone,
        GroupMember: Accepts<M>,
    {
        for r in 0..self.members.len() {
            if r != self.rank {
                self.post(r, msg.clone()).await?;
            }
        }
        Ok(())
    }

    /// Waits for what rank `from` filed under `key`. A member that went
    /// down is read first: what it sent before is taken.
    pub(super) async fn take(&mut self, key: Key, from: usize) -> Result<Filed, CollectiveError> {
        // Most posts are filed before the call looks: no wait to set up.
        if let Some(found) = self.look(key, from) {
            return found;
        }
        let inbox = self.own.inbox.clone();
        loop {
            // Enabled before looking again, so a post filed in between wakes this wait.
            let changed = inbox.changed();
            if let Some(found) = self.look(key, from) {
                return found;
            }
            let m = &self.members[from];
            if let Some(remote) = &m.remote
                && !remote.is_alive()
            {
                // What it sent before it went down may be with the actor still.
                self.own.flush().await;
                if let Some(found) = self.look(key, from) {
                    return found;
                }
                return Err(CollectiveError::RankGone {
                    rank: from,
                    node: m.node,
                    why: "its node went down".into(),
                });
            }
            let _ = tokio::time::timeout(TICK, changed).await;
        }
    }

    /// What rank `from` filed under `key`, or why none will come: this
    /// call aborted, a member left, this member's actor stopped. `None`
    /// while there is nothing yet.
    fn look(&self, key: Key, from: usize) -> Option<Result<Filed, CollectiveError>> {
        let mut filing = self.own.inbox.lock();
        if let Some(filed) = filing.pending.remove(&(key, from)) {
            filing.awaited = None;
            return Some(Ok(filed));
        }
        if let Some((rank, reason)) = filing.aborted.get(&self.call) {
            return Some(Err(CollectiveError::Aborted {
                rank: *rank,
                reason: reason.clone(),
            }));
        }
        // A member that left had sent everything it owed before its `Leave`
        // (posts from one member arrive in order): only a wait for its own
        // post is hopeless. A call still running here goes on with the
        // others' posts — the parent of a tree drops its group as soon as
        // its own call ended, while another rank may still be taking its
        // last posts.
        if let Some(rank) = filing.left
            && rank == from
        {
            return Some(Err(CollectiveError::Left {
                rank,
                node: self.members[rank].node,
            }));
        }
        if filing.closed {
            return Some(Err(CollectiveError::Broken("this node shut down".into())));
        }
        // Until it comes, only it (or an abort, a leave) wakes the call.
        filing.awaited = Some((key, from));
        None
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
        let from = self.rank as u32;
        self.post_all(&Begin { from, call, head }).await?;
        let mut disagree = None;
        for r in 0..self.members.len() {
            if r == self.rank {
                continue;
            }
            let Filed::Begin(theirs) = self.take(Key::Begin(call), r).await? else {
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
        self.post_all(&Done { from, call }).await?;
        for r in 0..self.members.len() {
            if r != self.rank {
                self.take(Key::Done(call), r).await?;
            }
        }
        Ok(out)
    }

    /// Sends this rank's chunks of `schedule` and applies the ones it
    /// receives, in pieces: a piece received is applied and sent on while
    /// the rest of its chunk is on the wire ([`super::pieces`]).
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
        let program = schedule.program(me);
        let chunks = schedule.chunks();
        let pieces_of = |c: usize| pieces(chunks[c].len(), size_of::<T>());
        for m in plan(&program, pieces_of) {
            match m {
                Move::Send {
                    at,
                    transfer,
                    piece,
                } => {
                    let t = &program[at].sends[transfer];
                    let range = piece_range(&chunks[t.chunk], pieces_of(t.chunk), piece);
                    let msg = Chunk {
                        from: self.rank as u32,
                        call,
                        step: program[at].step as u32,
                        chunk: t.chunk as u32,
                        piece: piece as u32,
                        bytes: Arc::from(element_bytes(&data[range])),
                    };
                    self.post(ranks[t.to], msg).await?;
                }
                Move::Receive {
                    at,
                    transfer,
                    piece,
                } => {
                    let t = &program[at].receives[transfer];
                    let key =
                        Key::Chunk(call, program[at].step as u32, t.chunk as u32, piece as u32);
                    let from = ranks[t.from];
                    let Filed::Bytes(bytes) = self.take(key, from).await? else {
                        continue;
                    };
                    let bytes = bytes.as_slice();
                    let range = piece_range(&chunks[t.chunk], pieces_of(t.chunk), piece);
                    if bytes.len() != range.len() * size_of::<T>() {
                        return Err(self.wrong_size(from, bytes.len()));
                    }
                    // Read where it arrived; copied first only if the bytes
                    // do not lie on an element boundary.
                    let copied: Vec<T>;
                    let incoming: &[T] = match elements_view(bytes) {
                        Some(view) => view,
                        None => {
                            copied = elements_from_bytes(bytes)
                                .ok_or_else(|| self.wrong_size(from, bytes.len()))?;
                            &copied
                        }
                    };
                    t.action.apply(op, &mut data[range], incoming);
                }
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
        let Filed::Bytes(bytes) = self.take(Key::Part(self.call), from).await? else {
            return Err(self.wrong_size(from, 0));
        };
        let bytes = bytes.as_slice();
        if copy_elements(out, bytes) {
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

    /// This call's `Part` holding `data` (one copy, shared by every
    /// member it is sent to).
    pub(super) fn part<T: Element>(&self, data: &[T]) -> Part {
        Part {
            from: self.rank as u32,
            call: self.call,
            bytes: Arc::from(element_bytes(data)),
        }
    }
}
