//! Monitors: `ActorRef::watch` delivers a [`Down`] exactly once when the
//! actor stops — normally, by a panic (with its message), killed — or when
//! the node that hosts it becomes unreachable (`NoConnection`).
//!
//! A remote watch is an `Ask` with a reserved type tag that the hosting
//! node answers only when the actor has stopped; a lost connection fails
//! the pending request, which the watcher reads as `NoConnection`.

use std::sync::Arc;
use std::time::Duration;

use crate::actor::{ExitReason, code};
use crate::wire::{Buffer, FrameHeader, FrameKind, RemoteFailure, decode_owned, encode, type_tag};

use super::dispatch::reply_sink;
use super::link::{PeerLink, RequestError};
use super::node::NodeInner;

/// The type tag of a watch request.
pub(crate) const WATCH_TAG: u64 = type_tag("parallel::remote::watch");

/// How long a remote watch may wait: as long as the actor lives.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Serves a watch request from a peer: answers when the actor has stopped
/// (at once with `NoProc` if there is no such actor).
pub(crate) fn serve(node: &NodeInner, link: &Arc<PeerLink>, header: &FrameHeader) {
    let reply = reply_sink(link, header);
    let answer = |reason: &ExitReason| {
        encode(reason).map_err(|e| RemoteFailure {
            location: None,
            code: code::ENCODE,
            message: e.to_string(),
        })
    };
    match node.registry.entry(header.target) {
        None => reply(answer(&ExitReason::NoProc)),
        Some(entry) => {
            let exited = entry.exited();
            let mut replies = node.watch_replies.lock().unwrap_or_else(|e| e.into_inner());
            // Answered watches leave the set here (or at the shutdown).
            while replies.try_join_next().is_some() {}
            replies.spawn(async move {
                let reason = exited.await;
                reply(answer(&reason));
            });
        }
    }
}

/// Watches an actor on `link`'s node: the reason it stopped, or
/// `NoConnection` once that node is unreachable.
pub(crate) async fn remote(link: &PeerLink, target: crate::id::ActorId) -> ExitReason {
    let mut header = FrameHeader::new(FrameKind::Ask);
    header.target = target;
    header.type_tag = WATCH_TAG;
    match link.request(header, Buffer::new(), FOREVER).await {
        Ok(bytes) => {
            decode_owned::<ExitReason>(&bytes).unwrap_or_else(|e| ExitReason::Error(e.to_string()))
        }
        Err(RequestError::Remote(failure)) => ExitReason::Error(failure.message),
        Err(_) => ExitReason::NoConnection,
    }
}

/// The type tag of an exit signal: the target is killed with the reason in
/// the payload (how a link propagates a failure to another node).
pub(crate) const EXIT_TAG: u64 = type_tag("parallel::remote::exit");

/// Serves an exit signal from a peer: kills the target with the given reason.
pub(crate) fn serve_exit(
    node: &NodeInner,
    link: &Arc<PeerLink>,
    header: &FrameHeader,
    payload: &[u8],
) {
    let reply = reply_sink(link, header);
    let reason = decode_owned::<ExitReason>(payload).unwrap_or(ExitReason::Killed);
    if let Some(entry) = node.registry.entry(header.target) {
        entry.kill_with(reason);
    }
    reply(Ok(Buffer::new()));
}

/// Why an exit signal could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExitError {
    /// No node of this process reaches the actor's node.
    #[error("no route to node {0}: join it first")]
    NoRoute(crate::id::NodeId),
    /// The signal could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::wire::EncodeError),
    /// The actor's node did not confirm.
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Kills the actor at `address` with `reason`, wherever it lives among the
/// nodes this process has joined (an OTP exit signal).
pub async fn exit(address: &super::ActorAddress, reason: ExitReason) -> Result<(), ExitError> {
    let nodes = super::node::local_nodes();
    if let Some(home) = nodes.iter().find(|n| n.id() == address.node) {
        if let Some(entry) = home.0.registry.entry(address.id) {
            entry.kill_with(reason);
        }
        return Ok(());
    }
    let link = nodes
        .iter()
        .find_map(|n| n.0.links.get(&address.node).map(|l| l.value().clone()))
        .ok_or(ExitError::NoRoute(address.node))?;
    let mut header = FrameHeader::new(FrameKind::Ask);
    header.target = address.id;
    header.type_tag = EXIT_TAG;
    link.request(header, encode(&reason)?, Duration::from_secs(30))
        .await?;
    Ok(())
}
