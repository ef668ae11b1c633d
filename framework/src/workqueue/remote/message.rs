//! The messages of a work queue's actor ([`super::QueueActor`]): typed rkyv
//! messages, each sent with `ActorRef::ask` and answered by the actor; the
//! items travel as [`Value`]s, tagged with their type.
//!
//! | message | answer | what it does |
//! |---|---|---|
//! | [`Read`] | [`ReadReply`] | up to `max` items, once there is one (or the queue is closed); acknowledges earlier batches |
//! | [`Write`] | [`WriteReply`] | one item for the owner, answered once it is in the owner's lane |
//! | [`Ack`] | `()` | the reader is done with batches (its last word), or gives one back |
//! | [`Close`] | `()` | closes the queue |

use rkyv::{Archive, Deserialize, Serialize};

use crate::id::{ActorId, NodeId};
use crate::remote::value::Value;

/// A reader's request for up to `max` items. Every request also says which
/// batches (earlier answers, numbered by their request's `seq`) the reader
/// is done with and which one it still holds: the owner keeps each batch it
/// handed out until its reader acknowledges it, and gives back at once a
/// batch the reader says it never got.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ReadReply)]
pub struct Read {
    /// The reading handle.
    pub reader: ActorId,
    /// Its node: when that goes down, what the reader held goes back.
    pub node: NodeId,
    /// The tag of the item type the reader reads ([`crate::remote::value::tag_of`]).
    pub tag: u64,
    /// This request's number (1, 2, …): the number of the batch it gets.
    pub seq: u64,
    /// The most items to take.
    pub max: u32,
    /// The reader is done with every batch up to this number.
    pub ack: u64,
    /// The batch the reader is handing out now (0: none). A batch after
    /// `ack` and before `seq` that is not this one never reached the reader.
    pub keep: u64,
}

/// A writer's item for the owner.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = WriteReply)]
pub struct Write {
    /// The writing handle.
    pub writer: ActorId,
    /// Its node.
    pub node: NodeId,
    /// This write's number: a write asked again (after no answer came) with
    /// the same number is written once.
    pub seq: u64,
    /// The item.
    pub item: Value,
}

/// A reader's word without a request: it is done with the batches up to
/// `ack` (it read `None`, or is leaving), and gives back the batch
/// `give_back` (0: none), whose items it never handed out.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct Ack {
    /// The reading handle.
    pub reader: ActorId,
    /// Done with every batch up to this number.
    pub ack: u64,
    /// A batch to put back at the front of the queue (0: none).
    pub give_back: u64,
}

/// Closes the queue: writers get their items back, readers drain it.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Close;

pub use replies::{ArchivedReadReply, ArchivedWriteReply, ReadReply, WriteReply};

/// The answers. (rkyv's derive writes helper types for the variants of an
/// archived enum, without docs: allowed here.)
#[allow(missing_docs)]
mod replies {
    use rkyv::{Archive, Deserialize, Serialize};

    use crate::remote::value::Value;

    /// The answer to a [`super::Read`].
    #[derive(Archive, Serialize, Deserialize, Debug)]
    pub enum ReadReply {
        /// Items, in queue order.
        Items(Vec<Value>),
        /// The queue is closed and drained: nothing more will come.
        Closed,
        /// Nothing arrived for a while: ask again (the owner checks in on
        /// its readers this way, so no answer waits forever).
        Again,
        /// Refused: why (another item type, for instance).
        Refused(String),
    }

    /// The answer to a [`super::Write`].
    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq, Eq)]
    pub enum WriteReply {
        /// The item is in the owner's lane.
        Written,
        /// The queue is closed; the item was not written.
        Closed,
        /// The owner's lane stayed full for a while: write the item again.
        Again,
        /// Refused: why (another item type, for instance).
        Refused(String),
    }
}
