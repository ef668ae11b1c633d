//! Client and server: torch-ipc's `parallel.server(ip, port)` and
//! `parallel.client(ip, port)`, with `send`, `recvAny` and `close` — over
//! QUIC with the framework's codec instead of TCP sockets.
//!
//! A [`Server`] is a node listening at an address; a [`Client`] is a node
//! that joins it. Each side's inbox is a mailbox at a well-known id
//! ([`SERVER_INBOX`], [`CLIENT_INBOX`]), so either side posts to the other
//! without a handshake message. Values are any [`Payload`]: `&T` for rkyv
//! types and [`crate::Tensor`]s, or `&str` (it arrives as a `String`). They
//! arrive as zero-copy [`Received`] views; large values between processes of
//! one machine travel through shared memory, as `send` between processes does
//! (each side keeps a few segments for the other and writes into them again
//! once the other has dropped its view).
//!
//! **A client cannot connect by address alone.** There is no trust on first
//! use: a client pins the server's certificate, so it needs the server's
//! join line (`quic://ip:port#sha256=…`, from [`Server::join_line`]), handed
//! over the way you hand over the cluster password's file — a shared file, a
//! command-line argument, the output of the program that started the server.
//! Both sides also need the same cluster password ([`Password::resolve`]:
//! `PARALLEL_PASSWORD_FILE`, `PARALLEL_PASSWORD`, then a prompt).
//!
//! A client that disconnects or crashes shows up only as an error on
//! operations aimed at it ([`Server::send`]); [`Server::recv_any`] keeps
//! serving the others.
//!
//! ```
//! use parallel::Password;
//! use parallel::net::{Client, Server};
//!
//! #[parallel::main]
//! async fn main() -> Result<(), parallel::net::NetError> {
//!     let password = Password::new("doc test".into());
//!     // Create a server (port 0: any free port)...
//!     let server = Server::bind_with("127.0.0.1:0", password.clone()).await?;
//!     // ...a client that connects to it...
//!     let client = Client::connect_with(server.join_line(), password).await?;
//!     // ...says hello...
//!     client.send("hi").await?;
//!     // ...and the server listens for any client to say something.
//!     let (from, msg) = server.recv_any::<String>().await?;
//!     assert_eq!(msg.as_str(), "hi");
//!     assert_eq!(from, client.id());
//!     client.close().await?;
//!     server.close().await;
//!     Ok(())
//! }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, watch};

use crate::actor::Received;
use crate::id::{ActorId, NodeId};
use crate::remote::value::{self, Payload, ValueError, tag_of};
use crate::remote::{
    Delivery, Mailbox, MailboxInUse, Node, NodeBuilder, RemoteNode, RequestError, StartError,
};
use crate::transport::segments::{PeerSegments, SegmentCache, SegmentPool};
use crate::transport::shm::ShmError;
use crate::transport::{ConnectError, JoinLine, JoinLineError, Password};
use crate::wire::{DecodeError, EncodeError, WireType, encode};

/// The id of a server's inbox on its node: clients post values there.
pub const SERVER_INBOX: ActorId = ActorId::from_bytes(*b"para||el server\0");
/// The id of a client's inbox on its node: its server posts values there.
pub const CLIENT_INBOX: ActorId = ActorId::from_bytes(*b"para||el client\0");

/// Deliveries an inbox holds before the senders wait (flow control, nothing dropped).
pub const INBOX_CAPACITY: usize = 1024;

/// How long `close` waits for the other side to confirm it holds
/// everything sent before.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// After the connection to the server went down, how long a client's `recv`
/// still waits for values that were already on their way.
const GRACE: Duration = Duration::from_millis(100);

/// Operation codes of the posts between client and server.
mod op {
    /// A value from `send`.
    pub const DATA: u8 = 1;
    /// The sender closed in order; nothing follows.
    pub const BYE: u8 = 2;
    /// Flag on `DATA`: the payload names a shared-memory file holding the value.
    pub const SHM: u8 = crate::remote::value::SHM_FLAG;
}

