//! `ActorRef<A>`: the one handle to an actor, wherever it lives.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::Addr;
use rkyv::rancor::Fallible;
use rkyv::{Archive, Deserialize, Place, Serialize};
use tokio::sync::oneshot;

use crate::actor::{
    Accepts, Deliver, Down, ExitReason, Failure, LocalEntry, Message, RemoteActor, push,
};
use crate::id::{ActorId, NodeId};
use crate::transport::JoinLine;
use crate::wire::{DecodeError, EncodeError, FrameHeader, FrameKind, decode_owned};

use super::link::{PeerLink, RequestError};
use super::node::{DEFAULT_ASK_TIMEOUT, is_shut_down, local_nodes};
use super::supervised::{Home, lookup};

mod tell;

pub use tell::Tell;

/// Where an actor lives, as it travels inside messages.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ActorAddress {
    /// The actor.
    pub id: ActorId,
    /// The node that hosts it.
    pub node: NodeId,
    /// How to join that node, if it listens.
    pub join_line: Option<JoinLine>,
}

enum Route<A: RemoteActor> {
    Local {
        addr: Addr<A>,
        /// The actor's registry entry, for mailbox slots.
        entry: Arc<LocalEntry>,
    },
    Remote(Arc<PeerLink>),
}

impl<A: RemoteActor> Clone for Route<A> {
    fn clone(&self) -> Self {
        match self {
            Route::Local { addr, entry } => Route::Local {
                addr: addr.clone(),
                entry: entry.clone(),
            },
            Route::Remote(link) => Route::Remote(link.clone()),
        }
    }
}

impl<A: RemoteActor> Route<A> {
    /// False for a connection that is gone (local restarts are found on use).
    fn is_healthy(&self) -> bool {
        match self {
            Route::Local { .. } => true,
            Route::Remote(link) => link.is_alive(),
        }
    }
}

/// A route borrowed from the reference's cache, or found again after the
/// cached one went dead.
enum RouteRef<'a, A: RemoteActor> {
    Cached(&'a Route<A>),
    Fresh(Route<A>),
}

impl<A: RemoteActor> std::ops::Deref for RouteRef<'_, A> {
    type Target = Route<A>;
    fn deref(&self) -> &Route<A> {
        match self {
            RouteRef::Cached(r) => r,
            RouteRef::Fresh(r) => r,
        }
    }
}

/// How an `ActorRef` made with [`ActorRef::with_retry`] retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Retry {
    attempts: u32,
    delay: Duration,
}

/// A message on its way: as given, encoded for the wire, or consumed by a
/// local actor (then it cannot be sent again).
enum Pending<M> {
    Message(M),
    Encoded(crate::wire::Payload),
    Taken,
}

/// A handle to an actor of type `A`: `tell` and `ask` work the same whether
/// it lives in this process or on another node. Local sends never serialize;
/// remote sends serialize once and travel over the node's QUIC connection.
/// An `ActorRef` can itself be sent inside a message and used on the other side.
pub struct ActorRef<A: RemoteActor> {
    address: ActorAddress,
    route: OnceLock<Route<A>>,
    /// The route found again after the cached one's connection died (the
    /// actor was restarted on another node).
    moved: Mutex<Option<Route<A>>>,
    timeout: Duration,
    retry: Option<Retry>,
    _type: PhantomData<fn() -> A>,
}

impl<A: RemoteActor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        let route = OnceLock::new();
        if let Some(r) = self.route.get() {
            let _ = route.set(r.clone());
        }
        let moved = self.moved.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Self {
            address: self.address.clone(),
            route,
            moved: Mutex::new(moved),
            timeout: self.timeout,
            retry: self.retry,
            _type: PhantomData,
        }
    }
}

impl<A: RemoteActor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ActorRef<{}>({} on {})",
            A::NAME,
            self.address.id,
            self.address.node
        )
    }
}

