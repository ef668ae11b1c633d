//! A node: one process's transport, actor registry and peers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::actor::{
    DEFAULT_MAILBOX, DeviceChoice, DeviceHost, DeviceInfo, ExitReason, LocalEntry, PlaceError,
    Registry, RemoteActor,
};
use crate::id::NodeId;
use crate::transport::{
    BindError, ConnectError, JoinLine, Password, PasswordError, Transport, TransportConfig,
};

use super::actor_ref::ActorRef;
use super::dispatch;
use super::link::PeerLink;
use super::remote_node::RemoteNode;
use super::supervised::Home;

/// How long an `ask`, `spawn` or `call` waits for its reply unless told otherwise.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Node::shutdown`] waits for the node's actors to stop in
/// order before it kills the ones still running.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// There is no actix System on this thread.
    #[error(
        "a node must start inside an actix System: put it in `#[parallel::main] async fn main()` (or `actix_rt::System::new().block_on(..)`)"
    )]
    NoSystem,
    /// No cluster password could be found.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The endpoint could not listen.
    #[error(transparent)]
    Bind(#[from] BindError),
}

pub(crate) struct NodeInner {
    pub(crate) transport: Transport,
    pub(crate) registry: Registry,
    pub(crate) links: DashMap<NodeId, Arc<PeerLink>>,
    pub(crate) mailboxes:
        DashMap<crate::id::ActorId, tokio::sync::mpsc::Sender<super::mailbox::Delivery>>,
    pub(crate) allowed: HashSet<&'static str>,
    /// Every `#[actor(spawn)]` type may be spawned here (a forked child trusts its parent).
    pub(crate) allow_all: bool,
    /// Where supervised actors live now: kept by the supervisors of this node.
    pub(crate) directory: DashMap<crate::id::ActorId, Home>,
    /// The devices `#[actor(gpu)]` actors are pinned to here, if any.
    pub(crate) devices: Option<Arc<dyn DeviceHost>>,
    pub(crate) ask_timeout: Duration,
    pub(crate) mailbox: usize,
    arrivals: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arc<PeerLink>>>,
    arrivals_tx: mpsc::UnboundedSender<Arc<PeerLink>>,
    /// True once [`Node::shutdown`] began: its supervisors stop, and it hosts
    /// no actors any more.
    closing: tokio::sync::watch::Sender<bool>,
    /// Bumped whenever the directory changes, for those waiting on a home.
    homes: tokio::sync::watch::Sender<u64>,
    /// The tasks that answer other nodes' watches of this node's actors
    /// once they stop: a shutdown lets them answer before its goodbye.
    pub(crate) watch_replies: Mutex<tokio::task::JoinSet<()>>,
}

/// The nodes of this process, for routing `ActorRef`s that arrived in messages.
static NODES: Mutex<Vec<Weak<NodeInner>>> = Mutex::new(Vec::new());

/// The nodes of this process that were shut down, also once dropped: asks
/// to their actors say so.
static SHUT_DOWN: Mutex<Vec<NodeId>> = Mutex::new(Vec::new());

/// True when `node` is a node of this process that was shut down.
pub(crate) fn is_shut_down(node: NodeId) -> bool {
    SHUT_DOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&node)
}

pub(crate) fn local_nodes() -> Vec<Node> {
    let mut nodes = NODES.lock().unwrap_or_else(|e| e.into_inner());
    nodes.retain(|w| w.strong_count() > 0);
    nodes.iter().filter_map(Weak::upgrade).map(Node).collect()
}

/// Settings of a node before it starts. Made by [`Node::builder`].
pub struct NodeBuilder {
    config: TransportConfig,
    password: Option<Password>,
    allowed: HashSet<&'static str>,
    allow_all: bool,
    ask_timeout: Duration,
    mailbox: usize,
    devices: Option<Arc<dyn DeviceHost>>,
}

