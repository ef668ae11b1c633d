//! The node's QUIC endpoint: bind, accept, connect, the table of peers, and
//! each peer's life from handshake to `Down`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::id::NodeId;

use super::config::TransportConfig;
use super::error::{BindError, ConnectError, DownReason};
use super::fence::{self, Fences};
use super::framing::close_code;
use super::handshake::{self, DUPLICATE, ListenError, Me};
use super::identity::Identity;
use super::join_line::JoinLine;
use super::lanes::{self, INBOUND_QUEUE, Lane};
use super::password::Password;
use super::peer::{Inbound, Peer, PeerEvent, PeerShared, Queues};
use super::tasks::{QuicRuntime, Spawner};
use super::{control, tls};

/// Capacity of the event channel handed out by [`Transport::bind`].
const EVENT_QUEUE: usize = 1024;
/// UDP socket buffers we ask the kernel for.
const SOCKET_BUFFER: usize = 4 << 20;
/// How long shutdown waits for goodbyes and for the endpoint to go idle.
const SHUTDOWN_LIMIT: Duration = Duration::from_millis(500);

/// This node's transport: one QUIC endpoint that listens, connects, and
/// keeps one authenticated connection per peer node. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
    /// Closes the endpoint when the last handle is dropped (no goodbye).
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node", &self.inner.node)
            .field("join_line", &self.inner.join_line)
            .finish()
    }
}

struct Owner {
    endpoint: quinn::Endpoint,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.endpoint
            .close(close_code::CLOSED.into(), b"the node dropped its transport");
    }
}

struct Inner {
    node: NodeId,
    incarnation: u64,
    fences: Arc<Fences>,
    password: Password,
    config: Arc<TransportConfig>,
    endpoint: quinn::Endpoint,
    join_line: JoinLine,
    join_text: String,
    peers: Mutex<HashMap<NodeId, Peer>>,
    /// One lock per address being connected to, so two `connect` calls for
    /// the same join line make one connection.
    dialing: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    events: mpsc::Sender<PeerEvent>,
    connections: AtomicUsize,
    shutting_down: AtomicBool,
    /// Hands each peer that comes up to the transport's liveness task.
    liveness: mpsc::UnboundedSender<Arc<PeerShared>>,
    /// Starts the transport's tasks (and QUIC's) where its node's actors run.
    tasks: Spawner,
}