/// Why a `tell` did not deliver; the message comes back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SendError<M> {
    /// The actor or the connection to its node is gone.
    #[error("the actor is gone ({reason}); the message was not delivered")]
    Closed {
        /// The undelivered message.
        message: M,
        /// What is gone.
        reason: String,
    },
    /// The mailbox or the connection is full (only from `try_tell`); `tell` waits instead.
    #[error("the mailbox is full; retry later or use `tell`, which waits")]
    Full(M),
    /// The actor is down and its supervisor is starting a new incarnation.
    #[error(
        "actor {id} is restarting under its supervisor; send again shortly, or through `ActorRef::with_retry` to wait for the new incarnation"
    )]
    Restarting {
        /// The undelivered message.
        message: M,
        /// The actor.
        id: ActorId,
    },
    /// The message could not be serialized.
    #[error("{1}")]
    Encode(M, EncodeError),
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<M> SendError<M> {
    /// The message that was not delivered.
    pub fn into_message(self) -> M {
        match self {
            SendError::Closed { message, .. }
            | SendError::Restarting { message, .. }
            | SendError::Full(message)
            | SendError::Encode(message, _) => message,
        }
    }
}

/// Why an `ask` got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The actor stopped, or was never there.
    #[error("the actor is gone: {0}")]
    Gone(String),
    /// The actor's handler panicked on this message
    /// ([`Failure::Panicked`], wherever the actor lives; never retried), the
    /// actor stopped before it answered, or the remote node refused the message.
    #[error(transparent)]
    Failed(Failure),
    /// The connection to the actor's node was lost before the reply.
    #[error(transparent)]
    Request(RequestError),
    /// No reply within the reference's timeout, whether the actor lives in
    /// this process or on another node.
    #[error("no reply within {0:?}; the actor may be busy — raise the timeout with `with_timeout`")]
    Timeout(Duration),
    /// The request could not be serialized.
    #[error(transparent)]
    Encode(EncodeError),
    /// The reply could not be read.
    #[error(transparent)]
    Decode(DecodeError),
    /// No node of this process can reach the actor's node.
    #[error("no route to {0}: start a Node in this process and join the actor's node first")]
    NoRoute(NodeId),
    /// The actor's node is a node of this process that was shut down
    /// (`Node::shutdown`): its actors were stopped with it.
    #[error(
        "node {0} was shut down (`Node::shutdown`) and its actors were stopped with it; spawn the actor on a node that runs"
    )]
    NodeShutDown(NodeId),
    /// The actor is down and its supervisor is starting a new incarnation.
    #[error(
        "actor {0} is restarting under its supervisor; ask again shortly, or through `ActorRef::with_retry` to wait for the new incarnation"
    )]
    Restarting(ActorId),
    /// The actor is down and its supervisor will not start it again (it
    /// stopped, gave up after too many restarts, or the child is not restarted).
    #[error(
        "actor {id} is down ({reason}) and its supervisor will not restart it; look at the supervisor's events"
    )]
    ActorDown {
        /// The actor.
        id: ActorId,
        /// Why it went down.
        reason: ExitReason,
    },
}

impl AskError {
    /// True for failures a new incarnation may cure: the actor is
    /// restarting, or the connection to its node was lost.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AskError::Restarting(_) | AskError::Request(RequestError::PeerLost { .. })
        )
    }
}

impl<A: RemoteActor> ActorRef<A> {
    pub(crate) fn local(
        id: ActorId,
        node: NodeId,
        join_line: Option<JoinLine>,
        addr: Addr<A>,
        entry: Arc<LocalEntry>,
    ) -> Self {
        let r = Self::from_address(ActorAddress {
            id,
            node,
            join_line,
        });
        let _ = r.route.set(Route::Local { addr, entry });
        r
    }

    pub(crate) fn remote(id: ActorId, link: Arc<PeerLink>) -> Self {
        let address = ActorAddress {
            id,
            node: link.node(),
            join_line: link.peer().join_line(),
        };
        let r = Self::from_address(address);
        let _ = r.route.set(Route::Remote(link));
        r
    }

