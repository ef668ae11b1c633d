//! Supervised children in other processes: a process child SIGKILLed is
//! seen `Killed` at once, restarted in a new process under the same
//! `ActorId`, and a caller with retry continues; a remote child whose node
//! is SIGKILLed is seen `NoConnection` within the heartbeat timeout and
//! restarts on another node that allows its type. No process is left behind.

use std::process::Stdio;
use std::time::{Duration, Instant};

use parallel::actor::ExitReason;
use parallel::supervision::{
    ChildSpec, Home, RemotePlacement, Strategy, Supervisor, SupervisorEvent,
};
use parallel_integration_tests::*;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");
const SUPERVISED: &str = env!("CARGO_BIN_EXE_supervised");

fn gone(pid: u32) -> bool {
    !parallel_integration_tests::alive(pid)
}

fn value<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(|r| r.split_whitespace().collect()))
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"))
}

#[tokio::test]
async fn a_killed_process_child_restarts_under_the_same_id_and_the_caller_continues() {
    let (stdout, _) = run_supervised(&[], false).await;
    assert_eq!(value(&stdout, "BEFORE "), ["1"], "{stdout}");
    let down = value(&stdout, "DOWN ");
    assert_eq!(down[0], "Killed", "{stdout}");
    let ms: u64 = down[1].parse().unwrap();
    assert!(
        ms < 1500,
        "Down after {ms} ms, beyond the heartbeat timeout"
    );
    assert_eq!(value(&stdout, "RESTARTED "), ["true", "2"], "{stdout}");
    // A fresh incarnation: its state starts again.
    assert_eq!(value(&stdout, "AFTER "), ["1"], "{stdout}");
    let pid1: u32 = value(&stdout, "PID1 ")[0].parse().unwrap();
    let pid2 = value(&stdout, "PID2 ");
    assert_eq!(pid2[1], "true", "the reference kept its id: {stdout}");
    let pid2: u32 = pid2[0].parse().unwrap();
    assert_ne!(pid1, pid2, "a restart forks a new process");
    assert_eq!(value(&stdout, "SHUTDOWN "), ["Shutdown"], "{stdout}");
    let start = Instant::now();
    while !(gone(pid1) && gone(pid2)) && start.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone(pid1) && gone(pid2),
        "a child process outlived the test"
    );
}

