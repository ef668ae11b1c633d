//! Named work queues: torch-ipc's `parallel.workqueue(name)`. The first
//! handle opened under a name is the queue's *owner*; every other handle is
//! a *worker*. What the owner writes, one worker reads; what a worker
//! writes, the owner reads — the seed's pattern of background threads
//! taking commands and handing answers back. Bounded: a writer waits while
//! the queue is full. When the owner closes (or drops) the queue, workers'
//! reads return `None` once everything written is read.
//!
//! ```
//! use parallel::WorkQueue;
//! let q = WorkQueue::<String>::named("doc queue");
//! let workers = parallel::map(2, |_: &(), _| {
//!     let q = WorkQueue::<String>::named("doc queue");
//!     while let Some(name) = q.read() {
//!         q.write(name.to_uppercase()).unwrap();
//!     }
//! }, ());
//! for f in ["f1", "f2", "f3"] {
//!     q.write(f.to_string()).unwrap();
//! }
//! let mut answers: Vec<String> = (0..3).map(|_| q.read().unwrap()).collect();
//! answers.sort();
//! assert_eq!(answers, ["F1", "F2", "F3"]);
//! q.close();
//! workers.join().unwrap();
//! ```
//!
//! # Across processes
//!
//! Every queue is an actor addressed by an id derived from its name
//! ([`queue_id`]): a [`QueueActor`] on the node of the owner's process,
//! started under that id (from the first fork on), which answers the
//! typed [`message`]s of other processes' handles. In a process started by
//! [`crate::fork`], `named` opens the queue of that name *owned by the
//! parent process*: the handle is a worker whose `read` takes the next item
//! the parent's owner wrote and whose `write` hands an item to the parent's
//! owner, each an `ask` to that actor over the authenticated transport
//! (from the child's function, which runs on a thread of its own: on an
//! async runtime's thread they refuse with [`ReadError::Misuse`]). In the
//! parent nothing changes: the owner and its local workers use the queue in
//! place, and the actor serves the children's handles from the same queue.
//! Items are any rkyv type the framework sends ([`WireType`]).
//!
//! ```text
//!   parent process                        child processes
//!   owner ──write──▶ [to workers] ──────▶ worker (named, read)
//!   owner ◀──read─── [to owner]   ◀────── worker (named, write)
//! ```
//!
//! How items travel: a child's `read` takes a batch of items per round trip;
//! the parent shares what is queued among the readers waiting, so a reader
//! gets fewer when others wait too. As soon as `read` hands out the first
//! item of a batch, the handle asks for the next batch, so the round trip
//! overlaps the work. The batch starts at [`DEFAULT_PREFETCH`] items and
//! adapts to the work: it doubles (up to [`MAX_ADAPTIVE_PREFETCH`]) while
//! the reader runs out of items before its next batch arrives, and halves
//! while the next batch arrives with half of the current one still to do —
//! tiny items travel in large batches, long ones stay spread over the
//! readers. [`WorkQueue::with_prefetch`] fixes the batch instead.
//!
//! What a reader's death does to items — *at least once*: the owner keeps
//! every item it handed to a reader process until that reader acknowledges
//! it. A reader acknowledges an item by asking on past it: an item is done
//! once its handle's `read` was called again after returning it and the
//! first request the handle sent after that call reached the parent (the
//! handle acknowledges a whole batch with the request it sends when it
//! starts on the batch after it), or once `read` returned `None`.
//! Unacknowledged items go back to the front of the queue, for the next
//! reader, when the reply carrying them cannot be delivered or when the
//! reader's process (its node's connection) goes down — the items it had not
//! read yet, the batch it asked ahead for, and also the items `read` had
//! returned whose work may have been done: such items are worked on again by
//! another reader. Nothing a reader took is lost while another reader
//! still reads; an item may be worked on twice. Make the work
//! idempotent, or count the answers in the owner. Items given back after
//! every other reader has read `None` are not read again. A handle dropped
//! before it read `None` gives back the batch it asked ahead for at once,
//! and keeps the rest of its unacknowledged items until its process ends;
//! then they go back.

mod remote;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use crate::id::ActorId;
use crate::wire::{DecodeError, EncodeError, WireType};

pub use remote::{DEFAULT_PREFETCH, MAX_ADAPTIVE_PREFETCH, POLL, QueueActor, message, queue_id};

