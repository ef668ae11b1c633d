//! `RemoteNode`: another node this one has joined or been joined by.

use std::sync::Arc;

use crate::actor::{DeviceChoice, RemoteActor, code};
use crate::id::{ActorId, NodeId};
use crate::transport::JoinLine;
use crate::wire::{
    DecodeError, EncodeError, FrameHeader, FrameKind, RemoteFailure, WireType, decode_owned,
    encode, type_tag,
};

use super::actor_ref::ActorRef;
use super::link::{PeerLink, RequestError};
use super::node::Node;
use super::registered::{RemoteCallable, device_flags};

/// Why spawning an actor on another node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The node does not allow this actor type.
    #[error("{0}")]
    NotAllowed(String),
    /// The node's binary has no such spawnable type.
    #[error("{0}")]
    NotRegistered(String),
    /// The node has no device for this GPU actor; the text names what it has.
    #[error("{0}")]
    NoDevice(String),
    /// The node could not start it (bad initial state, …).
    #[error("the node could not spawn the actor: {0}")]
    Failed(String),
    /// The request did not complete.
    #[error(transparent)]
    Request(RequestError),
    /// The initial state could not be serialized.
    #[error(transparent)]
    Encode(EncodeError),
    /// The reply could not be read.
    #[error(transparent)]
    Decode(DecodeError),
}

/// Why running a function on another node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The function is not registered in the other process.
    #[error("{0}")]
    NotRegistered(String),
    /// The function panicked there.
    #[error("the remote function panicked: {message}{}", at(location))]
    Panicked {
        /// The panic's message.
        message: String,
        /// Where it panicked (`file:line`), when that process noted it
        /// (not when it prints backtraces, `RUST_BACKTRACE` set).
        location: Option<String>,
    },
    /// The request did not complete, or the node refused it.
    #[error(transparent)]
    Request(RequestError),
    /// The arguments could not be serialized.
    #[error(transparent)]
    Encode(EncodeError),
    /// The result could not be read.
    #[error(transparent)]
    Decode(DecodeError),
}

/// " (at file:line)" when a place is known.
pub fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|at| format!(" (at {at})"))
        .unwrap_or_default()
}

/// Another node, joined and authenticated.
#[derive(Clone)]
pub struct RemoteNode {
    node: Node,
    link: Arc<PeerLink>,
}

impl RemoteNode {
    pub(crate) fn new(node: Node, link: Arc<PeerLink>) -> Self {
        Self { node, link }
    }

    /// The connection to that node: the one this handle was made with while
    /// it lives, else the one that replaced it (two nodes that join each
    /// other at once settle on one of their two connections, and a handle
    /// may hold the other).
    pub(crate) fn link(&self) -> Arc<PeerLink> {
        if !self.link.is_alive()
            && let Some(now) = self.node.0.links.get(&self.link.node()).map(|l| l.clone())
            && now.is_alive()
        {
            return now;
        }
        self.link.clone()
    }

    /// The other node's id.
    pub fn id(&self) -> NodeId {
        self.link.node()
    }

    /// The other node's join line, if it listens.
    pub fn join_line(&self) -> Option<JoinLine> {
        self.link().peer().join_line()
    }

    /// False once the connection is gone.
    pub fn is_alive(&self) -> bool {
        self.link().is_alive()
    }

    /// Posts `payload` to the mailbox `to` on that node, with an operation
    /// code and the payload's type tag for the receiver. Waits while the
    /// connection is full; posts from one sender arrive in order.
    pub async fn post(
        &self,
        to: ActorId,
        op: u8,
        type_tag: u64,
        payload: crate::wire::Buffer,
    ) -> Result<(), RequestError> {
        self.link()
            .send(post_header(to, op, type_tag), payload)
            .await
    }

