//! The one message set of a process tree: every message between a child's
//! process actor ([`super::ProcessActor`]) and its tree's parent actor
//! ([`super::ParentActor`]) is one of these typed rkyv messages, decoded
//! once by the actor that receives it (its `#[actor(..)]` list) and never
//! sorted by hand-written operation codes.
//!
//! | message | from → to | what it does |
//! |---|---|---|
//! | [`Hello`] | child → parent | the child is up: its process actor, node, pid, host |
//! | [`Exec`] | parent → child | run a `#[parallel::remote]` function |
//! | [`Joined`] | parent → child | the value for the child's pending `yield_value` |
//! | [`Yielded`] | child → parent | the child waits in `yield_value` |
//! | [`ToChild`] / [`ToParent`] | either way | a value from `send` |
//! | [`Credit`] | either way | the receiver read that many `send` values: send more |
//! | [`Finished`] | child → parent | the function returned (its value) or panicked |
//! | [`Calibrate`] | parent → child | run the calibration kernel; the reply is its seconds |
//! | [`Stop`] | parent → child | end the process in order (`close`) |
//! | [`CollectiveDown`] / [`CollectiveUp`] | either way | a post of a collective ([`CollectiveMsg`]) |

use rkyv::{Archive, Deserialize, Serialize};

/// Values sent with `send` that may be in flight to the other side before
/// the sender waits for it to read some (each side returns credit as it
/// reads, with [`Credit`]).
pub const SEND_WINDOW: usize = 64;

use crate::id::{ActorId, NodeId};
use crate::remote::value::Value;

/// Child → parent: the child's node joined the parent and its process
/// actor runs (asked: the child waits for the parent to take it).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Hello {
    /// The number the parent gave it (1, 2, …).
    pub number: u32,
    /// Its process actor.
    pub actor: ActorId,
    /// Its node.
    pub node: NodeId,
    /// Its OS process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// Its IP address as it reaches the parent.
    pub ip: String,
    /// The host key ([`crate::id::host_key`]): equal keys mean the same machine and network (shared memory works).
    pub host_key: String,
}

/// Parent → child: run the `#[parallel::remote]` function `name`.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Exec {
    /// The function's registered name.
    pub name: String,
    /// Its archived arguments tuple.
    pub args: Vec<u8>,
}

/// Parent → child: the value the child's pending `yield_value` returns.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Joined {
    /// The value.
    pub value: Value,
}

/// Child → parent: the child's function waits in `yield_value`.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Yielded {
    /// The child's process actor.
    pub from: ActorId,
}

/// Parent → child: a value from `Child::send` (read with `parent().receive()`).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct ToChild {
    /// The value.
    pub value: Value,
}

/// Child → parent: a value from `parent().send` (read with `Child::receive`).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct ToParent {
    /// The child's process actor.
    pub from: ActorId,
    /// The value.
    pub value: Value,
}

/// Either way: the receiver has read `n` more values sent with `send`; the
/// sender may have that many more in flight.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Credit {
    /// The child's process actor (whose link the credit is for).
    pub from: ActorId,
    /// How many values were read.
    pub n: u32,
}

/// How a child's function ended.
#[derive(Archive, Serialize, Deserialize, Debug)]
pub enum Outcome {
    /// It returned; its archived result.
    Returned(#[rkyv(with = crate::wire::AlignedBytes)] crate::wire::Buffer),
    /// It panicked or could not run; why.
    Failed(String),
}

/// Child → parent: the function ended (asked: the child exits only once the
/// parent has it).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Finished {
    /// The child's process actor.
    pub from: ActorId,
    /// How it ended.
    pub outcome: Outcome,
}

/// Parent → child: end this process in order — its node says goodbye to
/// its peers, then the process exits (how `close` and the tree's root
/// supervisor stop a child; the child's stdin closing, then a kill, are
/// the fallbacks).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Stop;

/// Parent → child: run the calibration kernel; the reply is the seconds it took.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = f64)]
pub struct Calibrate;

/// Parent → child: a post of a collective.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct CollectiveDown(pub CollectiveMsg);

/// Child → parent: a post of a collective.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct CollectiveUp {
    /// The child's process actor.
    pub from: ActorId,
    /// The post.
    pub msg: CollectiveMsg,
}

pub use collective::{ArchivedCollectiveMsg, ArchivedStarKind, CollectiveMsg, StarKind};

/// The collectives' posts. (rkyv's derive writes helper types for the
/// variants of an archived enum, without docs: allowed here.)
#[allow(missing_docs)]
mod collective {
    use rkyv::{Archive, Deserialize, Serialize};

