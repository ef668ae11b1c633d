//! Groups of nodes that are not a fork tree: peers that joined each other,
//! nodes of a cluster. Each member calls [`Group::form`] with the same name
//! and the others' [`RemoteNode`](crate::remote::RemoteNode)s; the members
//! are ranked by node id, so every member agrees on the ranks without a
//! coordinator.
//!
//! ```ignore
//! // on every member, once its node has joined the others:
//! let mut group = Group::form(&node, "grads", &peers).await?;
//! group.all_reduce(&mut grads, ReduceOp::Sum).await?;
//! ```
//!
//! **Transport.** When every member runs on one machine (equal host keys: machine and network namespace),
//! rank 0 makes a shared-memory [`LocalGroup`] and the others map it: a
//! call is `memcpy`s and futex barriers, with no message. Otherwise each
//! call runs over direct QUIC links between the members — no relay: each
//! member is an actor ([`member`]), addressed by an id every member derives
//! from the group's name and that member's node, and the members send each
//! other the typed messages of [`message`]; the actor files them for the
//! calls to read. AllReduce runs the topology-aware schedule of
//! [`Topology::allreduce`] (ranks of one host adjacent in the ring, one
//! leader per host in the tree; ring for large buffers, tree for small
//! ones), `reduce` and `broadcast` the topology's tree, and `gather`,
//! `all_gather` and `scatter` send each part straight to where it goes.
//! Every call starts by exchanging its arguments, so members that make
//! different calls all get [`CollectiveError::Mismatch`], and ends with an
//! exchange of `Done`, so a call returns `Ok` only once every member has
//! its result.
//!
//! **Failure.** A member whose node goes down (the transport's heartbeat
//! timeout) or that drops its group makes every other member's call fail
//! with a typed error, and the group is broken: form a new one (another
//! name) from the survivors.

mod call;
mod calls;
mod error;
mod form;
mod inbox;
mod member;
mod message;
mod pieces;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::collective::local::LocalGroup;
use crate::id::NodeId;
use crate::reduce::Topology;

pub use error::{CollectiveError, FormError};
use member::Member;
use member::OwnMember;
use message::Leave;

/// How long [`Group::form`] waits for every member by default.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a member may look down while the group forms before `form`
/// gives up on it.
const SETTLE: Duration = Duration::from_secs(2);
/// How often a waiting member checks that the others' nodes are up.
const TICK: Duration = Duration::from_millis(50);

/// How a group's calls travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Shared memory when every member is on one machine, QUIC otherwise.
    Auto,
    /// Always QUIC (to compare the two, or test the cross-host path on one
    /// machine).
    Quic,
}

impl Transport {
    /// A group's transport as `config` says (`quic` there: always QUIC;
    /// anything else: [`Transport::Auto`]), for programs that take it from
    /// the environment (`PARALLEL_COLLECTIVE_TRANSPORT`, through
    /// [`crate::Config::from_env`]).
    pub fn from_config(config: &crate::Config) -> Self {
        match config.get_collective_transport() {
            crate::CollectiveTransport::Quic => Transport::Quic,
            _ => Transport::Auto,
        }
    }
}

/// Options of [`Group::form_with`].
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// How long to wait for every member to call `form`.
    pub timeout: Duration,
    /// How calls travel.
    pub transport: Transport,
    /// This member's machine, as the group sees it; members with equal
    /// values share memory. Default (`None`): the host key (machine and network namespace), which
    /// is right unless a test wants several "machines" on one.
    pub host: Option<String>,
    /// The members in rank order (every member passes the same list: this
    /// node and each peer once). Default (`None`): ranked by node id.
    pub order: Option<Vec<NodeId>>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            timeout: FORM_TIMEOUT,
            transport: Transport::Auto,
            host: None,
            order: None,
        }
    }
}

/// A group of nodes running collectives together; see the module docs.
pub struct Group {
    name: String,
    rank: usize,
    members: Vec<Member>,
    topology: Topology,
    /// This member's actor, which files what the others send.
    own: OwnMember,
    local: Option<LocalGroup>,
    /// Members on several machines, some sharing one: all_reduce reduces
    /// within each machine, then between one leader per machine.
    hierarchical: bool,
    /// The arena of this member's machine, when others share it.
    host_local: Option<LocalGroup>,
    call: u64,
    broken: Option<String>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("rank", &self.rank)
            .field("ranks", &self.members.len())
            .field("shared_memory", &self.local.is_some())
            .finish()
    }
}

impl Group {
    /// This member's rank (members are ranked by node id).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many members.
    pub fn ranks(&self) -> usize {
        self.members.len()
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether calls run through one shared-memory arena (every member on
    /// this machine).
    pub fn is_shared_memory(&self) -> bool {
        self.local.is_some()
    }

    /// Whether the group can take another call: no call failed in it, no
    /// member dropped it, and — for calls over QUIC — this member's node runs.
    pub fn is_usable(&self) -> bool {
        let (left, closed) = {
            let filing = self.own.inbox.lock();
            (filing.left.is_some(), filing.closed)
        };
        self.broken.is_none()
            && !left
            && !(closed && self.local.is_none())
            && self.local.as_ref().is_none_or(LocalGroup::usable)
            && self.host_local.as_ref().is_none_or(LocalGroup::usable)
    }

    /// Whether the members run on several machines and some share one:
    /// then all_reduce folds within each machine (through its arena, in rank
    /// order), then between one leader per machine over QUIC, and copies the
    /// result back through the arena.
    pub fn is_hierarchical(&self) -> bool {
        self.hierarchical
    }

    /// Where the members run, grouped by host; print it to see how each
    /// link is carried.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The node of rank `rank`.
    pub fn node_of(&self, rank: usize) -> Option<NodeId> {
        self.members.get(rank).map(|m| m.node)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(local) = &mut self.local {
            local.leave();
            return;
        }
        if let Some(host) = &mut self.host_local {
            host.leave();
        }
        // Tell the others, so none waits for this member in a call (this
        // member's actor stops when `own` is dropped, after this).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let leave = Leave {
            from: self.rank as u32,
        };
        let actors: Vec<_> = (0..self.members.len())
            .filter_map(|r| self.reachable(r).ok().flatten().cloned())
            .collect();
        runtime.spawn(async move {
            for actor in actors {
                let _ = actor.tell(leave.clone()).await;
            }
        });
    }
}