    /// Posts like [`RemoteNode::post`] and waits until the payload is in the
    /// mailbox on the other node (or the mailbox turned out closed): after
    /// it returns, nothing the caller posted before is still in flight.
    pub async fn post_confirmed(
        &self,
        to: ActorId,
        op: u8,
        type_tag: u64,
        payload: crate::wire::Buffer,
    ) -> Result<(), RequestError> {
        self.link()
            .request(
                post_header(to, op, type_tag),
                payload,
                self.node.0.ask_timeout,
            )
            .await
            .map(|_| ())
    }

    /// Test hook for malformed-input tests: writes `bytes` unframed on the
    /// data lane to that node. Never use it for real traffic.
    #[doc(hidden)]
    pub async fn send_raw_data(&self, bytes: &[u8]) -> Result<(), crate::transport::PeerGone> {
        self.link().peer().send_raw_data(bytes).await
    }

    /// Test hook for truncated-input tests: ends the data lane to that node
    /// after what is queued. Never use it for real traffic.
    #[doc(hidden)]
    pub async fn finish_raw_lane(&self) -> Result<(), crate::transport::PeerGone> {
        self.link().peer().finish_raw_lane().await
    }

    /// Waits until the connection is gone and says why.
    pub async fn closed(&self) -> crate::transport::DownReason {
        self.link().peer().closed().await
    }

    /// Spawns an actor of type `A` on that node, starting from `init`, and
    /// returns its reference. The node must allow `A`
    /// (`Node::builder().allow::<A>()`) and `A` must be `#[actor(spawn)]`.
    pub async fn spawn<A: RemoteActor + WireType>(
        &self,
        init: A,
    ) -> Result<ActorRef<A>, SpawnError> {
        self.spawn_as(ActorId::nil(), init).await
    }

    /// Spawns an actor of type `A` on that node under the id `id` (a fresh
    /// id when `id` is nil), starting from `init`: how a supervisor starts a
    /// new incarnation of an actor that keeps its address. An actor already
    /// running there under `id` is replaced. The same rules as
    /// [`RemoteNode::spawn`] apply.
    pub async fn spawn_as<A: RemoteActor + WireType>(
        &self,
        id: ActorId,
        init: A,
    ) -> Result<ActorRef<A>, SpawnError> {
        Ok(self.spawn_placed(id, DeviceChoice::AnyGpu, init).await?.0)
    }

    /// Spawns an `#[actor(gpu)]` actor of type `A` on that node, on a thread
    /// pinned to the GPU `choice` names there. Fails with
    /// [`SpawnError::NoDevice`], naming what the node has, on a node without
    /// such a device. The same rules as [`RemoteNode::spawn`] apply.
    pub async fn spawn_on<A: RemoteActor + WireType>(
        &self,
        choice: DeviceChoice,
        init: A,
    ) -> Result<ActorRef<A>, SpawnError> {
        Ok(self.spawn_placed(ActorId::nil(), choice, init).await?.0)
    }

    /// Spawns under `id` (fresh when nil); a GPU actor on the device
    /// `choice` names. Gives the device it got, for a GPU actor.
    pub(crate) async fn spawn_placed<A: RemoteActor + WireType>(
        &self,
        id: ActorId,
        choice: DeviceChoice,
        init: A,
    ) -> Result<(ActorRef<A>, Option<u32>), SpawnError> {
        let bytes = encode(&init).map_err(SpawnError::Encode)?;
        let mut header = FrameHeader::new(FrameKind::Spawn);
        header.type_tag = type_tag(A::NAME);
        header.target = id;
        if A::GPU {
            header.flags = device_flags(choice).map_err(|n| {
                SpawnError::NoDevice(format!(
                    "GPU {n} cannot be asked for by number (at most 254); ask for DeviceChoice::AnyGpu"
                ))
            })?;
        }
        let reply = self
            .link
            .request(header, bytes, self.node.0.ask_timeout)
            .await
            .map_err(|e| match e {
                RequestError::Remote(RemoteFailure {
                    code: code::NOT_ALLOWED,
                    message,
                    ..
                }) => SpawnError::NotAllowed(message),
                RequestError::Remote(RemoteFailure {
                    code: code::NOT_REGISTERED,
                    message,
                    ..
                }) => SpawnError::NotRegistered(message),
                RequestError::Remote(RemoteFailure {
                    code: code::NO_DEVICE,
                    message,
                    ..
                }) => SpawnError::NoDevice(message),
                RequestError::Remote(failure) => SpawnError::Failed(failure.message),
                other => SpawnError::Request(other),
            })?;
        let (id, device) = if A::GPU {
            let (id, ordinal) =
                decode_owned::<(ActorId, u32)>(&reply).map_err(SpawnError::Decode)?;
            (id, Some(ordinal))
        } else {
            (
                decode_owned::<ActorId>(&reply).map_err(SpawnError::Decode)?,
                None,
            )
        };
        Ok((
            ActorRef::remote(id, self.link()).with_timeout(self.node.0.ask_timeout),
            device,
        ))
    }