    /// Which collective a [`CollectiveMsg::Begin`] starts: those that run as a
    /// star through the parent on the message path (`process::star`).
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StarKind {
        /// The root gets the left fold in rank order of every rank's buffer.
        Reduce,
        /// Every rank gets the root's buffer.
        Broadcast,
        /// The root gets every rank's buffer, concatenated in rank order.
        Gather,
        /// Every rank gets every rank's buffer, concatenated in rank order.
        AllGather,
        /// Every rank gets its part of the root's buffer.
        Scatter,
    }

    /// A post of a collective. On the message path every transfer goes through
    /// the parent, which forwards child-to-child chunks to the target child.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum CollectiveMsg {
        /// Parent → child: a collective begins; the child is `rank` of `ranks`.
        Start {
            /// Which collective of this parent (stale posts of another are dropped).
            round: u64,
            /// The child's rank (1..ranks).
            rank: u32,
            /// How many ranks take part (parent included).
            ranks: u32,
            /// Elements every rank reduces.
            len: u64,
        },
        /// One chunk of a schedule's step, from rank `from` to rank `to`.
        Chunk {
            /// Which collective.
            round: u64,
            /// Index into the schedule's steps.
            step: u32,
            /// Index into the schedule's chunks.
            chunk: u32,
            /// Sending rank.
            from: u32,
            /// Receiving rank.
            to: u32,
            /// The chunk's elements, each element's native bytes in order.
            bytes: Vec<u8>,
        },
        /// Child → parent: this rank ran its whole program. Parent → child:
        /// every rank did; `all_reduce` returns `Ok` only on this.
        Done {
            /// Which collective.
            round: u64,
        },
        /// Parent → child: a group formed for the coming collectives; this
        /// child is rank `rank` of `size` in it (the parent is rank 0).
        Ranks {
            /// This child's rank.
            rank: u32,
            /// How many ranks the group has.
            size: u32,
        },
        /// Parent → child: the coming collectives run in the same-host group
        /// whose shared memory is at `path` (see [`crate::collective::local`]).
        Attach {
            /// The arena's file.
            path: String,
            /// The child's rank in the group.
            rank: u32,
            /// How many ranks (the parent is rank 0).
            ranks: u32,
            /// Bytes of each rank's slot.
            slot: u64,
        },
        /// Parent → child: a reduce, broadcast, gather, all_gather or scatter
        /// begins (the star through the parent); the parent's call, which the
        /// child's must equal.
        Begin {
            /// Which collective of this parent (stale posts of another are dropped).
            round: u64,
            /// The child's rank (1..ranks).
            rank: u32,
            /// How many ranks take part (parent included).
            ranks: u32,
            /// Which collective.
            kind: StarKind,
            /// The root rank (0 for `AllGather`).
            root: u32,
            /// Elements of every rank's buffer (for `Scatter`: of `recv`).
            len: u64,
            /// Bytes of one element.
            elem: u32,
            /// The reduce operation's [`crate::reduce::ReduceOp::code`] (0
            /// when there is none).
            op: u32,
        },
        /// Child → parent: this rank's contribution to a `Begin`'s collective.
        /// Parent → child: its result (empty when it gets none).
        Part {
            /// Which collective.
            round: u64,
            /// The elements' bytes, in order (each element's archived bytes,
            /// which are its native ones).
            bytes: Vec<u8>,
        },
        /// Parent → child (children on other machines): form the group `name`
        /// of direct links with the parent and the other children — join each
        /// of `lines` but its own — ranked as `order` (the parent first).
        Mesh {
            /// The group's name.
            name: String,
            /// Every child's join line, in group order.
            lines: Vec<String>,
            /// Every member's node, in rank order.
            order: Vec<crate::id::NodeId>,
            /// Whether the group must use QUIC even on one machine.
            quic: bool,
        },
        /// Child → parent: the group `name` formed here, or why not.
        MeshJoined {
            /// The group's name.
            name: String,
            /// Why it did not form; `None` when it did.
            error: Option<String>,
        },
        /// Parent → child: the group `name` formed on every member, or not
        /// (then collectives go through the parent).
        MeshVerdict {
            /// The group's name.
            name: String,
            /// Whether the group is used.
            ready: bool,
        },
        /// Either way: the ranks made different calls (or one passed invalid
        /// arguments); every rank returns this as a misuse error.
        Refused {
            /// Which collective.
            round: u64,
            /// What differed.
            reason: String,
        },
        /// Either way: the collective failed; every rank returns an error.
        /// Round 0: the parent refused the call before it began.
        Abort {
            /// Which collective.
            round: u64,
            /// Why.
            reason: String,
        },
    }
}
