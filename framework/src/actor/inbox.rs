//! The messages from other nodes that wait for one actor, and the drain that
//! hands them to it.
//!
//! A message that arrives from another node does not go through the actor's
//! actix mailbox one by one. The peer's dispatcher (which already took a
//! mailbox slot for it) appends it to the actor's [`Inbox`], and only when
//! no [`Drain`] is on its way puts one into the mailbox. The actor's
//! handler of that `Drain` ([`drain`]) then decodes and handles every
//! message that waits, in order: a burst of messages costs one mailbox item,
//! not one each (actix allocates an envelope and a queue node for each).
//!
//! What the mailbox promised stays true:
//! - Order: every message from other nodes to the actor passes through its
//!   one inbox, in the order the dispatchers took them; messages from one
//!   node keep the order they were sent in.
//! - A handler that makes the actor wait (`ctx.wait`), or stops it, stops
//!   the drain at once: the rest goes back to the front of the inbox, and a
//!   new `Drain` at the back of the mailbox takes it up once the actor
//!   takes messages again — as the mailbox would have waited. (A stopped
//!   actor never takes that `Drain`; what waited goes with it, as its
//!   mailbox's messages would.)
//! - Fairness: a drain handles at most [`DRAIN_BUDGET`] messages, then lets
//!   the rest of the mailbox in the same way.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::AsyncContext;

use crate::wire::RemoteFailure;

use super::failure::code;
use super::inbound::Inbound;
use super::message::RemoteActor;

/// Most messages one [`Drain`] handles before the actor's mailbox gets a turn.
pub const DRAIN_BUDGET: usize = 256;

/// Messages from other nodes waiting for one actor; see the module docs.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Inbound>,
    /// An emptied queue kept for the next drain, so that neither side
    /// allocates for a burst like the last.
    spare: VecDeque<Inbound>,
    /// A `Drain` is in the mailbox (or running): no other is needed.
    scheduled: bool,
    /// Drains that handled at least one message, for tests.
    drains: u64,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `inbound`; true when the caller must put a [`Drain`] into the
    /// actor's mailbox (none is on its way).
    pub fn push(&self, inbound: Inbound) -> bool {
        let mut state = self.lock();
        state.waiting.push_back(inbound);
        !std::mem::replace(&mut state.scheduled, true)
    }

    /// Everything that waits, taken out for good: the actor's mailbox is
    /// closed, so no drain will come.
    pub fn take_all(&self) -> VecDeque<Inbound> {
        let mut state = self.lock();
        state.scheduled = false;
        std::mem::take(&mut state.waiting)
    }

    /// Messages waiting now.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// True when no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drains so far that handled at least one message.
    pub fn drains(&self) -> u64 {
        self.lock().drains
    }

    /// Swaps what waits into `batch` (empty); false, and no drain
    /// scheduled any more, when nothing waits.
    fn take_into(&self, batch: &mut VecDeque<Inbound>) -> bool {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.scheduled = false;
            return false;
        }
        std::mem::swap(&mut state.waiting, batch);
        true
    }

    /// Puts what a drain did not handle back in front of what came since.
    fn put_back(&self, mut rest: VecDeque<Inbound>) {
        let mut state = self.lock();
        state.drains += 1;
        rest.append(&mut state.waiting);
        state.waiting = rest;
    }

    /// Keeps an emptied queue for the next drain.
    fn done(&self, spare: VecDeque<Inbound>, handled: bool) {
        let mut state = self.lock();
        state.drains += u64::from(handled);
        if state.spare.capacity() < spare.capacity() {
            state.spare = spare;
        }
    }

    fn spare(&self) -> VecDeque<Inbound> {
        std::mem::take(&mut self.lock().spare)
    }
}

/// The mailbox item that has an actor handle what waits in its [`Inbox`].
pub struct Drain(pub(crate) Arc<Inbox>);

impl actix::Message for Drain {
    type Result = ();
}

/// Handles what waits in the inbox of `actor`, in order; see the module
/// docs. The derive macro's `Handler<Drain>` calls it.
pub fn drain<A: RemoteActor>(actor: &mut A, Drain(inbox): Drain, ctx: &mut actix::Context<A>) {
    let mut batch = inbox.spare();
    let mut handled = 0;
    while inbox.take_into(&mut batch) {
        while let Some(inbound) = batch.pop_front() {
            if let Err(inbound) = actor.handle_inbound(inbound, ctx) {
                let failure = unknown_message::<A>(&inbound);
                inbound.fail(failure);
            }
            handled += 1;
            if ctx.waiting() || handled >= DRAIN_BUDGET {
                // The mailbox would stop here (or give others a turn): the
                // rest waits for the next drain, at the back of it.
                inbox.put_back(batch);
                ctx.address().do_send(Drain(inbox));
                return;
            }
        }
    }
    inbox.done(batch, handled > 0);
}

/// Why a message whose type the actor does not accept was not handled.
fn unknown_message<A: RemoteActor>(inbound: &Inbound) -> RemoteFailure {
    RemoteFailure {
        location: None,
        code: code::UNKNOWN_MESSAGE,
        message: format!(
            "actor {} ({}) accepts no message with tag {:#018x}; it accepts {:?} — list the message in #[actor(messages(..))] and build both nodes from the same source",
            inbound.target(),
            A::NAME,
            inbound.type_tag(),
            A::ACCEPTS
        ),
    }
}
