//! What a member's actor filed for its group's calls to read: the posts
//! it received and has not used yet, keyed by what they answer and who
//! sent them, and a wake-up for the call that waits on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::actor::Received;
use crate::collective::local::kind;
use crate::id::NodeId;

use super::message::{Chunk, Part};

/// What a filed post answers (with its sender's rank, the key it is filed under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Arena,
    Begin(u64),
    /// A piece of a chunk: call, step, chunk, piece.
    Chunk(u64, u32, u32, u32),
    Part(u64),
    Done(u64),
}

/// A post filed for a call to read.
pub(super) enum Filed {
    /// The arena of this member's machine.
    Arena { path: String, slot: u64 },
    /// Another member's arguments.
    Begin([u64; 6]),
    /// A chunk's or a part's bytes.
    Bytes(Bytes),
    /// Another member finished the call.
    Done,
}

/// The bytes of a [`Chunk`] or a [`Part`]: where they lie in the received
/// message (no copy), or owned when the message did not cross a wire.
pub(super) enum Bytes {
    Owned(Arc<[u8]>),
    Chunk(Received<Chunk>),
    Part(Received<Part>),
}

impl Bytes {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(bytes) => bytes,
            Bytes::Chunk(m) => m.bytes.as_slice(),
            Bytes::Part(m) => m.bytes.as_slice(),
        }
    }
}

/// What another member said in its `Hello`: pid, host name, machine.
pub(super) type Hello = (u32, String, String);

/// The posts filed for one member's group.
#[derive(Default)]
pub(super) struct Filing {
    /// The members whose actors said hello, by node.
    pub(super) hellos: HashMap<NodeId, Hello>,
    pub(super) pending: HashMap<(Key, usize), Filed>,
    /// The first abort of each call: who and why.
    pub(super) aborted: HashMap<u64, (usize, String)>,
    /// The first member that dropped the group.
    pub(super) left: Option<usize>,
    /// The member's actor stopped (its node shut down, or the group was dropped).
    pub(super) closed: bool,
    /// What the waiting call looks for: only that post wakes it (aborts,
    /// leaves, hellos and arenas wake it always).
    pub(super) awaited: Option<(Key, usize)>,
}

impl Filing {
    /// Files `filed` from `rank`; true when the waiting call looks for it.
    pub(super) fn file(&mut self, key: Key, rank: usize, filed: Filed) -> bool {
        self.pending.insert((key, rank), filed);
        self.awaited == Some((key, rank))
    }
}

/// What a member's actor filed, shared with its group's calls.
#[derive(Default)]
pub(super) struct Inbox {
    filing: Mutex<Filing>,
    changed: Notify,
}

impl Inbox {
    /// The filed posts, locked (never held across an await).
    pub(super) fn lock(&self) -> MutexGuard<'_, Filing> {
        self.filing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the filed posts and wakes the call that waits on them.
    pub(super) fn update(&self, f: impl FnOnce(&mut Filing)) {
        self.update_if(|s| {
            f(s);
            true
        });
    }

    /// Changes the filed posts, and wakes the call that waits on them when
    /// `f` says the change is for it (a wake-up on another thread costs
    /// more than the look it leads to).
    pub(super) fn update_if(&self, f: impl FnOnce(&mut Filing) -> bool) {
        let wake = f(&mut self.lock());
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// A future that completes at the next change. Enabled at once, so a
    /// change after this call (and before the future is awaited) wakes it.
    pub(super) fn changed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut changed = Box::pin(self.changed.notified());
        changed.as_mut().enable();
        changed
    }
}

pub(super) const ALL_REDUCE: u64 = kind::ALL_REDUCE as u64;
pub(super) const BROADCAST: u64 = kind::BROADCAST as u64;
pub(super) const REDUCE: u64 = kind::REDUCE as u64;
pub(super) const GATHER: u64 = kind::GATHER as u64;
pub(super) const SCATTER: u64 = kind::SCATTER as u64;
pub(super) const ALL_GATHER: u64 = kind::ALL_GATHER as u64;
pub(super) const BARRIER: u64 = kind::BARRIER as u64;

/// A call's arguments: kind, element size, op, root, count, bad.
pub(super) fn head(
    kind: u64,
    elem: usize,
    op: u32,
    root: usize,
    count: usize,
    bad: u64,
) -> [u64; 6] {
    [
        kind,
        elem as u64,
        u64::from(op),
        root as u64,
        count as u64,
        bad,
    ]
}

pub(super) fn head_text(h: &[u64; 6]) -> String {
    format!(
        "{} of {} elements of {} bytes (op {}, root {})",
        kind::name(h[0] as u32),
        h[4],
        h[1],
        h[2],
        h[3]
    )
}

pub(super) fn bad_text(rank: usize, h: &[u64; 6], ranks: usize) -> String {
    kind::bad_text(h[5] as u32, rank, h[3], h[4], ranks)
}
