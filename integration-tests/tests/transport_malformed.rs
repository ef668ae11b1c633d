//! A malformed frame, a truncated frame and a frame declaring a size over
//! the limit each close only the peer that sent it, with a logged reason and
//! no panic; the node keeps serving its other peers.

use std::time::Duration;

use parallel::transport::DownReason;
use parallel::wire::{DEFAULT_MAX_FRAME, FrameHeader, FrameKind, HEADER_LEN};
use parallel_integration_tests::*;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");

enum Bad {
    Garbage,
    Truncated,
    TooLarge,
}

async fn only_the_sender_is_closed(bad: Bad, expect_in_log: &str) {
    let server = NodeProcess::start(NODE, &[]).await;
    let good = local_node().await;
    let good_remote = timeout(DEADLINE, good.join(&server.join_line))
        .await
        .unwrap()
        .unwrap();
    let counter = counter_on(&good_remote).await;

    let evil = local_node().await;
    let evil_remote = timeout(DEADLINE, evil.join(&server.join_line))
        .await
        .unwrap()
        .unwrap();
    let mut header = FrameHeader::new(FrameKind::Tell);
    match bad {
        Bad::Garbage => {
            evil_remote
                .send_raw_data(&[0xAB; HEADER_LEN + 20])
                .await
                .unwrap();
        }
        Bad::Truncated => {
            header.len = 1000;
            let mut bytes = header.encode().to_vec();
            bytes.extend_from_slice(&[7; 10]);
            evil_remote.send_raw_data(&bytes).await.unwrap();
            evil_remote.finish_raw_lane().await.unwrap();
        }
        Bad::TooLarge => {
            header.len = DEFAULT_MAX_FRAME + 1;
            evil_remote.send_raw_data(&header.encode()).await.unwrap();
        }
    }
    // The server closes the sender's connection...
    let reason = timeout(Duration::from_secs(10), evil_remote.closed())
        .await
        .expect("the server closed the bad peer");
    assert!(!matches!(reason, DownReason::Goodbye), "{reason}");
    // ...and goes on serving the good peer.
    for i in 1..=3 {
        assert_eq!(
            timeout(DEADLINE, counter.ask(Add(1)))
                .await
                .unwrap()
                .unwrap(),
            i
        );
    }
    assert!(good_remote.is_alive());
    let log = server.stop_and_read_stderr().await;
    assert!(
        log.contains(expect_in_log),
        "expected {expect_in_log:?} in the server's log:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[actix_rt::test]
async fn a_malformed_frame_closes_only_its_sender() {
    only_the_sender_is_closed(Bad::Garbage, "not a para||el frame").await;
}

#[actix_rt::test]
async fn a_truncated_frame_closes_only_its_sender() {
    only_the_sender_is_closed(Bad::Truncated, "truncated frame").await;
}

#[actix_rt::test]
async fn a_frame_over_the_size_limit_closes_only_its_sender() {
    only_the_sender_is_closed(Bad::TooLarge, "exceeds the").await;
}
