//! Starting a head and a node agent, as a library (the `parallel` command
//! calls these): [`start_head`], [`start_node`], [`start_head_node`],
//! [`is_head_running`], [`is_node_running`].

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::id::ActorId;
use crate::remote::{ActorRef, Node};
use crate::transport::{JoinLine, Password};

use super::agent::{AgentActor, AgentSettings};
use super::head::{HeadActor, HeadSettings, head_id};
use super::message::{AgentHello, AgentWelcome, StopAgent};

/// The port a head listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7447;
/// The name of the file in a head's data directory that holds its join line.
pub const JOIN_LINE_FILE: &str = "join_line";

/// Why a head or node agent did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartClusterError {
    /// Another head or node agent holds this data directory.
    #[error("a {what} is already running with data directory {}: stop it first (`parallel stop`), or give this one another --data", dir.display())]
    AlreadyRunning {
        /// "head" or "node".
        what: &'static str,
        /// The data directory.
        dir: PathBuf,
    },
    /// The data directory cannot be used.
    #[error("cannot use data directory {}: {source}; check its permissions or pass another --data", dir.display())]
    Data {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The node did not start.
    #[error(transparent)]
    Node(#[from] crate::remote::StartError),
    /// The ledger did not open.
    #[error(transparent)]
    Ledger(#[from] super::ledger::LedgerError),
    /// The program store did not open.
    #[error(transparent)]
    Programs(#[from] crate::launch::program::ProgramError),
    /// The dashboard did not start.
    #[error(transparent)]
    Dashboard(#[from] super::DashboardError),
}

/// The default data directory of a head or a node agent:
/// `$XDG_DATA_HOME/parallel/<what>`, else `~/.local/share/parallel/<what>`.
pub fn default_data_dir(what: &str) -> PathBuf {
    let env = crate::config::environment();
    let base = env
        .xdg_data_home
        .clone()
        .or_else(|| env.home.as_ref().map(|h| h.join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("parallel").join(what)
}

/// How to start a head.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    listen: SocketAddr,
    data: Option<PathBuf>,
    password: Password,
    settings: HeadSettings,
    max_connections: usize,
    dashboard: Option<super::DashboardOptions>,
}

/// Default of [`HeadOptions::max_connections`]: a head takes a connection
/// from every node agent, worker, pool and client of its cluster.
pub const DEFAULT_HEAD_CONNECTIONS: usize = 16_384;

impl HeadOptions {
    /// A head with `password`, listening on every interface at
    /// [`DEFAULT_PORT`], data in [`default_data_dir`]`("head")`.
    pub fn new(password: Password) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            data: None,
            password,
            settings: HeadSettings::default(),
            max_connections: DEFAULT_HEAD_CONNECTIONS,
            dashboard: None,
        }
    }

    /// Serves the web dashboard and `/metrics` (default: none; `parallel
    /// head` serves them on `127.0.0.1:8265`). See [`super::dashboard`].
    pub fn dashboard(mut self, options: super::DashboardOptions) -> Self {
        self.dashboard = Some(options);
        self
    }

    /// Whether the head records jobs per second and the recent jobs for
    /// the dashboard (default true; the totals in `/metrics` need it).
    pub fn record_activity(mut self, on: bool) -> Self {
        self.settings.record_activity = on;
        self
    }

    /// Most connections it keeps at once (node agents, workers, pools,
    /// clients); more are refused until some close (default
    /// [`DEFAULT_HEAD_CONNECTIONS`]).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Where it listens (port 0: any free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Where it keeps its certificate, ledger and programs.
    pub fn data(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data = Some(dir.into());
        self
    }

    /// Most bytes of queued and running jobs per pool (default 512 MiB).
    pub fn queue_limit(mut self, bytes: u64) -> Self {
        self.settings.queue_limit = bytes;
        self
    }

    /// Allows only the programs with these SHA-256 hashes (default: any
    /// program a peer with the password sends).
    pub fn allow_programs(mut self, hashes: Vec<[u8; 32]>) -> Self {
        self.settings.allow = hashes;
        self
    }

    /// Whether pools and node agents on the head's own machine copy the
    /// program as a file (default, faster) or always send it over the
    /// network as other machines do (`false`).
    pub fn local_copies(mut self, on: bool) -> Self {
        self.settings.local_copies = on;
        self
    }

    /// Which worker (engine) gets the next job or load-balanced task
    /// (default [`super::Scheduler::LeastLoad`]).
    pub fn scheduler(mut self, scheduler: super::Scheduler) -> Self {
        self.settings.scheduler = scheduler;
        self
    }

    /// Most bytes of results an engine set keeps for the hub's queries once
    /// its client has them (default 256 MiB); past it the oldest are dropped.
    pub fn results_limit(mut self, bytes: u64) -> Self {
        self.settings.results_limit = bytes;
        self
    }

    fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| default_data_dir("head"))
    }
}

/// A running head.
pub struct HeadHandle {
    node: Node,
    data: PathBuf,
    dashboard: Option<super::DashboardInfo>,
    stop: watch::Receiver<Option<bool>>,
    _lock: File,
}

impl HeadHandle {
    /// The line a node agent or a pool joins with (a head listening on
    /// every interface gives the address of the interface that routes
    /// outwards, else loopback).
    pub fn join_line(&self) -> JoinLine {
        advertised(self.node.join_line())
    }

    /// Where its dashboard is, if it serves one.
    pub fn dashboard(&self) -> Option<&super::DashboardInfo> {
        self.dashboard.as_ref()
    }

    /// The head's node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Waits until someone asks the head to stop (`parallel stop`); true
    /// when its nodes were asked to stop too.
    pub async fn wait(&mut self) -> bool {
        loop {
            if let Some(nodes) = *self.stop.borrow_and_update() {
                return nodes;
            }
            if self.stop.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Stops the head (pools reconnect once a head runs again on the same
    /// data directory).
    pub async fn stop(self) {
        self.node.shutdown().await;
    }
}

/// `line` with an address others can reach when it listens on every interface.
fn advertised(mut line: JoinLine) -> JoinLine {
    if line.addr.ip().is_unspecified() {
        line.addr.set_ip(outward_ip());
    }
    line
}

/// The address of the interface that routes outwards, else loopback.
pub(super) fn outward_ip() -> std::net::IpAddr {
    // Connecting a UDP socket sends nothing: it only picks the route.
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(Ipv4Addr::LOCALHOST.into())
}

/// Takes the exclusive lock of `<dir>/<what>.lock`, or says who holds it.
fn lock(dir: &Path, what: &'static str) -> Result<File, StartClusterError> {
    use std::os::fd::AsRawFd;
    let data = |source| StartClusterError::Data {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(data)?;
    let file = File::create(dir.join(format!("{what}.lock"))).map_err(data)?;
    // SAFETY: flock on a file descriptor this function owns.
    let held = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if held != 0 {
        return Err(StartClusterError::AlreadyRunning {
            what,
            dir: dir.to_path_buf(),
        });
    }
    Ok(file)
}

fn is_locked(dir: &Path, what: &'static str) -> bool {
    dir.join(format!("{what}.lock")).exists()
        && matches!(
            lock(dir, what),
            Err(StartClusterError::AlreadyRunning { .. })
        )
}

/// True while a head runs with this data directory (default
/// [`default_data_dir`]`("head")`).
pub fn is_head_running(data: Option<&Path>) -> bool {
    let dir = data.map_or_else(|| default_data_dir("head"), Path::to_path_buf);
    is_locked(&dir, "head")
}

/// True while a node agent runs with this data directory (default
/// [`default_data_dir`]`("node")`).
pub fn is_node_running(data: Option<&Path>) -> bool {
    let dir = data.map_or_else(|| default_data_dir("node"), Path::to_path_buf);
    is_locked(&dir, "node")
}

/// Starts a head: its node (same certificate, so the same join line,
/// across restarts on one data directory), its ledger and its actor. Must
/// be called inside the actor runtime (`#[parallel::main]`).
pub async fn start_head(options: HeadOptions) -> Result<HeadHandle, StartClusterError> {
    let dir = options.data_dir();
    let lock = lock(&dir, "head")?;
    let transport = crate::transport::TransportConfig {
        max_incoming: options.max_connections,
        ..crate::transport::TransportConfig::default()
    };
    // The ledger opens (a new one syncs the disk a few times) off the
    // runtime's thread while the node starts.
    let opening = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || super::ledger::Ledger::open(&dir)
    });
    let node = Node::builder()
        .transport(transport)
        .listen(options.listen)
        .password(options.password.clone())
        .identity_dir(dir.join("identity"))
        .start()
        .await;
    let opened = opening.await.map_err(|e| super::ledger::LedgerError::Open {
        path: dir.join(super::ledger::FILE_NAME),
        reason: format!("opening it stopped: {e}"),
    });
    let node = node?;
    let ledger = opened??;
    let programs = crate::launch::program::ProgramStore::open(dir.join("programs"))?.unsynced();
    let (stop_tx, stop_rx) = watch::channel(None);
    let line = advertised(node.join_line()).to_string();
    let head = HeadActor::new(ledger, programs, options.settings, stop_tx, line.clone())?;
    let (head, _) = node.0.registry.start_as(head_id(), head, node.0.mailbox);
    let dashboard = match options.dashboard {
        Some(dashboard) => match super::dashboard::start(&node, head, line.clone(), dashboard) {
            Ok(info) => Some(info),
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        },
        None => None,
    };
    std::fs::write(dir.join(JOIN_LINE_FILE), format!("{line}\n")).map_err(|source| {
        StartClusterError::Data {
            dir: dir.clone(),
            source,
        }
    })?;
    Ok(HeadHandle {
        node,
        data: dir,
        dashboard,
        stop: stop_rx,
        _lock: lock,
    })
}

/// The resource every node that sees a GPU offers (its workers each have one).
pub const GPU_RESOURCE: &str = "gpu";

/// How to start a node agent.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    join: JoinLine,
    password: Password,
    workers: Option<u32>,
    data: Option<PathBuf>,
    resources: Vec<String>,
}

impl NodeOptions {
    /// A node agent joining the head at `join` with `password`.
    pub fn new(join: JoinLine, password: Password) -> Self {
        Self {
            join,
            password,
            workers: None,
            data: None,
            resources: Vec::new(),
        }
    }

    /// Names what this node's workers offer (a licence, a dataset, lots of
    /// memory): load-balanced tasks that `require` one of them run only
    /// here. A node that sees a GPU offers `gpu` as well.
    pub fn resources(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.resources = names.into_iter().map(Into::into).collect();
        self
    }

    /// Workers per pool (default: one per GPU seen, else one per core).
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = Some(n.max(1));
        self
    }

    /// Where it caches programs (default [`default_data_dir`]`("node")`);
    /// one node agent per data directory.
    pub fn data(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data = Some(dir.into());
        self
    }
}

/// GPUs this machine shows (NVIDIA's driver lists one directory per GPU),
/// limited to `CUDA_VISIBLE_DEVICES` when that is set.
fn gpus_seen() -> u32 {
    let listed = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|d| d.count() as u32)
        .unwrap_or(0);
    match &crate::config::environment().cuda_visible_devices {
        Some(v) if v.trim().is_empty() => 0,
        Some(v) => (v.split(',').count() as u32).min(listed),
        None => listed,
    }
}