    /// A reference from an address; the route is found on first use.
    pub fn from_address(address: ActorAddress) -> Self {
        Self {
            address,
            route: OnceLock::new(),
            moved: Mutex::new(None),
            timeout: DEFAULT_ASK_TIMEOUT,
            retry: None,
            _type: PhantomData,
        }
    }

    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.address.id
    }

    /// The id of the node that hosts the actor.
    pub fn node(&self) -> NodeId {
        self.address.node
    }

    /// Where the actor lives.
    pub fn address(&self) -> &ActorAddress {
        &self.address
    }

    /// True when the actor lives in this process.
    pub fn is_local(&self) -> bool {
        matches!(self.route.get(), Some(Route::Local { .. }))
    }

    /// The same reference with another `ask` timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same reference, retrying `tell` and `ask` up to `attempts` times,
    /// `delay` apart, while the actor is restarting or its node's connection
    /// was lost ([`AskError::is_transient`]): a call made while a supervised
    /// actor is down reaches the new incarnation instead of failing. Each
    /// attempt of an `ask` has the reference's timeout.
    ///
    /// A retry never repeats a message that crashed the actor: an `ask`
    /// whose handler panicked fails with
    /// `AskError::Failed(Failure::Panicked(..))`, local or remote, and is
    /// not sent again. An `ask` whose message a local actor already took when
    /// it died is not repeated either. An `ask` to another node whose
    /// connection was lost before the reply may be repeated: that node may
    /// have handled it (at least once, not exactly once).
    pub fn with_retry(mut self, attempts: u32, delay: Duration) -> Self {
        self.retry = Some(Retry { attempts, delay });
        self
    }

    async fn route(&self) -> Result<&Route<A>, AskError> {
        if let Some(route) = self.route.get() {
            return Ok(route);
        }
        let route = self.resolve().await?;
        Ok(self.route.get_or_init(|| route))
    }

    /// The route to use now: the cached one while its connection lives
    /// (the hot path: one liveness check), else the actor's new home.
    async fn current_route(&self) -> Result<RouteRef<'_, A>, AskError> {
        let route = self.route().await?;
        if route.is_healthy() {
            return Ok(RouteRef::Cached(route));
        }
        self.reroute(route).map(RouteRef::Fresh)
    }

    /// Finds the actor again after its cached connection died: through the
    /// directories of this process's nodes (a supervisor moved it), else
    /// through a newer connection to the same node. Without either, the dead
    /// route itself, so the call fails with its connection's own error.
    fn reroute(&self, dead: &Route<A>) -> Result<Route<A>, AskError> {
        let mut moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = moved.as_ref()
            && route.is_healthy()
        {
            return Ok(route.clone());
        }
        let route = match self.located()? {
            Some(route) => route,
            None => match self.route_on(self.address.node) {
                Some(route) => route,
                None => return Ok(dead.clone()),
            },
        };
        *moved = Some(route.clone());
        Ok(route)
    }

    /// The route per the directory, when a supervisor of this process
    /// placed the actor: `Ok(None)` when no directory knows it.
    fn located(&self) -> Result<Option<Route<A>>, AskError> {
        let id = self.address.id;
        match lookup(id) {
            None => Ok(None),
            Some(Home::Restarting) => Err(AskError::Restarting(id)),
            Some(Home::Down(reason)) => Err(AskError::ActorDown { id, reason }),
            Some(Home::At(node)) => self
                .route_on(node)
                .map(Some)
                .ok_or(AskError::Restarting(id)),
        }
    }

    /// A live route to the actor on `node`: its local entry if `node` is in
    /// this process, else a live connection of one of this process's nodes.
    fn route_on(&self, node: NodeId) -> Option<Route<A>> {
        let nodes = local_nodes();
        if let Some(home) = nodes.iter().find(|n| n.id() == node) {
            let entry = home.0.registry.get(self.address.id)?;
            let addr = entry.addr::<A>()?;
            return Some(Route::Local { addr, entry });
        }
        nodes.iter().find_map(|n| {
            n.0.links
                .get(&node)
                .filter(|l| l.is_alive())
                .map(|l| Route::Remote(l.clone()))
        })
    }

    /// Turns a failure into [`AskError::Restarting`] or
    /// [`AskError::ActorDown`] when a supervisor of this process knows the
    /// actor is down; otherwise returns it unchanged. A panic of the handler
    /// stays what it is: the caller learns that its message crashed the
    /// actor (and a retry does not send it again). Only on error paths.
    fn classify(&self, error: AskError) -> AskError {
        if matches!(
            error,
            AskError::Restarting(_)
                | AskError::ActorDown { .. }
                | AskError::Encode(_)
                | AskError::Failed(Failure::Panicked(_))
        ) {
            return error;
        }
        let id = self.address.id;
        match lookup(id) {
            Some(Home::Restarting) => AskError::Restarting(id),
            Some(Home::Down(reason)) => AskError::ActorDown { id, reason },
            Some(Home::At(node)) if is_shut_down(node) => AskError::NodeShutDown(node),
            // Its home is unreachable or it is gone from there: its
            // supervisor is about to hear of it and restart it.
            Some(Home::At(node)) if self.route_on(node).is_none() => AskError::Restarting(id),
            None if is_shut_down(self.address.node) => AskError::NodeShutDown(self.address.node),
            _ => error,
        }
    }

    fn send_error<M>(&self, message: M, error: AskError) -> SendError<M> {
        match self.classify(error) {
            AskError::Restarting(id) => SendError::Restarting { message, id },
            other => SendError::Closed {
                message,
                reason: other.to_string(),
            },
        }
    }

    /// The actor's current incarnation, when `entry` is an earlier one that
    /// stopped (a supervisor restarted it under the same id).
    fn restarted(&self, entry: &Arc<LocalEntry>) -> Option<(Addr<A>, Arc<LocalEntry>)> {
        // A restart comes only after the exit is set: one load per message.
        if !entry.has_exited() {
            return None;
        }
        let node = local_nodes()
            .into_iter()
            .find(|n| n.id() == self.address.node)?;
        let current = node.0.registry.get(self.address.id)?;
        Some((current.addr::<A>()?, current))
    }

    /// Waits until the actor stops and says why: normally, by a panic (with
    /// its message), killed, or `NoConnection` when its node becomes
    /// unreachable. Each call delivers its [`Down`] exactly once.
    pub async fn watch(&self) -> Down {
        let id = self.address.id;
        let at = match lookup(id) {
            Some(Home::At(node)) => node,
            _ => self.address.node,
        };
        let home = local_nodes().into_iter().find(|n| n.id() == at);
        let reason = match home {
            Some(node) => match node.0.registry.entry(id) {
                Some(entry) => entry.exited().await,
                None => ExitReason::NoProc,
            },
            None => match self.route().await {
                Ok(Route::Remote(link)) => super::watch::remote(link, id).await,
                Ok(Route::Local { entry, .. }) => entry.exited().await,
                Err(_) => ExitReason::NoConnection,
            },
        };
        Down { id, reason }
    }

    fn resolve_now(&self) -> Option<Route<A>> {
        if let Ok(Some(route)) = self.located() {
            return Some(route);
        }
        let nodes = local_nodes();
        for node in &nodes {
            if node.id() == self.address.node {
                let entry = node.0.registry.get(self.address.id)?;
                let addr = entry.addr::<A>()?;
                return Some(Route::Local { addr, entry });
            }
        }
        nodes.iter().find_map(|n| {
            n.0.links
                .get(&self.address.node)
                .map(|l| Route::Remote(l.clone()))
        })
    }

    async fn resolve(&self) -> Result<Route<A>, AskError> {
        if let Some(route) = self.located()? {
            return Ok(route);
        }
        if is_shut_down(self.address.node) {
            return Err(AskError::NodeShutDown(self.address.node));
        }
        if let Some(route) = self.resolve_now() {
            return Ok(route);
        }
        let gone = || {
            AskError::Gone(format!(
                "{} is not on its node {}",
                self.address.id, self.address.node
            ))
        };
        let nodes = local_nodes();
        if nodes.iter().any(|n| n.id() == self.address.node) {
            return Err(gone());
        }
        let (Some(node), Some(line)) = (nodes.first(), self.address.join_line.as_ref()) else {
            return Err(AskError::NoRoute(self.address.node));
        };
        let remote = node.join(line).await.map_err(|e| {
            AskError::Request(RequestError::PeerLost {
                node: self.address.node,
                reason: e.to_string(),
            })
        })?;
        Ok(Route::Remote(remote.link().clone()))
    }

    fn header<M: Message>(&self, kind: FrameKind) -> FrameHeader {
        let mut h = FrameHeader::new(kind);
        h.target = self.address.id;
        h.type_tag = M::TAG;
        h
    }

    /// Sends `msg` and waits for the handler's result, at most the reference's
    /// timeout (30 s unless set with [`ActorRef::with_timeout`]). If the actor's
    /// node dies, fails within the heartbeat timeout with [`AskError::Request`];
    /// while a supervisor restarts the actor, fails at once with
    /// [`AskError::Restarting`] — or, through [`ActorRef::with_retry`], waits
    /// for the new incarnation's answer.
    pub async fn ask<M>(&self, msg: M) -> Result<M::Result, AskError>
    where
        M: Message,
        A: Accepts<M>,
    {
        let timeout = self.timeout;
        let mut pending = Pending::Message(msg);
        let mut attempt = 0;
        loop {
            let result = match tokio::time::timeout(timeout, self.ask_once(&mut pending)).await {
                Ok(result) => result,
                Err(_) => Err(AskError::Timeout(timeout)),
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => self.classify(e),
            };
            match self.retry {
                Some(retry)
                    if attempt < retry.attempts
                        && error.is_transient()
                        && !matches!(pending, Pending::Taken) =>
                {
                    attempt += 1;
                    tokio::time::sleep(retry.delay).await;
                }
                _ => return Err(error),
            }
        }
    }

    async fn ask_once<M>(&self, pending: &mut Pending<M>) -> Result<M::Result, AskError>
    where
        M: Message,
        A: Accepts<M>,
    {
        let route = self.current_route().await?;
        match &*route {
            Route::Local { addr, entry } => {
                let msg = match std::mem::replace(pending, Pending::Taken) {
                    Pending::Message(msg) => msg,
                    Pending::Encoded(bytes) => {
                        decode_owned::<M>(&bytes.into_buffer()).map_err(AskError::Decode)?
                    }
                    Pending::Taken => {
                        return Err(AskError::Gone(format!(
                            "actor {} took the message and stopped",
                            self.address.id
                        )));
                    }
                };
                let fresh = self.restarted(entry);
                let (addr, entry) = fresh.as_ref().map_or((addr, entry), |(a, e)| (a, e));
                let slot = Some(entry.slot().await);
                let (tx, rx) = oneshot::channel();
                let reply = Box::new(move |r| {
                    let _ = tx.send(r);
                });
                if let Err(undelivered) = push(addr, entry, Deliver::new(msg, Some(reply), slot)) {
                    *pending = Pending::Message(undelivered.into_message());
                    return Err(AskError::Gone(format!("actor {} stopped", self.address.id)));
                }
                match rx.await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(failure)) => Err(AskError::Failed(failure)),
                    Err(_) => Err(AskError::Failed(Failure::Stopped)),
                }
            }
            Route::Remote(link) => {
                let bytes = match std::mem::replace(pending, Pending::Taken) {
                    Pending::Message(msg) => encode_for(link, &msg).map_err(AskError::Encode)?,
                    Pending::Encoded(bytes) => bytes,
                    Pending::Taken => {
                        return Err(AskError::Gone(format!(
                            "actor {} took the message and stopped",
                            self.address.id
                        )));
                    }
                };
                // Keep a copy only when a retry may need it.
                let bytes = if self.retry.is_some() {
                    *pending = Pending::Encoded(bytes.clone());
                    bytes
                } else {
                    bytes
                };
                // `ask` bounds this whole attempt by the reference's timeout.
                let reply = link
                    .request_in_deadline(self.header::<M>(FrameKind::Ask), bytes)
                    .await
                    .map_err(|e| match e {
                        RequestError::Remote(failure) => {
                            AskError::Failed(Failure::from_remote(failure))
                        }
                        other => AskError::Request(other),
                    })?;
                decode_owned::<M::Result>(&reply).map_err(AskError::Decode)
            }
        }
    }
}

