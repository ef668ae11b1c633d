//! Why forming a group or one of its calls failed.

use crate::collective::local::GroupError;
use crate::id::NodeId;

/// Why [`super::Group::form`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The peers list is wrong.
    #[error("{0}")]
    Peers(String),
    /// This node already has a group of that name open.
    #[error("a group named {0:?} is already open on this node; drop it first or use another name")]
    NameInUse(String),
    /// Some members never called `form` with this name in time.
    #[error(
        "group {name:?}: no answer from {missing:?} within {secs} s; call Group::form with the same name on every member"
    )]
    Timeout {
        /// The group's name.
        name: String,
        /// The members that did not answer.
        missing: Vec<NodeId>,
        /// The timeout, in seconds.
        secs: u64,
    },
    /// A member's node went down while forming.
    #[error("member {0} went down while the group formed; form it again without that member")]
    PeerGone(NodeId),
    /// The shared memory of a one-machine group failed.
    #[error(transparent)]
    Memory(#[from] GroupError),
    /// A post could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::wire::EncodeError),
    /// There is no actix runtime to run this member's actor on.
    #[error("{0}")]
    Runtime(String),
}

/// Why a call of a [`super::Group`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectiveError {
    /// A member's node went down or it dropped its group.
    #[error(
        "rank {rank} ({node}) left the group: {why}; form a new group of the survivors and call again"
    )]
    RankGone {
        /// Its rank.
        rank: usize,
        /// Its node.
        node: NodeId,
        /// What happened.
        why: String,
    },
    /// A member dropped its group.
    #[error("rank {rank} ({node}) dropped the group; form a new one to go on")]
    Left {
        /// Its rank.
        rank: usize,
        /// Its node.
        node: NodeId,
    },
    /// Another member gave up the call.
    #[error("rank {rank} aborted the call: {reason}")]
    Aborted {
        /// Its rank.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// The members made different calls (the group stays usable).
    #[error("the members made different calls: {0}; every member must make the same call")]
    Mismatch(String),
    /// An earlier call failed and broke the group.
    #[error("the group is broken ({0}); form a new group of the survivors")]
    Broken(String),
    /// The same-host path failed.
    #[error(transparent)]
    Local(#[from] GroupError),
    /// A post could not be encoded.
    #[error("a post could not be encoded: {0}")]
    Encode(String),
}

impl CollectiveError {
    /// Whether the call failed because rank `rank` dropped the group (or, in
    /// a machine's arena, its member of index `rank` left it).
    pub fn dropped_by(&self, rank: usize) -> bool {
        match self {
            CollectiveError::Left { rank: r, .. } => *r == rank,
            CollectiveError::Local(GroupError::Left { rank: r }) => *r == rank,
            _ => false,
        }
    }
}
