//! The node's event loop and one dispatcher per peer: frames in, actor
//! deliveries, replies and spawns out.
//!
//! # A full inbox delays nothing else
//!
//! The dispatcher of a peer never waits for one actor. A message whose
//! target's inbox is full is parked (see [`parked`]): it and every later
//! message from this peer to the same target wait, in order, in a queue of
//! their own, while messages to other targets, replies, spawns and calls go
//! on. Parked messages of one peer share a budget (`parked_frames`,
//! `parked_bytes` of [`crate::transport::TransportConfig`]); while it is
//! spent the dispatcher takes no data frames from the peer, so the peer's
//! data lanes stop and QUIC flow control stops its senders: a sender to a
//! full actor waits, nothing is dropped, and memory stays bounded.
//!
//! Replies cannot be stopped that way: the transport carries them on a lane
//! of their own, with a send queue of its own, and the dispatcher always
//! takes them first ([`PeerInbound::recv_gated`]). So an ask from this node
//! to the peer is answered while the peer floods a full inbox here.
//! Heartbeats never pass through the dispatcher: the control lane is read by
//! the transport's own task, and heartbeats also travel as QUIC datagrams,
//! which no stream's flow control holds back.
//!
//! Order: messages from one peer to one target go in in the order sent (a
//! target with a queue takes every later message at its end); messages to
//! different targets, and replies, have no order among them.

mod parked;

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::actor::{ByteSink, Inbound, LocalEntry, Registry, code};
use crate::id::ActorId;
use crate::transport::{Inbound as PeerInbound, Peer, PeerEvent};
use crate::wire::{Buffer, FrameHeader, FrameKind, RemoteFailure, encode};

use super::link::PeerLink;
use super::node::NodeInner;
use super::registered::{device_choice, factory, remote_fn};

use parked::Parked;
pub(crate) use parked::{Blocked, Receipt, Room, Wait};

/// The link for `peer`, made on first sight (by `join` or by the transport's
/// `Up` event, whichever comes first).
pub(crate) fn link_for(node: &NodeInner, peer: Peer) -> Arc<PeerLink> {
    let mut entry = node
        .links
        .entry(peer.node())
        .or_insert_with(|| new_link(peer.clone()));
    // Two nodes that joined each other at once keep one of their two
    // connections: the link follows the connection that is up now.
    if entry.peer().connection() != peer.connection() && !entry.is_alive() {
        let old = std::mem::replace(&mut *entry, new_link(peer));
        // What waited for an answer on the old connection gets none.
        old.fail_all(&crate::transport::DownReason::Closed(
            "the connection was replaced by the other direction's".into(),
        ));
    }
    entry.clone()
}

