//! A process tree: this process's node for its children, the tree's parent
//! actor, and the children it started (`fork`/`nfork`), each reached
//! through its process actor. `close` stops them in order, youngest first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OnceCell, oneshot};

use crate::id::{ActorId, boot_id};
use crate::remote::{ActorRef, Node};
use crate::transport::Password;

use super::child::ProcessActor;
use super::error::ForkError;
use super::handle::{Child, ChildInner, Children};
use super::message::Hello;
use super::parent_actor::{Expect, Forget, Inbox, ParentActor};
use super::spawn::{IntoPlacements, LaunchSpec, Owned, Placement};

/// How long a new child has to connect back unless the tree's options say otherwise.
pub const DEFAULT_FORK_TIMEOUT: Duration = Duration::from_secs(15);

/// How long `close` lets each child end by itself before killing it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Set by `#[parallel::main]`: only such a program may fork (its copies
/// know they are children).
pub(crate) static MAIN_RAN: AtomicBool = AtomicBool::new(false);

/// Set once a spec names a host other than this machine (`Remote::ssh`,
/// `addremote`): the default tree's node then listens on every interface.
static OTHER_HOSTS: AtomicBool = AtomicBool::new(false);

/// Notes that a host other than this machine was named.
pub(crate) fn other_hosts_named() {
    OTHER_HOSTS.store(true, Ordering::Relaxed);
}

/// The settings of a process tree.
#[derive(Clone, Debug)]
pub struct TreeOptions {
    /// How long a new child has to connect back.
    pub fork_timeout: Duration,
    /// Where the tree's node listens (`None`: loopback, or every interface
    /// once a child is placed on another host).
    pub listen: Option<std::net::SocketAddr>,
    /// Values of at least this many bytes go through shared memory between
    /// processes of one machine.
    pub shm_threshold: usize,
}

impl Default for TreeOptions {
    fn default() -> Self {
        Self {
            fork_timeout: DEFAULT_FORK_TIMEOUT,
            listen: None,
            shm_threshold: crate::remote::value::shm_threshold(),
        }
    }
}

/// The node of a tree and its parent actor, made on the first fork.
struct Started {
    node: Node,
    password: String,
    parent: ActorRef<ParentActor>,
    addr: actix::Addr<ParentActor>,
}

pub(crate) struct TreeInner {
    options: TreeOptions,
    started: OnceCell<Started>,
    children: Mutex<BTreeMap<u32, Child>>,
    next: AtomicU32,
}

impl TreeInner {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tree's node, once the first fork started it.
    pub(crate) fn node(&self) -> Option<Node> {
        self.started.get().map(|s| s.node.clone())
    }

    /// The child is no longer this tree's.
    pub(crate) fn forget(&self, child: &Child) {
        self.table().remove(&child.id());
        if let Some(started) = self.started.get() {
            started.addr.do_send(Forget(child.actor_id()));
        }
    }
}

/// A process tree: the processes this one started and the node they talk
/// to it through. Cheap to clone.
#[derive(Clone)]
pub struct Tree(pub(crate) Arc<TreeInner>);

impl Tree {
    /// A tree with `options`; its node starts with the first fork.
    pub fn new(options: TreeOptions) -> Self {
        Self(Arc::new(TreeInner {
            options,
            started: OnceCell::new(),
            children: Mutex::new(BTreeMap::new()),
            next: AtomicU32::new(1),
        }))
    }

    async fn started(&self, placements: &[Placement]) -> Result<&Started, ForkError> {
        if !MAIN_RAN.load(Ordering::Relaxed) {
            return Err(ForkError::NoMain);
        }
        if super::child::is_child() {
            return Err(ForkError::InChild);
        }
        let everywhere =
            placements.iter().any(|p| !p.is_local()) || OTHER_HOSTS.load(Ordering::Relaxed);
        self.0
            .started
            .get_or_try_init(|| async {
                let password = format!("{}{}", crate::id::NodeId::new(), crate::id::NodeId::new());
                let listen = self.0.options.listen.unwrap_or_else(|| {
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
                })
            })
            .await
    }

    /// The tree's node (started on the first fork), if it runs.
    pub fn node(&self) -> Option<&Node> {
        self.0.started.get().map(|s| &s.node)
    }

    /// The id of the tree's parent actor, once the first fork started it.
    pub fn parent_id(&self) -> Option<ActorId> {
        self.0.started.get().map(|s| s.parent.id())
    }

