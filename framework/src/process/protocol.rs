//! What parent and child processes say to each other: operation codes of the
//! mailbox posts between them and the payloads of the control operations.

use rkyv::{Archive, Deserialize, Serialize};

use crate::id::ActorId;

/// Operation codes (the `op` of a [`crate::remote::Delivery`]).
pub mod op {
    /// Child → parent: the child is up ([`super::ChildHello`]).
    pub const HELLO: u8 = 1;
    /// Parent → child: run a registered function ([`super::ExecRequest`]).
    pub const EXEC: u8 = 2;
    /// Parent → child: the value for the child's pending `yield_value`.
    pub const JOIN: u8 = 3;
    /// Child → parent: the child waits in `yield_value`.
    pub const YIELD: u8 = 4;
    /// Either way: a value from `send`.
    pub const DATA: u8 = 5;
    /// Child → parent: the function returned or panicked ([`super::ExecOutcome`]).
    pub const DONE: u8 = 6;
    /// Parent → child: run the calibration kernel.
    pub const CALIBRATE: u8 = 7;
    /// Child → parent: seconds the calibration kernel took (an `f64`).
    pub const CALIBRATED: u8 = 8;
    /// Either way: a collective's post ([`super::CollectiveMsg`]), kept apart
    /// from `JOIN` and `DATA` so a collective never takes user values.
    pub const COLLECTIVE: u8 = 9;
    /// Flag on `DATA` and `JOIN`: the payload is a [`crate::transport::shm::ShmRef`]
    /// to a shared-memory file holding the value.
    pub const SHM: u8 = crate::remote::value::SHM_FLAG;
}

/// Environment variables of a started child. None of them is secret: the
/// cluster password reaches the child on its standard input.
pub mod env {
    /// `child` in a process started by `fork`.
    pub const ROLE: &str = "PARALLEL_ROLE";
    /// The parent's join line.
    pub const PARENT: &str = "PARALLEL_PARENT";
    /// The parent's mailbox for this child.
    pub const MAILBOX: &str = "PARALLEL_MAILBOX";
    /// The child's id among its parent's children (1, 2, ...).
    pub const ID: &str = "PARALLEL_ID";
    /// The address the child's node listens on.
    pub const LISTEN: &str = "PARALLEL_LISTEN";
    /// The parent's boot id, to know whether the child shares its machine.
    pub const PARENT_BOOT: &str = "PARALLEL_PARENT_BOOT";
    /// Value of [`ROLE`] for a child.
    pub const CHILD: &str = "child";
}

/// First post of a child to its parent.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ChildHello {
    /// The id the parent gave it.
    pub id: u32,
    /// Its OS process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// Its IP address as it reaches the parent.
    pub ip: String,
    /// The host's boot id: equal boot ids mean the same machine (shared memory works).
    pub boot_id: String,
    /// The child's own mailbox.
    pub mailbox: ActorId,
}

/// Run a `#[parallel::remote]` function.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// The function's registered name.
    pub name: String,
    /// Its archived arguments tuple.
    pub args: Vec<u8>,
}

/// How an executed function ended.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum ExecOutcome {
    /// It returned; the archived result.
    Returned(Vec<u8>),
    /// It panicked or could not run; why.
    Failed(String),
}

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
    /// Parent → child: the coming collectives run in the same-host group
    /// whose shared memory is at `path` (see `collective::local`).
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

pub use crate::remote::value::tag_of;

pub use crate::id::{boot_id, host_name};
