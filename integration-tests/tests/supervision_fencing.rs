//! Fencing across processes: a node stopped (SIGSTOP) for longer than the
//! heartbeat timeout is declared dead — watches get `Down(NoConnection)`,
//! pending asks fail — and when it resumes (SIGCONT) nothing it sends as the
//! old incarnation reaches the asker: no late reply, and its attempt to
//! rejoin as the same incarnation is refused. And the other side of the
//! rule: when *both* nodes stop for as long (a paused machine), neither
//! declares the other dead, and their connection carries on.

use std::process::Stdio;
use std::time::{Duration, Instant};

use parallel::actor::ExitReason;
use parallel_integration_tests::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");

/// How long the issue stops the node. The test stops it for [`STOP_FOR`]
/// instead, which is already several heartbeat timeouts, to keep CI short.
const ISSUE_STOP_FOR: Duration = Duration::from_secs(10);
/// How long this test keeps the node stopped.
const STOP_FOR: Duration = Duration::from_millis(2500);
/// Tight heartbeats on both sides: 100 ms interval, 600 ms timeout.
const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(600);
// The shorter stop still spans several heartbeat timeouts.
const _: () = assert!(
    STOP_FOR.as_millis() >= 4 * TIMEOUT.as_millis()
        && STOP_FOR.as_millis() <= ISSUE_STOP_FOR.as_millis()
);

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain syscall on the pid of a child we started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[actix_rt::test]
async fn a_stopped_node_is_fenced_and_its_old_incarnation_cannot_come_back() {
    let mut child = Command::new(NODE)
        .args(["--heartbeat-ms", "100,600", "--rejoin"])
        .env("PARALLEL_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the test node binary");
    let pid = child.id().expect("a pid");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let ready = timeout(DEADLINE, stdout.next_line())
        .await
        .expect("READY in time")
        .expect("read stdout")
        .expect("a line");
    let line: parallel::JoinLine = ready
        .strip_prefix("READY ")
        .expect("READY <join line>")
        .parse()
        .expect("a join line");

    let node = parallel::Node::builder()
        .password(parallel::Password::new(PASSWORD.into()))
        .heartbeat(INTERVAL, TIMEOUT)
        .start()
        .await
        .expect("start the local node");
    let remote = timeout(DEADLINE, node.join(&line))
        .await
        .expect("join in time")
        .expect("join");
    let counter = counter_on(&remote).await;
    let sink = timeout(DEADLINE, remote.spawn(SlowSink::default()))
        .await
        .expect("spawn in time")
        .expect("spawn a SlowSink");
    let watching = counter.watch();
    // An ask whose reply the node would send while it is counted as dead.
    let late = {
        let sink = sink.clone();
        actix_rt::spawn(async move { timeout(DEADLINE, sink.ask(Sleep(1500))).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    signal(pid, libc::SIGSTOP);
    let stopped = Instant::now();
    let down = timeout(DEADLINE, watching).await.expect("a Down in time");
    let detected = stopped.elapsed();
    assert_eq!(down.reason, ExitReason::NoConnection);
    assert!(
        detected < TIMEOUT + Duration::from_millis(900),
        "detected after {detected:?}"
    );
    let pending = timeout(DEADLINE, late)
        .await
        .expect("the pending ask ended in time")
        .expect("ask task")
        .expect("the pending ask did not hang");
    assert!(pending.is_err(), "a pending ask got an answer: {pending:?}");
    assert!(!remote.is_alive());

    tokio::time::sleep(STOP_FOR.saturating_sub(stopped.elapsed())).await;
    signal(pid, libc::SIGCONT);
    // Give the resumed node time to send whatever it had pending (the
    // sleeping ask's reply among it).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A fresh ask does not get an old answer: the old incarnation is fenced.
    let fresh = timeout(DEADLINE, sink.ask(Sleep(1)))
        .await
        .expect("the fresh ask ended in time");
    let err = fresh.expect_err("the fenced incarnation must not answer");
    // Whichever way it fails (the link is gone, or the dial is fenced), it
    // says why instead of answering.
    assert!(!err.to_string().is_empty());
    let fresh = timeout(DEADLINE, counter.ask(Get))
        .await
        .expect("the fresh ask ended in time");
    assert!(fresh.is_err(), "the fenced incarnation answered: {fresh:?}");

    // The resumed process tries to rejoin as its old incarnation: refused.
    stdin
        .write_all(format!("{}\n", node.join_line()).as_bytes())
        .await
        .expect("write to the node's stdin");
    stdin.flush().await.expect("flush");
    let answer = timeout(DEADLINE, stdout.next_line())
        .await
        .expect("a rejoin result in time")
        .expect("read stdout")
        .expect("a line");
    assert!(answer.starts_with("REJOIN-FAILED"), "{answer}");
    assert!(
        answer.contains("fenced") && answer.contains("restart"),
        "{answer}"
    );
    assert!(node.remotes().iter().all(|r| !r.is_alive()));

    drop(stdin);
    let _ = child.start_kill();
    let _ = timeout(DEADLINE, child.wait()).await;
    timeout(DEADLINE, node.shutdown()).await.expect("shutdown");
}

/// A paused machine stops every process on it at once: the child is
/// stopped (SIGSTOP) and this process's own thread (which runs the local
/// node, its transport and QUIC) is blocked for the same span, several
/// heartbeat timeouts (and twice QUIC's idle time, when it had one). Each
/// node sees that it did not run and gives the other another timeout, so
/// both carry on: the same actors answer over the same connection.
#[actix_rt::test]
async fn nodes_paused_together_keep_their_connection() {
    let server = NodeProcess::start(NODE, &["--heartbeat-ms", "100,600"]).await;
    let node = local_node_with_heartbeat(INTERVAL, TIMEOUT).await;
    let remote = join(&node, &server).await;
    let counter = counter_on(&remote).await;
    let watching = counter.watch();

    signal(server.pid(), libc::SIGSTOP);
    // Blocks this thread: the local node does not run either.
    std::thread::sleep(STOP_FOR);
    signal(server.pid(), libc::SIGCONT);

    for expected in 1..=3u64 {
        timeout(DEADLINE, counter.ask(Add(1)))
            .await
            .expect("the ask ended in time")
            .expect("the connection survived the pause");
        let got = timeout(DEADLINE, counter.ask(Get))
            .await
            .expect("the ask ended in time")
            .expect("the connection survived the pause");
        assert_eq!(got, expected);
    }
    // Past another timeout and a half, nobody was judged dead.
    tokio::time::sleep(TIMEOUT * 5 / 2).await;
    assert!(remote.is_alive(), "the remote node was declared dead");
    let still = timeout(Duration::from_millis(1), watching).await;
    assert!(still.is_err(), "the watch fired: {still:?}");
    assert_eq!(
        timeout(DEADLINE, counter.ask(Get))
            .await
            .expect("in time")
            .expect("ask"),
        3
    );
    timeout(DEADLINE, node.shutdown()).await.expect("shutdown");
    let log = server.stop_and_read_stderr().await;
    assert!(!log.contains("declaring the peer dead"), "{log}");
}