/// Counts an accepted connection against `max_incoming` while it lives.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Bigger buffers help bursts; the kernel may cap them, which is fine.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl Transport {
    /// Binds the endpoint on `config.listen` with a fresh certificate (or
    /// the one kept in `config.identity_dir`), and starts accepting peers
    /// that know `password`. Peers coming up and going down are reported on
    /// the returned channel.
    pub async fn bind(
        node: NodeId,
        password: Password,
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<PeerEvent>), BindError> {
        if config.heartbeat_timeout <= config.heartbeat_interval {
            return Err(BindError::Config(format!(
                "heartbeat_timeout ({:?}) must be longer than heartbeat_interval ({:?})",
                config.heartbeat_timeout, config.heartbeat_interval
            )));
        }
        let identity = match &config.identity_dir {
            Some(dir) => Identity::load_or_create(dir)?,
            None => Identity::generate()?,
        };
        let server = tls::server_config(&identity, &config)?;
        let socket = udp_socket(config.listen).map_err(|source| BindError::Socket {
            addr: config.listen,
            source,
        })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BindError::Config(
                "no async runtime: call bind inside a tokio or actix-rt runtime".to_owned(),
            ));
        }
        let tasks = Spawner::here();
        let runtime = QuicRuntime::new(tasks.clone());
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(|source| BindError::Socket {
            addr: config.listen,
            source,
        })?;
        let addr = endpoint.local_addr().map_err(|source| BindError::Socket {
            addr: config.listen,
            source,
        })?;
        let join_line = JoinLine {
            addr,
            fingerprint: identity.fingerprint,
        };
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let (liveness, arrivals) = mpsc::unbounded_channel();
        tasks.spawn_root(control::watch(
            arrivals,
            config.heartbeat_interval,
            config.heartbeat_timeout,
        ));
        let inner = Arc::new(Inner {
            node,
            incarnation: fence::new_incarnation(),
            fences: Arc::default(),
            password,
            config: Arc::new(config),
            endpoint: endpoint.clone(),
            join_text: join_line.to_string(),
            join_line,
            peers: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            events,
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            liveness,
            tasks,
        });
        inner.tasks.spawn_root(accept_loop(inner.clone()));
        tracing::debug!(node = %node, "listening on {}", inner.join_text);
        Ok((
            Transport {
                inner,
                _owner: Arc::new(Owner { endpoint }),
            },
            rx,
        ))
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node
    }

    /// This transport's incarnation: fixed when it was bound, sent in the
    /// handshake. A node that declared this one dead refuses this
    /// incarnation for good; a restarted process gets a new one.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// Test access to the fences.
    #[cfg(test)]
    pub(crate) fn fences(&self) -> &Fences {
        &self.inner.fences
    }

    /// The line other nodes use to join this one: the bound address (port
    /// resolved) and this node's certificate fingerprint.
    pub fn join_line(&self) -> JoinLine {
        self.inner.join_line.clone()
    }

    /// The settings this transport runs with.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Connects to the node behind `line`: pins its certificate, proves the
    /// password and checks the node's proof. Returns the existing peer if
    /// this node is already connected to it.
    pub async fn connect(&self, line: &JoinLine) -> Result<Peer, ConnectError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(ConnectError::ShuttingDown);
        }
        if line.fingerprint == inner.join_line.fingerprint {
            return Err(ConnectError::SelfConnect);
        }
        if let Some(why) = inner.fences.fenced_by_line(line) {
            // Dialing again as the same incarnation can only be refused.
            return Err(ConnectError::Fenced(why));
        }
        let dial_lock = {
            let mut dialing = lock(&inner.dialing);
            dialing.entry(line.addr).or_default().clone()
        };
        let guard = dial_lock.lock().await;
        let result = match inner.find(line) {
            Some(peer) => Ok(peer),
            None => {
                let limit = inner.config.handshake_timeout;
                match tokio::time::timeout(limit, inner.clone().dial(line)).await {
                    Ok(result) => result,
                    Err(_) => Err(ConnectError::Timeout(limit)),
                }
            }
        };
        drop(guard);
        let mut dialing = lock(&inner.dialing);
        // Only the table and this call hold the lock: nobody else is dialing.
        if Arc::strong_count(&dial_lock) <= 2 {
            dialing.remove(&line.addr);
        }
        result
    }

    /// The connected peer of `node`, if any.
    pub fn peer(&self, node: NodeId) -> Option<Peer> {
        lock(&self.inner.peers)
            .get(&node)
            .filter(|p| p.is_alive())
            .cloned()
    }

    /// How many peers this transport declared dead because their
    /// heartbeats stopped for the heartbeat timeout.
    pub fn heartbeat_timeouts(&self) -> u64 {
        self.inner.fences.declared()
    }

    /// Every connected peer.
    pub fn peers(&self) -> Vec<Peer> {
        lock(&self.inner.peers)
            .values()
            .filter(|p| p.is_alive())
            .cloned()
            .collect()
    }

    /// Says goodbye to every peer, closes the endpoint and waits (briefly)
    /// for the goodbyes to leave.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::Release);
        let peers: Vec<Peer> = lock(&inner.peers).values().cloned().collect();
        // What was posted before the shutdown reaches its peer first (all
        // peers at once: one that does not answer holds up no other).
        let flushed = futures_util::future::join_all(peers.iter().map(Peer::flush));
        let _ = tokio::time::timeout(SHUTDOWN_LIMIT, flushed).await;
        for peer in &peers {
            control::goodbye(&peer.shared, SHUTDOWN_LIMIT).await;
        }
        for peer in &peers {
            // Tell the peer it was an orderly goodbye, whatever frame got through.
            peer.shared.set_down_with(
                DownReason::Closed("this node shut down".to_owned()),
                Some(close_code::GOODBYE),
            );
        }
        inner.endpoint.close(close_code::GOODBYE.into(), b"goodbye");
        let _ = tokio::time::timeout(SHUTDOWN_LIMIT, inner.endpoint.wait_idle()).await;
    }
}

