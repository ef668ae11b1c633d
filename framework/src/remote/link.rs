//! One authenticated peer as the remote layer sees it: the transport's
//! [`Peer`] plus the requests waiting for its replies.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::id::NodeId;
use crate::transport::{DownReason, Peer};
use crate::wire::{
    Buffer, FrameError, FrameHeader, FrameKind, Payload, RemoteFailure, check_len, decode_owned,
};

/// Why a request to another node (ask, spawn, call) got no successful reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection to the node is gone.
    #[error("lost the connection to {node}: {reason}")]
    PeerLost {
        /// The node.
        node: NodeId,
        /// Why the connection ended.
        reason: String,
    },
    /// No reply within the deadline.
    #[error(
        "no reply from {node} within {after:?}; the node may be overloaded — raise the timeout or check the node"
    )]
    Timeout {
        /// The node.
        node: NodeId,
        /// The deadline.
        after: Duration,
    },
    /// The node answered with a failure.
    #[error("{}", .0.message)]
    Remote(RemoteFailure),
    /// The request (a spawn's initial state, a call's arguments, a post) is
    /// larger than a frame may be: it was not sent, and the connection stays.
    #[error("the request to {node} was not sent: {error}")]
    TooLarge {
        /// The node.
        node: NodeId,
        /// The size rule it broke ([`crate::wire::check_len`]).
        error: FrameError,
    },
}

type Waiter = oneshot::Sender<Result<Buffer, RemoteFailure>>;

/// Hashes the link's correlation numbers, which it counts itself (a peer
/// names one only to look it up, never to add one): one multiplication
/// spreads consecutive numbers over the map's shards, where the default
/// SipHash spent a few hundred instructions an ask.
#[derive(Default)]
struct CorrelationHasher(u64);

impl std::hash::Hasher for CorrelationHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which pick the shard, mix all of `n`.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Correlations = std::hash::BuildHasherDefault<CorrelationHasher>;

/// A connected peer and the asks, spawns and calls waiting on it.
pub struct PeerLink {
    peer: Peer,
    next: AtomicU64,
    pending: DashMap<u64, Waiter, Correlations>,
    down: OnceLock<String>,
}

impl PeerLink {
    pub(crate) fn new(peer: Peer) -> Self {
        Self {
            peer,
            next: AtomicU64::new(1),
            pending: DashMap::default(),
            down: OnceLock::new(),
        }
    }

    /// The transport peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The peer's node id.
    pub fn node(&self) -> NodeId {
        self.peer.node()
    }

    fn lost(&self) -> RequestError {
        let reason = self
            .down
            .get()
            .cloned()
            .unwrap_or_else(|| "the connection closed".to_string());
        RequestError::PeerLost {
            node: self.node(),
            reason,
        }
    }

    /// True until the peer went down.
    pub fn is_alive(&self) -> bool {
        self.down.get().is_none() && self.peer.is_alive()
    }

    /// Marks the peer down and fails every waiting request with the reason.
    pub(crate) fn fail_all(&self, reason: &DownReason) {
        let _ = self.down.set(reason.to_string());
        let keys: Vec<u64> = self.pending.iter().map(|e| *e.key()).collect();
        for key in keys {
            if let Some((_, waiter)) = self.pending.remove(&key) {
                drop(waiter); // the receiver turns a dropped waiter into PeerLost
            }
        }
    }

    /// Routes a `Reply` or `ReplyError` frame to the request that waits for it.
    pub(crate) fn complete(&self, header: &FrameHeader, payload: Buffer) {
        let Some((_, waiter)) = self.pending.remove(&header.correlation) else {
            tracing::debug!(node = %self.node(), correlation = header.correlation, "late reply ignored");
            return;
        };
        let result = if header.kind == FrameKind::Reply {
            Ok(payload)
        } else {
            Err(
                decode_owned::<RemoteFailure>(&payload).unwrap_or_else(|e| RemoteFailure {
                    location: None,
                    code: 0,
                    message: format!("the peer sent an unreadable failure: {e}"),
                }),
            )
        };
        let _ = waiter.send(result);
    }

