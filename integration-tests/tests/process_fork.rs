//! fork / exec / join / send / receive / sync across real processes.

use std::process::Stdio;

use parallel_integration_tests::{children_die_with_their_parent, run_to_end};
use tokio::process::Command;

const FORKER: &str = env!("CARGO_BIN_EXE_forker");

async fn run(args: &[&str]) -> (bool, String, String) {
    run_to_end(FORKER, args).await
}

#[tokio::test]
async fn children_join_receive_and_send_in_rounds() {
    let (ok, out, err) = run(&["rounds", "3", "100"]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        out.matches("SUMS [150.0, 150.0, 150.0]").count(),
        3,
        "{out}\n{err}"
    );
    assert!(out.contains("NCHILDREN 0"), "{out}");
}

#[tokio::test]
async fn large_values_travel_through_shared_memory() {
    // 2^20 floats = 4 MiB, over the 1 MiB shared-memory threshold.
    let (ok, out, err) = run(&["rounds", "2", "1048576"]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        out.matches("SUMS [1572864.0, 1572864.0]").count(),
        3,
        "{out}\n{err}"
    );
    // One segment per child, lent again every round (not a file per value,
    // which each receiver would have removed), and gone with the children.
    assert_eq!(out.matches("SEGMENTS 2\n").count(), 3, "{out}\n{err}");
    assert!(out.contains("SEGMENTS-AFTER 0"), "{out}\n{err}");
}

#[tokio::test]
async fn a_panic_in_the_child_is_reported_on_the_next_join() {
    let (ok, out, err) = run(&["panic"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("FAILED") && out.contains("worker exploded on purpose"),
        "{out}\n{err}"
    );
}

#[tokio::test]
async fn sync_waits_for_the_processes_and_ids_stay_stable() {
    let (ok, out, err) = run(&["sync"]).await;
    assert!(ok, "{out}\n{err}");
    let counts: Vec<&str> = out.lines().filter(|l| l.starts_with("NCHILDREN")).collect();
    assert_eq!(
        counts,
        ["NCHILDREN 1", "NCHILDREN 0", "NCHILDREN 2"],
        "{out}"
    );
    assert!(out.contains("IDS [2, 3]"), "{out}");
    assert!(out.contains("HAS1 false"), "{out}");
}

#[tokio::test]
async fn an_unregistered_function_is_refused_with_a_clear_error() {
    let (ok, out, err) = run(&["unregistered"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("REFUSED") && out.contains("#[parallel::remote]"),
        "{out}"
    );
}

#[tokio::test]
async fn sending_to_a_dead_child_is_a_typed_error() {
    let (ok, out, err) = run(&["dead"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("SEND-ERR"), "{out}\n{err}");
    assert!(out.contains("JOIN-ERR"), "{out}\n{err}");
}

#[tokio::test]
async fn print_prefixes_the_process_id() {
    let (ok, out, err) = run(&["print"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("<parallel#001>  hello from 127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains("<parallel#002>  hello from 127.0.0.1"),
        "{out}"
    );
    assert!(out.contains("<parallel#000>  parent done"), "{out}");
}

#[tokio::test]
async fn children_exit_by_themselves_when_the_parent_is_killed() {
    let parent = Command::new(FORKER)
        .arg("orphans")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the forker");
    children_die_with_their_parent(parent, 2).await;
}

#[tokio::test]
async fn two_trees_in_one_process_are_independent() {
    let (ok, out, err) = run(&["two-trees"]).await;
    assert!(ok, "{out}\n{err}");
    // Each tree numbers its own children and has its own parent actor.
    assert!(out.contains("IDS a=[1, 2] b=[1]"), "{out}\n{err}");
    assert!(out.contains("PARENTS-DIFFER true"), "{out}\n{err}");
    // Neither is the default tree's.
    assert!(out.contains("DEFAULT 0"), "{out}\n{err}");
    assert!(out.contains("A-SUMS [20.0, 20.0]"), "{out}\n{err}");
    // Closing one leaves the other's child running.
    assert!(out.contains("A-CLOSED 0 1"), "{out}\n{err}");
    assert!(out.contains("B-SUMS [20.0]"), "{out}\n{err}");
    // And exec gives the function's return value (one round).
    assert!(out.contains("B-RESULT [1]"), "{out}\n{err}");
}

#[tokio::test]
async fn a_childs_process_actor_is_watched_and_hosts_user_actors() {
    let (ok, out, err) = run(&["actor"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("ACTOR true"), "{out}\n{err}");
    // A user actor spawned inside the child answers.
    assert!(out.contains("COUNTER 2"), "{out}\n{err}");
    // Killing the child's process delivers its actor's Down.
    assert!(
        out.lines()
            .any(|l| l.starts_with("DOWN ") && l.ends_with(" true")),
        "{out}\n{err}"
    );
}

#[tokio::test]
async fn close_stops_a_child_in_order_through_its_process_actor() {
    let (ok, out, err) = run(&["close-down"]).await;
    assert!(ok, "{out}\n{err}");
    // The child's node stopped its actors in order (not a lost connection),
    // and its process ended well, before the close timeout's kill.
    assert!(
        out.contains("CLOSE-DOWN Shutdown exit-ok Some(true)"),
        "{out}\n{err}"
    );
}
