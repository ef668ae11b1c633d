//! The supervisor and watches at run time, with real actors (and, for
//! remote watches, two nodes over QUIC on loopback).

use std::time::Duration;

use actix::Handler;
use rkyv::{Archive, Deserialize, Serialize};
use tokio::time::timeout;

use crate::actor::{ExitReason, Failure};
use crate::remote::AskError;
use crate::remote::Node;
use crate::transport::Password;

use super::*;

const T: Duration = Duration::from_secs(10);

#[derive(crate::Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Bump, Crash), spawn)]
struct Worker {
    n: u64,
}

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = u64)]
struct Bump;

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Crash;

impl Handler<Bump> for Worker {
    type Result = u64;
    fn handle(&mut self, _: Bump, _: &mut actix::Context<Self>) -> u64 {
        self.n += 1;
        self.n
    }
}

impl Handler<Crash> for Worker {
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut actix::Context<Self>) {
        panic!("crash on request");
    }
}

async fn node(allow: bool) -> Node {
    let mut b = Node::builder().password(Password::new("sup".into()));
    if allow {
        b = b.allow::<Worker>();
    }
    b.start().await.expect("a node")
}

/// Two nodes in this process; the first spawns a `Worker` on the second by name.
async fn worker_spawned_by_another_node() -> (Node, Node, crate::remote::ActorRef<Worker>) {
    let (here, there) = (node(false).await, node(true).await);
    let remote = timeout(T, here.join(&there.join_line()))
        .await
        .unwrap()
        .unwrap();
    let w = timeout(T, remote.spawn(Worker::default()))
        .await
        .unwrap()
        .unwrap();
    (here, there, w)
}

async fn next_event(events: &mut EventStream) -> SupervisorEvent {
    timeout(T, events.recv())
        .await
        .expect("an event in time")
        .expect("the supervisor runs")
        .event
}

#[actix_rt::test]
async fn a_panicking_child_is_restarted_under_the_same_id_and_refs_keep_working() {
    let node = node(false).await;
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(5))
        .child(ChildSpec::actor("worker", Worker::default))
        .start(&node);
    let mut events = sup.events();
    let worker = sup.child::<Worker>("worker").expect("a child named worker");
    assert_eq!(timeout(T, worker.ask(Bump)).await.unwrap().unwrap(), 1);
    let _ = timeout(T, worker.ask(Crash)).await.unwrap();
    let id = sup.id_of("worker").unwrap();
    assert_eq!(
        next_event(&mut events).await,
        SupervisorEvent::Down {
            name: "worker".into(),
            id,
            reason: ExitReason::Panic("crash on request".into())
        }
    );
    assert_eq!(
        next_event(&mut events).await,
        SupervisorEvent::Restarted {
            name: "worker".into(),
            id,
            incarnation: 2
        }
    );
    // The same reference reaches the new incarnation (fresh state).
    assert_eq!(timeout(T, worker.ask(Bump)).await.unwrap().unwrap(), 1);
    assert_eq!(worker.id(), id);
    assert_eq!(
        timeout(T, sup.shutdown()).await.unwrap(),
        ExitReason::Shutdown
    );
}

#[actix_rt::test]
async fn the_ask_whose_handler_panicked_learns_of_the_panic_and_is_not_retried() {
    let node = node(false).await;
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(5))
        .child(ChildSpec::actor("worker", Worker::default))
        .start(&node);
    let mut events = sup.events();
    let worker = sup.child::<Worker>("worker").expect("a child named worker");
    let panicked = AskError::Failed(Failure::Panicked("crash on request".into()));
    assert_eq!(
        timeout(T, worker.ask(Crash)).await.unwrap().unwrap_err(),
        panicked
    );
    assert!(matches!(
        next_event(&mut events).await,
        SupervisorEvent::Down { .. }
    ));
    assert!(matches!(
        next_event(&mut events).await,
        SupervisorEvent::Restarted { .. }
    ));
    // Through a retrying reference: the same answer, and the message that
    // crashed the actor is not sent to the new incarnation.
    let retrying = worker.clone().with_retry(20, Duration::from_millis(20));
    assert_eq!(
        timeout(T, retrying.ask(Crash)).await.unwrap().unwrap_err(),
        panicked
    );
    assert!(matches!(
        next_event(&mut events).await,
        SupervisorEvent::Down { .. }
    ));
    assert!(matches!(
        next_event(&mut events).await,
        SupervisorEvent::Restarted { incarnation: 3, .. }
    ));
    assert!(
        timeout(Duration::from_millis(300), events.recv())
            .await
            .is_err(),
        "the crashing message was sent again"
    );
    assert_eq!(timeout(T, retrying.ask(Bump)).await.unwrap().unwrap(), 1);
}

