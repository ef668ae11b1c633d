//! `watch` across processes: a remote actor's panic arrives as
//! `Down(Panic(msg))`; a SIGKILLed host arrives as `Down(NoConnection)`
//! within the heartbeat timeout.

use std::time::{Duration, Instant};

use parallel::actor::ExitReason;
use parallel_integration_tests::*;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");

#[actix_rt::test]
async fn a_remote_panic_and_a_killed_host_each_arrive_as_one_down() {
    let mut server = NodeProcess::start(NODE, &[]).await;
    let node =
        local_node_with_heartbeat(Duration::from_millis(250), Duration::from_millis(1500)).await;
    let remote = join(&node, &server).await;

    let counter = counter_on(&remote).await;
    let watching = counter.watch();
    let _ = timeout(DEADLINE, counter.ask(Boom)).await.unwrap();
    let down = timeout(DEADLINE, watching).await.expect("a Down in time");
    assert_eq!(down.id, counter.id());
    assert_eq!(down.reason, ExitReason::Panic("boom".into()));

    let other = counter_on(&remote).await;
    let watching = other.watch();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill9();
    let killed = Instant::now();
    let down = timeout(DEADLINE, watching).await.expect("a Down in time");
    assert_eq!(down.reason, ExitReason::NoConnection);
    assert!(
        killed.elapsed() < Duration::from_millis(2500),
        "detected after {:?}",
        killed.elapsed()
    );
    let _ = server.child.wait().await;
}

#[actix_rt::test]
async fn a_link_carries_a_failure_to_and_from_another_process() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let remote = join(&node, &server).await;

    // The remote counter fails: the local one dies with the same reason.
    let far = counter_on(&remote).await;
    let near = node.spawn(Counter::default());
    let _link = parallel::supervision::link(&far, &near);
    let watching = near.watch();
    let _ = timeout(DEADLINE, far.ask(Boom)).await.unwrap();
    assert_eq!(
        timeout(DEADLINE, watching).await.unwrap().reason,
        ExitReason::Panic("boom".into())
    );

    // The local counter fails: the remote one is killed over the wire.
    let far = counter_on(&remote).await;
    let near = node.spawn(Counter::default());
    let _link = parallel::supervision::link(&near, &far);
    let watching = far.watch();
    let _ = timeout(DEADLINE, near.ask(Boom)).await.unwrap();
    assert_eq!(
        timeout(DEADLINE, watching).await.unwrap().reason,
        ExitReason::Panic("boom".into())
    );
    let err = timeout(DEADLINE, far.ask(Get)).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("no actor"), "{err}");
    drop(server);
}