/// A running node agent.
pub struct NodeHandle {
    node: Node,
    agent: ActorRef<AgentActor>,
    stopped: watch::Receiver<bool>,
    joined: watch::Receiver<bool>,
    fenced: Arc<AtomicBool>,
    workers: u32,
    _lock: File,
}

impl NodeHandle {
    /// Waits until the agent is joined to its head (true), or `timeout`
    /// passed (false). `start_node` returns before that: the agent keeps
    /// trying for as long as the head is away.
    pub async fn joined(&mut self, timeout: Duration) -> bool {
        let wait = async {
            while !*self.joined.borrow_and_update() {
                if self.joined.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// True when the agent stopped because its head declared it dead (it
    /// was cut off longer than the heartbeat timeout): the head refuses
    /// this incarnation for good; start the agent again (a new node) to
    /// rejoin, as `parallel node` does by itself.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Workers it runs per pool.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// Waits until the agent is asked to stop (by `parallel stop --node` or
    /// a head stopping its nodes).
    pub async fn wait(&mut self) {
        while !*self.stopped.borrow_and_update() {
            if self.stopped.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops the agent and its workers.
    pub async fn stop(self) {
        let _ = self
            .agent
            .clone()
            .with_timeout(Duration::from_secs(30))
            .ask(StopAgent)
            .await;
        self.node.shutdown().await;
    }
}

/// Starts a node agent: it joins the head (again whenever the link drops),
/// runs the pools' workers, and keeps going until stopped. Must be called
/// inside the actor runtime.
pub async fn start_node(options: NodeOptions) -> Result<NodeHandle, StartClusterError> {
    let dir = options
        .data
        .clone()
        .unwrap_or_else(|| default_data_dir("node"));
    let lock = lock(&dir, "node")?;
    std::fs::write(
        dir.join(super::control::NODE_PID_FILE),
        format!("{}\n", std::process::id()),
    )
    .map_err(|source| StartClusterError::Data {
        dir: dir.clone(),
        source,
    })?;
    let gpus = gpus_seen();
    let workers = options.workers.unwrap_or_else(|| {
        if gpus > 0 {
            gpus
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        }
    });
    let node = Node::builder()
        .password(options.password.clone())
        .listen(options.join.bind_to_reach())
        .start()
        .await?;
    let (head_tx, head_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let settings = AgentSettings {
        head: options.join.clone(),
        password: options.password,
        workers,
        gpus,
        programs: dir.join("programs"),
    };
    let id = ActorId::new();
    let actor = AgentActor::new(node.clone(), id, head_rx, settings, stop_tx)?;
    let (addr, entry) = node.0.registry.start_as(id, actor, node.0.mailbox);
    let agent = ActorRef::local(id, node.id(), None, addr, entry);
    let mut resources = options.resources;
    if gpus > 0 && !resources.iter().any(|r| r == GPU_RESOURCE) {
        resources.push(GPU_RESOURCE.into());
    }
    let hello = {
        let agent = agent.clone();
        move || AgentHello {
            agent: agent.clone(),
            host: crate::id::host_name(),
            workers,
            gpus,
            resources: resources.clone(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }
    };
    let (joined_tx, joined_rx) = watch::channel(false);
    let fenced = Arc::new(AtomicBool::new(false));
    actix_rt::spawn(keep_joined(
        node.clone(),
        (agent.clone(), fenced.clone()),
        options.join,
        hello,
        (head_tx, joined_tx),
        stop_rx.clone(),
    ));
    Ok(NodeHandle {
        node,
        agent,
        stopped: stop_rx,
        joined: joined_rx,
        fenced,
        workers,
        _lock: lock,
    })
}

/// Joins the head and says hello; again whenever the link drops, until
/// the agent stops. A head that declared this node dead (it was cut off
/// longer than the heartbeat timeout) refuses it for good: the agent then
/// stops its workers and itself, to be started again as a new node.
async fn keep_joined(
    node: Node,
    (agent, fenced): (ActorRef<AgentActor>, Arc<AtomicBool>),
    line: JoinLine,
    hello: impl Fn() -> AgentHello,
    (head, joined): (
        watch::Sender<Option<ActorRef<HeadActor>>>,
        watch::Sender<bool>,
    ),
    mut stopped: watch::Receiver<bool>,
) {
    let mut warned = false;
    while !*stopped.borrow() {
        let remote = match node.join(&line).await {
            Ok(r) => r,
            Err(crate::transport::ConnectError::Fenced(why)) => {
                tracing::error!(
                    "the head at {line} declared this node dead ({why}); stopping: start the node agent again to rejoin as a new node"
                );
                fenced.store(true, Ordering::Release);
                let _ = agent
                    .with_timeout(Duration::from_secs(30))
                    .ask(StopAgent)
                    .await;
                return;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(
                        "cannot reach the head at {line} ({e}); trying again every second"
                    );
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.changed() => {}
                }
                continue;
            }
        };
        warned = false;
        let to = ActorRef::<HeadActor>::remote(head_id(), remote.link())
            .with_timeout(Duration::from_secs(30));
        let _ = head.send(Some(to.clone()));
        match to.ask(hello()).await {
            Ok(AgentWelcome::Joined) => {
                tracing::info!("joined the head at {line}");
                let _ = joined.send(true);
            }
            Ok(AgentWelcome::Refused(why)) => {
                tracing::error!("the head refused this node: {why}");
                return;
            }
            Err(e) => {
                tracing::warn!("hello to the head failed ({e}); trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        tokio::select! {
            _ = remote.closed() => tracing::warn!("lost the head; joining again"),
            _ = stopped.changed() => {}
        }
        let _ = head.send(None);
        let _ = joined.send(false);
    }
}

/// Starts a head and a node agent on this machine (the seed's
/// `start_node --head`): the agent's data directory is `<head data>/node`.
pub async fn start_head_node(
    options: HeadOptions,
    workers: Option<u32>,
) -> Result<(HeadHandle, NodeHandle), StartClusterError> {
    let password = options.password.clone();
    let head = start_head(options).await?;
    let mut node = NodeOptions::new(head.join_line(), password).data(head.data.join("node"));
    if let Some(n) = workers {
        node = node.workers(n);
    }
    let agent = start_node(node).await?;
    Ok((head, agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More peers than a plain node's transport takes (256): a head is
    /// joined by every agent, worker, pool and client of its cluster.
    #[actix_rt::test]
    async fn a_head_takes_more_connections_than_a_plain_node() {
        let dir = std::env::temp_dir().join(format!("parallel-head-conns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let password = Password::new("conns".into());
        let head = start_head(
            HeadOptions::new(password.clone())
                .listen(([127, 0, 0, 1], 0).into())
                .data(&dir),
        )
        .await
        .expect("a head");
        let line = head.join_line();
        let max = crate::transport::TransportConfig::default().max_incoming;
        let mut nodes = Vec::new();
        for i in 0..max + 8 {
            let node = Node::builder()
                .password(password.clone())
                .start()
                .await
                .expect("a node");
            let joined = tokio::time::timeout(Duration::from_secs(20), node.join(&line))
                .await
                .map(|r| r.map(|remote| remote.id()));
            assert!(
                matches!(joined, Ok(Ok(_))),
                "connection {i} of {} refused: {joined:?}",
                max + 8
            );
            nodes.push(node);
        }
        for node in nodes {
            node.shutdown().await;
        }
        head.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
