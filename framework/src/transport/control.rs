//! The control lane after the handshake: heartbeats from the side that
//! opened the connection, goodbye, and the liveness verdict.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::wire::{self, FrameHeader, FrameKind, HEADER_LEN, Refuse};

use super::error::DownReason;
use super::framing::{CONTROL_MAX_FRAME, ReadFrameError, down_reason, read_frame, write_empty};
use super::peer::PeerShared;

/// A peer whose liveness [`watch`] judges.
struct Watched {
    shared: Arc<PeerShared>,
    /// Frames received when last looked at.
    seen: u64,
    /// When the peer was last seen alive (a look that saw new frames).
    heard: Instant,
}

/// How many times an interval [`watch`] looks at every peer: the verdict
/// comes within a quarter interval of the timeout.
pub(super) const LOOKS_PER_INTERVAL: u32 = 4;

/// Judges the liveness of every peer of one transport, on one timer: a look
/// at all of them four times an interval, not a task and a timer per peer. Peers
/// arrive on `arrivals` as their connections come up; the task ends when the
/// transport is gone (`arrivals` closed) and no peer is left.
///
/// Only the side that accepted a connection sends heartbeats: a QUIC
/// **datagram** every `interval` (datagrams are not subject to stream flow control
/// and quinn packs them ahead of stream data, so bulk streams that use up
/// the connection's credit cannot hold them back). The other side's QUIC
/// stack acknowledges each one, and those acknowledgements are the
/// acceptor's sign of life from it. Either side counts *every* frame QUIC authenticated
/// on the connection (heartbeats, acknowledgements, data) as a sign of
/// life, read from the connection's statistics at each look; so under a flood
/// the data itself keeps both sides alive, and an idle pair costs two
/// packets an interval (a heartbeat and its acknowledgement) and no task
/// woken per packet — what a head with a thousand idle nodes pays for.
///
/// The acceptor beats all its peers in the same look, once an interval
/// (a newcomer also at once): a head's heartbeats leave in one burst and
/// their acknowledgements come back in one, so the head wakes a few times an
/// interval however many nodes joined it. With the opener beating, each
/// node's heartbeat reached the head at its own moment, and the head woke
/// twice for each (to read it, then to send QUIC's delayed acknowledgement):
/// 100 idle peers took 1.3–1.6 % of a core then, 0.7–0.9 % with the
/// acceptor beating them in one look (`bench_supervision`'s host, its
/// `/proc/<pid>/stat` over 10 s, runs alternating).
///
/// A peer is declared dead (and its incarnation fenced) at the first look
/// at least `timeout` minus a look after the look that last saw it alive:
/// between a quarter interval less than `timeout` and `timeout` after its
/// last packet (with the defaults, two or three heartbeats unanswered).
///
/// A look that comes more than an `interval` late means this process itself
/// did not run (SIGSTOP, a paused VM): the silence may be ours, so every
/// peer gets one more `timeout` (its packets, or its verdict on us, are
/// likely waiting in the socket) before it is judged.
pub(crate) async fn watch(
    mut arrivals: tokio::sync::mpsc::UnboundedReceiver<Arc<PeerShared>>,
    interval: Duration,
    timeout: Duration,
) {
    let slack = interval.max(STALL_SLACK);
    let heartbeat = FrameHeader::new(FrameKind::Heartbeat).encode().to_vec();
    let mut watched: Vec<Watched> = Vec::new();
    let mut open = true;
    let look = (interval / LOOKS_PER_INTERVAL).max(Duration::from_millis(1));
    let mut tick = Instant::now() + look;
    // When the once-an-interval work is due for every peer: the acceptor's
    // heartbeats, and taking the datagrams that arrived.
    let mut next_beat = Instant::now() + interval;
    while open || !watched.is_empty() {
        tokio::select! {
            arrived = arrivals.recv(), if open => match arrived {
                Some(shared) => {
                    // The acceptor's first heartbeat goes at once.
                    if !shared.initiated_by_us && let Err(reason) = beat(&shared, &heartbeat) {
                        shared.set_down(reason);
                        continue;
                    }
                    let now = Instant::now();
                    watched.push(Watched {
                        seen: frames_received(&shared.conn.stats()),
                        heard: now,
                        shared,
                    });
                }
                None => open = false,
            },
            _ = tokio::time::sleep_until(tick) => {
                let now = Instant::now();
                let stalled = now.saturating_duration_since(tick) > slack;
                if stalled {
                    tracing::warn!("this node was stalled for about {:?}; giving its peers another {timeout:?} before judging them", now.saturating_duration_since(tick));
                }
                tick = now + look;
                let beats = now + look / 2 >= next_beat;
                if beats {
                    next_beat = now + interval;
                }
                let times = Times { now, look, timeout };
                watched.retain_mut(|w| judge(w, &heartbeat, times, beats, stalled));
            }
        }
    }
}

/// The clock of one look.
#[derive(Clone, Copy)]
struct Times {
    now: Instant,
    look: Duration,
    timeout: Duration,
}

