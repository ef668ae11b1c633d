//! Groups of nodes that are not a fork tree: peers that joined each other,
//! nodes of a cluster. Each member calls [`Group::form`] with the same name
//! and the others' [`RemoteNode`]s; the members are ranked by node id, so
//! every member agrees on the ranks without a coordinator.
//!
//! ```ignore
//! // on every member, once its node has joined the others:
//! let mut group = Group::form(&node, "grads", &peers).await?;
//! group.all_reduce(&mut grads, ReduceOp::Sum).await?;
//! ```
//!
//! **Transport.** When every member runs on one machine (equal boot ids),
//! rank 0 makes a shared-memory [`LocalGroup`] and the others map it: a
//! call is `memcpy`s and futex barriers, with no message. Otherwise each
//! call runs over direct QUIC links between the members — no relay: the
//! group mailbox of each member (an actor id derived from the group's name)
//! takes the others' posts. AllReduce runs the topology-aware schedule of
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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rkyv::{Archive, Deserialize, Serialize};

use crate::actor::{Element, copy_elements, element_bytes, elements_from_bytes};
use crate::id::{ActorId, NodeId, boot_id, host_name};
use crate::process::allreduce::ReduceBuffer;
use crate::process::local_group::{DEFAULT_SLOT, GroupError, LocalGroup, Wait, kind};
use crate::reduce::{Action, Place, ReduceOp, Reducible, Schedule, Topology};
use crate::remote::{Mailbox, Node, RemoteNode};
use crate::wire::{decode_owned, encode};

/// How long [`Group::form`] waits for every member by default.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// The operation code of a group's posts.
const OP: u8 = 1;
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
    /// machine); also chosen by `PARALLEL_COLLECTIVE_TRANSPORT=quic`.
    Quic,
}

/// Options of [`Group::form_with`].
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// How long to wait for every member to call `form`.
    pub timeout: Duration,
    /// How calls travel.
    pub transport: Transport,
}

impl Default for GroupOptions {
    fn default() -> Self {
        let quic = std::env::var(crate::process::collectives::TRANSPORT_VAR)
            .is_ok_and(|v| v.eq_ignore_ascii_case("quic"));
        Self {
            timeout: FORM_TIMEOUT,
            transport: if quic {
                Transport::Quic
            } else {
                Transport::Auto
            },
        }
    }
}

/// Why [`Group::form`] failed.
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
}

/// Why a call of a [`Group`] failed.
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

/// What travels between the members of a group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Msg {
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
enum Key {
    Arena,
    Begin(u64),
    Chunk(u64, u32, u32),
    Part(u64),
    Done(u64),
}

const ALL_REDUCE: u64 = kind::ALL_REDUCE as u64;
const BROADCAST: u64 = kind::BROADCAST as u64;
const REDUCE: u64 = kind::REDUCE as u64;
const GATHER: u64 = kind::GATHER as u64;
const SCATTER: u64 = kind::SCATTER as u64;
const ALL_GATHER: u64 = kind::ALL_GATHER as u64;
const BARRIER: u64 = kind::BARRIER as u64;

/// One member as the others know it.
#[derive(Clone)]
struct Member {
    node: NodeId,
    /// `None` for this member itself.
    remote: Option<RemoteNode>,
    pid: u32,
    boot: String,
}

/// The posts a member received and has not used yet.
struct Inbox {
    mailbox: Mailbox,
    ranks: HashMap<NodeId, usize>,
    pending: HashMap<(Key, usize), Msg>,
    aborted: HashMap<u64, (usize, String)>,
    left: Option<usize>,
}

