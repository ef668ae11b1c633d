//! A child process's link to its parent: what the function's thread talks
//! through. The child's process actor files what the parent sends into the
//! link's queues; the function's blocking calls read them (spinning
//! briefly, then parking) and tell the tree's parent actor what they have
//! to say.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};

use crate::id::ActorId;
use crate::remote::value::Incoming;
use crate::remote::{ActorRef, Node, RemoteNode};

use super::error::ProcessError;
use super::message::{CollectiveMsg, CollectiveUp, Credit, SEND_WINDOW};
use super::parent_actor::ParentActor;

/// How long a child's function spins for a message before it parks: a
/// reply often comes within microseconds, and waking a parked thread on
/// another vCPU costs about 70 µs here. It spins by yielding its CPU, so
/// that the node's thread, when it shares that CPU, gets to run at once
/// (a busy loop kept it off the CPU until the spin ended or the scheduler
/// preempted it: a join/yield round trip between processes on two CPUs
/// took 1.8–2.0× a raw ping with it, 1.09–1.16× with yielding).
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// What the process actor files for the function's thread.
pub(super) struct Queues {
    pub joins: Receiver<Incoming>,
    pub data: Receiver<Incoming>,
    pub collective: Receiver<CollectiveMsg>,
}

/// A child process's link to its parent: what its function talks through.
pub(crate) struct ChildLink {
    pub(super) number: u32,
    /// This process's actor.
    pub(super) me: ActorId,
    /// The tree's parent actor.
    pub(super) parent: ActorRef<ParentActor>,
    /// The parent's node.
    pub(super) parent_node: RemoteNode,
    pub(super) node: Node,
    /// Shared memory with the parent (on this machine only).
    pub(super) segments: Option<crate::transport::segments::PeerSegments>,
    pub(super) shm_threshold: usize,
    pub(super) ip: String,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) queues: Mutex<Queues>,
    /// Values this child may still send before the parent reads some.
    pub(super) credits: Arc<tokio::sync::Semaphore>,
    /// Values read since credit was last returned to the parent.
    pub(super) read: AtomicU32,
    /// This child's rank and its group's size, as the parent last announced.
    pub(super) ranks: Mutex<Option<(usize, usize)>>,
    /// Collective posts read while waiting for the ranks, not handed out yet.
    pub(super) stash: Mutex<std::collections::VecDeque<CollectiveMsg>>,
}

/// Refuses a blocking call made on an async runtime's thread (it would
/// stall that runtime, or panic inside tokio).
pub(crate) fn refuse_in_async(what: &str) -> Result<(), ProcessError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(ProcessError::Misuse(format!(
            "{what} blocks its thread, and this thread runs an async runtime: call it from the child's function (which runs on a thread of its own), or use the async form"
        )));
    }
    Ok(())
}

impl ChildLink {
    /// The parent's node and this process's runtime, for the layers above
    /// that talk to the parent on their own (the work queues, collectives).
    pub(crate) fn parent_node(&self) -> &RemoteNode {
        &self.parent_node
    }

    /// This process's runtime (to block on from the function's thread).
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// This process's node.
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Tells the parent actor `msg`, from the function's thread.
    pub(super) fn tell_blocking<M>(&self, msg: M) -> Result<(), ProcessError>
    where
        M: crate::Message,
        ParentActor: crate::actor::Accepts<M>,
    {
        self.runtime
            .block_on(self.parent.tell(msg))
            .map_err(|e| ProcessError::from_send(e, |reason| ProcessError::Gone { id: 0, reason }))
    }

    /// The next collective post from the parent (blocks this thread). A
    /// group's ranks are noted on the way ([`ChildLink::ranks`]).
    pub(crate) fn next_collective(&self) -> Result<CollectiveMsg, ProcessError> {
        if let Some(msg) = lock(&self.stash).pop_front() {
            return Ok(msg);
        }
        let queues = lock(&self.queues);
        loop {
            match spin_then_block(&queues.collective)? {
                CollectiveMsg::Ranks { rank, size } => {
                    *lock(&self.ranks) = Some((rank as usize, size as usize));
                }
                msg => return Ok(msg),
            }
        }
    }

    /// This child's rank in its group and the group's size, as the parent
    /// announced them when the group formed; waits (blocking this thread)
    /// for the first announcement. Other posts read meanwhile are kept for
    /// the coming collective.
    pub(crate) fn ranks(&self) -> Result<(usize, usize), ProcessError> {
        if let Some(known) = *lock(&self.ranks) {
            return Ok(known);
        }
        let queues = lock(&self.queues);
        loop {
            match spin_then_block(&queues.collective)? {
                CollectiveMsg::Ranks { rank, size } => {
                    let known = (rank as usize, size as usize);
                    *lock(&self.ranks) = Some(known);
                    return Ok(known);
                }
                msg => lock(&self.stash).push_back(msg),
            }
        }
    }

    /// Posts a collective message to the parent (blocks this thread).
    pub(crate) fn post_collective(&self, msg: CollectiveMsg) -> Result<(), ProcessError> {
        self.tell_blocking(CollectiveUp { from: self.me, msg })
    }

    pub(super) fn after_read(&self) -> Result<(), ProcessError> {
        let read = self.read.fetch_add(1, Ordering::Relaxed) + 1;
        if read as usize >= SEND_WINDOW / 2 {
            self.read.fetch_sub(read, Ordering::Relaxed);
            self.tell_blocking(Credit {
                from: self.me,
                n: read,
            })?;
        }
        Ok(())
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for the next message on `queue`: spins briefly, then parks.
pub(super) fn spin_then_block<T>(queue: &Receiver<T>) -> Result<T, ProcessError> {
    let gone = || ProcessError::Gone {
        id: 0,
        reason: "this process's node stopped".into(),
    };
    let start = std::time::Instant::now();
    while start.elapsed() < SPIN {
        match queue.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(gone()),
            Err(TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    queue.recv().map_err(|_| gone())
}