impl NodeInner {
    /// Starts `actor` under `id` on the thread of the device `choice` names;
    /// gives the device's ordinal.
    pub(crate) fn start_pinned<A: RemoteActor + Send>(
        &self,
        id: crate::id::ActorId,
        actor: A,
        choice: DeviceChoice,
    ) -> Result<(actix::Addr<A>, Arc<LocalEntry>, u32), PlaceError> {
        let node = self.transport.node_id().to_string();
        let devices = self
            .devices
            .as_ref()
            .map(|h| h.devices())
            .unwrap_or_default();
        let ordinal = crate::actor::choose(
            &devices,
            |o| self.registry.pinned_to(o),
            choice,
            A::NAME,
            &node,
        )?;
        let arbiter = match &self.devices {
            Some(host) => host.arbiter(ordinal),
            None => Err("no device host".into()),
        }
        .map_err(|reason| PlaceError::Device {
            actor: A::NAME,
            ordinal,
            node,
            reason,
        })?;
        let (addr, entry) =
            self.registry
                .start_pinned_as(id, actor, self.mailbox, ordinal, &arbiter);
        Ok((addr, entry, ordinal))
    }
}

impl NodeBuilder {
    /// The address to listen on (default `127.0.0.1:0`: loopback, any free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Keeps this node's certificate and key in `dir`, so a restarted node
    /// shows the same fingerprint and, listening on the same address, the
    /// same join line (see [`TransportConfig::identity_dir`]). Without it
    /// each start makes a fresh certificate.
    pub fn identity_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.identity_dir = Some(dir.into());
        self
    }

    /// The cluster password. Without one, [`Password::resolve`] looks in
    /// `PARALLEL_PASSWORD_FILE`, `PARALLEL_PASSWORD`, then asks on the terminal.
    pub fn password(mut self, password: Password) -> Self {
        self.password = Some(password);
        self
    }

    /// Lets other nodes spawn actors of type `A` here by name.
    pub fn allow<A: RemoteActor>(mut self) -> Self {
        self.allowed.insert(A::NAME);
        self
    }

    /// Lets other nodes spawn every `#[actor(spawn)]` type of this binary
    /// here. Only for a node whose peers are all trusted, such as a forked
    /// child whose one peer is the parent that started it.
    pub fn allow_all_registered(mut self) -> Self {
        self.allow_all = true;
        self
    }

    /// How long asks, spawns and calls wait for a reply by default.
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = timeout;
        self
    }

    /// Messages each actor of this node may hold in flight before senders wait.
    pub fn mailbox(mut self, slots: usize) -> Self {
        self.mailbox = slots.max(1);
        self
    }

    /// Heartbeat interval, and the silence after which a peer counts as dead.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self.config.heartbeat_timeout = timeout;
        self
    }

    /// The devices this node pins `#[actor(gpu)]` actors to. By default, a
    /// binary built with the `cuda` feature uses every GPU the process sees
    /// (`parallel::gpu::CudaDevices`), and one without hosts no device: it
    /// refuses GPU actors, naming what it has.
    pub fn devices(mut self, host: Arc<dyn DeviceHost>) -> Self {
        self.devices = Some(host);
        self
    }

    /// Every transport setting at once.
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the node: binds the endpoint and begins serving peers.
    pub async fn start(self) -> Result<Node, StartError> {
        if actix_rt::System::try_current().is_none() {
            return Err(StartError::NoSystem);
        }
        let password = match self.password {
            Some(p) => p,
            None => Password::resolve()?,
        };
        let id = NodeId::new();
        let (transport, events) = Transport::bind(id, password, self.config).await?;
        let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
        let inner = Arc::new(NodeInner {
            transport,
            registry: Registry::default(),
            links: DashMap::new(),
            mailboxes: DashMap::new(),
            allowed: self.allowed,
            allow_all: self.allow_all,
            directory: DashMap::new(),
            devices: self.devices.or_else(crate::actor::built_in_devices),
            ask_timeout: self.ask_timeout,
            mailbox: self.mailbox,
            arrivals: tokio::sync::Mutex::new(arrivals),
            arrivals_tx,
            closing: tokio::sync::watch::Sender::new(false),
            homes: tokio::sync::watch::Sender::new(0),
            watch_replies: Mutex::new(tokio::task::JoinSet::new()),
        });
        NODES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&inner));
        actix_rt::spawn(dispatch::run_events(Arc::downgrade(&inner), events));
        tracing::info!(node = %id, join = %inner.transport.join_line(), "node started");
        Ok(Node(inner))
    }
}

/// One process's place in a cluster: it hosts actors, listens for other
/// nodes and joins them. Cheap to clone.
#[derive(Clone)]
pub struct Node(pub(crate) Arc<NodeInner>);

