//! In-process tests of the remote layer: two nodes in one process still
//! talk over real QUIC on loopback; local sends go straight to actix.

use std::time::Duration;

use actix::Handler;
use rkyv::{Archive, Deserialize, Serialize};
use tokio::time::timeout;

use crate::actor::{Failure, Received, Tensor};
use crate::remote::{ActorRef, AskError, Node, RemoteNode, SendError};
use crate::transport::{Password, TransportConfig};

const T: Duration = Duration::from_secs(10);

#[derive(crate::Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Add, Block, Boom, Wait, Fill), view(Sum), spawn)]
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

/// Answers with this many bytes.
#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = Vec<u8>)]
struct Fill(u32);

impl Handler<Fill> for Calc {
    type Result = actix::MessageResult<Fill>;
    fn handle(&mut self, Fill(n): Fill, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult(vec![1u8; n as usize])
    }
}

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
    node_with(allow, TransportConfig::default(), mailbox).await
}

/// A node with these transport settings; `allow` lets others spawn `Calc`.
async fn node_with(allow: bool, config: TransportConfig, mailbox: usize) -> Node {
    let mut b = Node::builder()
        .transport(config)
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

/// Two nodes whose frames carry at most 1 MiB, and a `Calc` spawned by the
/// first on the second.
async fn calc_over_small_frames() -> (Node, Node, RemoteNode, ActorRef<Calc>) {
    let config = TransportConfig {
        max_frame: 1 << 20,
        ..Default::default()
    };
    let mailbox = crate::actor::DEFAULT_MAILBOX;
    let a = node_with(false, config.clone(), mailbox).await;
    let b = node_with(true, config, mailbox).await;
    let remote = timeout(T, a.join(&b.join_line())).await.unwrap().unwrap();
    let calc = timeout(T, remote.spawn(Calc::default()))
        .await
        .unwrap()
        .unwrap();
    (a, b, remote, calc)
}

/// A message larger than a frame may be is refused by the sender with
/// the encode error, naming `max_frame`; the connection stays up (sent,
/// the peer would refuse the frame and close it).
#[actix_rt::test]
async fn a_message_larger_than_a_frame_is_refused_before_it_is_sent() {
    let (_a, _b, remote, calc) = calc_over_small_frames().await;
    let big = || Sum(Tensor::from_vec(vec![1.0f32; 300_000]));
    match timeout(T, calc.ask(big())).await.unwrap() {
        Err(AskError::Encode(e)) => {
            assert!(e.to_string().contains("max_frame"), "{e}");
        }
        other => panic!("expected AskError::Encode, got {other:?}"),
    }
    match timeout(T, calc.tell(big())).await.unwrap() {
        Err(SendError::Encode(Sum(t), e)) => {
            assert_eq!(t.len(), 300_000, "the message comes back whole");
            assert!(e.to_string().contains("max_frame"), "{e}");
        }
        other => panic!("expected SendError::Encode, got ok = {}", other.is_ok()),
    }
    // The link is up, and a message that fits goes through.
    assert!(remote.is_alive());
    let fits = Sum(Tensor::from_vec(vec![1.0f32; 200_000]));
    let (sum, _) = timeout(T, calc.ask(fits)).await.unwrap().unwrap();
    assert_eq!(sum, 200_000.0);
}

/// A reply larger than a frame may be comes back as the failure that
/// says so, naming `max_frame`; the connection stays up (sent, the asking
/// node would refuse the frame and close it).
#[actix_rt::test]
async fn a_reply_larger_than_a_frame_is_answered_with_the_failure_that_says_so() {
    let (_a, _b, remote, calc) = calc_over_small_frames().await;
    match timeout(T, calc.ask(Fill(2 << 20))).await.unwrap() {
        Err(AskError::Failed(Failure::Remote(r))) => {
            assert_eq!(r.code, crate::actor::code::ENCODE);
            assert!(r.message.contains("max_frame"), "{}", r.message);
        }
        other => panic!(
            "expected the encode failure, got {:?}",
            other.map(|v| v.len())
        ),
    }
    // The link is up, the actor lives, and a reply that fits comes back.
    assert!(remote.is_alive());
    let fits = timeout(T, calc.ask(Fill(1000))).await.unwrap().unwrap();
    assert_eq!(fits, vec![1u8; 1000]);
    assert_eq!(timeout(T, calc.ask(Add(3))).await.unwrap().unwrap(), 3);
}

/// A request larger than a frame (a post here; a spawn's state and a
/// call's arguments take the same path) is refused before it is sent, with
/// the error that names `max_frame`, and the connection stays up.
#[actix_rt::test]
async fn a_request_larger_than_a_frame_is_refused_before_it_is_sent() {
    let (_a, _b, remote, calc) = calc_over_small_frames().await;
    let big = || crate::wire::encode(&vec![7u8; 2 << 20]).unwrap();
    let refused = |result: Result<(), crate::remote::RequestError>| match result {
        Err(crate::remote::RequestError::TooLarge { node, error }) => {
            assert_eq!(node, remote.id());
            assert!(error.to_string().contains("max_frame"), "{error}");
        }
        other => panic!("expected RequestError::TooLarge, got {other:?}"),
    };
    refused(
        timeout(T, remote.post(calc.id(), 1, 0, big()))
            .await
            .unwrap(),
    );
    refused(
        timeout(T, remote.post_confirmed(calc.id(), 1, 0, big()))
            .await
            .unwrap(),
    );
    // A value posted whole (not through shared memory) says which type
    // could not be sent, as an encode error: nothing about the link failed.
    let value = vec![7u8; 2 << 20];
    let value = &value;
    let posted = crate::remote::value::post_value(&remote, calc.id(), 1, &value, None, usize::MAX);
    match timeout(T, posted).await.unwrap() {
        Err(crate::remote::value::ValueError::Encode(e)) => {
            assert_eq!(e.type_name, std::any::type_name::<Vec<u8>>());
            assert!(e.reason.contains("max_frame"), "{e}");
        }
        other => panic!("expected ValueError::Encode, got {other:?}"),
    }
    assert!(remote.is_alive());
    assert_eq!(timeout(T, calc.ask(Add(4))).await.unwrap().unwrap(), 4);
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
async fn the_nodes_ask_timeout_is_the_default_of_the_references_it_makes() {
    let quick = Duration::from_millis(60);
    let a = Node::builder()
        .password(Password::new("unit".into()))
        .ask_timeout(quick)
        .start()
        .await
        .unwrap();
    let b = node(true, 16).await;
    // A local actor of the node, and one it spawned on another node.
    let here = a.spawn(Calc::default());
    let remote = timeout(T, a.join(&b.join_line())).await.unwrap().unwrap();
    let there = timeout(T, remote.spawn(Calc::default()))
        .await
        .unwrap()
        .unwrap();
    for calc in [&here, &there] {
        let err = timeout(T, calc.ask(Wait(2_000)))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err, AskError::Timeout(quick));
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

/// Takes no message after a `Hold` until its gate opens: a mailbox that
/// stays full for as long as a test needs. Notes each `Hold` it takes.
#[derive(crate::Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Hold, Seen, Note, local::Hundred, local::Wide), spawn)]
struct Gate {
    /// Which of [`GATES`] it waits on.
    gate: u8,
    /// A `Hold` has it wait for its gate: it should take nothing meanwhile.
    holding: bool,
    seen: Vec<u32>,
}

/// One gate per test that uses a [`Gate`]; a `Hold` takes one permit.
static GATES: [tokio::sync::Semaphore; 3] = [
    tokio::sync::Semaphore::const_new(0),
    tokio::sync::Semaphore::const_new(0),
    tokio::sync::Semaphore::const_new(0),
];

/// What a `Note` adds to its number when it is handled while its gate
/// holds the actor (which should take nothing then).
const EARLY: u32 = 1_000_000;

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Hold(u32);

/// Noted like a `Hold`, without a wait.
#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Note(u32);

impl Handler<Note> for Gate {
    type Result = ();
    fn handle(&mut self, Note(i): Note, _: &mut actix::Context<Self>) {
        self.seen.push(if self.holding { i + EARLY } else { i });
    }
}

/// The `Hold`s taken so far, in the order taken.
#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = Vec<u32>)]
struct Seen;

impl Handler<Hold> for Gate {
    type Result = ();
    fn handle(&mut self, Hold(i): Hold, ctx: &mut actix::Context<Self>) {
        use actix::{ActorFutureExt, AsyncContext};
        self.seen.push(i);
        self.holding = true;
        let gate = &GATES[usize::from(self.gate)];
        // The actor takes nothing more from its mailbox until this is done.
        let opened = actix::fut::wrap_future(async move {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        });
        ctx.wait(opened.map(|(), gate: &mut Gate, _| gate.holding = false));
    }
}

impl Handler<Seen> for Gate {
    type Result = actix::MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult(self.seen.clone())
    }
}

/// Two nodes that allow `Calc` and `Gate`, `mailbox` slots per actor; `b`
/// joined `a`. Returns `a`, `b`, `a`'s handle on `b`, `b`'s handle on `a`.
async fn joined(mailbox: usize, config: TransportConfig) -> (Node, Node, RemoteNode, RemoteNode) {
    let start = || {
        Node::builder()
            .transport(config.clone())
            .password(Password::new("unit".into()))
            .mailbox(mailbox)
            .allow::<Calc>()
            .allow::<Gate>()
            .start()
    };
    let a = timeout(T, start()).await.unwrap().expect("start node a");
    let b = timeout(T, start()).await.unwrap().expect("start node b");
    let to_a = timeout(T, b.join(&a.join_line()))
        .await
        .unwrap()
        .expect("b joins a");
    let to_b = timeout(T, a.accept())
        .await
        .unwrap()
        .expect("a sees b join");
    (a, b, to_b, to_a)
}

/// A `Gate` on gate `gate`, spawned on the node of `to_a`.
async fn spawn_gate(to_a: &RemoteNode, gate: u8) -> ActorRef<Gate> {
    let spawned = to_a.spawn(Gate {
        gate,
        ..Gate::default()
    });
    timeout(T, spawned)
        .await
        .unwrap()
        .expect("spawn the gate on a")
}

/// Waits until the gate's mailbox is full, probing it from its own node
/// (a probe that gets in is a harmless `Seen`).
async fn wait_full(at_home: &ActorRef<Gate>) {
    timeout(T, async {
        while !matches!(at_home.try_tell(Seen), Err(SendError::Full(_))) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the gate's mailbox never filled: the flood did not arrive");
}

/// How long a reply may take while another actor's inbox is full.
const QUICK: Duration = Duration::from_secs(2);

#[actix_rt::test]
async fn replies_and_other_actors_never_wait_behind_a_full_inbox() {
    const GATE: u8 = 0;
    let (_a, _b, to_b, to_a) = joined(2, TransportConfig::default()).await;
    // `gate` and `other` live on a and are used from b; `far` the other way.
    let gate = spawn_gate(&to_a, GATE).await;
    let other = timeout(T, to_a.spawn(Calc::default()))
        .await
        .unwrap()
        .expect("spawn another actor on a");
    let far = timeout(T, to_b.spawn(Calc::default()))
        .await
        .unwrap()
        .expect("spawn an actor on b");
    // More holds than the gate's 2 slots: a's dispatcher for b meets a full inbox.
    for i in 0..8 {
        timeout(T, gate.tell(Hold(i))).await.unwrap().unwrap();
    }
    let at_home = ActorRef::<Gate>::from_address(gate.address().clone());
    wait_full(&at_home).await;

    let sum = timeout(QUICK, other.ask(Add(1)))
        .await
        .expect("an ask from b to another actor on a waited behind the gate's full inbox")
        .unwrap();
    assert_eq!(sum, 1);
    let sum = timeout(QUICK, far.ask(Add(2)))
        .await
        .expect("b's reply to a waited behind b's deliveries into the gate's full inbox")
        .unwrap();
    assert_eq!(sum, 2);
    assert!(
        matches!(at_home.try_tell(Seen), Err(SendError::Full(_))),
        "the gate's inbox emptied during the test: it proves nothing"
    );

    GATES[usize::from(GATE)].add_permits(1 << 20);
    let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
    assert_eq!(seen, (0..8).collect::<Vec<_>>(), "lost or reordered holds");
}

#[actix_rt::test]
async fn replies_and_heartbeats_flow_while_a_full_inbox_stops_a_peer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    const GATE: u8 = 1;
    // Small windows, queues and budget: the flood stops after a few
    // thousand holds.
    let config = TransportConfig {
        connection_window: 256 << 10,
        stream_window: 64 << 10,
        send_queue: 64,
        parked_frames: 64,
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(1),
        ..TransportConfig::default()
    };
    let (_a, _b, to_b, to_a) = joined(2, config).await;
    let gate = spawn_gate(&to_a, GATE).await;
    let far = timeout(T, to_b.spawn(Calc::default()))
        .await
        .unwrap()
        .expect("spawn an actor on b");

    // b tells the gate until backpressure stops it: every buffer between
    // the two is full, and a reads nothing more from b's data lane.
    let (told, stop) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let flood = actix_rt::spawn({
        let (gate, told, stop) = (gate.clone(), told.clone(), stop.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                gate.tell(Hold(i)).await.expect("tell the gate");
                i += 1;
                told.store(i, Ordering::Relaxed);
            }
            i
        }
    });
    // Stopped: no progress over three looks in a row (each gives the flood
    // a turn on this thread).
    let stalled = timeout(T, async {
        let (mut last, mut still) = (0, 0);
        loop {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let now = told.load(Ordering::Relaxed);
            still = if now == last && now > 2 { still + 1 } else { 0 };
            last = now;
            if still == 3 {
                return now;
            }
        }
    })
    .await
    .expect("the flood never stopped: nothing pushes back on b");

    let sum = timeout(QUICK, far.ask(Add(3)))
        .await
        .expect("b's reply to a waited behind b's stopped data lane")
        .unwrap();
    assert_eq!(sum, 3);
    // Longer than the heartbeat timeout: the control lane kept both alive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        to_a.is_alive() && to_b.is_alive(),
        "a heartbeat waited behind the full inbox"
    );
    assert_eq!(
        told.load(Ordering::Relaxed),
        stalled,
        "b went on sending: something took its holds without bound"
    );

    stop.store(true, Ordering::Relaxed);
    GATES[usize::from(GATE)].add_permits(1 << 20);
    let total = timeout(T, flood).await.unwrap().unwrap();
    let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
    assert_eq!(seen.len(), total as usize, "lost holds");
    assert!(seen.iter().copied().eq(0..total), "reordered holds");
}

#[actix_rt::test]
async fn posts_to_a_full_mailbox_wait_in_order_while_other_mailboxes_go_on() {
    let (a, _b, _to_b, to_a) = joined(16, TransportConfig::default()).await;
    let mut full = a.open_mailbox(1);
    let mut open = a.open_mailbox(4);
    let post = |i: u32| crate::wire::encode(&i).unwrap();
    // One post fills `full`; the next four wait at a for room.
    for i in 0..5 {
        timeout(T, to_a.post(full.id(), 1, 0, post(i)))
            .await
            .unwrap()
            .unwrap();
    }
    timeout(T, to_a.post(open.id(), 2, 0, post(100)))
        .await
        .unwrap()
        .unwrap();
    let other = timeout(QUICK, open.recv())
        .await
        .expect("a post to another mailbox waited behind the full one")
        .unwrap();
    assert_eq!(other.op, 2);
    // A receipt says everything posted before is in: not while `full` is.
    let confirmed = actix_rt::spawn({
        let (to_a, id) = (to_a.clone(), open.id());
        async move { to_a.post_confirmed(id, 3, 0, post(101)).await }
    });
    let payload = timeout(QUICK, open.recv())
        .await
        .expect("a confirmed post to another mailbox waited behind the full one")
        .unwrap();
    assert_eq!(payload.op, 3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !confirmed.is_finished(),
        "a receipt came while an earlier post was still waiting at a"
    );
    for i in 0..5 {
        let got = timeout(T, full.recv()).await.unwrap().unwrap();
        let got: u32 = crate::wire::decode_owned(&got.payload).unwrap();
        assert_eq!(got, i, "posts to one mailbox arrived out of order");
    }
    timeout(T, confirmed).await.unwrap().unwrap().unwrap();
}

/// A burst of tells from another node goes into the actor's inbox and is
/// handled in runs: in the order sent, every one, in far fewer mailbox
/// items (drains) than messages (one each would mean the inbox was skipped).
/// The buffers their payloads were read into come back once decoded, for
/// the next payloads from that node (without that, each would be allocated
/// and freed).
#[actix_rt::test]
async fn a_burst_of_remote_tells_is_handled_in_order_in_few_drains() {
    const N: u32 = 5_000;
    let (a, b, _to_b, to_a) =
        joined(crate::actor::DEFAULT_MAILBOX, TransportConfig::default()).await;
    let gate = spawn_gate(&to_a, 0).await;
    for i in 0..N {
        timeout(T, gate.tell(Note(i))).await.unwrap().unwrap();
    }
    let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "lost or reordered tells");
    let entry = a.0.registry.get(gate.id()).expect("the gate lives on a");
    assert_few_drains(&entry, N);
    let link = a.0.links.get(&b.id()).expect("a's link to b").clone();
    let kept = link.peer().received_spares().len();
    assert!(kept >= 1, "no payload buffer came back from the actor");
}

