//! A queue across processes. The parent's queue is served by a
//! [`Service`]: a mailbox at the queue's id ([`queue_id`]) on the parent's
//! node, read on a thread of its own. A child's handle is a [`Client`]: two
//! mailboxes on the child's node (one for the replies to its reads, one
//! for the replies to its writes) and the parent's node to post requests to.
//!
//! One request, one reply: a read asks for up to `max` items and is answered
//! once at least one is there (or the queue is closed); a write carries its
//! item and is answered once the item is in the owner's lane (backpressure:
//! not before there is room). Replies carrying items are posted with a
//! delivery receipt; without one, the items go back to the queue.
//!
//! Acknowledgements: the service keeps every batch it handed to a reader
//! until the reader acknowledges it. A read request carries `ack`, the
//! number of the last reply whose items the reader is done with (it asks
//! on past them); a reader that read `None` sends a last `ACK`. Batches of a
//! reader whose node goes down before acknowledging go back to the front of
//! the queue. A reader asks for its next batch as soon as it starts handing
//! out the current one (one request ahead), so the round trip overlaps the
//! work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rkyv::{Archive, Deserialize, Serialize};

use crate::id::{ActorId, NodeId};
use crate::remote::value::tag_of;
use crate::remote::{Delivery, Mailbox, Node, RemoteNode, RequestError};
use crate::wire::{Buffer, DecodeError, EncodeError, WireType, aligned_copy, decode_owned, encode};

use super::{ReadError, SERVE_WAIT, Shared, WriteError};

mod client;
mod service;

pub(super) use client::{Client, Remote};
#[cfg(test)]
pub(super) use service::orphan_read;
pub(super) use service::{Host, serve, serves_children};

/// Operation codes of the posts between a queue's service and its handles.
mod op {
    /// A [`super::Request`] to the service.
    pub const REQUEST: u8 = 1;
    /// "Are you still there?" — the delivery receipt is the answer.
    pub const PROBE: u8 = 2;
    /// A [`super::Reply`] to a handle.
    pub const REPLY: u8 = 3;
}

/// What a request asks for.
mod kind {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const CLOSE: u8 = 3;
    /// Acknowledges `ack`; no reply.
    pub const ACK: u8 = 4;
}

/// How a reply answers.
mod status {
    pub const OK: u8 = 0;
    pub const CLOSED: u8 = 1;
    pub const REFUSED: u8 = 2;
}

/// Requests the service's mailbox holds before the children's posts wait.
const MAILBOX_CAPACITY: usize = 256;
/// The most items one read takes.
const MAX_BATCH: usize = 4096;
/// How many items a child's read asks its parent for per round trip unless
/// the handle says otherwise ([`super::WorkQueue::with_prefetch`]); the
/// parent shares what is queued among the readers waiting, so a reader gets
/// fewer when others wait too.
pub const DEFAULT_PREFETCH: usize = 32;
/// How often the service looks for readers whose node went down while they
/// held unacknowledged items.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// How often a handle waiting for a reply checks the service is still there.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The longest pause between two looks for the parent's node.
const ATTACH_PAUSE: Duration = Duration::from_millis(100);

/// A handle's request.
#[derive(Archive, Serialize, Deserialize, Debug)]
struct Request {
    kind: u8,
    /// The handle's mailbox for the reply.
    reply_to: ActorId,
    /// Matches the reply to the request.
    seq: u64,
    /// For a read: the most items to take.
    max: u32,
    /// For a read or an ack: the reader is done with the items of every
    /// reply up to this number.
    ack: u64,
    /// For a write: the archived item.
    item: Vec<u8>,
}

/// The service's answer to one request.
#[derive(Archive, Serialize, Deserialize, Debug)]
struct Reply {
    seq: u64,
    status: u8,
    /// For a read: the archived items, in queue order.
    items: Vec<Vec<u8>>,
    /// Why, for a refusal.
    message: String,
}

/// The id of the queue named `name`: the same in every process (a
/// name-based UUID, version 8, from SHA-256 of the name).
pub fn queue_id(name: &str) -> ActorId {
    ActorId::named("para||el work queue", name)
}