/// How many items a queue holds in each direction before a writer waits.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How long a child's handle keeps asking its parent for a queue that is not
/// served there (yet) before its operations fail with `NotServed`.
pub const SERVE_WAIT: Duration = Duration::from_secs(30);

/// Why a write did not happen; the item comes back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the work queue is closed; the item was not written")]
pub struct Closed<T>(pub T);

/// Why [`WorkQueue::read_checked`] could not read from a queue owned by
/// another process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The parent process, which owns the queue, cannot be reached.
    #[error(
        "the parent process owning work queue {name:?} is gone ({reason}); nothing more will arrive — end this reader"
    )]
    ParentGone {
        /// The queue.
        name: String,
        /// What happened.
        reason: String,
    },
    /// The parent never served a queue of that name.
    #[error(
        "no work queue named {name:?} was open in the parent process within {waited:?}; open it there with `WorkQueue::named` (same name, same item type) before the children read it"
    )]
    NotServed {
        /// The queue.
        name: String,
        /// How long this handle asked.
        waited: Duration,
    },
    /// The parent refused the request (another item type, for instance).
    #[error("the parent refused to read from work queue {name:?}: {message}")]
    Refused {
        /// The queue.
        name: String,
        /// The parent's reason.
        message: String,
    },
    /// An item that arrived failed validation; it was dropped.
    #[error(
        "an item of work queue {name:?} failed validation ({error}); run the same program in parent and children"
    )]
    Decode {
        /// The queue.
        name: String,
        /// What was wrong with it.
        error: DecodeError,
    },
    /// The call would block a thread that runs an async runtime.
    #[error("work queue {name:?}: {message}")]
    Misuse {
        /// The queue.
        name: String,
        /// What to do instead.
        message: String,
    },
}

/// Why [`WorkQueue::write_checked`] did not write; the item comes back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum WriteError<T> {
    /// The queue is closed.
    #[error("the work queue is closed; the item was not written")]
    Closed(T),
    /// The parent process, which owns the queue, cannot be reached.
    #[error(
        "the parent process owning the work queue is gone ({reason}); the item was not written — end this worker"
    )]
    ParentGone {
        /// The item.
        item: T,
        /// What happened.
        reason: String,
    },
    /// The parent never served a queue of that name.
    #[error(
        "no work queue named {name:?} was open in the parent process within {waited:?}; open it there with `WorkQueue::named` (same name, same item type) before the children write to it"
    )]
    NotServed {
        /// The item.
        item: T,
        /// The queue.
        name: String,
        /// How long this handle asked.
        waited: Duration,
    },
    /// The parent refused the item (another item type, for instance).
    #[error("the parent refused the item: {message}")]
    Refused {
        /// The item.
        item: T,
        /// The parent's reason.
        message: String,
    },
    /// The item could not be serialized.
    #[error("the item could not be serialized: {error}")]
    Encode {
        /// The item.
        item: T,
        /// Why.
        error: EncodeError,
    },
    /// The call would block a thread that runs an async runtime; the item
    /// was not written.
    #[error("{message}")]
    Misuse {
        /// The item.
        item: T,
        /// What to do instead.
        message: String,
    },
}

impl<T> std::fmt::Debug for WriteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl<T> WriteError<T> {
    /// The item that was not written.
    pub fn into_item(self) -> T {
        match self {
            WriteError::Closed(item)
            | WriteError::ParentGone { item, .. }
            | WriteError::NotServed { item, .. }
            | WriteError::Refused { item, .. }
            | WriteError::Encode { item, .. }
            | WriteError::Misuse { item, .. } => item,
        }
    }
}

struct State<T> {
    to_workers: VecDeque<T>,
    to_owner: VecDeque<T>,
    closed: bool,
    /// The owner's handle is dropped: once drained, nobody serves the queue.
    owner_gone: bool,
}

/// Tries again to start a queue's actor (see [`Shared::serve_pending`]).
type ServeAgain<T> = Box<dyn Fn(&Arc<Shared<T>>) + Send + Sync>;

/// One queue of this process; the owner, its local workers and the actor
/// that serves other processes share it.
struct Shared<T> {
    name: String,
    capacity: usize,
    state: Mutex<State<T>>,
    /// Wakes the local handles waiting in `read` or `write`.
    changed: Condvar,
    /// Wakes the actor that serves other processes' handles.
    service: tokio::sync::Notify,
    /// The queue is to be served to other processes, and no arbiter could
    /// start its actor yet: the owner's calls try again.
    pending: AtomicBool,
    /// How they try again.
    serve_again: OnceLock<ServeAgain<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells everyone waiting that the state changed.
    fn wake(&self) {
        self.changed.notify_all();
        self.service.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake();
    }

