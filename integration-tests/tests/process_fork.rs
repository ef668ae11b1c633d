//! fork / exec / join / send / receive / sync across real processes.

use std::process::Stdio;
use std::time::Duration;

use parallel_integration_tests::DEADLINE;
use tokio::process::Command;

const FORKER: &str = env!("CARGO_BIN_EXE_forker");

async fn run(args: &[&str]) -> (bool, String, String) {
    let child = Command::new(FORKER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the forker");
    let out = tokio::time::timeout(DEADLINE * 3, child.wait_with_output())
        .await
        .expect("the forker finished in time")
        .expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
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

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes: it runs no code.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.split_whitespace()
                .nth(2)
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn children_exit_by_themselves_when_the_parent_is_killed() {
    let mut parent = Command::new(FORKER)
        .arg("orphans")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the forker");
    let stdout = parent.stdout.take().expect("piped");
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("PIDS in time")
        .expect("read")
        .expect("a line");
    let pids: Vec<u32> = line
        .strip_prefix("PIDS ")
        .expect("PIDS line")
        .split(' ')
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| alive(p)));
    // SAFETY: kill(2) on the pid of a process this test started.
    unsafe { libc::kill(parent.id().expect("pid") as i32, libc::SIGKILL) };
    let _ = tokio::time::timeout(DEADLINE, parent.wait()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "children {left:?} outlived their parent by 3 s"
    );
}
