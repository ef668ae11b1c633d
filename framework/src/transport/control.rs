//! The control lane after the handshake: heartbeats both ways, goodbye, and
//! the liveness verdict.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::wire::{self, FrameHeader, FrameKind, HEADER_LEN, Refuse};

use super::error::DownReason;
use super::framing::{CONTROL_MAX_FRAME, ReadFrameError, down_reason, read_frame, write_empty};
use super::peer::PeerShared;

/// Sends heartbeats every `interval` until the peer is down, two ways at once:
///
/// - as a QUIC **datagram**: datagrams are not subject to stream flow
///   control and quinn packs them ahead of stream data, so concurrent bulk
///   streams that use up the connection's flow-control credit cannot hold
///   them back (a heartbeat on the control *stream* alone waited for credit
///   behind 64 MiB tensors long enough to be declared dead);
/// - on the **control stream**, which is retransmitted: a datagram lost to a
///   full socket buffer under a flood is not. Only while data flows: an idle
///   connection loses no datagrams to a flood, and 100 idle peers then cost
///   half the packets.
///
/// The peer counts either as a sign of life.
pub(crate) async fn heartbeats(shared: Arc<PeerShared>, interval: Duration) {
    tokio::join!(
        beat(&shared, interval, Lane::Datagram),
        beat(&shared, interval, Lane::Stream)
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Lane {
    Datagram,
    Stream,
}

async fn beat(shared: &PeerShared, interval: Duration, lane: Lane) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = FrameHeader::new(FrameKind::Heartbeat).encode().to_vec();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.wait_down() => return,
        }
        if shared.heartbeats_paused.load(Ordering::Relaxed) {
            continue;
        }
        let result = match lane {
            Lane::Datagram => match shared.conn.send_datagram(heartbeat.clone().into()) {
                Ok(()) => Ok(()),
                Err(quinn::SendDatagramError::ConnectionLost(e)) => Err(down_reason(&e)),
                // The peer takes no datagrams: the stream lane carries on alone.
                Err(_) => return,
            },
            Lane::Stream if !shared.data_sent.swap(false, Ordering::Relaxed) => Ok(()),
            Lane::Stream => {
                let mut control = shared.control.lock().await;
                write_empty(&mut control, FrameKind::Heartbeat).await
            }
        };
        if let Err(reason) = result {
            shared.set_down(reason);
            return;
        }
    }
}

/// What a datagram from the peer says: a heartbeat, or a broken protocol.
fn datagram(bytes: &[u8]) -> Result<(), String> {
    match FrameHeader::decode(bytes, 0) {
        Ok(header) if header.kind == FrameKind::Heartbeat && bytes.len() == HEADER_LEN => Ok(()),
        Ok(header) => Err(format!("a {:?} datagram arrived", header.kind)),
        Err(e) => Err(format!("an unreadable datagram arrived: {e}")),
    }
}

/// The least lateness of a timer that counts as this process having been
/// stalled (stopped, paused, starved), whatever the heartbeat interval.
const STALL_SLACK: Duration = Duration::from_millis(50);

/// Reads the peer's control lane; declares it dead when nothing arrives for
/// `timeout`, gone on goodbye, broken on anything unexpected.
///
/// A timeout that fires more than a heartbeat `interval` late means this
/// process itself did not run (SIGSTOP, a paused VM): the silence may be
/// ours, so the peer gets one more `timeout` (its heartbeats, or its verdict
/// on us, are likely waiting in the socket) before it is declared dead.
pub(crate) async fn watch(
    shared: Arc<PeerShared>,
    mut recv: quinn::RecvStream,
    interval: Duration,
    timeout: Duration,
) {
    let slack = interval.max(STALL_SLACK);
    let reason = loop {
        // One read per frame, kept alive across a stall so no bytes are lost.
        let read = read_frame(&mut recv, CONTROL_MAX_FRAME);
        tokio::pin!(read);
        let mut deadline = Instant::now() + timeout;
        let read = loop {
            tokio::select! {
                r = &mut read => break Some(r),
                d = shared.conn.read_datagram() => match d {
                    Ok(bytes) => match datagram(&bytes) {
                        Ok(()) => deadline = Instant::now() + timeout,
                        Err(why) => {
                            shared.set_down(protocol(&shared, why));
                            return;
                        }
                    },
                    Err(e) => {
                        shared.set_down(down_reason(&e));
                        return;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let late = deadline.elapsed();
                    if late <= slack {
                        break None;
                    }
                    tracing::warn!(peer = %shared.node, addr = %shared.remote_addr, "this node was stalled for about {late:?}; giving the peer another {timeout:?} before judging it");
                    deadline = Instant::now() + timeout;
                }
                _ = shared.wait_down() => return,
            }
        };
        match read {
            None => {
                tracing::warn!(peer = %shared.node, addr = %shared.remote_addr, incarnation = shared.incarnation, "no heartbeat for {timeout:?}; declaring the peer dead and fencing this incarnation");
                shared
                    .fences
                    .fence(shared.node, shared.incarnation, timeout);
                break DownReason::HeartbeatTimeout(timeout);
            }
            Some(Ok(Some((header, payload)))) => match header.kind {
                FrameKind::Heartbeat => {}
                FrameKind::Goodbye => break DownReason::Goodbye,
                FrameKind::Refuse => {
                    let why = wire::decode_owned::<Refuse>(&payload)
                        .map(|r| r.reason)
                        .unwrap_or_else(|e| format!("unreadable refusal: {e}"));
                    break DownReason::ConnectionLost(format!("the peer refused us: {why}"));
                }
                other => {
                    break protocol(
                        &shared,
                        format!("a {other:?} frame arrived on the control lane"),
                    );
                }
            },
            Some(Ok(None)) => {
                break protocol(&shared, "the peer closed its control lane".to_owned());
            }
            Some(Err(ReadFrameError::Header(e))) => break protocol(&shared, e.to_string()),
            Some(Err(ReadFrameError::Protocol(why))) => break protocol(&shared, why),
            Some(Err(ReadFrameError::Lost(reason))) => break reason,
        }
    };
    shared.set_down(reason);
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
