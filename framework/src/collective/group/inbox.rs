//! What the members of a group post to each other, and the posts a member
//! received and has not used yet.

use std::collections::HashMap;

use rkyv::{Archive, Deserialize, Serialize};

use crate::collective::local::kind;
use crate::id::NodeId;
use crate::remote::{Mailbox, RemoteNode};
use crate::wire::{decode_owned, encode};

use super::{CollectiveError, TICK};

/// The operation code of a group's posts.
pub(super) const OP: u8 = 1;

/// What travels between the members of a group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) enum Msg {
    /// A member is ready: where it runs.
    Hello {
        pid: u32,
        host: String,
        boot: String,
    },
    /// Rank 0 → all, one-machine groups: the arena to map.
    Arena { path: String, slot: u64 },
    /// A call begins; its arguments.
    Begin { call: u64, head: [u64; 6] },
    /// A chunk of a schedule's step.
    Chunk {
        call: u64,
        step: u32,
        chunk: u32,
        bytes: Vec<u8>,
    },
    /// A member's part of a call that moves whole buffers.
    Part { call: u64, bytes: Vec<u8> },
    /// The sender finished the call.
    Done { call: u64 },
    /// The sender gave up the call.
    Abort { call: u64, reason: String },
    /// The sender dropped the group.
    Leave,
}

/// What a received post answers, with its sender's rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Arena,
    Begin(u64),
    Chunk(u64, u32, u32),
    Part(u64),
    Done(u64),
}

pub(super) const ALL_REDUCE: u64 = kind::ALL_REDUCE as u64;
pub(super) const BROADCAST: u64 = kind::BROADCAST as u64;
pub(super) const REDUCE: u64 = kind::REDUCE as u64;
pub(super) const GATHER: u64 = kind::GATHER as u64;
pub(super) const SCATTER: u64 = kind::SCATTER as u64;
pub(super) const ALL_GATHER: u64 = kind::ALL_GATHER as u64;
pub(super) const BARRIER: u64 = kind::BARRIER as u64;

/// One member as the others know it.
#[derive(Clone)]
pub(super) struct Member {
    pub(super) node: NodeId,
    /// `None` for this member itself.
    pub(super) remote: Option<RemoteNode>,
    pub(super) pid: u32,
    pub(super) boot: String,
}

/// The posts a member received and has not used yet.
pub(super) struct Inbox {
    pub(super) mailbox: Mailbox,
    pub(super) ranks: HashMap<NodeId, usize>,
    pub(super) pending: HashMap<(Key, usize), Msg>,
    pub(super) aborted: HashMap<u64, (usize, String)>,
    pub(super) left: Option<usize>,
}

impl Inbox {
    /// Files one delivery from `rank`.
    pub(super) fn file(&mut self, rank: usize, msg: Msg) {
        let key = match &msg {
            Msg::Hello { .. } => return,
            Msg::Arena { .. } => Key::Arena,
            Msg::Begin { call, .. } => Key::Begin(*call),
            Msg::Chunk {
                call, step, chunk, ..
            } => Key::Chunk(*call, *step, *chunk),
            Msg::Part { call, .. } => Key::Part(*call),
            Msg::Done { call } => Key::Done(*call),
            Msg::Abort { call, reason } => {
                self.aborted.entry(*call).or_insert((rank, reason.clone()));
                return;
            }
            Msg::Leave => {
                self.left.get_or_insert(rank);
                return;
            }
        };
        self.pending.insert((key, rank), msg);
    }

    /// Reads one delivery (or times out after [`TICK`]); false when the
    /// node is gone.
    pub(super) async fn pump(&mut self) -> bool {
        match tokio::time::timeout(TICK, self.mailbox.recv()).await {
            Ok(Some(d)) => {
                self.take_in(d);
                true
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Files every delivery already in the mailbox, without waiting.
    pub(super) fn drain(&mut self) {
        while let Some(d) = self.mailbox.try_recv() {
            self.take_in(d);
        }
    }

    fn take_in(&mut self, d: crate::remote::Delivery) {
        let Some(&rank) = self.ranks.get(&d.from) else {
            tracing::debug!(from = %d.from, "group: a post from a node that is not a member was dropped");
            return;
        };
        match decode_owned::<Msg>(&d.payload) {
            Ok(msg) => self.file(rank, msg),
            Err(e) => tracing::warn!(rank, "group: an undecodable post was dropped: {e}"),
        }
    }
}

pub(super) fn encoded(msg: &Msg) -> Result<crate::wire::Buffer, CollectiveError> {
    encode(msg).map_err(|e| CollectiveError::Encode(e.to_string()))
}

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
