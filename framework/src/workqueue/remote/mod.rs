//! A queue across processes. The owner's queue is an actor, [`QueueActor`],
//! registered on the node of the owner's process (the tree's node, there
//! from the first fork on) under the id of the queue's name
//! ([`queue_id`]). A child's handle is a [`Client`]: an `ActorRef` to that
//! id on the parent's node, asked with the typed [`message`]s.
//!
//! One ask, one answer: a [`message::Read`] asks for up to `max` items and
//! is answered once at least one is there (or the queue is closed); a
//! [`message::Write`] carries its item and is answered once the item is in
//! the owner's lane (backpressure: not before there is room). An answer
//! that would wait longer than [`POLL`] says "again" instead, and the
//! handle asks again, so no ask outlives its timeout and a handle learns
//! soon when the queue is gone.
//!
//! Acknowledgements: the actor keeps every batch it handed to a reader
//! until the reader acknowledges it. A read carries `ack`, the number of
//! the last batch the reader is done with (it asks on past it), and
//! `keep`, the batch it is handing out; a reader that read `None` sends a
//! last [`message::Ack`]. Batches of a reader whose node goes down before
//! acknowledging, and a batch whose answer never reached its reader, go
//! back to the front of the queue. A reader asks for its next batch as
//! soon as it starts handing out the current one (one request ahead), so
//! the round trip overlaps the work.

use std::sync::Arc;
use std::time::Duration;

use crate::id::ActorId;
use crate::remote::Node;
use crate::wire::WireType;

use super::Shared;

mod actor;
mod client;
pub mod message;

pub use actor::QueueActor;
pub(super) use client::{Client, Remote};

/// The most items one read takes.
const MAX_BATCH: usize = 4096;
/// How many items a child's read first asks its parent for per round trip,
/// unless the handle fixes its batch ([`super::WorkQueue::with_prefetch`]);
/// the parent shares what is queued among the readers waiting, so a reader
/// gets fewer when others wait too. The batch then adapts
/// ([`MAX_ADAPTIVE_PREFETCH`]).
pub const DEFAULT_PREFETCH: usize = 32;
/// The largest batch a handle that did not fix its batch grows to. It
/// doubles its batch each time it ran out of items before its next batch
/// (asked ahead) arrived although its last batch came full — the items take
/// less time than a round trip — and halves it (not below
/// [`DEFAULT_PREFETCH`]) each time its next batch arrived while half of the
/// current one was still to hand out — the items take long, and a smaller
/// batch spreads them better over the readers.
pub const MAX_ADAPTIVE_PREFETCH: usize = 1024;
/// The longest a read or write waits at the owner before it is answered
/// "again" (and asked again).
pub const POLL: Duration = Duration::from_secs(2);
/// How often the queue's actor looks for readers whose node went down
/// while they held unacknowledged items, and for waits past [`POLL`].
const TICK: Duration = Duration::from_millis(100);
/// How long a queue whose owner is gone and that is drained still answers
/// (that its queue is closed) before its actor stops.
const GRACE: Duration = Duration::from_millis(300);
/// How long a handle waits for any one answer before it asks again: well
/// past [`POLL`], so only a lost answer or a stalled owner gets there.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest pause between two looks for the parent's node, or for an
/// earlier queue of that name to finish.
const ATTACH_PAUSE: Duration = Duration::from_millis(100);

/// The id of the queue named `name`: the same in every process (a
/// name-based UUID, version 8, from SHA-256 of the name).
pub fn queue_id(name: &str) -> ActorId {
    ActorId::named("para||el work queue", name)
}

/// True in a process whose queues its children may reach: a
/// `#[parallel::main]` program that is not itself a child.
pub(super) fn serves_children() -> bool {
    crate::process::context::MAIN_RAN.load(std::sync::atomic::Ordering::Relaxed)
        && !crate::process::is_child()
}

/// Where a queue's actor finds its node, and an arbiter to start on.
#[derive(Clone)]
pub(super) enum Host {
    /// The node of this process's tree (there once it forked).
    Parent,
    /// A node given by a test, and the arbiter it runs on.
    #[cfg(test)]
    Node(Node, actix_rt::ArbiterHandle),
    /// A node and arbiter a test gives later.
    #[cfg(test)]
    Later(Arc<std::sync::OnceLock<(Node, actix_rt::ArbiterHandle)>>),
}

impl Host {
    fn node(&self) -> Option<Node> {
        match self {
            Host::Parent => crate::process::Tree::global().node(),
            #[cfg(test)]
            Host::Node(node, _) => Some(node.clone()),
            #[cfg(test)]
            Host::Later(cell) => cell.get().map(|(node, _)| node.clone()),
        }
    }

    /// An arbiter to start the actor from: the node's own, else this
    /// thread's (to wait there for the node), else none yet.
    fn arbiter(&self) -> Option<actix_rt::ArbiterHandle> {
        match self {
            Host::Parent => crate::process::Tree::global()
                .arbiter()
                .or_else(actix_rt::Arbiter::try_current),
            #[cfg(test)]
            Host::Node(_, arbiter) => Some(arbiter.clone()),
            #[cfg(test)]
            Host::Later(cell) => cell.get().map(|(_, arbiter)| arbiter.clone()),
        }
    }
}

/// Serves `shared` to other processes: starts its actor on the host's node
/// once there is one (and an earlier queue of that name has finished),
/// from an arbiter of the host. Without an arbiter yet (an owner opened on
/// a thread without one, before the first fork), the owner's next calls
/// try again ([`Shared::serve_pending`]).
pub(super) fn serve<T: WireType + Send + 'static>(shared: &Arc<Shared<T>>, host: Host) {
    use std::sync::atomic::Ordering;
    let Some(arbiter) = host.arbiter() else {
        let _ = shared
            .serve_again
            .set(Box::new(move |shared| serve(shared, host.clone())));
        shared.pending.store(true, Ordering::Release);
        return;
    };
    let weak = Arc::downgrade(shared);
    let spawned = arbiter.spawn(async move {
        let mut pause = Duration::from_millis(1);
        loop {
            let Some(shared) = weak.upgrade() else { return };
            if shared.lock().owner_gone {
                return;
            }
            if let Some(node) = host.node() {
                let id = queue_id(&shared.name);
                if node.0.registry.get(id).is_none() {
                    let actor = QueueActor::new(shared.clone(), node.clone());
                    node.0.registry.start_as(id, actor, node.0.mailbox);
                    return;
                }
                tracing::debug!(queue = %shared.name, "an earlier queue of that name is still draining; waiting");
            }
            drop(shared);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(ATTACH_PAUSE);
        }
    });
    if !spawned {
        tracing::error!(queue = %shared.name, "work queue not served to other processes: the arbiter to start its actor on stopped");
    }
}