#[actix_rt::test]
async fn one_for_all_restarts_the_siblings_too_and_shutdown_goes_in_reverse() {
    let node = node(false).await;
    let sup = Supervisor::new(Strategy::OneForAll)
        .intensity(3, Duration::from_secs(5))
        .child(ChildSpec::actor("a", Worker::default))
        .child(ChildSpec::actor("b", Worker::default))
        .start(&node);
    let mut events = sup.events();
    let (a, b) = (
        sup.child::<Worker>("a").unwrap(),
        sup.child::<Worker>("b").unwrap(),
    );
    assert_eq!(timeout(T, b.ask(Bump)).await.unwrap().unwrap(), 1);
    let _ = timeout(T, a.ask(Crash)).await.unwrap();
    assert!(
        matches!(next_event(&mut events).await, SupervisorEvent::Down { name, .. } if name == "a")
    );
    // Incarnations count starts: the sibling stopped by the supervisor is
    // on its second start, like the child that crashed.
    assert!(
        matches!(next_event(&mut events).await, SupervisorEvent::Restarted { name, incarnation: 2, .. } if name == "a")
    );
    let b_restarted = next_event(&mut events).await;
    assert!(
        matches!(&b_restarted, SupervisorEvent::Restarted { name, incarnation: 2, .. } if name == "b"),
        "{b_restarted:?}"
    );
    // b was restarted too: its count starts again.
    assert_eq!(timeout(T, b.ask(Bump)).await.unwrap().unwrap(), 1);
    let watch_a = a.watch();
    let watch_b = b.watch();
    assert_eq!(
        timeout(T, sup.shutdown()).await.unwrap(),
        ExitReason::Shutdown
    );
    assert_eq!(
        timeout(T, watch_a).await.unwrap().reason,
        ExitReason::Shutdown
    );
    assert_eq!(
        timeout(T, watch_b).await.unwrap().reason,
        ExitReason::Shutdown
    );
}

#[actix_rt::test]
async fn the_shutdown_of_its_node_stops_a_supervisor_and_its_children_for_good() {
    let node = node(false).await;
    let sup = Supervisor::new(Strategy::OneForAll)
        .intensity(5, Duration::from_secs(5))
        .child(ChildSpec::actor("a", Worker::default))
        .child(ChildSpec::actor("b", Worker::default))
        .start(&node);
    let mut events = sup.events();
    let a = sup.child::<Worker>("a").unwrap();
    assert_eq!(timeout(T, a.ask(Bump)).await.unwrap().unwrap(), 1);
    let watching = a.watch();
    timeout(T, node.shutdown()).await.unwrap();
    assert_eq!(
        timeout(T, watching).await.unwrap().reason,
        ExitReason::Shutdown
    );
    assert_eq!(
        timeout(T, sup.exited()).await.unwrap(),
        ExitReason::Shutdown
    );
    // Nothing was restarted: the children are down for good.
    assert!(
        matches!(
            events.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Closed)
        ),
        "the supervisor reported something: {:?}",
        sup.history()
    );
    for name in ["a", "b"] {
        assert_eq!(sup.home_of(name), Some(Home::Down(ExitReason::Shutdown)));
    }
    assert!(node.0.registry.living().is_empty(), "an actor still runs");
}

#[actix_rt::test]
async fn one_crash_more_than_the_intensity_allows_makes_the_supervisor_give_up() {
    let node = node(false).await;
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(1, Duration::from_secs(60))
        .child(ChildSpec::actor("w", Worker::default))
        .start(&node);
    let w = sup.child::<Worker>("w").unwrap();
    let _ = timeout(T, w.ask(Crash)).await.unwrap();
    let mut events = sup.events();
    // Wait for the restart, then crash again: restart number 2 > 1.
    loop {
        if matches!(
            next_event(&mut events).await,
            SupervisorEvent::Restarted { .. }
        ) {
            break;
        }
    }
    let _ = timeout(T, w.ask(Crash)).await.unwrap();
    let reason = timeout(T, sup.exited()).await.unwrap();
    assert!(
        matches!(reason, ExitReason::Error(ref m) if m.contains("too many restarts")),
        "{reason:?}"
    );
}

#[actix_rt::test]
async fn running_waits_until_a_child_runs_and_fails_once_it_is_down_for_good() {
    let (here, there) = (node(false).await, node(true).await);
    let remote = timeout(T, here.join(&there.join_line()))
        .await
        .unwrap()
        .unwrap();
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(0, Duration::from_secs(5))
        .child(ChildSpec::actor("local", Worker::default))
        .child(ChildSpec::remote(
            "far",
            Worker::default,
            RemotePlacement::On(remote),
        ))
        .child(ChildSpec::supervisor("nested", || {
            Supervisor::new(Strategy::OneForOne)
        }))
        .start(&here);
    // The remote child is spawned by a request: not up yet.
    assert_eq!(sup.home_of("far"), Some(Home::Restarting));
    assert_eq!(
        timeout(T, sup.running("far")).await.unwrap(),
        Ok(there.id())
    );
    assert_eq!(
        timeout(T, sup.running("local")).await.unwrap(),
        Ok(here.id())
    );
    assert_eq!(
        timeout(T, sup.running("nested")).await.unwrap(),
        Ok(here.id())
    );
    assert_eq!(
        timeout(T, sup.running("nope")).await.unwrap(),
        Err(NotRunning::NoSuchChild("nope".into()))
    );
    // No restart allowed: one crash and the supervisor gives up.
    let local = sup.child::<Worker>("local").unwrap();
    let _ = timeout(T, local.ask(Crash)).await.unwrap();
    assert!(matches!(
        timeout(T, sup.exited()).await.unwrap(),
        ExitReason::Error(_)
    ));
    let err = timeout(T, sup.running("far"))
        .await
        .expect("running fails in time once the supervisor gave up")
        .unwrap_err();
    assert!(
        matches!(err, NotRunning::Down { ref name, .. } if name == "far"),
        "{err:?}"
    );
    assert!(err.to_string().contains("history()"), "{err}");
}