/// Runs the supervised test program with `args`, with `RUST_BACKTRACE=1`
/// or without it; its stdout and stderr.
async fn run_supervised(args: &[&str], backtrace: bool) -> (String, String) {
    let mut command = tokio::process::Command::new(SUPERVISED);
    if backtrace {
        command.env("RUST_BACKTRACE", "1");
    } else {
        command.env_remove("RUST_BACKTRACE");
    }
    let child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the supervised test program");
    let out = timeout(DEADLINE * 2, child.wait_with_output())
        .await
        .expect("the program finished in time")
        .expect("its output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[tokio::test]
async fn a_message_that_crashes_a_process_child_is_answered_with_the_panic_and_not_retried() {
    let (stdout, stderr) = run_supervised(&["poison"], false).await;
    assert_eq!(
        value(&stdout, "POISON "),
        [r#"Err(Failed(Panicked("boom")))"#],
        "{stdout}\n{stderr}"
    );
    assert_eq!(value(&stdout, "CRASHES "), ["1"], "{stdout}\n{stderr}");
    assert_eq!(value(&stdout, "INCARNATION "), ["2"], "{stdout}\n{stderr}");
    assert!(!stdout.contains("GAVEUP"), "{stdout}");
    // The next incarnation runs, with fresh state.
    assert_eq!(value(&stdout, "AFTER "), ["1"], "{stdout}\n{stderr}");
    assert_eq!(value(&stdout, "SHUTDOWN "), ["Shutdown"], "{stdout}");
}

#[tokio::test]
async fn a_handler_panic_prints_one_line_unless_backtraces_are_asked_for() {
    // The poison run panics one handler in a forked process and one here.
    let (stdout, stderr) = run_supervised(&["poison"], false).await;
    assert_eq!(
        value(&stdout, "LOCAL "),
        [r#"Err(Failed(Panicked("boom")))"#],
        "{stdout}"
    );
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("handler panicked"))
        .collect();
    assert_eq!(reports.len(), 2, "one line per panic:\n{stderr}");
    for line in reports {
        // Message and place: where `Counter` panics on `Boom`.
        assert!(
            line.contains("integration-tests/src/lib.rs:") && line.contains("boom"),
            "{line}"
        );
    }
    // Nothing of the standard panic output (`thread 'main' panicked at ..`).
    let standard = |l: &str| l.starts_with("thread '") && l.contains(" panicked at ");
    assert!(
        !stderr.lines().any(standard)
            && !stderr.contains("RUST_BACKTRACE")
            && !stderr.contains("stack backtrace"),
        "{stderr}"
    );

    // Asked for: the standard output with the backtrace, as for any panic.
    let (_, stderr) = run_supervised(&["poison"], true).await;
    assert!(
        stderr.lines().any(standard) && stderr.contains("stack backtrace"),
        "{stderr}"
    );
}

#[actix_rt::test]
async fn a_remote_child_whose_node_is_killed_restarts_on_another_node() {
    let mut a = NodeProcess::start(NODE, &[]).await;
    let mut b = NodeProcess::start(NODE, &[]).await;
    let node =
        local_node_with_heartbeat(Duration::from_millis(250), Duration::from_millis(1500)).await;
    let ra = timeout(DEADLINE, node.join(&a.join_line))
        .await
        .unwrap()
        .unwrap();
    let rb = timeout(DEADLINE, node.join(&b.join_line))
        .await
        .unwrap()
        .unwrap();
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(10))
        .child(ChildSpec::remote(
            "counter",
            Counter::default,
            RemotePlacement::Any,
        ))
        .start(&node);
    let mut events = sup.events();
    let id = sup.id_of("counter").unwrap();
    let first = timeout(DEADLINE, sup.running("counter"))
        .await
        .expect("the child runs in time")
        .expect("the child runs");
    let counter = sup
        .child::<Counter>("counter")
        .unwrap()
        .with_timeout(Duration::from_secs(5))
        .with_retry(1000, Duration::from_millis(10));
    assert_eq!(
        timeout(DEADLINE, counter.ask(Add(5)))
            .await
            .unwrap()
            .unwrap(),
        5
    );

    let (victim, survivor) = if first == ra.id() {
        (&mut a, rb.id())
    } else {
        assert_eq!(first, rb.id());
        (&mut b, ra.id())
    };
    victim.kill9();
    let killed = Instant::now();
    let down = timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap()
        .event;
    assert_eq!(
        down,
        SupervisorEvent::Down {
            name: "counter".into(),
            id,
            reason: ExitReason::NoConnection
        }
    );
    assert!(
        killed.elapsed() < Duration::from_millis(2500),
        "detected after {:?}",
        killed.elapsed()
    );
    let restarted = timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap()
        .event;
    assert!(
        matches!(restarted, SupervisorEvent::Restarted { id: again, incarnation: 2, .. } if again == id),
        "{restarted:?}"
    );
    // The same reference reaches the new incarnation on the other node.
    assert_eq!(
        timeout(DEADLINE, counter.ask(Add(1)))
            .await
            .unwrap()
            .unwrap(),
        1
    );
    assert_eq!(sup.home_of("counter"), Some(Home::At(survivor)));
    assert_eq!(counter.id(), id);

    assert_eq!(
        timeout(DEADLINE, sup.shutdown()).await.unwrap(),
        ExitReason::Shutdown
    );
    let (pa, pb) = (a.pid(), b.pid());
    let _ = timeout(DEADLINE, a.child.wait()).await;
    let _ = timeout(DEADLINE, b.child.wait()).await;
    drop(a.stop_and_read_stderr().await);
    drop(b.stop_and_read_stderr().await);
    assert!(gone(pa) && gone(pb), "a node process outlived the test");
}

#[tokio::test]
async fn a_forked_child_and_a_supervised_process_child_each_have_one_owner() {
    let (stdout, _) = run_supervised(&["owners"], false).await;
    // Only the forked child is among the tree's children.
    assert_eq!(value(&stdout, "CHILDREN "), ["1", "true"], "{stdout}");
    // `close` stopped the forked child and left the supervised one alone.
    assert_eq!(value(&stdout, "CLOSED "), ["0"], "{stdout}");
    assert_eq!(value(&stdout, "FORKED-GONE "), ["true"], "{stdout}");
    assert_eq!(value(&stdout, "AFTER-CLOSE "), ["7"], "{stdout}");
    // Its supervisor's shutdown stops it.
    assert_eq!(value(&stdout, "SUPERVISED-GONE "), ["true"], "{stdout}");
}
