//! Liveness: only the side that accepted a connection sends heartbeats, all
//! its peers' in the same look, and the other side's acknowledgements are
//! its sign of life.

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
    assert!(beats_a >= 10, "the acceptor sent {beats_a} heartbeats");
    assert_eq!(beats_b, 0, "the opener sent heartbeats");
    // The opener sends about one packet (an acknowledgement) per heartbeat,
    // not a heartbeat of its own as well (twice as many).
    let packets_b = after_b.udp_tx.datagrams - before_b.udp_tx.datagrams;
    assert!(
        packets_b < beats_a * 3 / 2,
        "{packets_b} packets for {beats_a} heartbeats"
    );
    assert!(j.to_a.is_alive() && j.at_a.is_alive());
}

/// Which side of the connection hangs.
#[derive(Clone, Copy, PartialEq)]
enum Hangs {
    /// The node that accepted the connection (and sends the heartbeats).
    Acceptor,
    /// The node that opened it (and acknowledges them).
    Opener,
}

/// The accepting node runs on its own thread, which then hangs: it stops
/// beating (and its QUIC stack acknowledging), and the opener, hearing
/// nothing, declares it dead on time.
#[tokio::test]
async fn the_opener_declares_a_hung_accepting_node_dead() {
    a_hung_node_is_declared_dead_on_time(Hangs::Acceptor).await;
}

/// The opening node runs on its own thread, which then hangs: its QUIC stack
/// stops acknowledging the heartbeats, and the acceptor (a head, say),
/// hearing nothing, declares it dead on time.
#[tokio::test]
async fn the_acceptor_declares_a_hung_opening_node_dead() {
    a_hung_node_is_declared_dead_on_time(Hangs::Opener).await;
}

async fn a_hung_node_is_declared_dead_on_time(hangs: Hangs) {
    // The acceptor's join line, sent by whichever side binds it.
    let (line_tx, line_rx) = tokio::sync::oneshot::channel();
    let (hang_tx, hang_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (hung_line_tx, hung_line_rx) = tokio::sync::oneshot::channel();
    let hung = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let (node, mut events) = node("pw").await;
            let _peer = match hangs {
                Hangs::Acceptor => {
                    let _ = hung_line_tx.send(node.join_line());
                    up(&mut events).await.0
                }
                Hangs::Opener => {
                    let line: JoinLine = t(line_rx).await.expect("the join line");
                    t(node.connect(&line)).await.expect("connect")
                }
            };
            let _ = hang_rx.await;
            // Blocks this runtime's only thread: the node hangs.
            let _ = release_rx.recv();
            drop(node);
        });
    });
    let (watcher, mut events) = node("pw").await;
    let peer = match hangs {
        Hangs::Acceptor => {
            let line = t(hung_line_rx).await.expect("the join line");
            t(watcher.connect(&line)).await.expect("connect")
        }
        Hangs::Opener => {
            let _ = line_tx.send(watcher.join_line());
            up(&mut events).await.0
        }
    };
    // The watcher's last sign of life from the node: its count of packets
    // received last grew after the look taken at `heard_after`. A loaded
    // machine may stall the node before it hangs, so the timeout runs from
    // there, not from the hang.
    let conn = peer.shared.conn.clone();
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
    // Idle for three timeouts: its heartbeats or acknowledgements keep it
    // alive.
    tokio::time::sleep(config().heartbeat_timeout * 3).await;
    assert!(peer.is_alive());
    hang_tx.send(()).expect("the node runs");
    let hung_at = Instant::now();
    let reason = t(peer.closed()).await;
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
    assert_eq!(watcher.heartbeat_timeouts(), 1);
}

/// Two nodes join one a half interval apart; the acceptor's heartbeats to
/// both leave in the same looks (one burst an interval, whatever the peers'
/// phases), not each on its own schedule.
#[tokio::test]
async fn an_acceptor_beats_all_its_peers_in_the_same_look() {
    let (a, mut a_events) = node("pw").await;
    let (b, _b_events) = node("pw").await;
    let (c, _c_events) = node("pw").await;
    let _to_a_from_b = t(b.connect(&a.join_line())).await.expect("b connects");
    let (at_a_b, _in_b) = up(&mut a_events).await;
    tokio::time::sleep(config().heartbeat_interval / 2).await;
    let _to_a_from_c = t(c.connect(&a.join_line())).await.expect("c connects");
    let (at_a_c, _in_c) = up(&mut a_events).await;
    // When a's count of heartbeats sent to each grew, sampled every
    // millisecond for ten intervals.
    let (conn_b, conn_c) = (at_a_b.shared.conn.clone(), at_a_c.shared.conn.clone());
    let beats = |conn: &quinn::Connection| conn.stats().frame_tx.datagram;
    let (mut seen_b, mut seen_c) = (beats(&conn_b), beats(&conn_c));
    let (mut times_b, mut times_c) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < config().heartbeat_interval * 10 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let (now_b, now_c) = (beats(&conn_b), beats(&conn_c));
        if now_b != seen_b {
            times_b.push(start.elapsed());
        }
        if now_c != seen_c {
            times_c.push(start.elapsed());
        }
        (seen_b, seen_c) = (now_b, now_c);
    }
    assert!(times_b.len() >= 8, "b had {} heartbeats", times_b.len());
    // Each beat to b has one to c within a fraction of a look (the
    // sampling's lateness), not a half interval (two looks) away.
    let look = config().heartbeat_interval / super::control::LOOKS_PER_INTERVAL;
    for at in &times_b {
        let nearest = times_c
            .iter()
            .map(|c| if c > at { *c - *at } else { *at - *c })
            .min()
            .expect("c had heartbeats");
        assert!(
            nearest < look / 2,
            "a beat b at {at:?} and c {nearest:?} away from it: {times_b:?} / {times_c:?}"
        );
    }
}