    /// Asks that node to stop actor `id` in order (`kill`: at once).
    pub(crate) async fn stop_actor(&self, id: ActorId, kill: bool) -> Result<(), RequestError> {
        super::supervised::stop(&self.link(), id, kill, self.node.0.ask_timeout).await
    }

    /// Runs the `#[parallel::remote]` function `f` with `args` (a tuple) on
    /// that node, in a worker thread there, and returns its result.
    pub async fn call<F, Args>(&self, f: F, args: Args) -> Result<F::Output, CallError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let reply = self.call_bytes(f, args, None).await?;
        decode_owned::<F::Output>(&reply).map_err(CallError::Decode)
    }

    /// [`RemoteNode::call`], with the result as a read-only view of the
    /// reply's bytes (validated, nothing copied or deserialized);
    /// [`Received::to_owned`](crate::actor::Received::to_owned) makes an
    /// owned copy.
    pub async fn call_received<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<crate::actor::Received<F::Output>, CallError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let reply = self.call_bytes(f, args, None).await?;
        crate::actor::Received::new(reply).map_err(CallError::Decode)
    }

    /// [`RemoteNode::call`], and `sent` is answered once the call's bytes
    /// (its arguments) were handed to QUIC: they left this program's
    /// queues. Dropped unanswered when the connection goes first, or when
    /// the arguments are larger than a frame may be (nothing is sent).
    pub async fn call_tracked<F, Args>(
        &self,
        f: F,
        args: Args,
        sent: tokio::sync::oneshot::Sender<()>,
    ) -> Result<F::Output, CallError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let reply = self.call_bytes(f, args, Some(sent)).await?;
        decode_owned::<F::Output>(&reply).map_err(CallError::Decode)
    }

    /// The reply's bytes of a call of `f(args)` there.
    async fn call_bytes<F, Args>(
        &self,
        f: F,
        args: Args,
        sent: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<crate::wire::Buffer, CallError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let bytes = encode(&args).map_err(CallError::Encode)?;
        let mut header = FrameHeader::new(FrameKind::Call);
        header.type_tag = type_tag(f.remote_name());
        let timeout = self.node.0.ask_timeout;
        match sent {
            Some(sent) => {
                self.link
                    .request_tracked(header, bytes, timeout, sent)
                    .await
            }
            None => self.link.request(header, bytes, timeout).await,
        }
        .map_err(|e| match e {
            RequestError::Remote(RemoteFailure {
                code: code::NOT_REGISTERED,
                message,
                ..
            }) => CallError::NotRegistered(format!("{} (function {})", message, f.remote_name())),
            RequestError::Remote(RemoteFailure {
                code: code::PANICKED,
                message,
                location,
            }) => CallError::Panicked { message, location },
            other => CallError::Request(other),
        })
    }
}

fn post_header(to: ActorId, op: u8, type_tag: u64) -> FrameHeader {
    let mut header = FrameHeader::new(FrameKind::Post);
    header.target = to;
    header.flags = op;
    header.type_tag = type_tag;
    header
}