/// A link over `peer`'s connection, whose replies complete its requests
/// on the task that reads them (the dispatcher takes only those read
/// before).
fn new_link(peer: Peer) -> Arc<PeerLink> {
    let link = Arc::new(PeerLink::new(peer));
    let weak = Arc::downgrade(&link);
    link.peer().take_replies(move |header, payload| {
        if let Some(link) = weak.upgrade() {
            link.complete(&header, payload);
        }
    });
    link
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

/// Reads one peer's frames in order and acts on each, never waiting for
/// one actor: see the module docs. Once the peer is gone, what it sent
/// before still goes in.
async fn serve_peer(node: Weak<NodeInner>, link: Arc<PeerLink>, mut inbound: PeerInbound) {
    let Some(mut parked) = node
        .upgrade()
        .map(|inner| Parked::new(inner.transport.config()))
    else {
        return;
    };
    let mut frames = Vec::with_capacity(BATCH);
    let mut last = LastLookup::default();
    let mut open = true;
    loop {
        // Data frames only while the budget lasts; replies count against nothing.
        let room = parked.room();
        let limit = if room == 0 { BATCH } else { BATCH.min(room) };
        tokio::select! {
            biased;
            (target, ready) = parked.next_room(), if !parked.is_empty() => {
                let Some(inner) = node.upgrade() else { break };
                parked.resume(
                    target,
                    ready,
                    |header, payload, room| offer(&inner, &link, &mut last, header, payload, room),
                    |(header, payload)| send_reply(&link, header, payload),
                );
            }
            n = inbound.recv_gated(&mut frames, limit, room > 0), if open => {
                if n == 0 {
                    open = false;
                    continue;
                }
                let Some(inner) = node.upgrade() else { break };
                for (header, payload) in frames.drain(..) {
                    handle(&inner, &link, &mut last, &mut parked, header, payload);
                }
            }
            else => break,
        }
    }
}

/// Acts on one frame from the peer.
fn handle(
    node: &NodeInner,
    link: &Arc<PeerLink>,
    last: &mut LastLookup,
    parked: &mut Parked,
    header: FrameHeader,
    payload: Buffer,
) {
    match header.kind {
        FrameKind::Reply | FrameKind::ReplyError => link.complete(&header, payload),
        FrameKind::Tell | FrameKind::Ask | FrameKind::Post => {
            let at = parked.arrive();
            if parked.holds(header.target) {
                return parked.push(at, header, payload);
            }
            match offer(node, link, last, header, payload, None) {
                Ok(None) => {}
                Ok(Some((header, payload))) if parked.is_empty() => {
                    send_reply(link, header, payload)
                }
                Ok(Some(receipt)) => parked.receipt(at, receipt, |(header, payload)| {
                    send_reply(link, header, payload)
                }),
                Err(blocked) => parked.park(at, blocked),
            }
        }
        FrameKind::Spawn => spawn(node, link, header, &payload),
        FrameKind::Call => call(link, header, payload),
        other => link
            .peer()
            .close(&format!("unexpected {other:?} frame on a data lane")),
    }
}

/// Delivers (or answers) a message for an actor or a mailbox now, with
/// `room` if a wait found some; gives it back when the target's inbox is
/// full. A confirmed post's receipt comes back to be sent in order.
fn offer(
    node: &NodeInner,
    link: &Arc<PeerLink>,
    last: &mut LastLookup,
    header: FrameHeader,
    payload: Buffer,
    room: Option<Room>,
) -> Result<Option<Receipt>, Blocked> {
    match header.kind {
        FrameKind::Post => super::mailbox::offer(node, link, header, payload, room),
        _ => deliver(node, link, last, header, payload, room).map(|()| None),
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
        send_reply(&link, header, payload);
    })
}

/// Sends a `Reply` or `ReplyError` frame on the peer's reply lane without
/// waiting: straight into the lane when it is idle, else queued at once if
/// its queue has room, else from a task of its own. A reply larger than a
/// frame may be goes as the failure that says so ([`fit_reply`]).
pub(crate) fn send_reply(link: &Arc<PeerLink>, header: FrameHeader, payload: Buffer) {
    let (header, payload) = fit_reply(header, payload, link.peer().max_frame());
    let Err((header, payload)) = link.peer().try_write(header, payload.into()) else {
        return;
    };
    match link.peer().try_reserve_reply() {
        Ok(permit) => permit.send(header, payload),
        Err(_) => {
            let link = link.clone();
            tokio::spawn(async move {
                let _ = link.send(header, payload).await;
            });
        }
    }
}

/// Hands a `Tell` or `Ask` to its actor if it has a free slot (or `room`
/// holds one of its slots); gives it back when the actor's mailbox is full.
fn deliver(
    node: &NodeInner,
    link: &Arc<PeerLink>,
    last: &mut LastLookup,
    header: FrameHeader,
    payload: Buffer,
    room: Option<Room>,
) -> Result<(), Blocked> {
    if header.kind == FrameKind::Ask && header.type_tag == super::watch::WATCH_TAG {
        super::watch::serve(node, link, &header);
        return Ok(());
    }
    if header.kind == FrameKind::Ask && header.type_tag == super::supervised::STOP_TAG {
        super::supervised::serve_stop(node, link, &header);
        return Ok(());
    }
    if header.kind == FrameKind::Ask && header.type_tag == super::watch::EXIT_TAG {
        super::watch::serve_exit(node, link, &header, &payload);
        return Ok(());
    }
    let reply =
        |header: &FrameHeader| (header.kind == FrameKind::Ask).then(|| reply_sink(link, header));
    let Some(entry) = last.get(&node.registry, header.target) else {
        let failure = RemoteFailure {
            location: None,
            code: code::UNKNOWN_ACTOR,
            message: format!(
                "no actor {} lives on node {}; it stopped, or the reference is stale",
                header.target,
                node.transport.node_id()
            ),
        };
        Inbound::new(&header, payload, reply(&header), None).fail(failure);
        return Ok(());
    };
    // A slot a wait took counts only if the target is still that actor (a
    // supervisor may have restarted it under the same id).
    let inbound = match room {
        Some(Room::Slot(of, held)) if Arc::ptr_eq(&of, &entry) => {
            held(&header, payload, reply(&header)).recycling(link.peer().received_spares())
        }
        _ => match entry.try_slot() {
            Some(slot) => Inbound::new(&header, payload, reply(&header), Some(slot))
                .recycling(link.peer().received_spares()),
            None => {
                return Err(Blocked {
                    header,
                    payload,
                    wait: Wait::Slot(entry),
                });
            }
        },
    };
    entry.deliver(inbound);
    Ok(())
}

