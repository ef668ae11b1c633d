//! The member actor of a group: one per member, on the member's node, under
//! an id every other member derives from the group's name and this
//! member's node ([`member_id`]), so the members find each other without a
//! coordinator. Every message of the group protocol ([`super::message`])
//! arrives here, is decoded once by the actor's `#[actor(..)]` list, and is
//! filed into the group's [`Inbox`], where the `Group`'s calls read it.

use std::sync::Arc;

use actix::{Addr, Handler};

use crate::actor::{LocalEntry, Received};
use crate::id::{ActorId, NodeId};
use crate::remote::{ActorRef, Node, RemoteNode};

use super::FormError;
use super::inbox::{Bytes, Filed, Inbox, Key};
use super::message::{Abort, Arena, Begin, Chunk, Done, Hello, Leave, Part};

/// Messages a member actor may hold in flight: it only files them, so
/// they wait briefly; as many as a group's mailbox held before.
const MAILBOX: usize = 4096;

/// The id of the member actor of the group `name` on `node`: the same on
/// every node, different for another group or node.
pub(super) fn member_id(name: &str, node: NodeId) -> ActorId {
    ActorId::named("para||el group", &format!("{node}/{name}"))
}

/// The actor of one member of a group: files what the other members send.
#[derive(crate::Actor)]
#[actor(
    messages(Hello, Arena, Begin, Done, Abort, Leave),
    view(Chunk, Part),
    name = "parallel::collective::GroupMember"
)]
pub(super) struct GroupMember {
    inbox: Arc<Inbox>,
    /// How many members the group has: posts from other ranks are dropped.
    ranks: usize,
}

impl GroupMember {
    /// The rank `from`, if the group has it.
    fn rank(&self, from: u32) -> Option<usize> {
        let rank = from as usize;
        if rank < self.ranks {
            return Some(rank);
        }
        tracing::debug!(
            from,
            ranks = self.ranks,
            "group: a post from a rank the group does not have was dropped"
        );
        None
    }

    fn file(&self, key: Key, from: u32, filed: Filed) {
        if let Some(rank) = self.rank(from) {
            self.inbox.update_if(|s| s.file(key, rank, filed));
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.inbox.update(|s| s.closed = true);
    }
}

impl Handler<Hello> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Hello, _: &mut actix::Context<Self>) {
        self.inbox.update(|s| {
            s.hellos.insert(msg.node, (msg.pid, msg.host, msg.boot));
        });
    }
}

impl Handler<Arena> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Arena, _: &mut actix::Context<Self>) {
        let filed = Filed::Arena {
            path: msg.path,
            slot: msg.slot,
        };
        // Forming waits for it without saying so: always wake.
        if let Some(rank) = self.rank(msg.from) {
            self.inbox.update(|s| {
                s.file(Key::Arena, rank, filed);
            });
        }
    }
}

impl Handler<Begin> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Begin, _: &mut actix::Context<Self>) {
        self.file(Key::Begin(msg.call), msg.from, Filed::Begin(msg.head));
    }
}

impl Handler<Chunk> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Chunk, _: &mut actix::Context<Self>) {
        let key = Key::Chunk(msg.call, msg.step, msg.chunk, msg.piece);
        self.file(key, msg.from, Filed::Bytes(Bytes::Owned(msg.bytes)));
    }
}

impl Handler<Received<Chunk>> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Received<Chunk>, _: &mut actix::Context<Self>) {
        let key = Key::Chunk(
            msg.call.to_native(),
            msg.step.to_native(),
            msg.chunk.to_native(),
            msg.piece.to_native(),
        );
        let from = msg.from.to_native();
        self.file(key, from, Filed::Bytes(Bytes::Chunk(msg)));
    }
}

impl Handler<Part> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Part, _: &mut actix::Context<Self>) {
        let filed = Filed::Bytes(Bytes::Owned(msg.bytes));
        self.file(Key::Part(msg.call), msg.from, filed);
    }
}

impl Handler<Received<Part>> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Received<Part>, _: &mut actix::Context<Self>) {
        let (call, from) = (msg.call.to_native(), msg.from.to_native());
        self.file(Key::Part(call), from, Filed::Bytes(Bytes::Part(msg)));
    }
}

impl Handler<Done> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Done, _: &mut actix::Context<Self>) {
        self.file(Key::Done(msg.call), msg.from, Filed::Done);
    }
}