/// One look at one peer: in the look that `beats`, its heartbeat (the
/// acceptor's side) and the datagrams that arrived; then the verdict. False
/// when the peer is down.
fn judge(w: &mut Watched, heartbeat: &[u8], times: Times, beats: bool, stalled: bool) -> bool {
    let Times { now, look, timeout } = times;
    let shared = &w.shared;
    if shared.is_down() {
        return false;
    }
    // A paused node hangs: it neither beats nor judges.
    if shared.heartbeats_paused.load(Ordering::Relaxed) {
        w.heard = now;
        return true;
    }
    if beats {
        let done = drain_datagrams(shared).and_then(|()| {
            if shared.initiated_by_us {
                Ok(())
            } else {
                beat(shared, heartbeat)
            }
        });
        if let Err(reason) = done {
            shared.set_down(reason);
            return false;
        }
    }
    let count = frames_received(&shared.conn.stats());
    if count != w.seen || stalled {
        w.seen = count;
        w.heard = now;
        return true;
    }
    // The frames that moved the count came within a look before `heard`.
    if now.saturating_duration_since(w.heard) + look < timeout {
        return true;
    }
    tracing::warn!(peer = %shared.node, addr = %shared.remote_addr, incarnation = shared.incarnation, "nothing heard for {timeout:?}; declaring the peer dead and fencing this incarnation");
    shared
        .fences
        .fence(shared.node, shared.incarnation, timeout);
    shared.set_down(DownReason::HeartbeatTimeout(timeout));
    false
}

/// Takes the heartbeat datagrams that arrived since the last tick (without
/// waiting), so they never pile up; anything else is a broken protocol.
fn drain_datagrams(shared: &PeerShared) -> Result<(), DownReason> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        let read = std::pin::pin!(shared.conn.read_datagram());
        match std::future::Future::poll(read, &mut cx) {
            std::task::Poll::Pending => return Ok(()),
            std::task::Poll::Ready(Ok(bytes)) => {
                datagram(&bytes).map_err(|why| protocol(shared, why))?
            }
            std::task::Poll::Ready(Err(e)) => return Err(down_reason(&e)),
        }
    }
}

/// Reads the peer's control lane until it is down: gone on goodbye, broken
/// on anything unexpected (heartbeats travel as datagrams; liveness is
/// judged by [`watch`]).
pub(crate) async fn read_control(shared: Arc<PeerShared>, mut recv: quinn::RecvStream) {
    // After the handshake the control lane carries one frame: the last.
    let read = tokio::select! {
        r = read_frame(&mut recv, CONTROL_MAX_FRAME) => r,
        _ = shared.wait_down() => return,
    };
    let reason = match read {
        Ok(Some((header, payload))) => match header.kind {
            FrameKind::Goodbye => DownReason::Goodbye,
            FrameKind::Refuse => {
                let why = wire::decode_owned::<Refuse>(&payload)
                    .map(|r| r.reason)
                    .unwrap_or_else(|e| format!("unreadable refusal: {e}"));
                DownReason::ConnectionLost(format!("the peer refused us: {why}"))
            }
            other => protocol(
                &shared,
                format!("a {other:?} frame arrived on the control lane"),
            ),
        },
        Ok(None) => protocol(&shared, "the peer closed its control lane".to_owned()),
        Err(ReadFrameError::Header(e)) => protocol(&shared, e.to_string()),
        Err(ReadFrameError::Protocol(why)) => protocol(&shared, why),
        Err(ReadFrameError::Lost(reason)) => reason,
    };
    shared.set_down(reason);
}

/// The least lateness of a timer that counts as this process having been
/// stalled (stopped, paused, starved), whatever the heartbeat interval.
const STALL_SLACK: Duration = Duration::from_millis(50);

/// Sends one heartbeat datagram (the acceptor's side).
fn beat(shared: &PeerShared, heartbeat: &[u8]) -> Result<(), DownReason> {
    match shared.conn.send_datagram(heartbeat.to_vec().into()) {
        Ok(()) => Ok(()),
        Err(quinn::SendDatagramError::ConnectionLost(e)) => Err(down_reason(&e)),
        Err(e) => Err(protocol(
            shared,
            format!("cannot send a heartbeat datagram ({e}); para||el nodes need QUIC datagrams"),
        )),
    }
}

/// Frames QUIC authenticated on a connection, of the kinds a live peer
/// sends: each one is a sign of life.
fn frames_received(stats: &quinn::ConnectionStats) -> u64 {
    let f = &stats.frame_rx;
    f.acks
        + f.ping
        + f.datagram
        + f.stream
        + f.crypto
        + f.max_data
        + f.max_stream_data
        + f.data_blocked
        + f.stream_data_blocked
        + f.reset_stream
        + f.stop_sending
        + f.new_connection_id
        + f.retire_connection_id
        + f.immediate_ack
        + f.ack_frequency
        + f.path_challenge
        + f.path_response
}

/// What a datagram from the peer says: a heartbeat, or a broken protocol.
fn datagram(bytes: &[u8]) -> Result<(), String> {
    match FrameHeader::decode(bytes, 0) {
        Ok(header) if header.kind == FrameKind::Heartbeat && bytes.len() == HEADER_LEN => Ok(()),
        Ok(header) => Err(format!("a {:?} datagram arrived", header.kind)),
        Err(e) => Err(format!("an unreadable datagram arrived: {e}")),
    }
}

fn protocol(shared: &PeerShared, why: String) -> DownReason {
    tracing::warn!(peer = %shared.node, addr = %shared.remote_addr, "dropping peer: {why}");
    DownReason::ProtocolError(why)
}

/// Says goodbye on the control lane (best effort, bounded by `limit`).
pub(crate) async fn goodbye(shared: &PeerShared, limit: Duration) {
    let send = async {
        let mut control = shared.control.lock().await;
        let _ = write_empty(&mut control, FrameKind::Goodbye).await;
    };
    let _ = tokio::time::timeout(limit, send).await;
}