/// `msg` archived for `link`'s peer. One larger than a frame may be
/// ([`crate::transport::TransportConfig::max_frame`]) is refused here,
/// before anything is sent: sent, the peer would refuse the frame and close
/// the connection, failing everything else in flight on it.
fn encode_for<M: Message>(link: &PeerLink, msg: &M) -> Result<crate::wire::Payload, EncodeError> {
    encode_in_for(link, msg, link.peer().spare())
}

/// [`encode_for`] into `buf`, when there is one.
fn encode_in_for<M: Message>(
    link: &PeerLink,
    msg: &M,
    buf: Option<crate::wire::Buffer>,
) -> Result<crate::wire::Payload, EncodeError> {
    let bytes = encode_sized(msg, buf)?;
    crate::wire::check_len(bytes.len() as u64, link.peer().max_frame())
        .map_err(|e| EncodeError::too_large(std::any::type_name::<M>(), &e))?;
    Ok(bytes)
}

/// Archives `msg` into a buffer sized for its archived root, so messages of
/// a fixed size are written without growing the buffer; one that carries a
/// large run of bytes grows once to fit it, on huge pages, and a large
/// tensor's elements are not copied at all: they become a part of the
/// payload ([`crate::transport::pages`]). Into `spare` when there is one: a
/// buffer an earlier message to the same peer was sent from.
fn encode_sized<M: Message>(
    msg: &M,
    spare: Option<crate::wire::Buffer>,
) -> Result<crate::wire::Payload, EncodeError> {
    match spare {
        Some(buf) => crate::transport::pages::encode_in(msg, buf),
        None => {
            let size = std::mem::size_of::<rkyv::Archived<M>>().max(16);
            crate::transport::pages::encode(msg, size)
        }
    }
}