    /// Starts child processes where `what` says (a count: this machine;
    /// remote specs: other hosts). Every child runs this same program,
    /// connects back over the authenticated QUIC transport, and waits for
    /// `exec`. Fails, naming the host and the reason, if any child does not
    /// come up; the others are then stopped.
    pub async fn nfork(&self, what: impl IntoPlacements) -> Result<Children, ForkError> {
        let placements = what.into_placements();
        let started = self.started(&placements).await?;
        let base = started.node.join_line();
        if placements.iter().any(|p| !p.is_local()) && base.addr.ip().is_loopback() {
            return Err(ForkError::Spawn {
                host: placements
                    .iter()
                    .find(|p| !p.is_local())
                    .map(Placement::host)
                    .unwrap_or_default(),
                reason: format!(
                    "this process's node listens on {} only, which another host cannot reach: name the other hosts (Remote::ssh or addremote) before the first fork",
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
                shm_threshold: self.0.options.shm_threshold,
                password: started.password.clone(),
                listen: placement.listen(),
            };
            let (reply, hello) = oneshot::channel();
            let credits = Arc::new(tokio::sync::Semaphore::new(super::child::SEND_WINDOW));
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
        let mut table = self.0.table();
        for child in &children {
            table.insert(child.id(), child.clone());
        }
        Ok(Children(children))
    }

    /// The living children of this tree, in number order.
    pub fn children(&self) -> Children {
        Children(self.0.table().values().cloned().collect())
    }

    /// Stops every child, local and remote, youngest first: each is told to
    /// end (its stdin closes), given [`CLOSE_TIMEOUT`], then killed; all are
    /// forgotten.
    pub async fn close(&self) {
        let all: Vec<Child> = self.0.table().values().rev().cloned().collect();
        for child in &all {
            child.stop(CLOSE_TIMEOUT).await;
        }
    }

    /// The same as [`Tree::close`], for code that cannot await (a panic or
    /// signal path): kills every child process at once.
    pub(crate) fn close_now(&self) {
        let all: Vec<Child> = std::mem::take(&mut *self.0.table()).into_values().collect();
        for child in all {
            child.kill_now();
        }
    }
}

/// Waits for a launched child's hello: it connected back and is ready.
async fn welcome(
    tree: Tree,
    node: Node,
    placement: Placement,
    spec: LaunchSpec,
    inbox: Arc<Inbox>,
    credits: Arc<tokio::sync::Semaphore>,
    hello: oneshot::Receiver<Hello>,
) -> Result<Child, ForkError> {
    let host = placement.host();
    let timeout = tree.0.options.fork_timeout;
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
    let mine = boot_id();
    let same_host = !mine.is_empty() && hello.boot_id == mine;
    let actor = ActorRef::<ProcessActor>::remote(hello.actor, remote.link());
    // The child is gone when its process ends or its connection closes.
    let watched = (process.clone(), remote.clone(), inbox.clone());
    tokio::spawn(async move {
        let (process, remote, inbox) = watched;
        let reason = tokio::select! {
            exit = process.exited() => format!("its process has exited ({})", exit.status),
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
        same_host,
        remote,
        actor,
        inbox,
        process,
        credits,
        read: AtomicU32::new(0),
        shm_threshold: spec.shm_threshold,
        speed: Mutex::new(1.0),
        collective: tokio::sync::Mutex::new(()),
        tree: Arc::downgrade(&tree.0),
    })))
}

/// The tree of the free functions (`parallel::fork()` and the others).
static DEFAULT: std::sync::OnceLock<Tree> = std::sync::OnceLock::new();

/// The tree the free functions use.
pub fn default_tree() -> &'static Tree {
    DEFAULT.get_or_init(|| Tree::new(TreeOptions::default()))
}

/// Starts one child process on this machine.
pub async fn fork() -> Result<Child, ForkError> {
    let mut children = nfork(1).await?;
    Ok(children.0.remove(0))
}

/// Starts child processes: `nfork(4)` on this machine, or on other hosts
/// with remote specs (`nfork(vec![Remote::ssh("host").procs(4).into()])`).
/// See [`Tree::nfork`].
pub async fn nfork(what: impl IntoPlacements) -> Result<Children, ForkError> {
    default_tree().nfork(what).await
}

/// The living children of this process, in number order.
pub fn children() -> Children {
    default_tree().children()
}

/// How many children this process has.
pub fn nchildren() -> usize {
    default_tree().0.table().len()
}

/// Stops every child, local and remote, youngest first (see
/// [`Tree::close`]). Runs by itself when `#[parallel::main]`'s `main`
/// returns, fails, panics, or the program gets Ctrl+C / SIGTERM.
pub async fn close() {
    default_tree().close().await;
    crate::transport::shm::cleanup_own();
}

/// The same as [`close`], for code that cannot await.
pub(crate) fn close_now() {
    default_tree().close_now();
    crate::transport::shm::cleanup_own();
}
