//! The node's event loop and one dispatcher per peer: frames in, actor
//! deliveries, replies and spawns out.

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::actor::{ByteSink, Inbound, LocalEntry, Registry, code};
use crate::id::ActorId;
use crate::transport::{Inbound as PeerInbound, Peer, PeerEvent};
use crate::wire::{Buffer, FrameHeader, FrameKind, RemoteFailure, encode};

use super::link::PeerLink;
use super::node::NodeInner;
use super::registered::{factory, remote_fn};

/// The link for `peer`, made on first sight (by `join` or by the transport's
/// `Up` event, whichever comes first).
pub(crate) fn link_for(node: &NodeInner, peer: Peer) -> Arc<PeerLink> {
    let mut entry = node
        .links
        .entry(peer.node())
        .or_insert_with(|| Arc::new(PeerLink::new(peer.clone())));
    // Two nodes that joined each other at once keep one of their two
    // connections: the link follows the connection that is up now.
    if entry.peer().connection() != peer.connection() && !entry.is_alive() {
        let old = std::mem::replace(&mut *entry, Arc::new(PeerLink::new(peer)));
        // What waited for an answer on the old connection gets none.
        old.fail_all(&crate::transport::DownReason::Closed(
            "the connection was replaced by the other direction's".into(),
        ));
    }
    entry.clone()
}

/// Serves the transport's peer events until the node is dropped.
pub(crate) async fn run_events(node: Weak<NodeInner>, mut events: mpsc::Receiver<PeerEvent>) {
    while let Some(event) = events.recv().await {
        let Some(inner) = node.upgrade() else { break };
        match event {
            PeerEvent::Up { peer, inbound } => {
                let link = link_for(&inner, peer);
                inner.arrived(link.clone());
                actix_rt::spawn(serve_peer(node.clone(), link, inbound));
            }
            PeerEvent::Down {
                node: id,
                connection,
                reason,
            } => {
                tracing::info!(peer = %id, "peer down: {reason}");
                if let Some((_, link)) = inner
                    .links
                    .remove_if(&id, |_, link| link.peer().connection() == connection)
                {
                    link.fail_all(&reason);
                }
            }
        }
    }
}

/// Frames the dispatcher takes from the transport at once.
const BATCH: usize = 256;

/// Reads one peer's frames in order and acts on each.
async fn serve_peer(node: Weak<NodeInner>, link: Arc<PeerLink>, mut inbound: PeerInbound) {
    let mut frames = Vec::with_capacity(BATCH);
    let mut last = LastLookup::default();
    while inbound.recv_many(&mut frames, BATCH).await > 0 {
        let Some(inner) = node.upgrade() else { break };
        for (header, payload) in frames.drain(..) {
            match header.kind {
                FrameKind::Tell | FrameKind::Ask => {
                    deliver(&inner, &link, &mut last, header, payload).await
                }
                FrameKind::Reply | FrameKind::ReplyError => link.complete(&header, payload),
                FrameKind::Spawn => spawn(&inner, &link, header, &payload),
                FrameKind::Call => call(&link, header, payload),
                FrameKind::Post => super::mailbox::deliver(&inner, &link, header, payload).await,
                other => link
                    .peer()
                    .close(&format!("unexpected {other:?} frame on a data lane")),
            }
        }
    }
}

/// The actor a peer's last message went to: a run of messages for one
/// actor costs one table lookup. Holds no strong reference, so it never
/// keeps a stopped or forgotten actor alive.
#[derive(Default)]
struct LastLookup {
    hit: Option<(ActorId, u64, std::sync::Weak<LocalEntry>)>,
}

impl LastLookup {
    fn get(&mut self, registry: &Registry, id: ActorId) -> Option<Arc<LocalEntry>> {
        let removals = registry.removals();
        if let Some((hit, seen, entry)) = &self.hit
            && *hit == id
            && *seen == removals
            && let Some(entry) = entry.upgrade()
            && entry.is_alive()
        {
            return Some(entry);
        }
        let entry = registry.get(id);
        self.hit = entry
            .as_ref()
            .map(|entry| (id, removals, Arc::downgrade(entry)));
        entry
    }
}

