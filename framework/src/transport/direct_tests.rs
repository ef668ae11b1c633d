//! The direct path ([`super::direct`]): taken by a request or reply on an
//! idle lane, refused where it would overtake a queued frame or run on
//! another thread, and lossless when QUIC takes only part of a write.

use super::tests::{Joined, check, config, frame, joined, t, up};
use super::*;
use crate::id::NodeId;
use crate::wire::{Buffer, FrameHeader, FrameKind, Payload};

fn direct(peer: &Peer) -> u64 {
    peer.traffic().frames_direct
}

/// Frame `i` of `size` bytes, of `kind`.
fn of_kind(kind: FrameKind, i: u64, size: usize) -> (FrameHeader, crate::wire::Buffer) {
    let (mut header, payload) = frame(i, size);
    header.kind = kind;
    (header, payload)
}

/// What an encoder given `buf` writes for the payload `p`.
fn encoded(buf: Option<Buffer>, p: &[u8]) -> Result<Payload, std::convert::Infallible> {
    let mut buf = buf.unwrap_or_default();
    buf.extend_from_slice(p);
    Ok(Payload::Whole(buf))
}

/// Frames `ids` arrive at `inbound`, whole and in that order.
async fn arrive_in_order(inbound: &mut Inbound, ids: std::ops::RangeInclusive<u64>) {
    for i in ids {
        let (h, p) = t(inbound.recv()).await.expect("frame at a");
        check(i, &h, &p);
    }
}

/// One frame each way through the queues, so that both writers have
/// opened their lanes.
async fn warm(j: &mut Joined, b_in: &mut Inbound) {
    let (h, p) = of_kind(FrameKind::Ask, 0, 8);
    t(j.to_a.send(h, p)).await.expect("send");
    let (h, p) = t(j.inbound.recv()).await.expect("ask at a");
    check(0, &h, &p);
    let (h, p) = of_kind(FrameKind::Reply, 0, 8);
    t(j.at_a.send(h, p)).await.expect("reply");
    let (h, p) = t(b_in.recv()).await.expect("reply at b");
    check(0, &h, &p);
}

async fn joined_both_ways() -> (Joined, Inbound) {
    let mut j = joined().await;
    let (_, mut b_in) = up(&mut j._b_events).await;
    warm(&mut j, &mut b_in).await;
    (j, b_in)
}

#[tokio::test]
async fn a_request_and_its_reply_go_straight_onto_idle_lanes() {
    let (mut j, mut b_in) = joined_both_ways().await;
    let (b_before, a_before) = (direct(&j.to_a), direct(&j.at_a));
    let (h, p) = of_kind(FrameKind::Ask, 1, 100);
    t(j.to_a.send_now(h, p)).await.expect("ask");
    assert_eq!(
        direct(&j.to_a),
        b_before + 1,
        "the ask went through the queue"
    );
    let (h, p) = t(j.inbound.recv()).await.expect("ask at a");
    check(1, &h, &p);
    assert_eq!(h.kind, FrameKind::Ask);
    let (h, p) = of_kind(FrameKind::Reply, 1, 100);
    t(j.at_a.send_now(h, p)).await.expect("reply");
    assert_eq!(
        direct(&j.at_a),
        a_before + 1,
        "the reply went through the queue"
    );
    let (h, p) = t(b_in.recv()).await.expect("reply at b");
    check(1, &h, &p);
    assert_eq!(h.kind, FrameKind::Reply);
}

#[tokio::test]
async fn a_frame_queued_before_is_never_overtaken() {
    let (mut j, _b_in) = joined_both_ways().await;
    let before = direct(&j.to_a);
    // The tell waits in the queue (its writer has not run yet)...
    let (h, p) = frame(1, 100);
    t(j.to_a.send(h, p)).await.expect("tell");
    // ...so the ask after it must queue behind it.
    let (h, p) = of_kind(FrameKind::Ask, 2, 100);
    t(j.to_a.send_now(h, p)).await.expect("ask");
    assert_eq!(direct(&j.to_a), before, "the ask overtook a queued tell");
    arrive_in_order(&mut j.inbound, 1..=2).await;
}

