//! The context of a process tree: its settings ([`Config`]), this
//! process's node for its children and the tree's parent actor (both made
//! on the first fork), the children it forked, and — in a child — the link
//! to its own parent. Nothing of a tree lives in a process-wide global:
//! two contexts are two independent trees. The free functions
//! (`parallel::fork()`, `parallel::parent()`, …) use one default context,
//! made on first use from the environment ([`Tree::global`]).
//!
//! The layers above keep their per-tree state here too, as typed
//! extensions ([`Tree::extension`]): the tree's root supervisor, the
//! hosts registered with `addremote`, the collectives' groups, the named
//! work queues.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::Config;
use crate::id::{ActorId, host_key};
use crate::remote::{ActorRef, Node};
use crate::transport::Password;

use super::error::ForkError;
use super::handle::{Child, ChildInner, Children};
use super::link::ChildLink;
use super::message::Hello;
use super::message::SEND_WINDOW;
use super::parent_actor::{Expect, Forget, Inbox, ParentActor};
use super::process_actor::ProcessActor;
use super::shared::{Started, TreeShared};
use super::spawn::{IntoPlacements, LaunchSpec, Owned, Placement};

/// How long `close` lets each child end by itself before killing it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Set by `#[parallel::main]`: only such a program may fork (its copies
/// know they are children).
pub(crate) static MAIN_RAN: AtomicBool = AtomicBool::new(false);

pub(crate) struct TreeInner {
    shared: Arc<TreeShared>,
    children: Mutex<BTreeMap<u32, Child>>,
    next: AtomicU32,
    /// In a child: the link to its parent.
    link: OnceLock<Arc<ChildLink>>,
}

impl TreeInner {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The child is no longer one of this tree's children (its process ended).
    fn forget(&self, child: &Child) {
        let mut table = self.table();
        if table.get(&child.id()).is_some_and(|c| c == child) {
            table.remove(&child.id());
        }
        drop(table);
        if let Some(started) = self.shared.started.get() {
            started.addr.do_send(Forget(child.actor_id()));
        }
    }
}

/// The context of a process tree (see the module's docs). Cheap to clone.
#[derive(Clone)]
pub struct Tree(pub(crate) Arc<TreeInner>);

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("config", &self.0.shared.config)
            .field("children", &self.0.table().len())
            .finish_non_exhaustive()
    }
}

impl Tree {
    /// A context with `config`; its node starts with the first fork.
    pub fn new(config: Config) -> Self {
        Self(Arc::new(TreeInner {
            shared: Arc::new(TreeShared::new(config)),
            children: Mutex::new(BTreeMap::new()),
            next: AtomicU32::new(1),
            link: OnceLock::new(),
        }))
    }