/// Why a client or server operation failed, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The address to listen on does not parse or resolve.
    #[error(
        "{addr} is not an address to listen on ({reason}); give ip:port such as 127.0.0.1:8080 (port 0 picks a free port)"
    )]
    Address {
        /// The address as given.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// The string a client was given is not a join line.
    #[error(
        "{0} — a client needs the server's whole join line (Server::join_line), not just its address: the client pins the server's certificate"
    )]
    JoinLine(#[from] JoinLineError),
    /// This side's node could not start (no password, address in use, …).
    #[error("could not start this side's node: {0}")]
    Start(#[from] StartError),
    /// The inbox's well-known id is taken on this node.
    #[error(transparent)]
    Inbox(#[from] MailboxInUse),
    /// The client could not join the server.
    #[error("could not connect to the server: {0}")]
    Connect(#[from] ConnectError),
    /// The client is gone: it closed, crashed or lost its connection.
    #[error(
        "{client} is gone: {reason}; stop sending to it (Server::clients lists the connected ones)"
    )]
    ClientGone {
        /// The client.
        client: ClientId,
        /// What happened.
        reason: String,
    },
    /// The server is gone: it closed, crashed or the connection was lost.
    #[error("the server is gone: {reason}; connect again once it is back")]
    ServerGone {
        /// What happened.
        reason: String,
    },
    /// The value that arrived is not of the type asked for; it was dropped.
    #[error(
        "{from} sent a value of another type than the one asked for (tag {got:#018x}, expected {expected}); receive the type the other side sends"
    )]
    TypeMismatch {
        /// Who sent it: a client, or the server.
        from: String,
        /// The tag of what arrived.
        got: u64,
        /// The type asked for.
        expected: &'static str,
    },
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A value that arrived failed validation.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Passing a value through shared memory failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
}

/// A client as its server sees it: the id of the client's node, the same as
/// [`Client::id`] on the client's side.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ClientId(pub NodeId);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// What [`Client::connect`] accepts: a [`JoinLine`] or its text.
pub trait IntoJoinLine {
    /// The join line, or why the text is not one.
    fn into_join_line(self) -> Result<JoinLine, JoinLineError>;
}

impl IntoJoinLine for JoinLine {
    fn into_join_line(self) -> Result<JoinLine, JoinLineError> {
        Ok(self)
    }
}

impl IntoJoinLine for &JoinLine {
    fn into_join_line(self) -> Result<JoinLine, JoinLineError> {
        Ok(self.clone())
    }
}

impl IntoJoinLine for &str {
    fn into_join_line(self) -> Result<JoinLine, JoinLineError> {
        self.parse()
    }
}

impl IntoJoinLine for &String {
    fn into_join_line(self) -> Result<JoinLine, JoinLineError> {
        self.parse()
    }
}

/// The clients a server has heard of, in the order they joined.
#[derive(Default)]
struct Roster {
    order: Vec<ClientId>,
    known: HashSet<ClientId>,
}

impl Roster {
    fn add(&mut self, client: ClientId) {
        if self.known.insert(client) {
            self.order.push(client);
        }
    }

    fn remove(&mut self, client: ClientId) {
        if self.known.remove(&client) {
            self.order.retain(|c| *c != client);
        }
    }
}

