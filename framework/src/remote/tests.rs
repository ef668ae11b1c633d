//! In-process tests of the remote layer: two nodes in one process still
//! talk over real QUIC on loopback; local sends go straight to actix.

use std::time::Duration;

use actix::Handler;
use rkyv::{Archive, Deserialize, Serialize};
use tokio::time::timeout;

use crate::actor::{Failure, Received, Tensor};
use crate::remote::{AskError, Node, SendError};
use crate::transport::Password;

const T: Duration = Duration::from_secs(10);

#[derive(crate::Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Add, Block, Boom, Wait), view(Sum), spawn)]
struct Calc {
    total: u64,
}

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = u64)]
struct Add(u64);

/// Keeps the actor's thread busy for this many milliseconds.
#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Block(u64);

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Boom;

/// Answers after this many milliseconds, without blocking the thread.
#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Wait(u64);

impl Handler<Wait> for Calc {
    type Result = actix::ResponseFuture<()>;
    fn handle(&mut self, Wait(ms): Wait, _: &mut actix::Context<Self>) -> Self::Result {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
}

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = (f64, bool))]
struct Sum(Tensor<f32>);

impl Handler<Add> for Calc {
    type Result = u64;
    fn handle(&mut self, Add(n): Add, _: &mut actix::Context<Self>) -> u64 {
        self.total += n;
        self.total
    }
}

