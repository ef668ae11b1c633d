//! Liveness: only the side that opened a connection sends heartbeats, and
//! the other side's acknowledgements are its sign of life.

use std::time::Instant;

use super::tests::{config, joined, node, t, up};
use super::*;

#[tokio::test]
async fn an_idle_connection_carries_heartbeats_one_way_and_acknowledgements_back() {
    let j = joined().await;
    // Past the connection's first exchanges, twenty intervals of an idle
    // connection.
    tokio::time::sleep(config().heartbeat_interval * 5).await;
    let before_b = j.to_a.shared.conn.stats();
    let before_a = j.at_a.shared.conn.stats();
    tokio::time::sleep(config().heartbeat_interval * 20).await;
    let (after_b, after_a) = (j.to_a.shared.conn.stats(), j.at_a.shared.conn.stats());
    let beats_b = after_b.frame_tx.datagram - before_b.frame_tx.datagram;
    let beats_a = after_a.frame_tx.datagram - before_a.frame_tx.datagram;
    assert!(beats_b >= 10, "the opener sent {beats_b} heartbeats");
    assert_eq!(beats_a, 0, "the accepting side sent heartbeats");
    // The accepting side sends about one packet (an acknowledgement) per
    // heartbeat, not a heartbeat of its own as well (twice as many).
    let packets_a = after_a.udp_tx.datagrams - before_a.udp_tx.datagrams;
    assert!(
        packets_a < beats_b * 3 / 2,
        "{packets_a} packets for {beats_b} heartbeats"
    );
    assert!(j.to_a.is_alive() && j.at_a.is_alive());
}

/// The accepting node runs on its own thread, which then hangs: its QUIC
/// stack stops acknowledging, and the opener, hearing nothing, declares it
/// dead on time.
#[tokio::test]
async fn the_opener_declares_a_hung_accepting_node_dead() {
    let (line_tx, line_rx) = tokio::sync::oneshot::channel();
    let (hang_tx, hang_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let hung = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let (a, mut events) = node("pw").await;
            let _ = line_tx.send(a.join_line());
            let _peer = up(&mut events).await;
            let _ = hang_rx.await;
            // Blocks this runtime's only thread: the node hangs.
            let _ = release_rx.recv();
            drop(a);
        });
    });
    let (b, _b_events) = node("pw").await;
    let line = t(line_rx).await.expect("the join line");
    let to_a = t(b.connect(&line)).await.expect("connect");
    // The opener's last sign of life from the node: its count of packets
    // received last grew after the look taken at `heard_after`. A loaded
    // machine may stall the node before it hangs, so the timeout runs from
    // there, not from the hang.
    let conn = to_a.shared.conn.clone();
    let last_heard = tokio::spawn(async move {
        let (mut seen, mut looked) = (conn.stats().udp_rx.datagrams, Instant::now());
        let mut heard_after = looked;
        while conn.close_reason().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let now = conn.stats().udp_rx.datagrams;
            if now != seen {
                (seen, heard_after) = (now, looked);
            }
            looked = Instant::now();
        }
        heard_after
    });
    // Idle for three timeouts: its acknowledgements keep it alive.
    tokio::time::sleep(config().heartbeat_timeout * 3).await;
    assert!(to_a.is_alive());
    hang_tx.send(()).expect("the node runs");
    let hung_at = Instant::now();
    let reason = t(to_a.closed()).await;
    let (took, dead_at) = (hung_at.elapsed(), Instant::now());
    assert_eq!(
        reason,
        DownReason::HeartbeatTimeout(config().heartbeat_timeout)
    );
    let bound = config().heartbeat_timeout + config().heartbeat_interval * 3;
    assert!(took < bound, "declared dead after {took:?}");
    let last_heard = t(last_heard).await.expect("the watcher ends");
    // No sooner than the timeout less one look after the last packet (the
    // watcher judges at its looks, and the packet may have come just
    // before one).
    let silent = dead_at.duration_since(last_heard);
    let look = config().heartbeat_interval / super::control::LOOKS_PER_INTERVAL;
    assert!(
        silent + look >= config().heartbeat_timeout,
        "declared dead at most {silent:?} after the last packet heard"
    );
    release_tx.send(()).expect("the hanging thread waits");
    hung.join().expect("the hanging thread ends");
    assert_eq!(b.heartbeat_timeouts(), 1);
}