    /// The default context of this process, which the free functions use:
    /// made on first use with [`Config::from_env`].
    pub fn global() -> &'static Tree {
        static DEFAULT: OnceLock<Tree> = OnceLock::new();
        DEFAULT.get_or_init(|| Tree::new(Config::from_env()))
    }

    /// The settings the context was made with.
    pub fn config(&self) -> &Config {
        &self.0.shared.config
    }

    /// The per-context state of type `T` of a layer above (made by `make`
    /// on first use).
    pub fn extension<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        self.0.shared.extension(make)
    }

    /// The shared-memory threshold in bytes: values at least this large go
    /// through shared memory between processes of one machine.
    pub fn shm_threshold(&self) -> usize {
        self.0.shared.shm_threshold()
    }

    /// Sets the shared-memory threshold for children forked from now on
    /// (`usize::MAX` turns shared memory off).
    pub fn set_shm_threshold(&self, bytes: usize) {
        self.0
            .shared
            .shm_threshold
            .store(bytes.max(1), Ordering::Relaxed);
    }

    /// Notes that a host other than this machine will take part: the tree's
    /// node, when it starts, listens on every interface, not loopback only.
    pub fn expect_other_hosts(&self) {
        self.0.shared.other_hosts.store(true, Ordering::Relaxed);
    }

    /// In a child: its link to its parent.
    pub(crate) fn link(&self) -> Option<&Arc<ChildLink>> {
        self.0.link.get()
    }

    pub(crate) fn set_link(&self, link: Arc<ChildLink>) {
        let _ = self.0.link.set(link);
    }

    async fn started(&self, placements: &[Placement]) -> Result<&Started, ForkError> {
        if !MAIN_RAN.load(Ordering::Relaxed) {
            return Err(ForkError::NoMain);
        }
        if crate::config::environment().is_child {
            return Err(ForkError::InChild);
        }
        let everywhere = placements.iter().any(|p| !p.is_local())
            || self.0.shared.other_hosts.load(Ordering::Relaxed);
        self.0
            .shared
            .started
            .get_or_try_init(|| async {
                let password = format!("{}{}", crate::id::NodeId::new(), crate::id::NodeId::new());
                let listen = self.0.shared.config.get_listen().unwrap_or_else(|| {
                    let ip = if everywhere {
                        std::net::Ipv4Addr::UNSPECIFIED
                    } else {
                        std::net::Ipv4Addr::LOCALHOST
                    };
                    std::net::SocketAddr::new(ip.into(), 0)
                });
                let node = Node::builder()
                    .password(Password::new(password.clone()))
                    .listen(listen)
                    .start()
                    .await?;
                let (id, addr, entry) = node
                    .0
                    .registry
                    .start(ParentActor::new(), crate::actor::DEFAULT_MAILBOX);
                let parent =
                    ActorRef::local(id, node.id(), Some(node.join_line()), addr.clone(), entry);
                Ok(Started {
                    node,
                    password,
                    parent,
                    addr,
                    arbiter: actix_rt::Arbiter::try_current(),
                })
            })
            .await
    }

    /// The tree's node (started on the first fork), if it runs.
    pub fn node(&self) -> Option<Node> {
        self.0.shared.node()
    }

    /// The arbiter the tree's node was started on, once the first fork
    /// started it: where a layer above starts an actor of the node when it
    /// is called from a thread without one.
    pub(crate) fn arbiter(&self) -> Option<actix_rt::ArbiterHandle> {
        self.0.shared.started.get().and_then(|s| s.arbiter.clone())
    }

    /// The id of the tree's parent actor, once the first fork started it.
    pub fn parent_id(&self) -> Option<ActorId> {
        self.0.shared.started.get().map(|s| s.parent.id())
    }

    /// Starts child processes where `what` says (a count: this machine;
    /// remote specs: other hosts) and lists them among this tree's
    /// [`Tree::children`]. Every child runs this same program, connects
    /// back over the authenticated QUIC transport, and waits for `exec`.
    /// Fails, naming the host and the reason, if any child does not come up;
    /// the others are then killed. The caller owns the children (the tree's
    /// root supervisor, for `parallel::fork`; a supervisor, for a
    /// `ChildSpec::process`).
    pub async fn spawn(&self, what: impl IntoPlacements) -> Result<Children, ForkError> {
        self.start_children(what, true).await
    }

    /// Starts child processes like [`Tree::spawn`] without listing them
    /// among this tree's children: for an owner that keeps them to itself
    /// (a supervisor's process child).
    pub async fn spawn_unlisted(&self, what: impl IntoPlacements) -> Result<Children, ForkError> {
        self.start_children(what, false).await
    }

    async fn start_children(
        &self,
        what: impl IntoPlacements,
        listed: bool,
    ) -> Result<Children, ForkError> {
        let placements = what.into_placements();
        let started = self.started(&placements).await?;
        let base = started.node.join_line();
        if let Some(remote) = placements.iter().find(|p| !p.is_local())
            && base.addr.ip().is_loopback()
        {
            return Err(ForkError::Spawn {
                host: remote.host(),
                reason: format!(
                    "this process's node listens on {} only, which another host cannot reach: name the other hosts (Remote::ssh, addremote, or Tree::expect_other_hosts) before the first fork",
                    base.addr
                ),
            });
        }
        let mut pending = Vec::new();
        for placement in placements {
            let number = self.0.next.fetch_add(1, Ordering::Relaxed);
            let spec = LaunchSpec {
                number,
                parent: placement.parent_line(&base),
                parent_actor: started.parent.id(),
                shm_threshold: self.shm_threshold(),
                password: started.password.clone(),
                listen: placement.listen(),
            };
            let (reply, hello) = oneshot::channel();
            let credits = Arc::new(tokio::sync::Semaphore::new(SEND_WINDOW));
            let inbox = Arc::new(Inbox::new(credits.clone()));
            started.addr.do_send(Expect {
                number,
                inbox: inbox.clone(),
                reply,
            });
            pending.push(actix_rt::spawn(welcome(
                self.clone(),
                started.node.clone(),
                placement,
                spec,
                inbox,
                credits,
                hello,
            )));
        }
        let mut children = Vec::new();
        let mut first_error = None;
        for task in pending {
            match task.await {
                Ok(Ok(child)) => children.push(child),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(ForkError::Spawn {
                        host: "localhost".into(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if let Some(e) = first_error {
            for child in &children {
                child.kill().await;
            }
            return Err(e);
        }
        if listed {
            let mut table = self.0.table();
            for child in &children {
                table.insert(child.id(), child.clone());
            }
            drop(table);
            // A child stays listed until its process ends.
            for child in &children {
                let (tree, child) = (Arc::downgrade(&self.0), child.clone());
                tokio::spawn(async move {
                    child.exited().await;
                    child.release_segments();
                    if let Some(tree) = tree.upgrade() {
                        tree.forget(&child);
                    }
                });
            }
        }
        Ok(Children(children))
    }

    /// The living children of this tree, in number order.
    pub fn children(&self) -> Children {
        Children(
            self.0
                .table()
                .values()
                .filter(|c| c.try_exit().is_none())
                .cloned()
                .collect(),
        )
    }

    /// How many children this tree has (whose processes run).
    pub fn nchildren(&self) -> usize {
        self.0
            .table()
            .values()
            .filter(|c| c.try_exit().is_none())
            .count()
    }
}

/// Waits for a launched child's hello: it connected back and is ready.
async fn welcome(
    context: Tree,
    node: Node,
    placement: Placement,
    spec: LaunchSpec,
    inbox: Arc<Inbox>,
    credits: Arc<tokio::sync::Semaphore>,
    hello: oneshot::Receiver<Hello>,
) -> Result<Child, ForkError> {
    let host = placement.host();
    let timeout = context.0.shared.config.get_fork_timeout();
    let process = Owned::own(placement.launch(&spec).await?);
    let hello = tokio::select! {
        hello = hello => hello.map_err(|_| ForkError::Protocol {
            host: host.clone(),
            reason: "the tree's parent actor stopped".into(),
        })?,
        exit = process.exited() => {
            // Let the stderr reader catch the last lines.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Err(ForkError::Exited { host, status: exit.status, stderr: process.stderr_tail() });
        }
        _ = tokio::time::sleep(timeout) => {
            process.kill();
            return Err(ForkError::Timeout { host, secs: timeout.as_secs(), stderr: process.stderr_tail() });
        }
    };
    let remote = node.remote(hello.node).ok_or_else(|| ForkError::Protocol {
        host: host.clone(),
        reason: "its connection is gone".into(),
    })?;
    let mine = host_key();
    let same_host = !mine.is_empty() && hello.host_key == mine;
    let actor = ActorRef::<ProcessActor>::remote(hello.actor, remote.link());
    // The child is gone when its process ends or its connection closes.
    let watched = (process.clone(), remote.clone(), inbox.clone());
    tokio::spawn(async move {
        let (process, remote, inbox) = watched;
        let reason = tokio::select! {
            exit = process.exited() => {
                let reason = format!("its process has exited ({})", exit.status);
                // Drop its connection now rather than after the heartbeat
                // timeout: what waits on it (a watch of its actor, an ask)
                // learns at once.
                if remote.is_alive() {
                    remote.link().peer().close_gone(&reason);
                }
                reason
            }
            reason = remote.closed() => format!("its connection closed ({reason})"),
        };
        inbox.update(|s| {
            s.gone.get_or_insert(reason);
        });
    });
    Ok(Child(Arc::new(ChildInner {
        number: spec.number,
        pid: hello.pid,
        host: if hello.host.is_empty() {
            host
        } else {
            hello.host
        },
        ip: hello.ip,
        segments: same_host.then(Default::default),
        remote,
        actor,
        inbox,
        process,
        credits,
        read: AtomicU32::new(0),
        shm_threshold: spec.shm_threshold,
        speed: Mutex::new(1.0),
        collective: tokio::sync::Mutex::new(()),
        shared: context.0.shared.clone(),
    })))
}