fn spawn(node: &NodeInner, link: &Arc<PeerLink>, header: FrameHeader, payload: &[u8]) {
    let reply = reply_sink(link, &header);
    let Some(factory) = factory(header.type_tag) else {
        return reply(Err(RemoteFailure {
            location: None,
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
            location: None,
            code: code::NOT_ALLOWED,
            message: format!(
                "node {} does not allow spawning {}; start it with Node::builder().allow::<{}>()",
                node.transport.node_id(),
                factory.name(),
                factory.name().rsplit("::").next().unwrap_or(factory.name())
            ),
        }));
    }
    let id = (!header.target.is_nil()).then_some(header.target);
    let spawned = factory.spawn(node, id, device_choice(header.flags), payload);
    // A GPU actor's reply also says which device it got.
    let result = spawned.and_then(|(id, device)| {
        match device {
            None => encode(&id),
            Some(ordinal) => encode(&(id, ordinal)),
        }
        .map_err(|e| RemoteFailure {
            location: None,
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
            location: None,
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

/// The frame that answers a request: `header` and `payload` as they are, or,
/// when the payload is larger than the peer takes in one frame
/// (`max_frame`), a `ReplyError` that tells the asker so — sent whole, the
/// peer would refuse the frame and close the connection, failing every
/// other request on it.
pub(crate) fn fit_reply(
    header: FrameHeader,
    payload: Buffer,
    max_frame: u64,
) -> (FrameHeader, Buffer) {
    let Err(e) = crate::wire::check_len(payload.len() as u64, max_frame) else {
        return (header, payload);
    };
    let failure = RemoteFailure {
        location: None,
        code: code::ENCODE,
        message: format!(
            "the reply is too large to send: {e} (`TransportConfig::max_frame`), or return it in parts"
        ),
    };
    let mut error = FrameHeader::new(FrameKind::ReplyError);
    error.correlation = header.correlation;
    error.source = header.source;
    (error, encode(&failure).unwrap_or_default())
}

#[cfg(test)]
mod fit_tests {
    use super::*;
    use crate::wire::decode_owned;

    fn bytes(n: usize) -> Buffer {
        let mut b = Buffer::new();
        b.extend_from_slice(&vec![7u8; n]);
        b
    }

    fn reply(correlation: u64) -> FrameHeader {
        let mut h = FrameHeader::new(FrameKind::Reply);
        h.correlation = correlation;
        h
    }

    #[test]
    fn a_reply_that_fits_goes_as_it_is() {
        let payload = bytes(100);
        let (h, p) = fit_reply(reply(9), payload, 100);
        assert_eq!((h.kind, h.correlation), (FrameKind::Reply, 9));
        assert_eq!(p.as_slice(), &[7u8; 100][..]);
    }

    #[test]
    fn a_reply_larger_than_a_frame_becomes_the_failure_that_says_so() {
        let payload = bytes(101);
        let (h, p) = fit_reply(reply(9), payload, 100);
        assert_eq!((h.kind, h.correlation), (FrameKind::ReplyError, 9));
        let failure: RemoteFailure = decode_owned(&p).unwrap();
        assert_eq!(failure.code, code::ENCODE);
        assert!(
            failure.message.contains("frame of 101 bytes"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("max_frame"), "{}", failure.message);
    }
}