    /// Tries again to serve the queue to other processes, if that waits
    /// for an arbiter (one atomic load otherwise).
    fn serve_pending(self: &Arc<Self>) {
        if self.pending.load(Ordering::Relaxed)
            && self.pending.swap(false, Ordering::AcqRel)
            && let Some(serve) = self.serve_again.get()
        {
            serve(self);
        }
    }
}

enum Handle<T: Send + 'static> {
    /// A queue of this process.
    Local { shared: Arc<Shared<T>>, owner: bool },
    /// A worker on the queue of the parent process.
    Remote(Box<dyn remote::Remote<T>>),
}

/// A handle on a named queue; see the module docs for who reads what.
pub struct WorkQueue<T: Send + 'static> {
    handle: Handle<T>,
}

/// The queues of this process by name: an extension of the default
/// process tree's context ([`crate::process::Tree::extension`]).
#[derive(Default)]
struct Directory(Mutex<HashMap<String, Weak<dyn Any + Send + Sync>>>);

impl Directory {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Weak<dyn Any + Send + Sync>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn directory() -> Arc<Directory> {
    crate::process::Tree::global().extension(Directory::default)
}

impl<T: WireType + Send + 'static> WorkQueue<T> {
    /// Opens the queue named `name`. In a process started by
    /// [`crate::fork`]: a worker handle on the parent's queue of that name.
    /// Otherwise: the queue of this process, created (and owned by this
    /// handle) if it does not exist yet; its children reach it by name.
    pub fn named(name: &str) -> Self {
        Self::with_capacity(name, DEFAULT_CAPACITY)
    }

    /// As [`WorkQueue::named`], with a capacity for a queue this call
    /// creates (a child's handle uses the parent's queue's capacity).
    pub fn with_capacity(name: &str, capacity: usize) -> Self {
        if crate::process::is_child() {
            return WorkQueue {
                handle: Handle::Remote(Box::new(remote::Client::<T>::for_parent(name))),
            };
        }
        let (shared, owner) = open_local::<T>(name, capacity);
        if owner && remote::serves_children() {
            remote::serve(&shared, remote::Host::Parent);
        }
        WorkQueue {
            handle: Handle::Local { shared, owner },
        }
    }
}

/// The queue of this process named `name`, and whether the caller owns it.
fn open_local<T: Send + 'static>(name: &str, capacity: usize) -> (Arc<Shared<T>>, bool) {
    let directory = directory();
    let mut dir = directory.lock();
    if let Some(existing) = dir.get(name).and_then(Weak::upgrade)
        && let Ok(shared) = existing.downcast::<Shared<T>>()
    {
        return (shared, false);
    }
    let shared = Arc::new(Shared {
        name: name.to_string(),
        capacity: capacity.max(1),
        state: Mutex::new(State {
            to_workers: VecDeque::new(),
            to_owner: VecDeque::new(),
            closed: false,
            owner_gone: false,
        }),
        changed: Condvar::new(),
        service: tokio::sync::Notify::new(),
        pending: AtomicBool::new(false),
        serve_again: OnceLock::new(),
    });
    let weak: Weak<Shared<T>> = Arc::downgrade(&shared);
    let weak: Weak<dyn Any + Send + Sync> = weak;
    dir.insert(name.to_string(), weak);
    (shared, true)
}