impl Handler<Block> for Calc {
    type Result = ();
    fn handle(&mut self, Block(ms): Block, _: &mut actix::Context<Self>) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

impl Handler<Boom> for Calc {
    type Result = ();
    fn handle(&mut self, _: Boom, _: &mut actix::Context<Self>) {
        panic!("boom on purpose");
    }
}

/// Local sends: an owned tensor; answers (sum, false).
impl Handler<Sum> for Calc {
    type Result = actix::MessageResult<Sum>;
    fn handle(&mut self, Sum(t): Sum, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult((t.as_slice().iter().map(|&x| x as f64).sum(), false))
    }
}

/// Remote sends: a zero-copy view; answers (sum, true).
impl Handler<Received<Sum>> for Calc {
    type Result = actix::MessageResult<Received<Sum>>;
    fn handle(&mut self, msg: Received<Sum>, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult((msg.0.as_slice().iter().map(|&x| x as f64).sum(), true))
    }
}

async fn node(allow: bool, mailbox: usize) -> Node {
    let mut b = Node::builder()
        .password(Password::new("unit".into()))
        .mailbox(mailbox);
    if allow {
        b = b.allow::<Calc>();
    }
    b.start().await.expect("start a node")
}

#[actix_rt::test]
async fn local_refs_never_serialize_and_answer_in_order() {
    let a = node(false, 16).await;
    let calc = a.spawn(Calc::default());
    assert!(calc.is_local());
    for _ in 0..100 {
        timeout(T, calc.tell(Add(1))).await.unwrap().unwrap();
    }
    assert_eq!(timeout(T, calc.ask(Add(0))).await.unwrap().unwrap(), 100);
    let (sum, viewed) = timeout(T, calc.ask(Sum(Tensor::from_vec(vec![1.5f32; 4]))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sum, viewed), (6.0, false));
}

#[actix_rt::test]
async fn remote_view_messages_arrive_as_zero_copy_views() {
    let (a, b) = (node(false, 16).await, node(true, 16).await);
    let remote = timeout(T, a.join(&b.join_line())).await.unwrap().unwrap();
    let calc = timeout(T, remote.spawn(Calc::default()))
        .await
        .unwrap()
        .unwrap();
    assert!(!calc.is_local());
    let data: Vec<f32> = (0..1_000_000).map(|i| (i % 7) as f32).collect();
    let expect: f64 = data.iter().map(|&x| x as f64).sum();
    let (sum, viewed) = timeout(T, calc.ask(Sum(Tensor::from_vec(data))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sum, viewed), (expect, true));
}

#[actix_rt::test]
async fn try_tell_gives_the_message_back_when_the_mailbox_is_full() {
    let a = node(false, 1).await;
    let calc = a.spawn(Calc::default());
    // The first message takes the only slot until the actor has handled it.
    calc.try_tell(Block(200)).unwrap();
    match calc.try_tell(Add(5)) {
        Err(SendError::Full(Add(5))) => {}
        other => panic!("expected Full(Add(5)), got {other:?}"),
    }
    // `tell` waits for the slot instead, and nothing is lost.
    timeout(T, calc.tell(Add(5))).await.unwrap().unwrap();
    assert_eq!(timeout(T, calc.ask(Add(0))).await.unwrap().unwrap(), 5);
}

#[actix_rt::test]
async fn a_panicking_handler_answers_the_asker_locally_and_remotely() {
    let a = node(false, 16).await;
    let local = a.spawn(Calc::default());
    let err = timeout(T, local.ask(Boom)).await.unwrap().unwrap_err();
    assert!(
        matches!(&err, AskError::Failed(Failure::Panicked(m)) if m.contains("boom on purpose")),
        "{err:?}"
    );

    let b = node(true, 16).await;
    let remote = timeout(T, a.join(&b.join_line())).await.unwrap().unwrap();
    let calc = timeout(T, remote.spawn(Calc::default()))
        .await
        .unwrap()
        .unwrap();
    // The same error as for a local actor, not a remote failure code.
    let err = timeout(T, calc.ask(Boom)).await.unwrap().unwrap_err();
    assert_eq!(
        err,
        AskError::Failed(Failure::Panicked("boom on purpose".into()))
    );
    // The crashed actor is gone: later asks say so instead of hanging.
    let err = timeout(T, calc.ask(Add(1))).await.unwrap().unwrap_err();
    assert!(matches!(err, AskError::Failed(_)), "{err:?}");
}

#[actix_rt::test]
async fn a_slow_actor_makes_ask_time_out_with_a_typed_error() {
    let a = node(false, 16).await;
    let calc = a
        .spawn(Calc::default())
        .with_timeout(Duration::from_millis(50));
    let err = timeout(T, calc.ask(Wait(2_000)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, AskError::Timeout(Duration::from_millis(50)));
    let err = err.to_string();
    assert!(err.contains("with_timeout"), "{err}");
}

#[actix_rt::test]
async fn nodes_that_join_each_other_at_once_keep_working_handles() {
    let (a, b) = (node(false, 16).await, node(false, 16).await);
    let (la, lb) = (a.join_line(), b.join_line());
    let (to_b, to_a) = timeout(T, async { tokio::join!(a.join(&lb), b.join(&la)) })
        .await
        .unwrap();
    let (to_b, to_a) = (to_b.unwrap(), to_a.unwrap());
    // One of the two connections loses and closes; the handles follow the
    // one that stays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(to_b.is_alive() && to_a.is_alive());
    let mut at_b = b.open_mailbox(4);
    let mut at_a = a.open_mailbox(4);
    for _ in 0..3 {
        timeout(
            T,
            to_b.post(at_b.id(), 7, 0, crate::wire::encode(&1u32).unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        timeout(
            T,
            to_a.post(at_a.id(), 7, 0, crate::wire::encode(&2u32).unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(timeout(T, at_b.recv()).await.unwrap().unwrap().from, a.id());
        assert_eq!(timeout(T, at_a.recv()).await.unwrap().unwrap().from, b.id());
    }
    assert_eq!(a.remotes().len(), 1);
    assert_eq!(b.remotes().len(), 1);
}

#[actix_rt::test]
async fn a_remote_ask_times_out_with_the_same_error_as_a_local_one() {
    let (a, b) = (node(false, 16).await, node(true, 16).await);
    let remote = timeout(T, a.join(&b.join_line())).await.unwrap().unwrap();
    let calc = timeout(T, remote.spawn(Calc::default()))
        .await
        .unwrap()
        .unwrap()
        .with_timeout(Duration::from_millis(50));
    assert!(!calc.is_local());
    // Several tries: the deadline of the request and of the ask race.
    for _ in 0..5 {
        let err = timeout(T, calc.ask(Wait(2_000)))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err, AskError::Timeout(Duration::from_millis(50)));
    }
}

#[actix_rt::test]
async fn a_node_that_shut_down_stops_its_actors_and_asks_to_them_fail() {
    let (a, b) = (node(false, 16).await, node(false, 16).await);
    let calc = b.spawn(Calc::default());
    // A reference that finds the actor through this process's nodes, as one
    // that arrived in a message does.
    let found = crate::remote::ActorRef::<Calc>::from_address(calc.address().clone());
    assert_eq!(timeout(T, found.ask(Add(2))).await.unwrap().unwrap(), 2);
    let watching = calc.watch();
    timeout(T, b.shutdown()).await.unwrap();
    assert_eq!(
        timeout(T, watching).await.unwrap().reason,
        crate::actor::ExitReason::Shutdown
    );
    for r in [&calc, &found] {
        let err = timeout(T, r.ask(Add(1))).await.unwrap().unwrap_err();
        assert_eq!(err, AskError::NodeShutDown(b.id()));
        assert!(
            err.to_string()
                .contains("spawn the actor on a node that runs")
        );
        match timeout(T, r.tell(Add(1))).await.unwrap() {
            Err(SendError::Closed {
                message: Add(1),
                reason,
            }) => {
                assert!(reason.contains("was shut down"), "{reason}")
            }
            other => panic!("expected Closed, got {other:?}"),
        }
    }
    // An actor spawned on it afterwards does not run either.
    let late = b.spawn(Calc::default());
    let err = timeout(T, late.ask(Add(1))).await.unwrap().unwrap_err();
    assert_eq!(err, AskError::NodeShutDown(b.id()));
    // The other node of the process is unaffected.
    let other = a.spawn(Calc::default());
    assert_eq!(timeout(T, other.ask(Add(3))).await.unwrap().unwrap(), 3);
}