/// Where the reply to a request from this peer goes: a `Reply` frame, or a
/// `ReplyError` frame with the failure.
pub(crate) fn reply_sink(link: &Arc<PeerLink>, request: &FrameHeader) -> ByteSink {
    let link = link.clone();
    let (correlation, source) = (request.correlation, request.target);
    Box::new(move |result: Result<Buffer, RemoteFailure>| {
        let (kind, payload) = match result {
            Ok(bytes) => (FrameKind::Reply, bytes),
            Err(failure) => (FrameKind::ReplyError, encode(&failure).unwrap_or_default()),
        };
        let mut header = FrameHeader::new(kind);
        header.correlation = correlation;
        header.source = source;
        match link.peer().try_reserve() {
            Ok(permit) => permit.send(header, payload),
            Err(_) => {
                tokio::spawn(async move {
                    let _ = link.send(header, payload).await;
                });
            }
        }
    })
}

async fn deliver(
    node: &NodeInner,
    link: &Arc<PeerLink>,
    last: &mut LastLookup,
    header: FrameHeader,
    payload: Buffer,
) {
    if header.kind == FrameKind::Ask && header.type_tag == super::watch::WATCH_TAG {
        return super::watch::serve(node, link, &header);
    }
    if header.kind == FrameKind::Ask && header.type_tag == super::supervised::STOP_TAG {
        return super::supervised::serve_stop(node, link, &header);
    }
    if header.kind == FrameKind::Ask && header.type_tag == super::watch::EXIT_TAG {
        return super::watch::serve_exit(node, link, &header, &payload);
    }
    let reply = (header.kind == FrameKind::Ask).then(|| reply_sink(link, &header));
    let Some(entry) = last.get(&node.registry, header.target) else {
        let failure = RemoteFailure {
            code: code::UNKNOWN_ACTOR,
            message: format!(
                "no actor {} lives on node {}; it stopped, or the reference is stale",
                header.target,
                node.transport.node_id()
            ),
        };
        Inbound::new(&header, payload, reply, None).fail(failure);
        return;
    };
    // Waiting for a mailbox slot stops reading from this peer: QUIC flow
    // control then makes the sender wait too.
    let slot = match entry.try_slot() {
        Some(slot) => slot,
        None => entry.slot().await,
    };
    if let Err(inbound) = entry.dispatch(Inbound::new(&header, payload, reply, Some(slot))) {
        let failure = RemoteFailure {
            code: code::UNKNOWN_MESSAGE,
            message: format!(
                "actor {} ({}) accepts no message with tag {:#018x}; it accepts {:?} — list the message in #[actor(messages(..))] and build both nodes from the same source",
                header.target,
                entry.name(),
                header.type_tag,
                entry.accepts()
            ),
        };
        inbound.fail(failure);
    }
}

fn spawn(node: &NodeInner, link: &Arc<PeerLink>, header: FrameHeader, payload: &[u8]) {
    let reply = reply_sink(link, &header);
    let Some(factory) = factory(header.type_tag) else {
        return reply(Err(RemoteFailure {
            code: code::NOT_REGISTERED,
            message: format!(
                "node {} has no actor type with tag {:#018x} registered for spawning; add #[actor(spawn)] to it and run the same binary on both nodes",
                node.transport.node_id(),
                header.type_tag
            ),
        }));
    };
    if !node.allow_all && !node.allowed.contains(factory.name()) {
        return reply(Err(RemoteFailure {
            code: code::NOT_ALLOWED,
            message: format!(
                "node {} does not allow spawning {}; start it with Node::builder().allow::<{}>()",
                node.transport.node_id(),
                factory.name(),
                factory.name().rsplit("::").next().unwrap_or(factory.name())
            ),
        }));
    }
    let spawned = if header.target.is_nil() {
        factory.spawn(&node.registry, node.mailbox, payload)
    } else {
        factory.spawn_as(&node.registry, node.mailbox, header.target, payload)
    };
    let result = spawned.and_then(|id| {
        encode(&id).map_err(|e| RemoteFailure {
            code: code::ENCODE,
            message: e.to_string(),
        })
    });
    if let Ok(bytes) = &result {
        tracing::info!(peer = %link.node(), actor = factory.name(), bytes = bytes.len(), "spawned for a peer");
    }
    reply(result);
}

fn call(link: &Arc<PeerLink>, header: FrameHeader, payload: Buffer) {
    let reply = reply_sink(link, &header);
    let Some(function) = remote_fn(header.type_tag) else {
        return reply(Err(RemoteFailure {
            code: code::NOT_REGISTERED,
            message: format!(
                "no function with tag {:#018x} is registered in this binary; mark it #[parallel::remote] and run the same binary on both sides",
                header.type_tag
            ),
        }));
    };
    // User code may block: run it off the node's thread.
    tokio::task::spawn_blocking(move || reply(function.invoke(&payload)));
}