impl Node {
    /// Settings for a new node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            config: TransportConfig::default(),
            password: None,
            allowed: HashSet::new(),
            allow_all: false,
            ask_timeout: DEFAULT_ASK_TIMEOUT,
            mailbox: DEFAULT_MAILBOX,
            devices: None,
        }
    }

    /// The node this process started first (and still runs, not shut
    /// down), for code that has no handle at hand, such as an actor's handler.
    pub fn current() -> Option<Node> {
        local_nodes().into_iter().find(|n| !n.is_shut_down())
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.0.transport.node_id()
    }

    /// Every node connected to this one now, with what went over each
    /// connection ([`crate::transport::Peer::traffic`]).
    pub fn peers(&self) -> Vec<crate::transport::Peer> {
        self.0.transport.peers()
    }

    /// How many peers this node declared dead because their heartbeats
    /// stopped.
    pub fn heartbeat_timeouts(&self) -> u64 {
        self.0.transport.heartbeat_timeouts()
    }

    /// The `limit` actors of this node with the most messages from other
    /// nodes waiting in their mailboxes: (id, type name, messages).
    pub fn deepest_mailboxes(
        &self,
        limit: usize,
    ) -> Vec<(crate::id::ActorId, &'static str, usize)> {
        self.0.registry.deepest(limit)
    }

    /// The line another node needs to join this one: address and certificate fingerprint.
    pub fn join_line(&self) -> JoinLine {
        self.0.transport.join_line()
    }

    /// Starts `actor` on this node and returns its reference. Other nodes can
    /// reach it once they hold the reference (send it to them in a message).
    /// On a node that was shut down the actor never runs (its watchers get
    /// `Shutdown`), and asks to it fail with [`super::AskError::NodeShutDown`].
    ///
    /// An `#[actor(gpu)]` actor never runs here: its watchers get an error
    /// that says to start it with [`Node::spawn_on`].
    pub fn spawn<A: RemoteActor>(&self, actor: A) -> ActorRef<A> {
        let (id, addr, entry) = if A::GPU {
            let id = crate::id::ActorId::new();
            let reason = ExitReason::Error(format!(
                "{} runs on a GPU: start it with Node::spawn_on(DeviceChoice::AnyGpu, ..)",
                A::NAME
            ));
            let (addr, entry) = self
                .0
                .registry
                .start_refused(id, actor, self.0.mailbox, reason);
            (id, addr, entry)
        } else {
            self.0.registry.start(actor, self.0.mailbox)
        };
        if self.is_shut_down() {
            entry.kill_with(ExitReason::Shutdown);
        }
        ActorRef::local(id, self.id(), Some(self.join_line()), addr, entry)
            .with_timeout(self.0.ask_timeout)
    }

    /// Starts `actor` on this node on a thread pinned to the GPU `choice`
    /// names, for its whole life, and returns its reference (the actor
    /// finds its device through `parallel::gpu::Device::current()`). Fails,
    /// naming what the node has, when the node has no such device.
    pub fn spawn_on<A: RemoteActor + Send>(
        &self,
        choice: DeviceChoice,
        actor: A,
    ) -> Result<ActorRef<A>, PlaceError> {
        let id = crate::id::ActorId::new();
        let (addr, entry, _) = self.0.start_pinned(id, actor, choice)?;
        if self.is_shut_down() {
            entry.kill_with(ExitReason::Shutdown);
        }
        Ok(
            ActorRef::local(id, self.id(), Some(self.join_line()), addr, entry)
                .with_timeout(self.0.ask_timeout),
        )
    }

    /// The devices this node pins GPU actors to (none without
    /// [`NodeBuilder::devices`]).
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.0
            .devices
            .as_ref()
            .map(|h| h.devices())
            .unwrap_or_default()
    }

    /// Opens a mailbox on this node that other nodes can post payloads to
    /// by its id; it holds at most `capacity` deliveries before posters wait.
    pub fn open_mailbox(&self, capacity: usize) -> super::mailbox::Mailbox {
        super::mailbox::Mailbox::open(&self.0, capacity)
    }

    /// Opens a mailbox like [`Node::open_mailbox`], at an id the caller
    /// chooses: a well-known id lets another node post to it without being
    /// told the id first. Refused while a mailbox with that id is open.
    pub fn open_mailbox_at(
        &self,
        id: crate::id::ActorId,
        capacity: usize,
    ) -> Result<super::mailbox::Mailbox, super::mailbox::MailboxInUse> {
        super::mailbox::Mailbox::open_at(&self.0, id, capacity)
    }

    /// Joins the node behind `line` (pinning its certificate and proving the
    /// password) and returns it; returns the existing link if already joined.
    pub async fn join(&self, line: &JoinLine) -> Result<RemoteNode, ConnectError> {
        let peer = self.0.transport.connect(line).await?;
        let link = dispatch::link_for(&self.0, peer);
        Ok(RemoteNode::new(self.clone(), link))
    }

    /// Waits for the next node that joins this one. `None` once the node shut down.
    pub async fn accept(&self) -> Option<RemoteNode> {
        let mut arrivals = self.0.arrivals.lock().await;
        let link = arrivals.recv().await?;
        Some(RemoteNode::new(self.clone(), link))
    }

    /// The joined node with this id, if it is connected.
    pub fn remote(&self, node: NodeId) -> Option<RemoteNode> {
        let link = self.0.links.get(&node)?.clone();
        Some(RemoteNode::new(self.clone(), link))
    }

    /// Every connected node.
    pub fn remotes(&self) -> Vec<RemoteNode> {
        self.0
            .links
            .iter()
            .map(|e| RemoteNode::new(self.clone(), e.value().clone()))
            .collect()
    }

    /// Where the supervised actor `id` lives now, if a supervisor of this
    /// node started it: on which node, or whether it is restarting or down.
    pub fn home(&self, id: crate::id::ActorId) -> Option<Home> {
        self.0.directory.get(&id).map(|h| h.clone())
    }

    /// Records where the supervised actor `id` lives now (its supervisor
    /// calls this when it starts, restarts or gives up on it).
    pub(crate) fn set_home(&self, id: crate::id::ActorId, home: Home) {
        self.0.directory.insert(id, home);
        self.0.homes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever the directory of homes changes (see [`Node::home`]).
    pub(crate) fn home_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.homes.subscribe()
    }

    /// Shuts the node down: its supervisors stop their children, every actor
    /// it hosts is stopped in order — the one started last first; each
    /// finishes the message at hand, its `stopping`/`stopped` hooks run and
    /// its watchers get [`crate::actor::ExitReason::Shutdown`]; one still
    /// running after 5 s is killed — then it says goodbye to
    /// every peer and closes the endpoint. Asks to its actors then fail with
    /// [`super::AskError::NodeShutDown`], also from other nodes of this process.
    pub async fn shutdown(&self) {
        self.0.closing.send_replace(true);
        {
            let mut down = SHUT_DOWN.lock().unwrap_or_else(|e| e.into_inner());
            if !down.contains(&self.id()) {
                down.push(self.id());
            }
        }
        self.stop_actors().await;
        // Every actor has stopped: the watches of other nodes are answered
        // (Shutdown) before the goodbye, not lost with the connection.
        let mut replies = std::mem::take(
            &mut *self
                .0
                .watch_replies
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let answered = async { while replies.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, answered).await;
        self.0.transport.shutdown().await;
    }

    /// True once [`Node::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        *self.0.closing.borrow()
    }

    /// Resolves once [`Node::shutdown`] was called (at once if it was).
    pub(crate) fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.0.closing.subscribe();
        async move {
            // An error means the node is gone: closed too.
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    /// Stops every actor of the node in order, killing those still running
    /// after the grace period. A supervisor of the node may start one more
    /// incarnation before it hears of the shutdown: looked for again.
    async fn stop_actors(&self) {
        for _ in 0..3 {
            let living = self.0.registry.living();
            if living.is_empty() {
                return;
            }
            for entry in &living {
                entry.stop();
            }
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            for entry in &living {
                if tokio::time::timeout_at(deadline, entry.exited())
                    .await
                    .is_err()
                {
                    tracing::warn!(node = %self.id(), actor = entry.name(), "an actor did not stop within {SHUTDOWN_GRACE:?} of the node's shutdown; killed it");
                    entry.kill();
                }
            }
        }
    }
}

impl NodeInner {
    pub(crate) fn arrived(&self, link: Arc<PeerLink>) {
        let _ = self.arrivals_tx.send(link);
    }
}