impl<T: Send + 'static> WorkQueue<T> {
    /// Opens the queue named `name` among the threads of this process only,
    /// for items of any type (no other process can reach it): created and
    /// owned by this handle if it does not exist yet.
    pub fn local(name: &str) -> Self {
        Self::local_with_capacity(name, DEFAULT_CAPACITY)
    }

    /// As [`WorkQueue::local`], with a capacity for a queue this call creates.
    pub fn local_with_capacity(name: &str, capacity: usize) -> Self {
        let (shared, owner) = open_local::<T>(name, capacity);
        WorkQueue {
            handle: Handle::Local { shared, owner },
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        match &self.handle {
            Handle::Local { shared, .. } => &shared.name,
            Handle::Remote(client) => client.name(),
        }
    }

    /// The queue's address: the id other processes reach it by.
    pub fn id(&self) -> ActorId {
        queue_id(self.name())
    }

    /// True for the handle that created the queue.
    pub fn is_owner(&self) -> bool {
        matches!(self.handle, Handle::Local { owner: true, .. })
    }

    /// True for a handle on the queue of another (the parent) process.
    pub fn is_remote(&self) -> bool {
        matches!(self.handle, Handle::Remote(_))
    }

    /// Fixes how many items this handle, when it reads from the parent's
    /// queue, takes at most per round trip and hands out one by one: `items`
    /// (1 for one item at a time, which keeps long items spread over the
    /// readers). Without it the batch adapts to the work, from
    /// [`DEFAULT_PREFETCH`] up to [`MAX_ADAPTIVE_PREFETCH`] (see the module
    /// docs). If this process dies, the items it took and had not
    /// acknowledged go back to the queue. No effect on a handle of this
    /// process.
    pub fn with_prefetch(self, items: usize) -> Self {
        if let Handle::Remote(client) = &self.handle {
            client.set_prefetch(items.max(1));
        }
        self
    }

    /// Writes `item`: from the owner to the workers, or from a worker to the
    /// owner. Waits while that direction is full. On a handle on the
    /// parent's queue, a lost parent also gives the item back (the reason
    /// is logged; [`WorkQueue::write_checked`] returns it).
    pub fn write(&self, item: T) -> Result<(), Closed<T>> {
        self.write_checked(item).map_err(|e| {
            if !matches!(e, WriteError::Closed(_)) {
                tracing::warn!(queue = self.name(), "work queue write failed: {e}");
            }
            Closed(e.into_item())
        })
    }

    /// As [`WorkQueue::write`], saying why an item was not written.
    pub fn write_checked(&self, item: T) -> Result<(), WriteError<T>> {
        let (shared, owner) = match &self.handle {
            Handle::Local { shared, owner } => (shared, *owner),
            Handle::Remote(client) => return client.write(item),
        };
        shared.serve_pending();
        let mut state = shared.lock();
        loop {
            if state.closed {
                return Err(WriteError::Closed(item));
            }
            let lane = if owner {
                &mut state.to_workers
            } else {
                &mut state.to_owner
            };
            if lane.len() < shared.capacity {
                lane.push_back(item);
                drop(state);
                shared.wake();
                return Ok(());
            }
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Reads the next item for this handle (a worker gets the owner's
    /// writes, the owner gets the workers'). Waits for one; `None` once the
    /// queue is closed and nothing is left for this handle — and, on a
    /// handle on the parent's queue, once the parent cannot be reached (the
    /// reason is logged; [`WorkQueue::read_checked`] returns it).
    pub fn read(&self) -> Option<T> {
        self.read_checked().unwrap_or_else(|e| {
            tracing::warn!(queue = self.name(), "work queue read failed: {e}");
            None
        })
    }

    /// As [`WorkQueue::read`], saying why nothing can be read when the
    /// queue is another process's: `Ok(None)` only once it is closed and
    /// drained.
    pub fn read_checked(&self) -> Result<Option<T>, ReadError> {
        let (shared, owner) = match &self.handle {
            Handle::Local { shared, owner } => (shared, *owner),
            Handle::Remote(client) => return client.read(),
        };
        shared.serve_pending();
        let mut state = shared.lock();
        loop {
            let lane = if owner {
                &mut state.to_owner
            } else {
                &mut state.to_workers
            };
            if let Some(item) = lane.pop_front() {
                drop(state);
                shared.wake();
                return Ok(Some(item));
            }
            if state.closed {
                return Ok(None);
            }
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Closes the queue: writers get their item back, readers drain what is
    /// left and then read `None`. From a handle on the parent's queue, this
    /// closes the parent's queue.
    pub fn close(&self) {
        match &self.handle {
            Handle::Local { shared, .. } => {
                shared.serve_pending();
                shared.close();
            }
            Handle::Remote(client) => client.close(),
        }
    }
}

impl<T: Send + 'static> Drop for WorkQueue<T> {
    fn drop(&mut self) {
        let Handle::Local {
            shared,
            owner: true,
        } = &self.handle
        else {
            return;
        };
        {
            let mut state = shared.lock();
            state.owner_gone = true;
            state.closed = true;
        }
        shared.wake();
        // A later `named` with this name creates a new queue.
        let directory = directory();
        let mut dir = directory.lock();
        let ours = Arc::as_ptr(shared) as *const ();
        if dir
            .get(&shared.name)
            .is_some_and(|w| w.as_ptr() as *const () == ours)
        {
            dir.remove(&shared.name);
        }
    }
}