#[tokio::test]
async fn a_sender_on_another_thread_queues() {
    let (mut j, _b_in) = joined_both_ways().await;
    let before = direct(&j.to_a);
    let peer = j.to_a.clone();
    let sent = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (h, p) = of_kind(FrameKind::Ask, 1, 100);
        rt.block_on(peer.send_now(h, p))
    });
    let (h, p) = t(j.inbound.recv()).await.expect("ask at a");
    check(1, &h, &p);
    sent.join().expect("thread").expect("sent");
    assert_eq!(
        direct(&j.to_a),
        before,
        "a write from another thread went direct"
    );
}

#[tokio::test]
async fn what_quic_does_not_take_is_written_later_in_order() {
    // A stream window of a few frames: direct writes run into it at once.
    let config = TransportConfig {
        stream_window: 4096,
        ..config()
    };
    let password = || Password::new("pw".into());
    let (a, mut a_events) = t(Transport::bind(NodeId::new(), password(), config.clone()))
        .await
        .expect("bind a");
    let (b, _b_events) = t(Transport::bind(NodeId::new(), password(), config))
        .await
        .expect("bind b");
    let to_a = t(b.connect(&a.join_line())).await.expect("connect");
    let (_at_a, mut inbound): (Peer, Inbound) = up(&mut a_events).await;
    let (h, p) = of_kind(FrameKind::Ask, 0, 8);
    t(to_a.send(h, p)).await.expect("send");
    t(inbound.recv()).await.expect("first frame");
    // Without a yield between them, nothing reads or acknowledges: QUIC
    // takes the first few frames, part of one, then nothing.
    const N: u64 = 40;
    let before = direct(&to_a);
    for i in 1..=N {
        let (h, p) = of_kind(FrameKind::Ask, i, 1000);
        t(to_a.send_now(h, p)).await.expect("send");
    }
    let went_direct = direct(&to_a) - before;
    assert!(
        (1..N).contains(&went_direct),
        "{went_direct} of {N} frames went direct"
    );
    arrive_in_order(&mut inbound, 1..=N).await;
    drop(a_events);
    drop((a, b));
}

#[tokio::test]
async fn a_run_of_tells_is_gathered_in_bounded_batches_and_arrives_in_order() {
    let (mut j, _b_in) = joined_both_ways().await;
    let before = direct(&j.to_a);
    // Longer than one write of the writer (256 KiB), without a yield
    // unless told to wait: a full batch makes its sender wait for the
    // writer's round, then it gathers again.
    const N: u64 = 4000;
    let mut waits = 0;
    for i in 1..=N {
        let (h, p) = frame(i, 100);
        loop {
            let mut room = std::pin::pin!(j.to_a.gather_room());
            room.as_mut().enable();
            match j.to_a.try_gather_encoding(h, |buf| encoded(buf, &p)) {
                Ok(Ok(())) => break,
                Ok(Err(Refused::Queue(..))) => panic!("tell {i} was sent to the queue"),
                Ok(Err(Refused::Wait)) => {
                    waits += 1;
                    t(room).await;
                }
            }
        }
    }
    assert_eq!(direct(&j.to_a), before + N);
    assert!(waits >= 1, "the batch grew past its bound");
    // Queued behind the gathered tells (a wake-up waits in the queue).
    let (h, p) = frame(N + 1, 100);
    t(j.to_a.send(h, p)).await.expect("queued tell");
    let (h, p) = frame(N + 2, 100);
    assert!(
        matches!(
            j.to_a.try_gather_encoding(h, |buf| encoded(buf, &p)),
            Ok(Err(Refused::Queue(..)))
        ),
        "a tell was gathered ahead of a queued one"
    );
    arrive_in_order(&mut j.inbound, 1..=N + 1).await;
}

#[tokio::test]
async fn a_gathered_tell_is_encoded_into_the_lanes_own_buffer() {
    let (mut j, _b_in) = joined_both_ways().await;
    let before = direct(&j.to_a);
    let mut seen: Vec<Option<*const u8>> = Vec::new();
    for i in 1..=3u64 {
        let (h, p) = frame(i, 100);
        let gathered = j.to_a.try_gather_encoding(h, |buf| {
            seen.push(buf.as_ref().map(|b| b.as_ptr()));
            encoded(buf, &p)
        });
        assert!(matches!(gathered, Ok(Ok(()))), "tell {i} was not gathered");
    }
    assert_eq!(direct(&j.to_a), before + 3);
    // The first tell brought its own buffer; the next ones got the lane's back.
    assert_eq!(seen[0], None);
    assert!(seen[1].is_some() && seen[1] == seen[2], "{seen:?}");
    arrive_in_order(&mut j.inbound, 1..=3).await;
}