/// True when the connection in the other direction won (two nodes that
/// joined each other at once): the peer refused `conn` as a duplicate, or
/// closed it in the middle of the handshake when the other replaced it.
fn lost_to_other_direction(e: &ConnectError, conn: &quinn::Connection) -> bool {
    matches!(e, ConnectError::Refused(why) if why.starts_with(DUPLICATE))
        || matches!(
            conn.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(close))
                if String::from_utf8_lossy(&close.reason).contains(DUPLICATE)
        )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// A live peer reached through `line`.
    fn find(&self, line: &JoinLine) -> Option<Peer> {
        lock(&self.peers)
            .values()
            .find(|p| {
                p.is_alive()
                    && (p.shared.join_line.as_ref() == Some(line)
                        || p.shared.remote_addr == line.addr)
            })
            .cloned()
    }

    async fn dial(self: Arc<Self>, line: &JoinLine) -> Result<Peer, ConnectError> {
        let seen = Arc::new(Mutex::new(None));
        let client = tls::client_config(line.fingerprint, seen.clone(), &self.config)
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        let connecting = self
            .endpoint
            .connect_with(client, line.addr, tls::SERVER_NAME)
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        let conn = match connecting.await {
            Ok(conn) => conn,
            Err(e) => {
                let got = *lock(&seen);
                return Err(match got {
                    Some(got) if got != line.fingerprint => ConnectError::FingerprintMismatch {
                        expected: line.fingerprint,
                        got,
                    },
                    _ => ConnectError::Io(e.to_string()),
                });
            }
        };
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        let _ = send.set_priority(i32::MAX);
        let joined = match handshake::connect(&conn, &mut send, &mut recv, &self.me(), line).await {
            Ok(joined) => joined,
            Err(e) if lost_to_other_direction(&e, &conn) => {
                // Wait for the winning connection to come up here.
                let why = match e {
                    ConnectError::Refused(why) => why,
                    e => e.to_string(),
                };
                return self.await_peer_from(line, why).await;
            }
            Err(e) => return Err(e),
        };
        let (peer, queues) = Peer::new(
            PeerShared::new(
                joined,
                conn,
                true,
                send,
                self.fences.clone(),
                self.tasks.clone(),
                &self.config,
            ),
            self.config.send_queue,
        );
        match self.admit(&peer) {
            Ok(()) => {
                self.tasks
                    .spawn_root(run_peer(self.clone(), peer.clone(), recv, queues, None));
                Ok(peer)
            }
            Err(existing) => {
                peer.shared.set_down(DownReason::Closed(format!(
                    "{DUPLICATE}: already connected to this node"
                )));
                Ok(existing)
            }
        }
    }

    async fn await_peer_from(&self, line: &JoinLine, why: String) -> Result<Peer, ConnectError> {
        loop {
            if let Some(peer) = self.find(line) {
                return Ok(peer);
            }
            if self.shutting_down.load(Ordering::Acquire) {
                return Err(ConnectError::Refused(why));
            }
            // Bounded by the caller's handshake timeout.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Who this node is, for a handshake.
    fn me(&self) -> Me<'_> {
        Me {
            node: self.node,
            incarnation: self.incarnation,
            line: &self.join_text,
            password: &self.password,
            fences: &self.fences,
        }
    }

    fn take_slot(self: &Arc<Self>) -> Slot {
        self.connections.fetch_add(1, Ordering::AcqRel);
        Slot(self.clone())
    }

    /// Registers a peer whose handshake succeeded. When the pair already has
    /// a live connection, both ends keep the same one: a newer connection
    /// from the same initiator replaces the old; of two opened in opposite
    /// directions, the one opened by the smaller node id wins. The loser is
    /// returned as `Err(winner)`.
    fn admit(&self, new: &Peer) -> Result<(), Peer> {
        let mut peers = lock(&self.peers);
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(new.clone());
        }
        if let Some(old) = peers.get(&new.node()).filter(|p| p.is_alive()) {
            let initiator = |p: &Peer| {
                if p.shared.initiated_by_us {
                    self.node
                } else {
                    p.node()
                }
            };
            let keep_new = old.shared.initiated_by_us == new.shared.initiated_by_us
                || initiator(new) < initiator(old);
            if !keep_new {
                return Err(old.clone());
            }
            old.shared.set_down(DownReason::Closed(format!(
                "{DUPLICATE}: replaced by a newer connection"
            )));
        }
        peers.insert(new.node(), new.clone());
        Ok(())
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        if inner.shutting_down.load(Ordering::Acquire) {
            incoming.refuse();
            continue;
        }
        if inner.connections.load(Ordering::Acquire) >= inner.config.max_incoming {
            tracing::warn!(addr = %incoming.remote_address(), "refusing a connection: {} already open", inner.config.max_incoming);
            incoming.refuse();
            continue;
        }
        let slot = inner.take_slot();
        inner.tasks.spawn(accept_one(inner.clone(), incoming, slot));
    }
}

async fn accept_one(inner: Arc<Inner>, incoming: quinn::Incoming, slot: Slot) {
    let addr = incoming.remote_address();
    let limit = inner.config.handshake_timeout;
    let conn_slot: Arc<Mutex<Option<quinn::Connection>>> = Arc::default();
    let work = accept_handshake(&inner, incoming, conn_slot.clone());
    match tokio::time::timeout(limit, work).await {
        Ok(Ok((peer, recv, queues))) => run_peer(inner, peer, recv, queues, Some(slot)).await,
        Ok(Err(ListenError::Refused(why))) => tracing::debug!(%addr, "join refused: {why}"),
        Ok(Err(ListenError::Lost(why))) => tracing::debug!(%addr, "join failed: {why}"),
        Err(_) => {
            tracing::warn!(%addr, "dropping a connection that did not finish the join handshake within {limit:?}");
            if let Some(conn) = lock(&conn_slot).take() {
                conn.close(close_code::REFUSED.into(), b"join handshake timed out");
            }
        }
    }
}