#[actix_rt::test]
async fn a_late_reader_gets_what_happened_with_when() {
    let node = node(false).await;
    let before = std::time::SystemTime::now();
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(0, Duration::from_secs(5))
        .child(ChildSpec::actor("w", Worker::default))
        .start(&node);
    let w = sup.child::<Worker>("w").unwrap();
    let _ = timeout(T, w.ask(Crash)).await.unwrap();
    assert!(matches!(
        timeout(T, sup.exited()).await.unwrap(),
        ExitReason::Error(_)
    ));
    let after = std::time::SystemTime::now();
    // Subscribed only now: the reports come from the history, then the end.
    let mut late = sup.events();
    let down = timeout(T, late.recv()).await.unwrap().unwrap();
    let gave_up = timeout(T, late.recv()).await.unwrap().unwrap();
    assert!(
        matches!(&down.event, SupervisorEvent::Down { name, reason: ExitReason::Panic(_), .. } if name == "w"),
        "{down:?}"
    );
    assert_eq!(gave_up.event, SupervisorEvent::GaveUp);
    assert_eq!((down.seq, gave_up.seq), (1, 2));
    for e in [&down, &gave_up] {
        assert!(before <= e.at && e.at <= after, "{e:?}");
    }
    assert!(down.since_start <= gave_up.since_start);
    assert!(
        down.to_string()
            .contains("is down: panicked: crash on request"),
        "{down}"
    );
    assert_eq!(sup.history(), [down, gave_up]);
    assert!(matches!(
        timeout(T, late.recv()).await.unwrap(),
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ));
}

#[actix_rt::test]
async fn transient_children_stay_down_after_a_normal_stop() {
    let node = node(false).await;
    let sup = Supervisor::new(Strategy::OneForOne)
        .child(
            ChildSpec::actor("t", Worker::default)
                .restart(Restart::Transient)
                .shutdown(Duration::from_millis(200)),
        )
        .start(&node);
    let t = sup.child::<Worker>("t").unwrap();
    assert_eq!(timeout(T, t.ask(Bump)).await.unwrap().unwrap(), 1);
    let entry = node.0.registry.entry(t.id()).unwrap();
    entry.stop();
    assert_eq!(
        timeout(T, t.watch()).await.unwrap().reason,
        ExitReason::Shutdown
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        node.0.registry.get(t.id()).is_none(),
        "a transient child that stopped in order is not restarted"
    );
}

#[actix_rt::test]
async fn a_watch_reports_a_panic_with_its_message() {
    let (_here, _there, w) = worker_spawned_by_another_node().await;
    let watching = w.watch();
    let _ = timeout(T, w.ask(Crash)).await.unwrap();
    let down = timeout(T, watching).await.unwrap();
    assert_eq!(down.reason, ExitReason::Panic("crash on request".into()));
    assert_eq!(down.id, w.id());
}

#[actix_rt::test]
async fn watching_an_actor_that_does_not_exist_says_noproc() {
    let (_here, _there, w) = worker_spawned_by_another_node().await;
    let ghost = crate::remote::ActorRef::<Worker>::from_address(crate::remote::ActorAddress {
        id: crate::id::ActorId::new(),
        node: w.node(),
        join_line: None,
    });
    assert_eq!(
        timeout(T, ghost.watch()).await.unwrap().reason,
        ExitReason::NoProc
    );
}

#[actix_rt::test]
async fn a_terminated_child_stays_down_and_its_siblings_go_on() {
    let node = node(false).await;
    let sup = Supervisor::new(Strategy::OneForAll)
        .child(ChildSpec::actor("a", Worker::default))
        .child(ChildSpec::actor("b", Worker::default))
        .start(&node);
    let (a, b) = (
        sup.child::<Worker>("a").unwrap(),
        sup.child::<Worker>("b").unwrap(),
    );
    assert_eq!(timeout(T, b.ask(Bump)).await.unwrap().unwrap(), 1);
    assert!(timeout(T, sup.terminate_child("a")).await.unwrap());
    assert_eq!(
        timeout(T, a.watch()).await.unwrap().reason,
        ExitReason::Shutdown
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        node.0.registry.get(a.id()).is_none(),
        "a permanent child terminated for good is not restarted"
    );
    // One-for-all did not restart b: it kept its state.
    assert_eq!(timeout(T, b.ask(Bump)).await.unwrap().unwrap(), 2);
    assert!(!timeout(T, sup.terminate_child("a")).await.unwrap());
    assert!(!timeout(T, sup.terminate_child("nobody")).await.unwrap());
}
