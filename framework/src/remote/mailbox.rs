//! Mailboxes addressed by id that take raw payloads from other nodes: what
//! the process layer's `send`, `receive`, `join` and `yield` travel through.
//! A mailbox is bounded; posts for a full one wait at the receiving node
//! (in order, with the peer's other messages for full inboxes, within a
//! bounded budget), then stop reading from the sending peer, so the sender
//! waits (QUIC flow control) instead of anything being dropped. Posts to
//! other mailboxes and actors, and replies, go on meanwhile.

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::actor::code;
use crate::id::{ActorId, NodeId};
use crate::wire::{Buffer, FrameHeader, FrameKind, RemoteFailure, encode};

use super::dispatch::{Blocked, Receipt, Room, Wait};
use super::link::PeerLink;
use super::node::NodeInner;

/// One payload that arrived in a [`Mailbox`].
#[derive(Debug)]
pub struct Delivery {
    /// The node that posted it.
    pub from: NodeId,
    /// The operation, as the poster chose it.
    pub op: u8,
    /// The type of the payload, as the poster declared it.
    pub type_tag: u64,
    /// The payload, 16-byte aligned; not validated yet.
    pub payload: Buffer,
}

/// The receiving end of a mailbox. Dropping it closes the mailbox; later
/// posts to its id are refused with a logged warning on this node.
pub struct Mailbox {
    id: ActorId,
    rx: mpsc::Receiver<Delivery>,
    node: Weak<NodeInner>,
}

/// Returned by [`super::Node::open_mailbox_at`]: a mailbox with that id is
/// already open on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "mailbox {0} is already open on this node; drop the other `Mailbox` first or open this one at another id"
)]
pub struct MailboxInUse(pub ActorId);

impl Mailbox {
    /// A mailbox at a fresh random id.
    pub(crate) fn open(node: &Arc<NodeInner>, capacity: usize) -> Self {
        loop {
            // A fresh v4 id is taken only in theory; then draw another.
            if let Ok(mailbox) = Self::open_at(node, ActorId::new(), capacity) {
                return mailbox;
            }
        }
    }

    /// A mailbox at `id`, unless one is open there already.
    pub(crate) fn open_at(
        node: &Arc<NodeInner>,
        id: ActorId,
        capacity: usize,
    ) -> Result<Self, MailboxInUse> {
        match node.mailboxes.entry(id) {
            dashmap::Entry::Occupied(_) => Err(MailboxInUse(id)),
            dashmap::Entry::Vacant(slot) => {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                slot.insert(tx);
                Ok(Self {
                    id,
                    rx,
                    node: Arc::downgrade(node),
                })
            }
        }
    }

    /// The mailbox's id: post to it with [`super::RemoteNode::post`].
    pub fn id(&self) -> ActorId {
        self.id
    }

    /// The next delivery; `None` once the node is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// The next delivery, for code outside the async runtime (a worker
    /// thread). Must not be called on the node's own thread.
    pub fn blocking_recv(&mut self) -> Option<Delivery> {
        self.rx.blocking_recv()
    }

    /// A delivery if one is waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if let Some(node) = self.node.upgrade() {
            node.mailboxes.remove(&self.id);
        }
    }
}

/// Hands a `Post` frame to its mailbox if it has room (or `room` holds
/// room in it); gives it back when the mailbox is full, so the dispatcher
/// can park it and go on with other targets. A post with a correlation id
/// asked for a receipt, which comes back for the dispatcher to send once
/// everything that arrived before the post is in: an empty `Reply` once
/// the post is in the mailbox, or a `ReplyError` if the mailbox is closed.
pub(crate) fn offer(
    node: &NodeInner,
    link: &Arc<PeerLink>,
    header: FrameHeader,
    payload: Buffer,
    room: Option<Room>,
) -> Result<Option<Receipt>, Blocked> {
    let from: NodeId = link.node();
    let sender = node
        .mailboxes
        .get(&header.target)
        .map(|e| e.value().clone());
    let delivered = match sender {
        Some(tx) => {
            let delivery = Delivery {
                from,
                op: header.flags,
                type_tag: header.type_tag,
                payload,
            };
            match room {
                // Room a wait took counts only in the mailbox open now.
                Some(Room::Mailbox(of, permit)) if of.same_channel(&tx) => {
                    permit.send(delivery);
                    true
                }
                _ => match tx.try_send(delivery) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(delivery)) => {
                        return Err(Blocked {
                            header,
                            payload: delivery.payload,
                            wait: Wait::Mailbox(tx),
                        });
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                },
            }
        }
        None => false,
    };
    if !delivered {
        if header.correlation == 0 {
            tracing::warn!(mailbox = %header.target, from = %from, "a post for a mailbox that is closed was dropped");
        } else {
            // The sender asked for a receipt: it learns and may try again
            // (a group member whose peer has not opened its mailbox yet).
            tracing::debug!(mailbox = %header.target, from = %from, "a confirmed post for a closed mailbox was refused");
        }
    }
    if header.correlation == 0 {
        return Ok(None);
    }
    let mut reply = FrameHeader::new(if delivered {
        FrameKind::Reply
    } else {
        FrameKind::ReplyError
    });
    reply.correlation = header.correlation;
    let payload = if delivered {
        Buffer::new()
    } else {
        let failure = RemoteFailure {
            location: None,
            code: code::UNKNOWN_ACTOR,
            message: format!(
                "mailbox {} is closed on node {}",
                header.target,
                node.transport.node_id()
            ),
        };
        encode(&failure).unwrap_or_default()
    };
    Ok(Some((reply, payload)))
}