impl Inbox {
    /// Files one delivery from `rank`.
    fn file(&mut self, rank: usize, msg: Msg) {
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
    async fn pump(&mut self) -> bool {
        match tokio::time::timeout(TICK, self.mailbox.recv()).await {
            Ok(Some(d)) => {
                let Some(&rank) = self.ranks.get(&d.from) else {
                    tracing::debug!(from = %d.from, "group: a post from a node that is not a member was dropped");
                    return true;
                };
                match decode_owned::<Msg>(&d.payload) {
                    Ok(msg) => self.file(rank, msg),
                    Err(e) => tracing::warn!(rank, "group: an undecodable post was dropped: {e}"),
                }
                true
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

/// A group of nodes running collectives together; see the module docs.
pub struct Group {
    name: String,
    rank: usize,
    members: Vec<Member>,
    topology: Topology,
    inbox: Inbox,
    local: Option<LocalGroup>,
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

fn encoded(msg: &Msg) -> Result<crate::wire::Buffer, CollectiveError> {
    encode(msg).map_err(|e| CollectiveError::Encode(e.to_string()))
}

/// The places of `members`, labelled by host name, or host name and boot id
/// where two machines share a name.
fn places(members: &[Member], hosts: &[String]) -> Vec<Place> {
    members
        .iter()
        .zip(hosts)
        .map(|(m, host)| {
            let clash = members
                .iter()
                .zip(hosts)
                .any(|(o, h)| h == host && o.boot != m.boot);
            let label = if clash {
                format!("{host}/{}", m.boot.get(..8).unwrap_or(&m.boot))
            } else {
                host.clone()
            };
            Place::new(label, m.pid)
        })
        .collect()
}

impl Group {
    /// Forms the group `name` of this node and `peers` (every member calls
    /// it with the others), waiting at most [`FORM_TIMEOUT`] for all of them.
    pub async fn form(node: &Node, name: &str, peers: &[RemoteNode]) -> Result<Self, FormError> {
        Self::form_with(node, name, peers, GroupOptions::default()).await
    }

    /// [`Group::form`] with options.
    pub async fn form_with(
        node: &Node,
        name: &str,
        peers: &[RemoteNode],
        options: GroupOptions,
    ) -> Result<Self, FormError> {
        let me = node.id();
        let mut seen = HashSet::new();
        for p in peers {
            if p.id() == me {
                return Err(FormError::Peers(format!(
                    "{me} is this node; list only the other members as peers"
                )));
            }
            if !seen.insert(p.id()) {
                return Err(FormError::Peers(format!("{} is listed twice", p.id())));
            }
        }
        let id = ActorId::named("para||el group", name);
        let mailbox = node
            .open_mailbox_at(id, 4096)
            .map_err(|_| FormError::NameInUse(name.to_owned()))?;
        let mut inbox = Inbox {
            mailbox,
            ranks: HashMap::new(),
            pending: HashMap::new(),
            aborted: HashMap::new(),
            left: None,
        };
        let hello = encode(&Msg::Hello {
            pid: std::process::id(),
            host: host_name(),
            boot: boot_id(),
        })?;
        let deadline = Instant::now() + options.timeout;
        let mut unsent: Vec<&RemoteNode> = peers.iter().collect();
        let mut hellos: HashMap<NodeId, (u32, String, String)> = HashMap::new();
        let mut early: Vec<(NodeId, Msg)> = Vec::new();
        let mut down_since: HashMap<NodeId, Instant> = HashMap::new();
        loop {
            let mut still = Vec::new();
            for p in unsent {
                match p.post_confirmed(id, OP, 0, hello.clone()).await {
                    Ok(()) => {}
                    // Its mailbox is not open yet (it has not called
                    // `form`), or it is slow to confirm: try again.
                    // A peer that seems down is checked below.
                    Err(_) => still.push(p),
                }
            }
            unsent = still;
            while let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_millis(20), inbox.mailbox.recv()).await
            {
                if !seen.contains(&d.from) {
                    continue;
                }
                match decode_owned::<Msg>(&d.payload) {
                    Ok(Msg::Hello { pid, host, boot }) => {
                        hellos.insert(d.from, (pid, host, boot));
                    }
                    Ok(msg) => early.push((d.from, msg)),
                    Err(e) => {
                        tracing::warn!(from = %d.from, "group: an undecodable post was dropped: {e}")
                    }
                }
            }
            if unsent.is_empty() && hellos.len() == peers.len() {
                break;
            }
            // A connection that lost to the other direction's (two nodes
            // that joined each other at once) is replaced within moments.
            for p in peers {
                if p.is_alive() {
                    down_since.remove(&p.id());
                } else if down_since
                    .entry(p.id())
                    .or_insert_with(Instant::now)
                    .elapsed()
                    > SETTLE
                {
                    return Err(FormError::PeerGone(p.id()));
                }
            }
            if Instant::now() >= deadline {
                let missing = peers
                    .iter()
                    .map(RemoteNode::id)
                    .filter(|n| !hellos.contains_key(n) || unsent.iter().any(|p| p.id() == *n))
                    .collect();
                return Err(FormError::Timeout {
                    name: name.to_owned(),
                    missing,
                    secs: options.timeout.as_secs(),
                });
            }
        }
        let mut all: Vec<(Member, String)> = vec![(
            Member {
                node: me,
                remote: None,
                pid: std::process::id(),
                boot: boot_id(),
            },
            host_name(),
        )];
        for p in peers {
            let (pid, host, boot) = hellos.remove(&p.id()).unwrap_or_default();
            all.push((
                Member {
                    node: p.id(),
                    remote: Some(p.clone()),
                    pid,
                    boot,
                },
                host,
            ));
        }
        all.sort_by_key(|(m, _)| m.node);
        let (members, hosts): (Vec<Member>, Vec<String>) = all.into_iter().unzip();
        let rank = members.iter().position(|m| m.node == me).unwrap_or(0);
        inbox.ranks = members
            .iter()
            .enumerate()
            .map(|(r, m)| (m.node, r))
            .collect();
        for (from, msg) in early {
            if let Some(&r) = inbox.ranks.get(&from) {
                inbox.file(r, msg);
            }
        }
        let topology =
            Topology::new(places(&members, &hosts)).map_err(|e| FormError::Peers(e.to_string()))?;
        let mut group = Group {
            name: name.to_owned(),
            rank,
            members,
            topology,
            inbox,
            local: None,
            call: 0,
            broken: None,
        };
        let one_machine = group
            .members
            .iter()
            .all(|m| !m.boot.is_empty() && m.boot == group.members[0].boot);
        if options.transport == Transport::Auto && one_machine && group.members.len() > 1 {
            group.local = Some(group.make_arena(deadline).await?);
        }
        Ok(group)
    }

    /// Rank 0 makes the one-machine arena and tells the others; they map it.
    async fn make_arena(&mut self, deadline: Instant) -> Result<LocalGroup, FormError> {
        if self.rank == 0 {
            let pids: Vec<u32> = self.members.iter().map(|m| m.pid).collect();
            let local = LocalGroup::create(&pids, DEFAULT_SLOT, Wait::Cooperate)?;
            let msg = encode(&Msg::Arena {
                path: local.path().to_owned(),
                slot: local.slot() as u64,
            })?;
            for m in &self.members[1..] {
                if let Some(remote) = &m.remote {
                    remote
                        .post_confirmed(self.inbox.mailbox.id(), OP, 0, msg.clone())
                        .await
                        .map_err(|_| FormError::PeerGone(m.node))?;
                }
            }
            return Ok(local);
        }
        loop {
            if let Some(Msg::Arena { path, slot }) = self.inbox.pending.remove(&(Key::Arena, 0)) {
                let slot = usize::try_from(slot).unwrap_or(0);
                let ranks = self.members.len();
                return Ok(LocalGroup::open(
                    &path,
                    self.rank,
                    ranks,
                    slot,
                    Wait::Cooperate,
                )?);
            }
            if Instant::now() >= deadline {
                return Err(FormError::Timeout {
                    name: self.name.clone(),
                    missing: vec![self.members[0].node],
                    secs: 0,
                });
            }
            if !self.inbox.pump().await {
                return Err(FormError::PeerGone(self.members[0].node));
            }
        }
    }

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

    /// Where the members run, grouped by host; print it to see how each
    /// link is carried.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The node of rank `rank`.
    pub fn node_of(&self, rank: usize) -> Option<NodeId> {
        self.members.get(rank).map(|m| m.node)
    }

    fn ready(&self) -> Result<(), CollectiveError> {
        match &self.broken {
            Some(why) => Err(CollectiveError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    /// Records a failure that breaks the group, tells the others, and
    /// returns it.
    async fn fail(&mut self, e: CollectiveError) -> CollectiveError {
        if matches!(e, CollectiveError::Mismatch(_)) {
            return e;
        }
        self.broken.get_or_insert_with(|| e.to_string());
        if let Ok(bytes) = encoded(&Msg::Abort {
            call: self.call,
            reason: e.to_string(),
        }) {
            for m in &self.members {
                if let Some(remote) = &m.remote
                    && remote.is_alive()
                {
                    let _ = remote
                        .post(self.inbox.mailbox.id(), OP, 0, bytes.clone())
                        .await;
                }
            }
        }
        e
    }

    async fn post(&self, to: usize, msg: &Msg) -> Result<(), CollectiveError> {
        let m = &self.members[to];
        let Some(remote) = &m.remote else {
            return Ok(());
        };
        remote
            .post(self.inbox.mailbox.id(), OP, 0, encoded(msg)?)
            .await
            .map_err(|e| CollectiveError::RankGone {
                rank: to,
                node: m.node,
                why: e.to_string(),
            })
    }

    async fn post_all(&self, msg: &Msg) -> Result<(), CollectiveError> {
        for r in 0..self.members.len() {
            if r != self.rank {
                self.post(r, msg).await?;
            }
        }
        Ok(())
    }

    /// Waits for the post `key` from `from`.
    async fn take(&mut self, key: Key, from: usize) -> Result<Msg, CollectiveError> {
        loop {
            if let Some(msg) = self.inbox.pending.remove(&(key, from)) {
                return Ok(msg);
            }
            if let Some((rank, reason)) = self.inbox.aborted.get(&self.call) {
                return Err(CollectiveError::Aborted {
                    rank: *rank,
                    reason: reason.clone(),
                });
            }
            if let Some(rank) = self.inbox.left {
                return Err(CollectiveError::RankGone {
                    rank,
                    node: self.members[rank].node,
                    why: "it dropped the group".into(),
                });
            }
            for (rank, m) in self.members.iter().enumerate() {
                if let Some(remote) = &m.remote
                    && !remote.is_alive()
                {
                    return Err(CollectiveError::RankGone {
                        rank,
                        node: m.node,
                        why: "its node went down".into(),
                    });
                }
            }
            if !self.inbox.pump().await {
                return Err(CollectiveError::Broken("this node shut down".into()));
            }
        }
    }

    /// Runs one call over QUIC: arguments exchanged, `moves` run, `Done`
    /// exchanged. Any failure but a mismatch breaks the group.
    async fn exchange_call<R>(
        &mut self,
        head: [u64; 6],
        moves: impl AsyncFnOnce(&mut Self) -> Result<R, CollectiveError>,
    ) -> Result<R, CollectiveError> {
        self.ready()?;
        self.call += 1;
        let result = self.run_call(head, moves).await;
        match result {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn run_call<R>(
        &mut self,
        head: [u64; 6],
        moves: impl AsyncFnOnce(&mut Self) -> Result<R, CollectiveError>,
    ) -> Result<R, CollectiveError> {
        let call = self.call;
        self.post_all(&Msg::Begin { call, head }).await?;
        let mut disagree = None;
        for r in 0..self.members.len() {
            if r == self.rank {
                continue;
            }
            let Msg::Begin { head: theirs, .. } = self.take(Key::Begin(call), r).await? else {
                continue;
            };
            if theirs != head && disagree.is_none() {
                disagree = Some((r, theirs));
            }
        }
        // Every member compares every member's arguments with its own.
        let mine = head;
        if let Some(bad) = std::iter::once((self.rank, mine))
            .chain(disagree)
            .find(|(_, h)| h[5] != 0)
        {
            return Err(CollectiveError::Mismatch(bad_text(
                bad.0,
                &bad.1,
                self.ranks(),
            )));
        }
        if let Some((r, theirs)) = disagree {
            return Err(CollectiveError::Mismatch(format!(
                "rank {} called {}, rank {r} called {}",
                self.rank,
                head_text(&mine),
                head_text(&theirs)
            )));
        }
        if head[0] == BARRIER {
            return moves(self).await;
        }
        let out = moves(self).await?;
        self.post_all(&Msg::Done { call }).await?;
        for r in 0..self.members.len() {
            if r != self.rank {
                self.take(Key::Done(call), r).await?;
            }
        }
        Ok(out)
    }

    /// Sends this rank's chunks of `schedule` and applies the ones it
    /// receives, in the schedule's order.
    async fn run_schedule<T: Reducible>(
        &mut self,
        schedule: &Schedule,
        data: &mut [T],
        op: &ReduceOp<T>,
    ) -> Result<(), CollectiveError> {
        let call = self.call;
        for rs in schedule.program(self.rank) {
            for t in &rs.sends {
                let range = schedule.chunks()[t.chunk].clone();
                let msg = Msg::Chunk {
                    call,
                    step: rs.step as u32,
                    chunk: t.chunk as u32,
                    bytes: element_bytes(&data[range]).to_vec(),
                };
                self.post(t.to, &msg).await?;
            }
            for t in &rs.receives {
                let key = Key::Chunk(call, rs.step as u32, t.chunk as u32);
                let Msg::Chunk { bytes, .. } = self.take(key, t.from).await? else {
                    continue;
                };
                let range = schedule.chunks()[t.chunk].clone();
                let incoming: Vec<T> = elements_from_bytes(&bytes)
                    .filter(|v: &Vec<T>| v.len() == range.len())
                    .ok_or_else(|| self.wrong_size(t.from, bytes.len()))?;
                let local = &mut data[range];
                match t.action {
                    Action::ReduceIncomingFirst => {
                        let mut acc = incoming;
                        op.apply(&mut acc, local);
                        local.copy_from_slice(&acc);
                    }
                    Action::ReduceLocalFirst => op.apply(local, &incoming),
                    Action::Copy => local.copy_from_slice(&incoming),
                }
            }
        }
        Ok(())
    }

    fn wrong_size(&self, from: usize, bytes: usize) -> CollectiveError {
        CollectiveError::Aborted {
            rank: from,
            reason: format!("it sent {bytes} bytes, not the size the call agreed on"),
        }
    }

    async fn take_part<T: Element>(
        &mut self,
        from: usize,
        out: &mut [T],
    ) -> Result<(), CollectiveError> {
        let Msg::Part { bytes, .. } = self.take(Key::Part(self.call), from).await? else {
            return Err(self.wrong_size(from, 0));
        };
        if copy_elements(out, &bytes) {
            Ok(())
        } else {
            Err(self.wrong_size(from, bytes.len()))
        }
    }

    /// Every member ends with the same bits: the fold of every member's
    /// `data` (through shared memory the left fold in rank order; over QUIC
    /// the order of [`Topology::allreduce`]'s schedule, see
    /// [`Schedule::reference`]).
    pub async fn all_reduce<T, B>(
        &mut self,
        data: &mut B,
        op: ReduceOp<T>,
    ) -> Result<(), CollectiveError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        if let Some(local) = &mut self.local {
            return Ok(local.all_reduce(data, &op).await?);
        }
        let head = head(ALL_REDUCE, size_of::<T>(), op.code(), 0, data.len(), 0);
        let schedule = self.topology.allreduce(data.len(), size_of::<T>());
        self.exchange_call(head, async |g: &mut Self| {
            g.run_schedule(&schedule, data, &op).await
        })
        .await
    }

    /// Rank `root` ends with the fold of every member's `data`; the others
    /// keep theirs.
    pub async fn reduce<T, B>(
        &mut self,
        data: &mut B,
        op: ReduceOp<T>,
        root: usize,
    ) -> Result<(), CollectiveError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        if let Some(local) = &mut self.local {
            return Ok(local.reduce(data, &op, root).await?);
        }
        let bad = self.bad_root(root);
        let head = head(REDUCE, size_of::<T>(), op.code(), root, data.len(), bad);
        let tree = self.topology.tree();
        let schedule = Schedule::tree_reduce(data.len(), &tree);
        self.exchange_call(head, async |g: &mut Self| {
            let mut work = data.to_vec();
            g.run_schedule(&schedule, &mut work, &op).await?;
            let top = tree.root();
            if top == root {
                if g.rank == root {
                    data.copy_from_slice(&work);
                }
            } else if g.rank == top {
                let part = g.part(&work);
                g.post(root, &part).await?;
            } else if g.rank == root {
                g.take_part(top, data).await?;
            }
            Ok(())
        })
        .await
    }

    /// Every member ends with rank `root`'s `data`.
    pub async fn broadcast<T, B>(
        &mut self,
        data: &mut B,
        root: usize,
    ) -> Result<(), CollectiveError>
    where
        T: Element,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        if let Some(local) = &mut self.local {
            return Ok(local.broadcast(data, root).await?);
        }
        let bad = self.bad_root(root);
        let head = head(BROADCAST, size_of::<T>(), 0, root, data.len(), bad);
        let tree = self.topology.tree();
        self.exchange_call(head, async |g: &mut Self| {
            let top = tree.root();
            if root != top {
                if g.rank == root {
                    let part = g.part(data);
                    g.post(top, &part).await?;
                } else if g.rank == top {
                    g.take_part(root, data).await?;
                }
            }
            // Down the tree, children in order: every member copies its
            // parent's buffer.
            if let Some(parent) = tree.parent(g.rank) {
                g.take_part(parent, data).await?;
            }
            let part = g.part(data);
            for &child in tree.children(g.rank) {
                g.post(child, &part).await?;
            }
            Ok(())
        })
        .await
    }

    /// Rank `root` gets every member's `data` concatenated in rank order
    /// (`Some`); the others get `None`.
    pub async fn gather<T: Element>(
        &mut self,
        data: &[T],
        root: usize,
    ) -> Result<Option<Vec<T>>, CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.gather(data, root).await?);
        }
        let bad = self.bad_root(root);
        let head = head(GATHER, size_of::<T>(), 0, root, data.len(), bad);
        self.exchange_call(head, async |g: &mut Self| {
            if g.rank != root {
                let part = g.part(data);
                g.post(root, &part).await?;
                return Ok(None);
            }
            g.collect(data).await.map(Some)
        })
        .await
    }

    /// Every member gets every member's `data` concatenated in rank order.
    pub async fn all_gather<T: Element>(&mut self, data: &[T]) -> Result<Vec<T>, CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.all_gather(data).await?);
        }
        let head = head(ALL_GATHER, size_of::<T>(), 0, 0, data.len(), 0);
        self.exchange_call(head, async |g: &mut Self| {
            let part = g.part(data);
            g.post_all(&part).await?;
            g.collect(data).await
        })
        .await
    }

    /// Every member's part in rank order, this member's own being `mine`.
    async fn collect<T: Element>(&mut self, mine: &[T]) -> Result<Vec<T>, CollectiveError> {
        let n = mine.len();
        let mut out = Vec::with_capacity(n * self.ranks());
        for r in 0..self.ranks() {
            if r == self.rank {
                out.extend_from_slice(mine);
                continue;
            }
            let start = out.len();
            out.extend_from_slice(mine);
            self.take_part(r, &mut out[start..]).await?;
        }
        Ok(out)
    }

    /// Rank `root`'s `send` (`ranks × recv.len()` elements, one part per
    /// member in rank order) is split: each member gets its part in `recv`.
    pub async fn scatter<T: Element>(
        &mut self,
        send: &[T],
        recv: &mut [T],
        root: usize,
    ) -> Result<(), CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.scatter(send, recv, root).await?);
        }
        let n = recv.len();
        let mut bad = self.bad_root(root);
        if bad == 0 && self.rank == root && send.len() != n * self.ranks() {
            bad = u64::from(kind::BAD_SCATTER_LEN);
        }
        let head = head(SCATTER, size_of::<T>(), 0, root, n, bad);
        self.exchange_call(head, async |g: &mut Self| {
            if g.rank == root {
                for r in 0..g.ranks() {
                    let mine = &send[r * n..(r + 1) * n];
                    if r == g.rank {
                        recv.copy_from_slice(mine);
                    } else {
                        let part = g.part(mine);
                        g.post(r, &part).await?;
                    }
                }
                Ok(())
            } else {
                g.take_part(root, recv).await
            }
        })
        .await
    }

    /// Returns once every member has called it.
    pub async fn barrier(&mut self) -> Result<(), CollectiveError> {
        if let Some(local) = &mut self.local {
            return Ok(local.barrier_call().await?);
        }
        self.exchange_call(head(BARRIER, 0, 0, 0, 0, 0), async |_: &mut Self| Ok(()))
            .await
    }

    fn bad_root(&self, root: usize) -> u64 {
        if root >= self.ranks() {
            u64::from(kind::BAD_ROOT)
        } else {
            0
        }
    }

    /// This call's `Part` holding `data`.
    fn part<T: Element>(&self, data: &[T]) -> Msg {
        Msg::Part {
            call: self.call,
            bytes: element_bytes(data).to_vec(),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(local) = &mut self.local {
            local.leave();
            return;
        }
        // Tell the others, so none waits for this member in a call.
        let Ok(bytes) = encoded(&Msg::Leave) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let id = self.inbox.mailbox.id();
        let remotes: Vec<RemoteNode> = self
            .members
            .iter()
            .filter_map(|m| m.remote.clone())
            .collect();
        runtime.spawn(async move {
            for r in remotes {
                let _ = r.post(id, OP, 0, bytes.clone()).await;
            }
        });
    }
}

/// A call's arguments: kind, element size, op, root, count, bad.
fn head(kind: u64, elem: usize, op: u32, root: usize, count: usize, bad: u64) -> [u64; 6] {
    [
        kind,
        elem as u64,
        u64::from(op),
        root as u64,
        count as u64,
        bad,
    ]
}

fn head_text(h: &[u64; 6]) -> String {
    format!(
        "{} of {} elements of {} bytes (op {}, root {})",
        kind::name(h[0] as u32),
        h[4],
        h[1],
        h[2],
        h[3]
    )
}

fn bad_text(rank: usize, h: &[u64; 6], ranks: usize) -> String {
    kind::bad_text(h[5] as u32, rank, h[3], h[4], ranks)
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