/// Asserts that `n` messages (and a few asks) to the actor of `entry` were
/// handled in runs: at least one drain, at most one per four messages, and
/// nothing waits now. One drain each would mean the inbox was skipped.
fn assert_few_drains(entry: &crate::actor::LocalEntry, n: u32) {
    let drains = entry.inbox().drains();
    assert!(
        (1..=u64::from(n) / 4).contains(&drains),
        "{n} messages took {drains} drains"
    );
    assert!(entry.inbox().is_empty());
}

/// A handler that makes its actor wait (`ctx.wait`) stops the run it came
/// in: the tells behind it in the inbox wait until the actor takes messages
/// again, as they would in its mailbox, and keep their order.
#[actix_rt::test]
async fn a_handler_that_waits_holds_back_the_rest_of_its_run() {
    const GATE: u8 = 2;
    let (a, _b, _to_b, to_a) =
        joined(crate::actor::DEFAULT_MAILBOX, TransportConfig::default()).await;
    let gate = spawn_gate(&to_a, GATE).await;
    timeout(T, gate.tell(Hold(0))).await.unwrap().unwrap();
    for i in 1..=10 {
        timeout(T, gate.tell(Note(i))).await.unwrap().unwrap();
    }
    let entry = a.0.registry.get(gate.id()).expect("the gate lives on a");
    timeout(T, async {
        while entry.inbox().len() < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the notes never waited in the inbox: the run went on past the wait");
    GATES[usize::from(GATE)].add_permits(1);
    let seen = timeout(T, gate.ask(Seen)).await.unwrap().unwrap();
    assert_eq!(
        seen,
        (0..=10).collect::<Vec<_>>(),
        "handled early, lost or reordered"
    );
}

mod local;
