//! In-process tests of work queues, and of a queue's actor serving another
//! node over real QUIC on loopback (the way a parent serves its children).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::message::{Read, ReadReply, Write, WriteReply};
use super::remote::{Client, Host, serve};
use super::*;
use crate::map::map;
use crate::remote::value::{Value, tag_of};
use crate::remote::{ActorRef, Node, RemoteNode};
use crate::transport::Password;

#[test]
fn ten_thousand_items_through_several_readers_lose_and_duplicate_nothing() {
    let q = WorkQueue::<u64>::with_capacity("wq test 10k", 64);
    let readers = map(
        4,
        |_: &(), _| {
            let q = WorkQueue::<u64>::named("wq test 10k");
            assert!(!q.is_owner());
            let mut seen = 0u64;
            while let Some(item) = q.read() {
                q.write(item).unwrap();
                seen += 1;
            }
            seen
        },
        (),
    );
    // The owner writes from one thread and reads the answers on another,
    // so neither direction can fill up for good.
    let q = Arc::new(q);
    let writer = std::thread::spawn({
        let q = q.clone();
        move || {
            for i in 0..10_000u64 {
                q.write(i).unwrap();
            }
        }
    });
    let mut back = HashSet::new();
    for _ in 0..10_000 {
        assert!(back.insert(q.read().unwrap()), "duplicate");
    }
    writer.join().unwrap();
    q.close();
    assert_eq!(back.len(), 10_000);
    assert_eq!(readers.join().unwrap().iter().sum::<u64>(), 10_000);
}

#[test]
fn a_closed_queue_gives_the_item_back_and_reads_none() {
    let q = WorkQueue::<String>::named("wq test closed");
    let worker = WorkQueue::<String>::named("wq test closed");
    q.write("left".into()).unwrap();
    q.close();
    assert_eq!(q.write("late".into()), Err(Closed("late".to_string())));
    assert_eq!(worker.read().as_deref(), Some("left"));
    assert_eq!(worker.read(), None);
}

#[test]
fn a_name_opens_a_new_queue_once_its_owner_is_dropped() {
    let first = WorkQueue::<u32>::local("wq test reopen");
    assert!(first.is_owner());
    drop(first);
    let second = WorkQueue::<u32>::local("wq test reopen");
    assert!(second.is_owner(), "the old, closed queue was reused");
    assert_eq!(second.id(), queue_id("wq test reopen"));
    assert_ne!(queue_id("a"), queue_id("b"));
}

/// Two nodes on loopback: `parent` serves queues, `child` joined it. The
/// actix System runs on a thread of its own until `stop` is dropped.
struct Nodes {
    parent: Node,
    child: Node,
    to_parent: RemoteNode,
    runtime: tokio::runtime::Handle,
    arbiter: actix_rt::ArbiterHandle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn nodes() -> Nodes {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let start = || {
                Node::builder()
                    .password(Password::new("wq test".into()))
                    .start()
            };
            let parent = start().await.expect("parent node");
            let child = start().await.expect("child node");
            let to_parent = child.join(&parent.join_line()).await.expect("join");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let nodes = Nodes {
                parent,
                child,
                to_parent,
                runtime: tokio::runtime::Handle::current(),
                arbiter: actix_rt::Arbiter::current(),
                _stop: stop,
            };
            tx.send(nodes).ok();
            let _ = stopped.await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("nodes up")
}

fn client<T: WireType + Send + 'static>(n: &Nodes, name: &str, wait: Duration) -> WorkQueue<T> {
    let client = Client::<T>::on(name, &n.child, &n.to_parent, n.runtime.clone(), wait);
    WorkQueue {
        handle: Handle::Remote(Box::new(client)),
    }
}

