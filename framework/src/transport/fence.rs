//! Fencing: a node declared dead stays dead.
//!
//! Every transport has an **incarnation**, a number fixed when it binds and
//! exchanged in the handshake (`Hello` / `Challenge`). When nothing is heard
//! from a peer for `heartbeat_timeout`, this node closes the connection
//! and remembers the pair (node id, incarnation) as *fenced*: a process that
//! was only stopped (SIGSTOP, a paused VM, a long swap storm) and comes back
//! is refused if it tries to join again as the same incarnation, so nothing
//! it computed while it was counted as dead (late replies, stale state) can
//! reach this node. It must restart, which gives it a new incarnation.
//!
//! The fenced side learns it was fenced from the close code of the
//! connection (or from the refusal of a later join) and then refuses to dial
//! that node again itself, so it never loops on doomed handshakes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::id::NodeId;

use super::join_line::JoinLine;

/// Start of every refusal and error about a fenced incarnation.
pub(crate) const FENCED: &str = "fenced";

/// Fences remembered per transport; the oldest are forgotten beyond this
/// (a fenced node that is still stopped after 4096 newer deaths could then
/// rejoin, which a cluster that loses nodes that fast cannot tell anyway).
const MAX_FENCES: usize = 4096;

/// A fresh incarnation number: the wall clock in nanoseconds when the
/// transport binds, so a restarted process always gets a larger one
/// (and never 0).
pub(crate) fn new_incarnation() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos.max(1)
}

/// A dead incarnation of another node.
#[derive(Debug)]
struct Dead {
    node: NodeId,
    incarnation: u64,
    silence: Duration,
}

/// A node that declared *this* node dead.
#[derive(Debug)]
struct FencedBy {
    fingerprint: Option<[u8; 32]>,
    addr: SocketAddr,
    reason: String,
}

/// The fences of one transport: incarnations it declared dead, and nodes
/// that declared it dead.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    dead: Mutex<VecDeque<Dead>>,
    fenced_by: Mutex<VecDeque<FencedBy>>,
    /// Incarnations declared dead so far (also those no longer remembered).
    declared: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= MAX_FENCES {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The refusal for a fenced incarnation: what happened and what to do.
pub(crate) fn refusal(node: NodeId, incarnation: u64, silence: Duration) -> String {
    format!(
        "{FENCED}: node {node} (incarnation {incarnation}) was declared dead after {silence:?} of silence; restart it (a new incarnation) to rejoin"
    )
}

impl Fences {
    /// Remembers that `node` as `incarnation` was declared dead after
    /// `silence` without heartbeats.
    pub fn fence(&self, node: NodeId, incarnation: u64, silence: Duration) {
        let mut dead = lock(&self.dead);
        if dead
            .iter()
            .any(|d| d.node == node && d.incarnation == incarnation)
        {
            return;
        }
        self.declared
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        push_bounded(
            &mut dead,
            Dead {
                node,
                incarnation,
                silence,
            },
        );
    }

    /// How many incarnations of other nodes this transport declared dead
    /// for silence (missed heartbeats) so far.
    pub fn declared(&self) -> u64 {
        self.declared.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The refusal to give `node` as `incarnation`, if it was declared dead.
    pub fn check(&self, node: NodeId, incarnation: u64) -> Option<String> {
        lock(&self.dead)
            .iter()
            .find(|d| d.node == node && d.incarnation == incarnation)
            .map(|d| refusal(d.node, d.incarnation, d.silence))
    }

    /// Remembers that the node behind `line` (or at `addr` when it sent no
    /// join line) declared this node dead, and why.
    pub fn fenced_by(&self, line: Option<&JoinLine>, addr: SocketAddr, reason: String) {
        push_bounded(
            &mut lock(&self.fenced_by),
            FencedBy {
                fingerprint: line.map(|l| l.fingerprint),
                addr: line.map_or(addr, |l| l.addr),
                reason,
            },
        );
    }

    /// Why dialing `line` is pointless, if its node declared this one dead.
    pub fn fenced_by_line(&self, line: &JoinLine) -> Option<String> {
        lock(&self.fenced_by)
            .iter()
            .rev()
            .find(|f| match f.fingerprint {
                Some(fp) => fp == line.fingerprint,
                None => f.addr == line.addr,
            })
            .map(|f| f.reason.clone())
    }

    /// Forgets every node that declared this one dead (tests only: lets a
    /// fenced node dial again to check the other side's refusal).
    #[cfg(test)]
    pub fn forget_fenced_by(&self) {
        lock(&self.fenced_by).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_incarnation_is_refused_and_a_new_one_is_not() {
        let fences = Fences::default();
        let node = NodeId::new();
        fences.fence(node, 7, Duration::from_millis(600));
        let why = fences.check(node, 7).expect("fenced");
        assert!(why.starts_with(FENCED), "{why}");
        assert!(why.contains("600ms") && why.contains("restart"), "{why}");
        assert!(fences.check(node, 8).is_none());
        assert!(fences.check(NodeId::new(), 7).is_none());
    }

    #[test]
    fn fences_stay_bounded() {
        let fences = Fences::default();
        let first = NodeId::new();
        fences.fence(first, 1, Duration::from_secs(1));
        for i in 0..MAX_FENCES as u64 {
            fences.fence(NodeId::new(), i, Duration::from_secs(1));
        }
        assert_eq!(lock(&fences.dead).len(), MAX_FENCES);
        assert!(fences.check(first, 1).is_none());
    }

    #[test]
    fn incarnations_grow() {
        let a = new_incarnation();
        std::thread::sleep(Duration::from_millis(1));
        assert!(new_incarnation() > a);
    }
}
