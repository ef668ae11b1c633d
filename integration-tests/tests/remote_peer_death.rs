//! A peer killed with SIGKILL: every pending ask to it fails with a typed
//! error within the heartbeat timeout; nothing hangs.

use std::time::{Duration, Instant};

use parallel::AskError;
use parallel_integration_tests::*;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");

#[actix_rt::test]
async fn pending_asks_fail_within_the_heartbeat_timeout_when_the_peer_is_killed() {
    let mut server = NodeProcess::start(NODE, &[]).await;
    let node =
        local_node_with_heartbeat(Duration::from_millis(250), Duration::from_millis(1500)).await;
    let remote = join(&node, &server).await;
    let sink = timeout(DEADLINE, remote.spawn(SlowSink::default()))
        .await
        .unwrap()
        .unwrap();
    let sink = sink.with_timeout(Duration::from_secs(60));

    let pending: Vec<_> = (0..5)
        .map(|_| {
            let sink = sink.clone();
            actix_rt::spawn(async move { sink.ask(Sleep(30_000)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill9();
    let killed = Instant::now();
    for task in pending {
        let result = timeout(Duration::from_secs(10), task)
            .await
            .expect("the ask ended")
            .expect("task ran");
        let err = result.expect_err("the peer is dead");
        assert!(matches!(err, AskError::Request(_)), "{err:?}");
    }
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_millis(1500 + 1000),
        "asks failed only after {waited:?}"
    );
    // New asks fail at once with the same typed error.
    let err = timeout(DEADLINE, sink.ask(Sleep(1)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, AskError::Request(_) | AskError::NoRoute(_)),
        "{err:?}"
    );
    let _ = server.child.wait().await;
}