/// Serves the local queue `q` from an actor on the parent node, and waits
/// until that actor is registered under the queue's id.
fn serve_on<T: WireType + Send + 'static>(n: &Nodes, q: &WorkQueue<T>) {
    let Handle::Local { shared, .. } = &q.handle else {
        unreachable!("a queue of this process")
    };
    serve(shared, Host::Node(n.parent.clone(), n.arbiter.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.parent.0.registry.get(q.id()).is_none() {
        assert!(Instant::now() < deadline, "the queue's actor never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many items wait for the workers of the local queue `q`.
fn queued<T: Send + 'static>(q: &WorkQueue<T>) -> usize {
    let Handle::Local { shared, .. } = &q.handle else {
        unreachable!("a queue of this process")
    };
    shared.lock().to_workers.len()
}

/// The queue actor named `name` on the parent node, as the child node reaches it.
fn actor_ref<T: WireType + Send + 'static>(n: &Nodes, name: &str) -> ActorRef<QueueActor<T>> {
    ActorRef::remote(queue_id(name), n.to_parent.link()).with_timeout(Duration::from_secs(10))
}

/// A read of up to `max` u64 items by the reader `reader` of the child node.
fn raw_read(n: &Nodes, reader: crate::id::ActorId, seq: u64, max: u32) -> Read {
    Read {
        reader,
        node: n.child.id(),
        tag: tag_of::<u64>(),
        seq,
        max,
        ack: 0,
        keep: 0,
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("finished in time")
}

#[test]
fn readers_on_another_node_lose_and_duplicate_nothing() {
    within(Duration::from_secs(60), || {
        let n = Arc::new(nodes());
        let q = Arc::new(WorkQueue::<u64>::local_with_capacity("wq test remote", 32));
        serve_on(&n, &q);
        let readers: Vec<_> = (0..3)
            .map(|i| {
                let n = n.clone();
                std::thread::spawn(move || {
                    let q = client::<u64>(&n, "wq test remote", SERVE_WAIT)
                        .with_prefetch(if i == 0 { 8 } else { 1 });
                    assert!(q.is_remote() && !q.is_owner());
                    let mut seen = 0u64;
                    while let Some(item) = q.read_checked().expect("read") {
                        q.write_checked(item * 2).expect("write");
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        let writer = std::thread::spawn({
            let q = q.clone();
            move || {
                for i in 0..2_000u64 {
                    q.write(i).unwrap();
                }
            }
        });
        let mut back = HashSet::new();
        for _ in 0..2_000 {
            assert!(back.insert(q.read().unwrap()), "duplicate");
        }
        writer.join().unwrap();
        q.close();
        assert_eq!(back, (0..2_000u64).map(|i| i * 2).collect::<HashSet<_>>());
        let counts: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(counts, 2_000);
    });
}

#[test]
fn a_batch_whose_answer_never_reached_its_reader_goes_back_when_it_asks_again() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test lost answer");
        serve_on(&n, &q);
        assert!(
            n.parent
                .0
                .registry
                .get(queue_id("wq test lost answer"))
                .is_some()
        );
        for i in 0..10u64 {
            q.write(i).unwrap();
        }
        // Batch 1 (5 items) is answered, and the reader never sees it (as
        // when its ask timed out): the same request asked again gets the
        // same items, and a next read, numbered 2, that holds nothing gets
        // batch 1 back, in order, before the rest.
        let queue = actor_ref::<u64>(&n, "wq test lost answer");
        let reader = crate::id::ActorId::new();
        let items = |reply: Result<ReadReply, crate::remote::AskError>| -> Vec<u64> {
            let Ok(ReadReply::Items(values)) = reply else {
                panic!("expected items, got {reply:?}");
            };
            values
                .into_iter()
                .map(|v| {
                    let view = crate::remote::value::Incoming::owned(v).open::<u64>();
                    view.unwrap().to_owned().unwrap()
                })
                .collect()
        };
        let lost = items(n.runtime.block_on(queue.ask(raw_read(&n, reader, 1, 5))));
        assert_eq!(lost, (0..5).collect::<Vec<_>>());
        let retried = items(n.runtime.block_on(queue.ask(raw_read(&n, reader, 1, 5))));
        assert_eq!(retried, (0..5).collect::<Vec<_>>());
        let got = items(n.runtime.block_on(queue.ask(raw_read(&n, reader, 2, 10))));
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn a_dropped_handle_gives_back_the_batch_it_asked_ahead_for_at_once() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test dropped");
        serve_on(&n, &q);
        for i in 0..10u64 {
            q.write(i).unwrap();
        }
        let reader = client::<u64>(&n, "wq test dropped", SERVE_WAIT).with_prefetch(5);
        // Batch 1 holds 0..5; the first item asks ahead for 5..10.
        assert_eq!(reader.read(), Some(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while queued(&q) > 0 {
            assert!(
                Instant::now() < deadline,
                "the read ahead never took its batch"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(reader);
        // The batch asked ahead comes back while the child's node lives;
        // batch 1, handed out in part, stays with its reader until then.
        let worker = WorkQueue::<u64>::local("wq test dropped");
        let back: Vec<u64> = (0..5).map(|_| worker.read().unwrap()).collect();
        assert_eq!(back, (5..10).collect::<Vec<_>>());
        n.runtime.block_on(n.child.shutdown());
        let rest: Vec<u64> = (0..5).map(|_| worker.read().unwrap()).collect();
        assert_eq!(rest, (0..5).collect::<Vec<_>>());
        q.close();
        assert_eq!(worker.read(), None);
    });
}

#[test]
fn a_write_asked_again_with_its_number_is_written_once() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test write once");
        serve_on(&n, &q);
        let queue = actor_ref::<u64>(&n, "wq test write once");
        let writer = crate::id::ActorId::new();
        let write = |seq: u64, item: u64| Write {
            writer,
            node: n.child.id(),
            seq,
            item: Value::pack(&&item, None, usize::MAX).unwrap(),
        };
        for (seq, item) in [(1, 7u64), (1, 7), (2, 8)] {
            let written = n.runtime.block_on(queue.ask(write(seq, item)));
            assert_eq!(written, Ok(WriteReply::Written));
        }
        // A local worker's write lands behind them: 7 came once.
        WorkQueue::<u64>::local("wq test write once")
            .write(9)
            .unwrap();
        let got: Vec<u64> = (0..3).map(|_| q.read().unwrap()).collect();
        assert_eq!(got, [7, 8, 9]);
    });
}

#[test]
fn a_read_that_waits_past_the_poll_asks_again_and_async_code_is_refused() {
    within(Duration::from_secs(60), || {
        let n = Arc::new(nodes());
        let q = WorkQueue::<u64>::local("wq test poll");
        serve_on(&n, &q);
        let reader = Arc::new(client::<u64>(&n, "wq test poll", SERVE_WAIT));
        // On a thread of the runtime, the blocking calls refuse.
        let refused = n.runtime.block_on(async { reader.read_checked() });
        assert!(
            matches!(&refused, Err(ReadError::Misuse { message, .. }) if message.contains("spawn_blocking")),
            "{refused:?}"
        );
        let written = n.runtime.block_on(async { reader.write_checked(1) });
        assert!(
            matches!(written, Err(WriteError::Misuse { item: 1, .. })),
            "{written:?}"
        );
        let waiting = std::thread::spawn({
            let reader = reader.clone();
            move || reader.read_checked()
        });
        std::thread::sleep(POLL + Duration::from_millis(500));
        assert!(
            !waiting.is_finished(),
            "a read returned from an empty queue"
        );
        q.write(42).unwrap();
        assert_eq!(waiting.join().unwrap().expect("read"), Some(42));
    });
}

#[test]
fn an_owner_opened_before_there_is_an_arbiter_is_served_from_its_next_call() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test later");
        let Handle::Local { shared, .. } = &q.handle else {
            unreachable!("a queue of this process")
        };
        let later = Arc::new(std::sync::OnceLock::new());
        serve(shared, Host::Later(later.clone()));
        assert!(shared.pending.load(std::sync::atomic::Ordering::Acquire));
        q.write(1).unwrap();
        assert!(
            shared.pending.load(std::sync::atomic::Ordering::Acquire),
            "still no arbiter"
        );
        assert!(n.parent.0.registry.get(q.id()).is_none());
        let _ = later.set((n.parent.clone(), n.arbiter.clone()));
        // The owner's next call starts the actor.
        q.write(2).unwrap();
        assert!(!shared.pending.load(std::sync::atomic::Ordering::Acquire));
        let reader = client::<u64>(&n, "wq test later", SERVE_WAIT);
        assert_eq!(reader.read(), Some(1));
        assert_eq!(reader.read(), Some(2));
    });
}

#[test]
fn a_queue_whose_owner_is_gone_stops_serving_and_its_name_is_served_again() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let first = WorkQueue::<u64>::local("wq test again");
        serve_on(&n, &first);
        let reader = client::<u64>(&n, "wq test again", SERVE_WAIT);
        first.write(1).unwrap();
        assert_eq!(reader.read(), Some(1));
        drop(first);
        assert_eq!(reader.read_checked().expect("read"), None);
        let id = queue_id("wq test again");
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.parent.0.registry.get(id).is_some() {
            assert!(
                Instant::now() < deadline,
                "the drained queue's actor never stopped"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = WorkQueue::<u64>::local("wq test again");
        assert!(second.is_owner());
        serve_on(&n, &second);
        second.write(2).unwrap();
        let reader = client::<u64>(&n, "wq test again", SERVE_WAIT);
        assert_eq!(reader.read(), Some(2));
    });
}

#[test]
fn another_item_type_is_refused_and_an_unserved_name_is_reported() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test types");
        serve_on(&n, &q);
        let wrong = client::<String>(&n, "wq test types", SERVE_WAIT);
        match wrong.read_checked() {
            Err(ReadError::Refused { message, .. }) => {
                assert!(message.contains("u64"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        match wrong.write_checked("x".into()) {
            Err(WriteError::Refused { item, .. }) => assert_eq!(item, "x"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let nobody = client::<u64>(&n, "wq test nobody", Duration::from_millis(300));
        assert!(matches!(
            nobody.read_checked(),
            Err(ReadError::NotServed { .. })
        ));
        assert!(matches!(
            nobody.write_checked(7),
            Err(WriteError::NotServed { item: 7, .. })
        ));
    });
}

#[test]
fn a_remote_write_waits_for_room_and_a_dropped_owner_reads_as_closed() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local_with_capacity("wq test full", 2);
        serve_on(&n, &q);
        let worker = Arc::new(client::<u64>(&n, "wq test full", SERVE_WAIT));
        worker.write(1).unwrap();
        worker.write(2).unwrap();
        let third = std::thread::spawn({
            let worker = worker.clone();
            move || worker.write(3)
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!third.is_finished(), "a write into a full lane returned");
        assert_eq!(q.read(), Some(1));
        assert_eq!(third.join().unwrap(), Ok(()));
        q.write(10).unwrap();
        drop(q);
        assert_eq!(worker.read(), Some(10));
        assert_eq!(worker.read(), None);
        assert_eq!(worker.write(4), Err(Closed(4)));
    });
}

#[test]
fn items_a_reader_holds_unacknowledged_go_back_when_its_node_goes_down() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test node down");
        serve_on(&n, &q);
        for i in 0..10u64 {
            q.write(i).unwrap();
        }
        // One item per reply: the second read acknowledges item 0 (it asks
        // on past it) and the reader asks ahead for item 2.
        let reader = client::<u64>(&n, "wq test node down", SERVE_WAIT).with_prefetch(1);
        assert_eq!(reader.read(), Some(0));
        assert_eq!(reader.read(), Some(1));
        std::thread::sleep(Duration::from_millis(300));
        n.runtime.block_on(n.child.shutdown());
        // Items 1 (handed out, not acknowledged) and 2 (asked ahead) go back
        // to the front; item 0 does not.
        let worker = WorkQueue::<u64>::local("wq test node down");
        assert!(!worker.is_owner());
        let mut got: Vec<u64> = (0..9).map(|_| worker.read().unwrap()).collect();
        got.sort();
        assert_eq!(got, (1..10).collect::<Vec<_>>());
        q.close();
        assert_eq!(worker.read(), None);
    });
}

