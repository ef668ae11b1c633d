//! What the remote layer offers supervisors: a per-node directory of where
//! each supervised actor lives now ([`Home`]), and stopping or killing an
//! actor on another node.
//!
//! The directory is what lets an [`super::ActorRef`] keep working after its
//! actor was restarted elsewhere: when the cached connection to the actor's
//! node is dead, the reference looks the actor up in the directories of this
//! process's nodes before it gives up.

use std::sync::Arc;

use crate::actor::{ExitReason, code};
use crate::id::{ActorId, NodeId};
use crate::wire::{Buffer, FrameHeader, FrameKind, RemoteFailure, encode, type_tag};

use super::dispatch::reply_sink;
use super::link::{PeerLink, RequestError};
use super::node::{NodeInner, local_nodes};

/// Where a supervised actor lives now, as the node of its supervisor knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Home {
    /// It runs on this node.
    At(NodeId),
    /// It is down and its supervisor is starting a new incarnation.
    Restarting,
    /// It is down for good: its supervisor stopped, gave up, or does not
    /// restart it. The reason it went down.
    Down(ExitReason),
}

/// The home of actor `id` according to the first node of this process
/// whose directory knows it.
pub(crate) fn lookup(id: ActorId) -> Option<Home> {
    local_nodes()
        .iter()
        .find_map(|n| n.0.directory.get(&id).map(|h| h.clone()))
}

/// The type tag of a stop request (an `Ask` the hosting node answers at once).
pub(crate) const STOP_TAG: u64 = type_tag("parallel::remote::stop");

/// Flag of a stop request: kill at once instead of stopping in order.
const KILL: u8 = 1;

/// Serves a stop request from a peer: stops (or kills) the actor if it
/// lives here, and answers either way.
pub(crate) fn serve_stop(node: &NodeInner, link: &Arc<PeerLink>, header: &FrameHeader) {
    let reply = reply_sink(link, header);
    if let Some(entry) = node.registry.entry(header.target) {
        if header.flags & KILL != 0 {
            entry.kill();
        } else {
            entry.stop();
        }
    }
    reply(encode(&()).map_err(|e| RemoteFailure {
        location: None,
        code: code::ENCODE,
        message: e.to_string(),
    }));
}

/// Asks `link`'s node to stop actor `id` in order (or to kill it).
pub(crate) async fn stop(
    link: &PeerLink,
    id: ActorId,
    kill: bool,
    timeout: std::time::Duration,
) -> Result<(), RequestError> {
    let mut header = FrameHeader::new(FrameKind::Ask);
    header.target = id;
    header.type_tag = STOP_TAG;
    header.flags = if kill { KILL } else { 0 };
    link.request(header, Buffer::new(), timeout)
        .await
        .map(|_| ())
}
