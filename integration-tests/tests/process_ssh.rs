//! fork through a real sshd on loopback: join/send/receive with ssh-started
//! children, `addremote` + `calibrate` + `sfork`, `.ship()`, fast failures
//! naming the host, and no orphans when the parent is killed.
//!
//! Needs OpenSSH installed (`bash .ci/run` installs it); fails otherwise.

use std::process::Stdio;

use parallel_integration_tests::sshd::{Sshd, free_port};
use parallel_integration_tests::{DEADLINE, children_die_with_their_parent};
use tokio::process::Command;

const FORKER: &str = env!("CARGO_BIN_EXE_forker");

/// Runs the forker with `args`; (success, stdout, stderr).
async fn run(args: &[String]) -> (bool, String, String) {
    let child = Command::new(FORKER)
        .args(args)
        .stdin(Stdio::null())
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

/// `scenario` then `before`, the destination, and `ssh_args`.
fn args(scenario: &str, before: &[&str], sshd: &Sshd, ssh_args: Vec<String>) -> Vec<String> {
    let mut all = vec![scenario.to_string()];
    all.extend(before.iter().map(|s| s.to_string()));
    all.push(sshd.destination.clone());
    all.extend(ssh_args);
    all
}

/// The numbers in the line of `out` that starts with `prefix`.
fn numbers(out: &str, prefix: &str) -> Vec<f64> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"));
    line.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a number"))
        .collect()
}

#[tokio::test]
async fn children_started_through_ssh_join_receive_and_send() {
    let sshd = Sshd::start();
    let (ok, out, err) = run(&args("ssh-rounds", &[], &sshd, sshd.ssh_args())).await;
    assert!(ok, "{out}\n{err}\nsshd:\n{}", sshd.log());
    assert_eq!(
        out.matches("SUMS [150.0, 150.0]").count(),
        3,
        "{out}\n{err}"
    );
    assert!(out.contains("NCHILDREN 0"), "{out}");
    // They really went through this sshd.
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
}

/// On the network test bed: children forked through an sshd that runs in
/// another host (a network namespace), which reach this process only over
/// the bed's bridge.
#[tokio::test]
async fn children_forked_through_ssh_onto_a_bed_host_join_receive_and_send() {
    let Some(bed) = parallel_integration_tests::netbed::bed_or_skip(1, "ssh onto a bed host")
    else {
        return;
    };
    let sshd = Sshd::start_in(&bed.hosts[0].ns, bed.hosts[0].addr);
    let (ok, out, err) = run(&args("ssh-rounds", &[], &sshd, sshd.ssh_args())).await;
    assert!(ok, "{out}\n{err}\nsshd:\n{}", sshd.log());
    assert_eq!(
        out.matches("SUMS [150.0, 150.0]").count(),
        3,
        "{out}\n{err}"
    );
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    drop(sshd);
    drop(bed);
}

#[tokio::test]
async fn a_supervised_process_child_placed_through_ssh_restarts_there() {
    let sshd = Sshd::start();
    let (ok, out, err) = run(&args("ssh-supervised", &[], &sshd, sshd.ssh_args())).await;
    assert!(ok, "{out}\n{err}\nsshd:\n{}", sshd.log());
    assert!(out.contains("BEFORE 1"), "{out}\n{err}");
    // A new process, and a new incarnation's state.
    assert!(
        out.contains("PID2 ") && out.contains(" true\n"),
        "{out}\n{err}"
    );
    assert!(out.contains("AFTER 1"), "{out}\n{err}");
    // The supervisor's processes are not the tree's forked children.
    assert!(out.contains("NCHILDREN 0"), "{out}\n{err}");
    // Both incarnations went through this sshd.
    assert!(
        sshd.log().matches("Accepted publickey").count() >= 2,
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn sfork_spreads_over_registered_hosts_by_cores_after_calibrate() {
    let sshd = Sshd::start();
    let dir = sshd.dir().to_string_lossy().into_owned();
    let (ok, out, err) = run(&args("ssh-spread", &[&dir], &sshd, sshd.ssh_args())).await;
    assert!(ok, "{out}\n{err}\nsshd:\n{}", sshd.log());
    assert!(out.contains("REMOTES 2 CORES 4"), "{out}");
    // calibrate started one process per host and stopped them.
    assert!(out.contains("NCHILDREN 0"), "{out}");
    for prefix in ["HOST-SPEEDS ", "SPEEDS ", "CALIBRATED "] {
        let speeds = numbers(&out, prefix);
        let expected = if prefix == "HOST-SPEEDS " { 2 } else { 4 };
        assert_eq!(speeds.len(), expected, "{prefix}: {out}");
        assert!(
            speeds.iter().all(|&s| s > 0.0 && s <= 1.0),
            "{prefix}: {speeds:?}"
        );
        assert!(speeds.contains(&1.0), "{prefix}: {speeds:?}");
    }
    // 4 over 3 + 1 cores; the second host runs the copy `.ship()` put there.
    assert!(out.contains("SPREAD main=3 copy=1"), "{out}\n{err}");
    let copy = sshd.dir().join("forker-copy");
    assert_eq!(
        std::fs::read(&copy).expect("the shipped copy"),
        std::fs::read(FORKER).expect("the forker"),
    );
}

#[tokio::test]
async fn a_missing_program_fails_fast_naming_the_host_and_the_fix() {
    let sshd = Sshd::start();
    let (ok, out, err) = run(&args(
        "ssh-fail",
        &["/nonexistent/forker"],
        &sshd,
        sshd.ssh_args(),
    ))
    .await;
    assert!(ok, "{out}\n{err}");
    let line = out.lines().find(|l| l.starts_with("ERR ")).unwrap_or("");
    assert!(line.contains(&sshd.destination), "{out}");
    assert!(line.contains("/nonexistent/forker"), "{out}");
    assert!(line.contains(".ship()"), "{out}");
    assert!(numbers(&out, "SECS ")[0] < 5.0, "{out}");
}

#[tokio::test]
async fn a_refused_connection_fails_fast_naming_the_host() {
    let sshd = Sshd::start();
    let wrong_port = free_port();
    let (ok, out, err) = run(&args(
        "ssh-fail",
        &[FORKER],
        &sshd,
        sshd.client_args(wrong_port, &sshd.key),
    ))
    .await;
    assert!(ok, "{out}\n{err}");
    let line = out.lines().find(|l| l.starts_with("ERR ")).unwrap_or("");
    assert!(line.contains(&sshd.destination), "{out}");
    assert!(line.contains("Connection refused"), "{out}");
    assert!(numbers(&out, "SECS ")[0] < 5.0, "{out}");
}

#[tokio::test]
async fn a_refused_key_fails_fast_naming_the_host() {
    let sshd = Sshd::start();
    let (ok, out, err) = run(&args(
        "ssh-fail",
        &[FORKER],
        &sshd,
        sshd.client_args(sshd.port, &sshd.stranger_key),
    ))
    .await;
    assert!(ok, "{out}\n{err}");
    let line = out.lines().find(|l| l.starts_with("ERR ")).unwrap_or("");
    assert!(line.contains(&sshd.destination), "{out}");
    assert!(line.contains("Permission denied"), "{out}");
    assert!(numbers(&out, "SECS ")[0] < 5.0, "{out}");
}

#[tokio::test]
async fn children_started_through_ssh_exit_when_the_parent_is_killed() {
    let sshd = Sshd::start();
    let parent = Command::new(FORKER)
        .args(args("ssh-orphans", &[], &sshd, sshd.ssh_args()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the forker");
    children_die_with_their_parent(parent, 2).await;
}