/// How many items the handle on the parent's queue `q` asks for next.
fn batch<T: Send + 'static>(q: &WorkQueue<T>) -> usize {
    let Handle::Remote(client) = &q.handle else {
        unreachable!("a handle on another node's queue")
    };
    client.batch()
}

#[test]
fn a_reader_batch_grows_on_tiny_items_shrinks_on_long_ones_and_stays_when_fixed() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        const TINY: u64 = 20_000;
        // Enough long items for two whole batches of the largest size: a
        // batch halves once a batch that came early is done, and the batch
        // under way when the long items start may hold tiny ones too.
        const LONG: u64 = 2 * MAX_ADAPTIVE_PREFETCH as u64 + 500;
        let q = WorkQueue::<u64>::local_with_capacity("wq test adaptive", (TINY + LONG) as usize);
        serve_on(&n, &q);
        for i in 0..TINY + LONG {
            q.write(i).unwrap();
        }
        let reader = client::<u64>(&n, "wq test adaptive", SERVE_WAIT);
        assert_eq!(batch(&reader), DEFAULT_PREFETCH);
        // Items that take no time: the reader runs out before each next
        // batch arrives, and its batch grows.
        let mut grown = 0;
        for i in 0..TINY {
            assert_eq!(reader.read(), Some(i));
            grown = grown.max(batch(&reader));
        }
        assert!(
            grown > DEFAULT_PREFETCH,
            "the batch never grew past {DEFAULT_PREFETCH} on {TINY} items that take no time"
        );
        // Items that take a while (500 µs each: half a batch of even 32 is
        // 8 ms, longer than a round trip on loopback on a busy machine): the
        // next batch arrives early, and the batch comes down (halving from
        // whatever it grew to, down to where it started).
        for i in TINY..TINY + LONG {
            assert_eq!(reader.read(), Some(i));
            std::thread::sleep(Duration::from_micros(500));
        }
        let after = batch(&reader);
        assert!(
            after <= (grown / 2).max(DEFAULT_PREFETCH),
            "the batch stayed at {after} (it had grown to {grown}) on items of 500 µs"
        );
        drop(reader);

        // A fixed batch stays what it was told, whatever the items.
        for i in 0..TINY {
            q.write(i).unwrap();
        }
        let fixed = client::<u64>(&n, "wq test adaptive", SERVE_WAIT).with_prefetch(5);
        for _ in 0..TINY {
            assert!(fixed.read().is_some());
            assert_eq!(batch(&fixed), 5);
        }
        q.close();
        assert_eq!(fixed.read(), None);
    });
}
