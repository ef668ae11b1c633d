//! In-process tests of work queues, and of a queue served to another node
//! over real QUIC on loopback (the way a parent serves its children).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::remote::{Client, Host, orphan_read, serve};
use super::*;
use crate::map::map;
use crate::remote::{Node, RemoteNode};
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
                _stop: stop,
            };
            tx.send(nodes).ok();
            let _ = stopped.await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("nodes up")
}

fn client<T: WireType + Send + 'static>(n: &Nodes, name: &str, wait: Duration) -> WorkQueue<T> {
    let client = Client::<T>::on(name, &n.child, n.to_parent.clone(), n.runtime.clone(), wait);
    WorkQueue {
        handle: Handle::Remote(Box::new(client)),
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
        let Handle::Local { shared, .. } = &q.handle else {
            unreachable!()
        };
        serve(shared.clone(), Host::Node(n.parent.clone()));
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
fn items_whose_reply_cannot_be_delivered_go_back_to_the_queue() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test requeue");
        let Handle::Local { shared, .. } = &q.handle else {
            unreachable!()
        };
        serve(shared.clone(), Host::Node(n.parent.clone()));
        for i in 0..10u64 {
            q.write(i).unwrap();
        }
        // A read of 5 items whose reply mailbox does not exist: the reply
        // cannot be delivered, so its items go back.
        // The service opens its mailbox on its own thread: retry until it is
        // there.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Err(e) =
            n.runtime
                .block_on(orphan_read::<u64>(&n.to_parent, "wq test requeue", 5))
        {
            assert!(std::time::Instant::now() < deadline, "never posted: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let reader = client::<u64>(&n, "wq test requeue", SERVE_WAIT);
        let mut got: Vec<u64> = (0..10).map(|_| reader.read().unwrap()).collect();
        q.close();
        assert_eq!(reader.read_checked().expect("read"), None);
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn another_item_type_is_refused_and_an_unserved_name_is_reported() {
    within(Duration::from_secs(60), || {
        let n = nodes();
        let q = WorkQueue::<u64>::local("wq test types");
        let Handle::Local { shared, .. } = &q.handle else {
            unreachable!()
        };
        serve(shared.clone(), Host::Node(n.parent.clone()));
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
        let Handle::Local { shared, .. } = &q.handle else {
            unreachable!()
        };
        serve(shared.clone(), Host::Node(n.parent.clone()));
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
        let Handle::Local { shared, .. } = &q.handle else {
            unreachable!()
        };
        serve(shared.clone(), Host::Node(n.parent.clone()));
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
