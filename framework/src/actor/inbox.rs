//! The messages that wait for one actor, and the drain that hands them to
//! it.
//!
//! The framework's messages do not go through an actor's actix mailbox one
//! by one. A message from another node (the peer's dispatcher took a
//! mailbox slot for it) and a message from this process (a local `tell` or
//! `ask`, with its slot; see [`super::local`]) are appended to the actor's
//! [`Inbox`], and only when no [`Drain`] is on its way is one put into the
//! mailbox. The actor's handler of that `Drain` ([`drain`]) then handles
//! every message that waits, in order: a burst of messages costs one
//! mailbox item, not one each (actix allocates an envelope and a queue node
//! for each).
//!
//! What the mailbox promised stays true:
//! - Order: every framework message to the actor passes through its one
//!   inbox, in the order the senders queued them; messages from one sender
//!   keep the order they were sent in, tells and asks alike.
//! - A handler that makes the actor wait (`ctx.wait`), or stops it, stops
//!   the drain at once: the rest goes back to the front of the inbox, and a
//!   new `Drain` at the back of the mailbox takes it up once the actor
//!   takes messages again — as the mailbox would have waited.
//! - A stopped actor handles nothing more: when its mailbox is dropped with
//!   a `Drain` in it (or a `Drain` cannot be put into a closed one), what
//!   waits is answered as stopped (an asker gets `Stopped`; a tell is
//!   dropped, as a stopped actor's mailbox drops it).
//! - Fairness: a drain handles at most [`DRAIN_BUDGET`] messages, then lets
//!   the rest of the mailbox in the same way.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::AsyncContext;

use crate::wire::RemoteFailure;

use super::failure::code;
use super::inbound::Inbound;
use super::local::LocalBox;
use super::message::RemoteActor;

/// Most messages one [`Drain`] handles before the actor's mailbox gets a turn.
pub const DRAIN_BUDGET: usize = 256;

/// A message waiting in an [`Inbox`].
pub enum Queued {
    /// From another node: its frame, decoded by the handler it is for.
    Remote(Inbound),
    /// From this process: the typed message, with its reply sink and slot.
    Local(LocalBox),
    /// Handled already: its place in a drain's batch, dropped with it.
    Handled,
}

impl Queued {
    /// Answers it as stopped: a remote asker gets the failure frame, a local
    /// asker `Stopped` when its reply sink is dropped; a tell is dropped.
    fn stopped(self) {
        match self {
            Queued::Remote(inbound) => inbound.stopped(),
            Queued::Local(call) => drop(call),
            Queued::Handled => {}
        }
    }
}

/// The framework's messages waiting for one actor; see the module docs.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Queued>,
    /// An emptied queue kept for the next drain, so that neither side
    /// allocates for a burst like the last.
    spare: VecDeque<Queued>,
    /// A `Drain` is in the mailbox (or running): no other is needed.
    scheduled: bool,
    /// Drains that handled at least one message, for tests.
    drains: u64,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues what `make` builds, built where it waits; true when the
    /// caller must put a [`Drain`] into the actor's mailbox (none is on its
    /// way).
    #[inline(always)]
    pub fn push_with(&self, make: impl FnOnce() -> Queued) -> bool {
        let mut state = self.lock();
        // A placeholder first (`resize_with` writes its tag in place, where
        // `push_back` copies a whole entry from the stack), then the message
        // written over it, in place: built on the stack and moved in, a local
        // message (over 100 bytes) was copied twice more, each copy reading
        // back what had just been written, which stalls the processor.
        let len = state.waiting.len();
        state.waiting.resize_with(len + 1, || Queued::Handled);
        if let Some(last) = state.waiting.back_mut() {
            *last = make();
        }
        !std::mem::replace(&mut state.scheduled, true)
    }

    /// Answers everything that waits as stopped: the actor's mailbox is
    /// closed, so no drain will come.
    fn stop_all(&self) {
        let waiting = {
            let mut state = self.lock();
            state.scheduled = false;
            std::mem::take(&mut state.waiting)
        };
        for waiting in waiting {
            waiting.stopped();
        }
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
    fn take_into(&self, batch: &mut VecDeque<Queued>) -> bool {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.scheduled = false;
            return false;
        }
        std::mem::swap(&mut state.waiting, batch);
        true
    }

    /// Puts what a drain did not handle back in front of what came since.
    fn put_back(&self, mut rest: VecDeque<Queued>) {
        let mut state = self.lock();
        state.drains += 1;
        rest.append(&mut state.waiting);
        state.waiting = rest;
    }

    /// Keeps an emptied queue for the next drain.
    fn done(&self, spare: VecDeque<Queued>, handled: bool) {
        let mut state = self.lock();
        state.drains += u64::from(handled);
        if state.spare.capacity() < spare.capacity() {
            state.spare = spare;
        }
    }

    fn spare(&self) -> VecDeque<Queued> {
        std::mem::take(&mut self.lock().spare)
    }
}

/// The mailbox item that has an actor handle what waits in its [`Inbox`].
/// Dropped unhandled (its mailbox closed), it answers what waits as stopped.
pub struct Drain(Option<Arc<Inbox>>);

impl Drain {
    /// The drain of `inbox`.
    pub(crate) fn new(inbox: Arc<Inbox>) -> Self {
        Self(Some(inbox))
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if let Some(inbox) = self.0.take() {
            inbox.stop_all();
        }
    }
}

impl actix::Message for Drain {
    type Result = ();
}

/// Handles what waits in the inbox of `actor`, in order; see the module
/// docs. The derive macro's `Handler<Drain>` calls it.
pub fn drain<A: RemoteActor>(actor: &mut A, mut drain: Drain, ctx: &mut actix::Context<A>) {
    let Some(inbox) = drain.0.take() else {
        return;
    };
    let mut batch = inbox.spare();
    let mut handled = 0;
    while inbox.take_into(&mut batch) {
        // Handled where they wait (a message from this process is taken
        // out of its box by its handler), then dropped together.
        let mut at = 0;
        let mut paused = false;
        while let Some(waiting) = batch.get_mut(at) {
            at += 1;
            match waiting {
                Queued::Local(call) => call.call(actor, ctx),
                Queued::Remote(_) => {
                    if let Queued::Remote(inbound) = std::mem::replace(waiting, Queued::Handled)
                        && let Err(inbound) = actor.handle_inbound(inbound, ctx)
                    {
                        let failure = unknown_message::<A>(&inbound);
                        inbound.fail(failure);
                    }
                }
                Queued::Handled => continue,
            }
            handled += 1;
            if ctx.waiting() || handled >= DRAIN_BUDGET {
                paused = true;
                break;
            }
        }
        batch.drain(..at);
        if paused {
            // The mailbox would stop here (or give others a turn): the
            // rest waits for the next drain, at the back of it.
            inbox.put_back(batch);
            ctx.address().do_send(Drain::new(inbox));
            return;
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
