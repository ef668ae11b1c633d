//! Work queues across real processes: a parent owns a queue, forked
//! children open it by name and read and write over QUIC on loopback.

use parallel_integration_tests::run_to_end;

const WORKQUEUE: &str = env!("CARGO_BIN_EXE_workqueue");

#[tokio::test]
async fn workqueue_with_several_readers_loses_and_duplicates_nothing() {
    let (ok, out, err) = run_to_end(WORKQUEUE, &["many", "3", "10000"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("LOST 0 DUP 0"), "{out}\n{err}");
    assert!(out.contains("SUM 10000"), "{out}\n{err}");
    let counts = out
        .lines()
        .find_map(|l| l.strip_prefix("COUNTS "))
        .expect("the counts line");
    assert_eq!(counts.matches(',').count(), 2, "three readers: {out}");
}

#[tokio::test]
async fn items_handed_to_a_killed_reader_go_to_the_next_one() {
    let (ok, out, err) = run_to_end(WORKQUEUE, &["kill", "100"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("VICTIM ready") && out.contains("KILLED"),
        "{out}\n{err}"
    );
    assert!(!out.contains("UNEXPECTED"), "{out}\n{err}");
    assert!(out.contains("LOST 0 DUP 0"), "{out}\n{err}");
    assert!(out.contains("SUM 100"), "{out}\n{err}");
}

#[tokio::test]
async fn items_a_killed_reader_held_unacknowledged_go_to_the_next_one() {
    let (ok, out, err) = run_to_end(WORKQUEUE, &["kill-holding", "100"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("VICTIM read 3") && out.contains("KILLED"),
        "{out}\n{err}"
    );
    assert!(!out.contains("UNEXPECTED"), "{out}\n{err}");
    // The victim's items, the 3 it read included, are read again.
    assert!(out.contains("LOST 0 DUP 0"), "{out}\n{err}");
    assert!(out.contains("SUM 100"), "{out}\n{err}");
}