impl<A: RemoteActor> Archive for ActorRef<A> {
    type Archived = ArchivedActorAddress;
    type Resolver = <ActorAddress as Archive>::Resolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        self.address.resolve(resolver, out);
    }
}

impl<A: RemoteActor, S: Fallible + ?Sized> Serialize<S> for ActorRef<A>
where
    ActorAddress: Serialize<S>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        self.address.serialize(serializer)
    }
}

impl<A: RemoteActor, D: Fallible + ?Sized> Deserialize<ActorRef<A>, D> for ArchivedActorAddress
where
    ArchivedActorAddress: Deserialize<ActorAddress, D>,
{
    fn deserialize(&self, deserializer: &mut D) -> Result<ActorRef<A>, D::Error> {
        Ok(ActorRef::from_address(
            Deserialize::<ActorAddress, D>::deserialize(self, deserializer)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::actor::{Message, Tensor};
    use crate::wire::{Payload, SHARE_FROM};

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    struct Carry(Tensor<f64>);

    impl actix::Message for Carry {
        type Result = ();
    }

    impl Message for Carry {
        const NAME: &'static str = "test::Carry";
    }

    #[test]
    fn a_remote_send_hands_a_large_tensor_to_quic_from_its_own_memory() {
        let tensor = Tensor::full(&[SHARE_FROM / 8], 0.5f64);
        let at = tensor.as_slice().as_ptr().cast::<u8>();
        let payload = super::encode_sized(&Carry(tensor.clone()), None).unwrap();
        let Payload::Parts(parts) = &payload else {
            panic!("the remote send copied the tensor into one buffer");
        };
        assert!(
            parts.iter().any(|p| p.as_ptr() == at),
            "no part is the tensor's memory"
        );
        let small = super::encode_sized(&Carry(Tensor::full(&[3], 0.5)), None).unwrap();
        assert!(matches!(small, Payload::Whole(_)));
    }

    #[test]
    fn a_spare_buffer_carries_the_next_small_message() {
        let mut spare = crate::wire::Buffer::with_capacity(256);
        spare.extend_from_slice(b"an earlier message");
        let at = spare.as_ptr();
        let msg = Carry(Tensor::full(&[3], 0.5));
        let payload = super::encode_sized(&msg, Some(spare)).unwrap();
        let Payload::Whole(buf) = &payload else {
            panic!("a small message in parts");
        };
        assert_eq!(buf.as_ptr(), at, "the spare buffer was not used");
        let fresh = super::encode_sized(&msg, None).unwrap();
        assert_eq!(
            payload.runs().collect::<Vec<_>>(),
            fresh.runs().collect::<Vec<_>>(),
            "the same bytes either way"
        );
    }
}
