//! The control lane after the handshake: heartbeats both ways, goodbye, and
//! the liveness verdict.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::wire::{self, FrameKind, Refuse};

use super::error::DownReason;
use super::framing::{CONTROL_MAX_FRAME, ReadFrameError, read_frame, write_empty};
use super::peer::PeerShared;

/// Sends a heartbeat every `interval` until the peer is down.
pub(crate) async fn heartbeats(shared: Arc<PeerShared>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.wait_down() => return,
        }
        if shared.heartbeats_paused.load(Ordering::Relaxed) {
            continue;
        }
        let result = {
            let mut control = shared.control.lock().await;
            write_empty(&mut control, FrameKind::Heartbeat).await
        };
        if let Err(reason) = result {
            shared.set_down(reason);
            return;
        }
    }
}

/// Reads the peer's control lane; declares it dead when nothing arrives for
/// `timeout`, gone on goodbye, broken on anything unexpected.
pub(crate) async fn watch(shared: Arc<PeerShared>, mut recv: quinn::RecvStream, timeout: Duration) {
    let reason = loop {
        let read = tokio::select! {
            r = tokio::time::timeout(timeout, read_frame(&mut recv, CONTROL_MAX_FRAME)) => r,
            _ = shared.wait_down() => return,
        };
        match read {
            Err(_) => break DownReason::HeartbeatTimeout(timeout),
            Ok(Ok(Some((header, payload)))) => match header.kind {
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
            Ok(Ok(None)) => break protocol(&shared, "the peer closed its control lane".to_owned()),
            Ok(Err(ReadFrameError::Header(e))) => break protocol(&shared, e.to_string()),
            Ok(Err(ReadFrameError::Protocol(why))) => break protocol(&shared, why),
            Ok(Err(ReadFrameError::Lost(reason))) => break reason,
        }
    };
    if let DownReason::HeartbeatTimeout(t) = &reason {
        tracing::warn!(peer = %shared.node, addr = %shared.remote_addr, "no heartbeat for {t:?}; declaring the peer dead");
    }
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