impl Handler<Abort> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Abort, _: &mut actix::Context<Self>) {
        if let Some(rank) = self.rank(msg.from) {
            self.inbox.update(|s| {
                s.aborted.entry(msg.call).or_insert((rank, msg.reason));
            });
        }
    }
}

impl Handler<Leave> for GroupMember {
    type Result = ();
    fn handle(&mut self, msg: Leave, _: &mut actix::Context<Self>) {
        if let Some(rank) = self.rank(msg.from) {
            self.inbox.update(|s| {
                s.left.get_or_insert(rank);
            });
        }
    }
}

/// A local message: answered once the actor has filed every message it
/// was handed before this one.
struct Flush;

impl actix::Message for Flush {
    type Result = ();
}

impl Handler<Flush> for GroupMember {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut actix::Context<Self>) {}
}

/// This member's own actor, as its group holds it: stopped and forgotten
/// when the group is dropped.
pub(super) struct OwnMember {
    id: ActorId,
    pub(super) inbox: Arc<Inbox>,
    addr: Addr<GroupMember>,
    entry: Arc<LocalEntry>,
    node: Node,
}

impl OwnMember {
    /// Starts the member actor of the group `name` (of `ranks` members) on
    /// `node`, on the arbiter of the node's runtime; refused while another
    /// group of that name is open on the node.
    pub(super) async fn start(node: &Node, name: &str, ranks: usize) -> Result<Self, FormError> {
        let id = member_id(name, node.id());
        let inbox = Arc::new(Inbox::default());
        let actor = GroupMember {
            inbox: inbox.clone(),
            ranks,
        };
        let arbiter = arbiter().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let home = node.clone();
        // Checked and registered in one step on the arbiter's thread.
        let handed = arbiter.spawn_fn(move || {
            let registry = &home.0.registry;
            let started = match registry.get(id) {
                Some(_) => None,
                None => Some(registry.start_as(id, actor, MAILBOX)),
            };
            let _ = tx.send(started);
        });
        let stopped = || {
            FormError::Runtime(
                "the node's actix arbiter stopped; form the group while the node's System runs"
                    .into(),
            )
        };
        if !handed {
            return Err(stopped());
        }
        match rx.await {
            Ok(Some((addr, entry))) => Ok(Self {
                id,
                inbox,
                addr,
                entry,
                node: node.clone(),
            }),
            Ok(None) => Err(FormError::NameInUse(name.to_owned())),
            Err(_) => Err(stopped()),
        }
    }

    /// The node the actor runs on.
    pub(super) fn node(&self) -> &Node {
        &self.node
    }

    /// Waits until the actor has filed every message it was handed so far
    /// (what a member that went down sent before). False once it stopped.
    pub(super) async fn flush(&self) -> bool {
        self.addr.send(Flush).await.is_ok()
    }
}

impl Drop for OwnMember {
    fn drop(&mut self) {
        let registry = &self.node.0.registry;
        if registry
            .entry(self.id)
            .is_some_and(|e| Arc::ptr_eq(&e, &self.entry))
        {
            registry.remove(self.id);
        }
        self.entry.stop();
    }
}

/// The actix arbiter that runs this node's actors: this thread's, or — on a
/// thread that blocks on the node's runtime (a child's function) — the one
/// of the runtime's own thread.
async fn arbiter() -> Result<actix_rt::ArbiterHandle, FormError> {
    if let Some(arbiter) = actix_rt::Arbiter::try_current() {
        return Ok(arbiter);
    }
    let none = || {
        FormError::Runtime(
            "Group::form must run inside an actix System (#[parallel::main], or actix_rt::System::new().block_on), or block on its runtime".into(),
        )
    };
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| none())?;
    runtime
        .spawn(async { actix_rt::Arbiter::try_current() })
        .await
        .ok()
        .flatten()
        .ok_or_else(none)
}

/// One member as the others know it.
#[derive(Clone)]
pub(super) struct Member {
    pub(super) node: NodeId,
    /// `None` for this member itself.
    pub(super) remote: Option<RemoteNode>,
    /// Its member actor; `None` for this member itself.
    pub(super) actor: Option<ActorRef<GroupMember>>,
    pub(super) pid: u32,
    pub(super) boot: String,
}