    /// Sends a request frame and waits for its reply, at most `timeout` in all.
    pub async fn request(
        &self,
        header: FrameHeader,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Buffer, RequestError> {
        self.exchange(header, payload.into(), Some(timeout), None)
            .await
    }

    /// [`PeerLink::request`] with no deadline of its own, for a caller that
    /// bounds the whole exchange itself (`ActorRef::ask`): one timer per
    /// request instead of two.
    pub(crate) async fn request_in_deadline(
        &self,
        header: FrameHeader,
        payload: impl Into<Payload>,
    ) -> Result<Buffer, RequestError> {
        self.exchange(header, payload.into(), None, None).await
    }

    /// [`PeerLink::request`], and `sent` is answered once the request's
    /// bytes were handed to QUIC ([`crate::transport::Peer::send_tracked`]).
    pub async fn request_tracked(
        &self,
        header: FrameHeader,
        payload: impl Into<Payload>,
        timeout: Duration,
        sent: oneshot::Sender<()>,
    ) -> Result<Buffer, RequestError> {
        self.exchange(header, payload.into(), Some(timeout), Some(sent))
            .await
    }

    async fn exchange(
        &self,
        mut header: FrameHeader,
        payload: Payload,
        timeout: Option<Duration>,
        sent: Option<oneshot::Sender<()>>,
    ) -> Result<Buffer, RequestError> {
        self.fits(&payload)?;
        let correlation = self.next.fetch_add(1, Ordering::Relaxed);
        header.correlation = correlation;
        let (tx, rx) = oneshot::channel();
        self.pending.insert(correlation, tx);
        let _cleanup = RemoveOnDrop {
            link: self,
            key: correlation,
        };
        if !self.is_alive() {
            return Err(self.lost());
        }
        let exchange = async {
            match sent {
                Some(sent) => self.peer.send_tracked(header, payload, sent).await,
                // Someone waits for the reply: straight onto an idle lane.
                None => self.peer.send_now(header, payload).await,
            }
            .map_err(|_| self.lost())?;
            match rx.await {
                Ok(Ok(bytes)) => Ok(bytes),
                Ok(Err(failure)) => Err(RequestError::Remote(failure)),
                Err(_) => Err(self.lost()),
            }
        };
        let Some(timeout) = timeout else {
            return exchange.await;
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::Timeout {
                node: self.node(),
                after: timeout,
            }),
        }
    }

    /// Sends a frame without waiting for a reply (waits for queue space).
    pub async fn send(
        &self,
        header: FrameHeader,
        payload: impl Into<Payload>,
    ) -> Result<(), RequestError> {
        let payload = payload.into();
        self.fits(&payload)?;
        self.peer
            .send(header, payload)
            .await
            .map_err(|_| self.lost())
    }

    /// Refuses, before anything is sent, a payload the peer would refuse by
    /// closing the connection.
    fn fits(&self, payload: &Payload) -> Result<(), RequestError> {
        check_len(payload.len() as u64, self.peer.max_frame()).map_err(|error| {
            RequestError::TooLarge {
                node: self.node(),
                error,
            }
        })
    }
}

struct RemoveOnDrop<'a> {
    link: &'a PeerLink,
    key: u64,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        self.link.pending.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// Consecutive correlation numbers land evenly on the map's shards
    /// (DashMap picks a shard from the bits under the top seven).
    #[test]
    fn consecutive_correlations_spread_over_the_shards() {
        let hasher = Correlations::default();
        let mut shards = [0u32; 16];
        for n in 1..=4096u64 {
            let h = hasher.hash_one(n);
            shards[((h << 7) >> 60) as usize] += 1;
        }
        assert!(
            shards.iter().all(|&c| (128..=384).contains(&c)),
            "{shards:?}"
        );
        let distinct: std::collections::HashSet<u64> =
            (1..=4096u64).map(|n| hasher.hash_one(n)).collect();
        assert_eq!(distinct.len(), 4096);
    }
}
