//! Mailboxes addressed by id that take raw payloads from other nodes: what
//! the process layer's `send`, `receive`, `join` and `yield` travel through.
//! A mailbox is bounded; a full one stops reading from the sending peer, so
//! the sender waits (QUIC flow control) instead of anything being dropped.

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::id::{ActorId, NodeId};
use crate::wire::{Buffer, FrameHeader};

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

impl Mailbox {
    pub(crate) fn open(node: &Arc<NodeInner>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = ActorId::new();
        node.mailboxes.insert(id, tx);
        Self {
            id,
            rx,
            node: Arc::downgrade(node),
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

/// Hands a `Post` frame to its mailbox, waiting while it is full.
pub(crate) async fn deliver(node: &NodeInner, from: NodeId, header: FrameHeader, payload: Buffer) {
    let Some(tx) = node
        .mailboxes
        .get(&header.target)
        .map(|e| e.value().clone())
    else {
        tracing::warn!(mailbox = %header.target, from = %from, "a post for a mailbox that is closed was dropped");
        return;
    };
    let delivery = Delivery {
        from,
        op: header.flags,
        type_tag: header.type_tag,
        payload,
    };
    if tx.send(delivery).await.is_err() {
        tracing::warn!(mailbox = %header.target, from = %from, "a post arrived as its mailbox closed and was dropped");
    }
}