/// Shared memory for `remote`, when it runs on this machine (it is on
/// loopback).
fn same_host(remote: &RemoteNode) -> Option<PeerSegments> {
    let addr = remote.link().peer().remote_addr();
    addr.ip().is_loopback().then(PeerSegments::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server: a node that clients join, with one inbox all of them post to.
pub struct Server {
    node: Node,
    inbox: AsyncMutex<Mailbox>,
    roster: Arc<Mutex<Roster>>,
    /// Shared memory with each client on this machine, while it is connected.
    same_host: Mutex<HashMap<ClientId, Arc<PeerSegments>>>,
    joined: watch::Receiver<u64>,
    accepter: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts a server listening at `addr` (`"127.0.0.1:8080"`, a
    /// [`SocketAddr`], `("0.0.0.0", 8080)`; port 0 picks a free port), with
    /// the cluster password from [`Password::resolve`]. Must run inside an
    /// actix System (`#[parallel::main]`).
    pub async fn bind(addr: impl ToSocketAddrs + fmt::Debug) -> Result<Server, NetError> {
        Self::start(Node::builder().listen(listen_addr(addr)?)).await
    }

    /// As [`Server::bind`], with the cluster password given.
    pub async fn bind_with(
        addr: impl ToSocketAddrs + fmt::Debug,
        password: Password,
    ) -> Result<Server, NetError> {
        Self::start(
            Node::builder()
                .listen(listen_addr(addr)?)
                .password(password),
        )
        .await
    }

    /// Starts a server on a node built from `builder`, for every node setting
    /// at once (listen address, password, heartbeat, …).
    pub async fn start(builder: NodeBuilder) -> Result<Server, NetError> {
        let node = builder.start().await?;
        let inbox = match node.open_mailbox_at(SERVER_INBOX, INBOX_CAPACITY) {
            Ok(inbox) => inbox,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        let roster = Arc::new(Mutex::new(Roster::default()));
        let (joined_tx, joined) = watch::channel(0u64);
        let accepter = {
            let (node, roster) = (node.clone(), roster.clone());
            actix_rt::spawn(async move {
                while let Some(remote) = node.accept().await {
                    let client = ClientId(remote.id());
                    tracing::debug!(%client, "client joined");
                    lock(&roster).add(client);
                    joined_tx.send_modify(|n| *n += 1);
                }
            })
        };
        Ok(Server {
            node,
            inbox: AsyncMutex::new(inbox),
            roster,
            same_host: Mutex::new(HashMap::new()),
            joined,
            accepter,
        })
    }

    /// What a client needs to connect: the address and the certificate's
    /// fingerprint. Hand it to clients; an address alone is not enough.
    pub fn join_line(&self) -> JoinLine {
        self.node.join_line()
    }

    /// The node the server runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The connected clients, in the order they joined.
    pub fn clients(&self) -> Vec<ClientId> {
        let mut roster = lock(&self.roster);
        let gone: Vec<ClientId> = roster
            .order
            .iter()
            .copied()
            .filter(|c| !self.node.remote(c.0).is_some_and(|r| r.is_alive()))
            .collect();
        for client in gone {
            roster.remove(client);
            lock(&self.same_host).remove(&client);
        }
        roster.order.clone()
    }

    /// The shared memory with `client`, if it runs on this machine.
    fn same_host(&self, client: ClientId) -> Option<Arc<PeerSegments>> {
        let mut all = lock(&self.same_host);
        if let Some(known) = all.get(&client) {
            return Some(known.clone());
        }
        let made = Arc::new(same_host(&self.node.remote(client.0)?)?);
        all.insert(client, made.clone());
        Some(made)
    }

    /// Waits until at least `n` clients are connected and returns them (or
    /// fewer, if the server's node shut down meanwhile).
    pub async fn wait_for_clients(&self, n: usize) -> Vec<ClientId> {
        let mut joined = self.joined.clone();
        loop {
            let clients = self.clients();
            if clients.len() >= n || joined.changed().await.is_err() {
                return clients;
            }
        }
    }

    /// The next value from whichever client speaks first, as a `T`, and who
    /// sent it. Values from one client arrive in the order it sent them.
    /// Clients that close or crash are skipped; a value of another type is
    /// dropped and reported as [`NetError::TypeMismatch`] (the next call
    /// goes on with the next value). Waits until a value arrives: wrap it
    /// in a timeout if no client may ever speak.
    pub async fn recv_any<T: WireType>(&self) -> Result<(ClientId, Received<T>), NetError> {
        let mut inbox = self.inbox.lock().await;
        loop {
            let Some(delivery) = inbox.recv().await else {
                return Err(NetError::ServerGone {
                    reason: "the server's node shut down".into(),
                });
            };
            let client = ClientId(delivery.from);
            match delivery.op & !op::SHM {
                op::DATA => {
                    lock(&self.roster).add(client);
                    let shared = self.same_host(client);
                    let cache = shared.as_ref().map(|s| &s.mapped);
                    return open(delivery, cache, &client).map(|value| (client, value));
                }
                op::BYE => {
                    tracing::debug!(%client, "client closed");
                    lock(&self.roster).remove(client);
                    lock(&self.same_host).remove(&client);
                }
                other => {
                    tracing::warn!(%client, op = other, "dropped a post with an unknown operation");
                    value::discard(&delivery);
                }
            }
        }
    }

    /// Sends `value` to `client`: `&T` for rkyv types and tensors, or
    /// `&str`. Returns once the value is on its way; values to one client
    /// arrive in order. Fails with [`NetError::ClientGone`] if the client is
    /// not connected (any more).
    pub async fn send(&self, client: ClientId, value: impl Payload) -> Result<(), NetError> {
        let gone = |reason: String| NetError::ClientGone { client, reason };
        let remote = self.node.remote(client.0).ok_or_else(|| {
            gone("it is not connected (it closed, crashed or never joined)".into())
        })?;
        let shared = self.same_host(client);
        let pool = shared.as_ref().map(|s| &s.lent);
        post(&remote, CLIENT_INBOX, &value, pool, gone).await
    }

    /// Tells every client the server closes (their `recv` then fails with
    /// [`NetError::ServerGone`] after the values sent before), waits at most
    /// [`CLOSE_TIMEOUT`] for them to hold everything sent to them, and
    /// shuts the node down.
    pub async fn close(self) {
        let farewells: Vec<_> = self
            .node
            .remotes()
            .into_iter()
            .map(|remote| actix_rt::spawn(say_bye(remote, CLIENT_INBOX)))
            .collect();
        for farewell in farewells {
            let _ = farewell.await;
        }
        self.accepter.abort();
        self.node.shutdown().await;
        let mut inbox = self.inbox.lock().await;
        while let Some(delivery) = inbox.try_recv() {
            value::discard(&delivery);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accepter.abort();
    }
}

/// A client: a node joined to one server.
pub struct Client {
    node: Node,
    server: RemoteNode,
    /// Shared memory with the server, when it runs on this machine.
    same_host: Option<PeerSegments>,
    inbox: AsyncMutex<Mailbox>,
    gone: Mutex<Option<String>>,
}

impl Client {
    /// Connects to the server behind `server` — its join line, or the
    /// line's text — with the cluster password from [`Password::resolve`].
    /// An address alone is not enough: the server's certificate is pinned.
    /// Must run inside an actix System (`#[parallel::main]`).
    pub async fn connect(server: impl IntoJoinLine) -> Result<Client, NetError> {
        let line = server.into_join_line()?;
        Self::start(&line, Node::builder().listen(line.bind_to_reach())).await
    }

    /// As [`Client::connect`], with the cluster password given.
    pub async fn connect_with(
        server: impl IntoJoinLine,
        password: Password,
    ) -> Result<Client, NetError> {
        let line = server.into_join_line()?;
        let builder = Node::builder()
            .listen(line.bind_to_reach())
            .password(password);
        Self::start(&line, builder).await
    }

    /// Connects to the server behind `line` from a node built from
    /// `builder`. Its listen address must be able to reach the server: the
    /// default, loopback, reaches only servers on this machine.
    pub async fn start(line: &JoinLine, builder: NodeBuilder) -> Result<Client, NetError> {
        let node = builder.start().await?;
        let inbox = match node.open_mailbox_at(CLIENT_INBOX, INBOX_CAPACITY) {
            Ok(inbox) => inbox,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        let server = match node.join(line).await {
            Ok(server) => server,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        Ok(Client {
            node,
            same_host: same_host(&server),
            server,
            inbox: AsyncMutex::new(inbox),
            gone: Mutex::new(None),
        })
    }

    /// This client's id, as the server sees it.
    pub fn id(&self) -> ClientId {
        ClientId(self.node.id())
    }

    /// The node the client runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends `value` to the server: `&T` for rkyv types and tensors, or
    /// `&str`. Returns once the value is on its way; values arrive in order.
    pub async fn send(&self, value: impl Payload) -> Result<(), NetError> {
        let pool = self.same_host.as_ref().map(|s| &s.lent);
        post(&self.server, SERVER_INBOX, &value, pool, |reason| {
            NetError::ServerGone { reason }
        })
        .await
    }

    /// The next value the server sent this client, as a `T`. Fails with
    /// [`NetError::ServerGone`] once the server closed or the connection is
    /// lost and every value sent before was received; a value of another
    /// type is dropped and reported as [`NetError::TypeMismatch`].
    pub async fn recv<T: WireType>(&self) -> Result<Received<T>, NetError> {
        let mut inbox = self.inbox.lock().await;
        loop {
            let gone = lock(&self.gone).clone();
            let delivery = match gone {
                Some(reason) => inbox.try_recv().ok_or(NetError::ServerGone { reason })?,
                None => {
                    let next = tokio::select! {
                        biased;
                        delivery = inbox.recv() => delivery,
                        reason = self.server.closed() => {
                            match tokio::time::timeout(GRACE, inbox.recv()).await {
                                Ok(delivery) => delivery,
                                Err(_) => {
                                    self.set_gone(reason.to_string());
                                    continue;
                                }
                            }
                        }
                    };
                    match next {
                        Some(delivery) => delivery,
                        None => {
                            self.set_gone("this client's node shut down".into());
                            continue;
                        }
                    }
                }
            };
            if delivery.from != self.server.id() {
                tracing::warn!(from = %delivery.from, "dropped a post from a node that is not the server");
                value::discard(&delivery);
                continue;
            }
            match delivery.op & !op::SHM {
                op::DATA => {
                    let cache = self.same_host.as_ref().map(|s| &s.mapped);
                    return open(delivery, cache, &"the server");
                }
                op::BYE => self.set_gone("the server closed".into()),
                other => {
                    tracing::warn!(op = other, "dropped a post with an unknown operation");
                    value::discard(&delivery);
                }
            }
        }
    }

    fn set_gone(&self, reason: String) {
        lock(&self.gone).get_or_insert(reason);
    }

    /// Tells the server this client leaves, waits at most [`CLOSE_TIMEOUT`]
    /// until the server holds every value sent before, and shuts the node
    /// down. Fails with [`NetError::ServerGone`] if the server did not
    /// confirm (values sent before may then be lost).
    pub async fn close(self) -> Result<(), NetError> {
        let confirmed = say_bye(self.server.clone(), SERVER_INBOX).await;
        self.node.shutdown().await;
        confirmed.map_err(|reason| NetError::ServerGone { reason })
    }
}

/// The address to listen on, from what the caller gave.
fn listen_addr(addr: impl ToSocketAddrs + fmt::Debug) -> Result<SocketAddr, NetError> {
    let refused = |reason: String| NetError::Address {
        addr: format!("{addr:?}"),
        reason,
    };
    addr.to_socket_addrs()
        .map_err(|e| refused(e.to_string()))?
        .next()
        .ok_or_else(|| refused("it resolves to no address".into()))
}

/// Posts `value` to the inbox `to` on `remote`: through a segment of
/// `same_host` (the peer's pool, when it runs on this machine) when the
/// value is large.
async fn post(
    remote: &RemoteNode,
    to: ActorId,
    value: &impl Payload,
    same_host: Option<&SegmentPool>,
    gone: impl FnOnce(String) -> NetError,
) -> Result<(), NetError> {
    match value::post_value(
        remote,
        to,
        op::DATA,
        value,
        same_host,
        value::DEFAULT_SHM_THRESHOLD,
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(ValueError::Request(e)) => Err(gone(reason_of(e))),
        Err(e) => Err(NetError::from_value(e, &"this side")),
    }
}

/// Posts a goodbye to `remote`'s inbox `to` and waits at most
/// [`CLOSE_TIMEOUT`] until it is there: then so is everything sent before.
async fn say_bye(remote: RemoteNode, to: ActorId) -> Result<(), String> {
    let nothing = encode(&()).map_err(|e| e.to_string())?;
    let bye = remote.post_confirmed(to, op::BYE, tag_of::<()>(), nothing);
    match tokio::time::timeout(CLOSE_TIMEOUT, bye).await {
        Ok(result) => result.map_err(reason_of),
        Err(_) => Err(format!(
            "it did not confirm within {CLOSE_TIMEOUT:?}; its inbox may be full"
        )),
    }
}

fn reason_of(e: RequestError) -> String {
    match e {
        RequestError::PeerLost { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Reads a delivered value as a `T`: a validated, read-only view of the
/// post's payload or of the shared-memory payload it names (through
/// `cache`, the sender's segments as this side maps them).
fn open<T: WireType>(
    delivery: Delivery,
    cache: Option<&SegmentCache>,
    from: &dyn fmt::Display,
) -> Result<Received<T>, NetError> {
    value::open_value(delivery, cache).map_err(|e| NetError::from_value(e, from))
}

impl NetError {
    fn from_value(e: ValueError, from: &dyn fmt::Display) -> Self {
        match e {
            ValueError::TypeMismatch { got, expected } => NetError::TypeMismatch {
                from: from.to_string(),
                got,
                expected,
            },
            ValueError::Request(e) => NetError::ServerGone {
                reason: reason_of(e),
            },
            ValueError::Encode(e) => NetError::Encode(e),
            ValueError::Decode(e) => NetError::Decode(e),
            ValueError::Shm(e) => NetError::from(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::time::timeout;

    use super::*;
    use crate::actor::Tensor;

    const T: Duration = Duration::from_secs(10);

    fn password() -> Password {
        Password::new("net unit tests".into())
    }

    async fn server() -> Server {
        timeout(T, Server::bind_with("127.0.0.1:0", password()))
            .await
            .expect("bind in time")
            .expect("bind")
    }

    async fn client(server: &Server) -> Client {
        timeout(T, Client::connect_with(server.join_line(), password()))
            .await
            .expect("connect in time")
            .expect("connect")
    }

    #[actix_rt::test]
    async fn hi_reaches_recv_any_and_both_close() {
        let server = server().await;
        let client = client(&server).await;
        timeout(T, client.send("hi")).await.unwrap().unwrap();
        let (from, msg) = timeout(T, server.recv_any::<String>())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.as_str(), "hi");
        assert_eq!(from, client.id());
        timeout(T, client.close()).await.unwrap().unwrap();
        timeout(T, server.close()).await.unwrap();
    }

    #[actix_rt::test]
    async fn values_from_many_clients_all_arrive_once_in_order_per_client() {
        const CLIENTS: u32 = 4;
        const EACH: u32 = 300;
        let server = server().await;
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(Arc::new(client(&server).await));
        }
        let ids: Vec<ClientId> = clients.iter().map(|c| c.id()).collect();
        let senders: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let c = c.clone();
                actix_rt::spawn(async move {
                    for seq in 0..EACH {
                        c.send(&(k as u32, seq)).await.unwrap();
                    }
                })
            })
            .collect();
        let mut next: HashMap<ClientId, u32> = HashMap::new();
        for _ in 0..CLIENTS * EACH {
            let (from, v) = timeout(T, server.recv_any::<(u32, u32)>())
                .await
                .expect("every value arrives")
                .unwrap();
            let (k, seq) = (v.0.to_native(), v.1.to_native());
            assert_eq!(
                ids[k as usize], from,
                "the sender is the client that sent it"
            );
            let expected = next.entry(from).or_default();
            assert_eq!(seq, *expected, "values of {from} arrive in order, once");
            *expected += 1;
        }
        for task in senders {
            timeout(T, task).await.unwrap().unwrap();
        }
        assert!(next.values().all(|&n| n == EACH), "{next:?}");
        // Nothing is left over: no value arrived twice.
        assert!(
            timeout(Duration::from_millis(300), server.recv_any::<(u32, u32)>())
                .await
                .is_err()
        );
        let mut listed = server.clients();
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected);
        for c in clients {
            let c = Arc::into_inner(c).expect("the senders are done");
            timeout(T, c.close()).await.unwrap().unwrap();
        }
        timeout(T, server.close()).await.unwrap();
    }

    #[actix_rt::test]
    async fn the_server_answers_each_client_and_only_that_client() {
        let server = server().await;
        let (a, b) = (client(&server).await, client(&server).await);
        assert_eq!(
            timeout(T, server.wait_for_clients(2)).await.unwrap().len(),
            2
        );
        timeout(T, a.send(&1u64)).await.unwrap().unwrap();
        timeout(T, b.send(&2u64)).await.unwrap().unwrap();
        for _ in 0..2 {
            let (from, v) = timeout(T, server.recv_any::<u64>()).await.unwrap().unwrap();
            let doubled = v.to_native() * 2;
            timeout(T, server.send(from, &doubled))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(*timeout(T, a.recv::<u64>()).await.unwrap().unwrap(), 2);
        assert_eq!(*timeout(T, b.recv::<u64>()).await.unwrap().unwrap(), 4);
        timeout(T, a.close()).await.unwrap().unwrap();
        timeout(T, b.close()).await.unwrap().unwrap();
        timeout(T, server.close()).await.unwrap();
    }

    #[actix_rt::test]
    async fn a_value_of_another_type_is_reported_and_the_next_one_is_read() {
        let server = server().await;
        let client = client(&server).await;
        timeout(T, client.send("not a number"))
            .await
            .unwrap()
            .unwrap();
        timeout(T, client.send(&7u64)).await.unwrap().unwrap();
        let err = timeout(T, server.recv_any::<u64>())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, NetError::TypeMismatch { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&client.id().to_string()), "{text}");
        assert!(
            text.contains("receive the type the other side sends"),
            "{text}"
        );
        let (_, v) = timeout(T, server.recv_any::<u64>()).await.unwrap().unwrap();
        assert_eq!(*v, 7);
        timeout(T, client.close()).await.unwrap().unwrap();
        timeout(T, server.close()).await.unwrap();
    }

    #[actix_rt::test]
    async fn a_client_that_leaves_is_an_error_only_for_operations_on_it() {
        let server = server().await;
        let (a, b) = (client(&server).await, client(&server).await);
        let (a_id, b_id) = (a.id(), b.id());
        timeout(T, a.send(&1u64)).await.unwrap().unwrap();
        timeout(T, a.close()).await.unwrap().unwrap();
        // What `a` sent before it closed still arrives; then `b` is served.
        let (from, v) = timeout(T, server.recv_any::<u64>()).await.unwrap().unwrap();
        assert_eq!((from, v.to_native()), (a_id, 1));
        timeout(T, b.send(&2u64)).await.unwrap().unwrap();
        let (from, v) = timeout(T, server.recv_any::<u64>()).await.unwrap().unwrap();
        assert_eq!((from, v.to_native()), (b_id, 2));
        let err = timeout(T, server.send(a_id, &3u64))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, NetError::ClientGone { client, .. } if client == a_id),
            "{err:?}"
        );
        assert!(err.to_string().contains("Server::clients"), "{err}");
        timeout(T, server.send(b_id, &4u64)).await.unwrap().unwrap();
        assert_eq!(*timeout(T, b.recv::<u64>()).await.unwrap().unwrap(), 4);
        assert_eq!(server.clients(), vec![b_id]);
        timeout(T, b.close()).await.unwrap().unwrap();
        timeout(T, server.close()).await.unwrap();
    }

    #[actix_rt::test]
    async fn large_tensors_pass_both_ways() {
        let server = server().await;
        let client = client(&server).await;
        // 4 MiB: over the shared-memory threshold between processes of one host.
        let data: Vec<f32> = (0..1 << 20).map(|i| (i % 13) as f32).collect();
        let sum: f64 = data.iter().map(|&x| x as f64).sum();
        let tensor = Tensor::new(&[1024, 1024], data).unwrap();
        // Three rounds: from the second on, each side writes into the one
        // segment it lent the other (handed back when the view dropped)
        // and reads the other's through the mapping it made the first time.
        let mut from = None;
        for _ in 0..3 {
            timeout(T, client.send(&tensor)).await.unwrap().unwrap();
            let (sender, got) = timeout(T, server.recv_any::<Tensor<f32>>())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.shape(), vec![1024, 1024]);
            let got_sum: f64 = got.as_slice().iter().map(|&x| x as f64).sum();
            assert_eq!(got_sum, sum);
            drop(got);
            from = Some(sender);
            timeout(T, server.send(sender, &tensor))
                .await
                .unwrap()
                .unwrap();
            let back = timeout(T, client.recv::<Tensor<f32>>())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back.as_slice(), tensor.as_slice());
        }
        let from = from.expect("three rounds");
        let at_client = client
            .same_host
            .as_ref()
            .expect("the server is on loopback");
        let at_server = server.same_host(from).expect("the client is on loopback");
        for side in [at_client, &*at_server] {
            let stats = side.lent.stats();
            assert_eq!((stats.segments, stats.lent), (1, 0), "{stats:?}");
            assert_eq!(side.mapped.len(), 1);
        }
        timeout(T, client.close()).await.unwrap().unwrap();
        timeout(T, server.close()).await.unwrap();
    }

    #[actix_rt::test]
    async fn a_client_reads_what_was_sent_before_the_server_closed_then_fails() {
        let server = server().await;
        let client = client(&server).await;
        timeout(T, server.wait_for_clients(1)).await.unwrap();
        timeout(T, server.send(client.id(), "last words"))
            .await
            .unwrap()
            .unwrap();
        timeout(T, server.close()).await.unwrap();
        let last = timeout(T, client.recv::<String>()).await.unwrap().unwrap();
        assert_eq!(last.as_str(), "last words");
        for _ in 0..2 {
            let err = timeout(T, client.recv::<String>())
                .await
                .unwrap()
                .unwrap_err();
            assert!(matches!(err, NetError::ServerGone { .. }), "{err:?}");
        }
        let err = timeout(T, client.send("anyone?"))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, NetError::ServerGone { .. }), "{err:?}");
        let _ = timeout(T, client.close()).await.unwrap();
    }

    #[actix_rt::test]
    async fn an_address_alone_is_not_enough_to_connect() {
        let err = match timeout(T, Client::connect_with("127.0.0.1:8080", password()))
            .await
            .unwrap()
        {
            Err(e) => e,
            Ok(_) => panic!("connected by address alone"),
        };
        assert!(matches!(err, NetError::JoinLine(_)), "{err:?}");
        assert!(err.to_string().contains("Server::join_line"), "{err}");
        let err = match timeout(T, Server::bind_with("not an address", password()))
            .await
            .unwrap()
        {
            Err(e) => e,
            Ok(_) => panic!("bound to nonsense"),
        };
        assert!(matches!(err, NetError::Address { .. }), "{err:?}");
    }

    #[actix_rt::test]
    async fn inbox_ids_are_taken_once_per_node() {
        let server = server().await;
        let err = server
            .node()
            .open_mailbox_at(SERVER_INBOX, 1)
            .err()
            .expect("the server's inbox is open");
        assert_eq!(err, MailboxInUse(SERVER_INBOX));
        let other = server.node().open_mailbox_at(CLIENT_INBOX, 1).unwrap();
        assert_eq!(other.id(), CLIENT_INBOX);
        drop(other);
        assert!(server.node().open_mailbox_at(CLIENT_INBOX, 1).is_ok());
        timeout(T, server.close()).await.unwrap();
    }
}
