//! On the network test bed (hosts in network namespaces, see
//! `parallel_integration_tests::netbed`): a supervised actor whose host is
//! cut off from the network is restarted on another host; once the network
//! heals, the cut-off host's old incarnation is fenced, so only the new
//! incarnation answers. Skipped, saying why, where namespaces cannot be made.

use std::time::Duration;

use parallel::supervision::{ChildSpec, RemotePlacement, Strategy, Supervisor, SupervisorEvent};
use parallel::transport::ConnectError;
use parallel::{Node, Password};
use parallel_integration_tests::netbed::{NetBed, bed_or_skip};
use parallel_integration_tests::{Add, Counter, DEADLINE, NodeProcess, PASSWORD};
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");
const INTERVAL: Duration = Duration::from_millis(100);
const HB_TIMEOUT: Duration = Duration::from_millis(600);

/// The test node binary on bed host `i`, listening on the host's address.
async fn node_on(bed: &NetBed, i: usize) -> NodeProcess {
    let listen = format!("{}:0", bed.hosts[i].addr);
    let args = ["--heartbeat-ms", "100,600", "--listen", &listen];
    NodeProcess::start_by(bed.command(i, NODE), &args, PASSWORD).await
}

#[actix_rt::test]
async fn a_cut_off_host_loses_its_actor_and_after_healing_only_the_new_incarnation_answers() {
    let Some(mut bed) = bed_or_skip(2, "netbed_partition") else {
        return;
    };
    let (a, b) = (node_on(&bed, 0).await, node_on(&bed, 1).await);
    let (a_line, b_line) = (a.join_line.clone(), b.join_line.clone());
    let here = Node::builder()
        .password(Password::new(PASSWORD.into()))
        .listen(format!("{}:0", bed.gateway).parse().unwrap())
        .heartbeat(INTERVAL, HB_TIMEOUT)
        .start()
        .await
        .expect("a node on the bed's bridge");
    let mut hosts = Vec::new();
    for line in [&a_line, &b_line] {
        let remote = timeout(DEADLINE, here.join(line))
            .await
            .expect("joined in time")
            .expect("join a bed host");
        hosts.push(remote.id());
    }

    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(30))
        .child(ChildSpec::remote(
            "counter",
            Counter::default,
            RemotePlacement::Any,
        ))
        .start(&here);
    let mut events = sup.events();
    let first = timeout(DEADLINE, sup.running("counter"))
        .await
        .expect("running in time")
        .expect("the counter runs");
    let cut = hosts
        .iter()
        .position(|&h| h == first)
        .expect("on a bed host");
    let counter = sup
        .child::<Counter>("counter")
        .expect("a child named counter")
        .with_timeout(Duration::from_secs(5))
        .with_retry(100, Duration::from_millis(100));
    assert_eq!(timeout(DEADLINE, counter.ask(Add(5))).await.unwrap(), Ok(5));

    // The counter's host drops off the network.
    bed.isolate(cut).expect("cut the host's link");
    loop {
        let event = timeout(DEADLINE, events.recv())
            .await
            .expect("the supervisor reacts in time")
            .expect("the supervisor runs")
            .event;
        if matches!(event, SupervisorEvent::Restarted { .. }) {
            break;
        }
    }
    let moved = timeout(DEADLINE, sup.running("counter"))
        .await
        .unwrap()
        .expect("restarted");
    assert_eq!(moved, hosts[1 - cut], "restarted on the other host");
    // A new incarnation: fresh state.
    assert_eq!(timeout(DEADLINE, counter.ask(Add(1))).await.unwrap(), Ok(1));

    // The network heals; the old incarnation stays fenced: this node will
    // not reach it again, so it cannot answer in the new one's place.
    bed.heal().expect("heal the bed");
    tokio::time::sleep(HB_TIMEOUT * 2).await;
    let cut_line = if cut == 0 { &a_line } else { &b_line };
    let again = timeout(DEADLINE, here.join(cut_line))
        .await
        .expect("an answer in time");
    assert!(
        matches!(again, Err(ConnectError::Fenced(_))),
        "the fenced incarnation was reached again: {:?}",
        again.map(|r| r.id())
    );
    assert_eq!(timeout(DEADLINE, counter.ask(Add(1))).await.unwrap(), Ok(2));
    assert_eq!(
        timeout(DEADLINE, sup.running("counter")).await.unwrap(),
        Ok(hosts[1 - cut])
    );
    timeout(DEADLINE, sup.shutdown())
        .await
        .expect("shut down in time");
    here.shutdown().await;
}