type Accepted = (Peer, quinn::RecvStream, Queues);

async fn accept_handshake(
    inner: &Arc<Inner>,
    incoming: quinn::Incoming,
    conn_slot: Arc<Mutex<Option<quinn::Connection>>>,
) -> Result<Accepted, ListenError> {
    let conn = incoming
        .accept()
        .map_err(|e| ListenError::Lost(e.to_string()))?
        .await
        .map_err(|e| ListenError::Lost(e.to_string()))?;
    *lock(&conn_slot) = Some(conn.clone());
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| ListenError::Lost(e.to_string()))?;
    let _ = send.set_priority(i32::MAX);
    let verified = handshake::listen(&conn, &mut send, &mut recv, &inner.me()).await?;
    let joined = verified.joined;
    let (peer, queues) = Peer::new(
        PeerShared::new(
            joined,
            conn.clone(),
            false,
            send,
            inner.fences.clone(),
            inner.tasks.clone(),
            &inner.config,
        ),
        inner.config.send_queue,
    );
    if inner.admit(&peer).is_err() {
        let mut control = peer.shared.control.lock().await;
        let why = format!(
            "{DUPLICATE}: this node is already connected to {}",
            peer.node()
        );
        return Err(handshake::refuse(&conn, &mut control, why).await);
    }
    let welcome = {
        let mut control = peer.shared.control.lock().await;
        super::framing::write_msg(
            &mut control,
            crate::wire::FrameKind::Welcome,
            &verified.welcome,
        )
        .await
    };
    if let Err(why) = welcome {
        peer.shared
            .set_down(DownReason::ConnectionLost(why.clone()));
        inner.forget(&peer);
        return Err(ListenError::Lost(why));
    }
    Ok((peer, recv, queues))
}

impl Inner {
    /// Removes `peer` from the table if it is still the entry for its node.
    fn forget(&self, peer: &Peer) {
        let mut peers = lock(&self.peers);
        if peers
            .get(&peer.node())
            .is_some_and(|p| Arc::ptr_eq(&p.shared, &peer.shared))
        {
            peers.remove(&peer.node());
        }
    }
}

/// One peer's life after the handshake: announce it, run its lanes and
/// heartbeats, and announce its end.
async fn run_peer(
    inner: Arc<Inner>,
    peer: Peer,
    control_recv: quinn::RecvStream,
    queues: Queues,
    slot: Option<Slot>,
) {
    let shared = peer.shared.clone();
    let (inbound_tx, inbound_rx) = super::handoff::handoff(INBOUND_QUEUE);
    let (replies_tx, replies_rx) = super::handoff::handoff(INBOUND_QUEUE);
    let config = inner.config.clone();
    inner.tasks.spawn(lanes::writer(
        shared.clone(),
        queues.data,
        config.clone(),
        Lane::Small,
    ));
    inner.tasks.spawn(lanes::writer(
        shared.clone(),
        queues.replies,
        config.clone(),
        Lane::Replies,
    ));
    inner.tasks.spawn(lanes::reader(
        shared.clone(),
        inbound_tx,
        replies_tx,
        config.max_frame,
    ));
    inner
        .tasks
        .spawn(control::read_control(shared.clone(), control_recv));
    let _ = inner.liveness.send(shared.clone());
    let conn_watch = {
        let shared = shared.clone();
        inner.tasks.spawn(async move {
            let err = shared.conn.closed().await;
            shared.set_down(super::framing::down_reason(&err));
        })
    };
    let node = peer.node();
    let connection = peer.connection();
    tracing::debug!(peer = %node, addr = %shared.remote_addr, "peer up");
    let _ = inner
        .events
        .send(PeerEvent::Up {
            peer: peer.clone(),
            inbound: Inbound::new(inbound_rx, replies_rx),
        })
        .await;
    drop(peer);
    let reason = shared.wait_down().await;
    conn_watch.abort();
    {
        let mut peers = lock(&inner.peers);
        if peers
            .get(&node)
            .is_some_and(|p| Arc::ptr_eq(&p.shared, &shared))
        {
            peers.remove(&node);
        }
    }
    tracing::debug!(peer = %node, "peer down: {reason}");
    let _ = inner
        .events
        .send(PeerEvent::Down {
            node,
            connection,
            reason,
        })
        .await;
    drop(slot);
}
