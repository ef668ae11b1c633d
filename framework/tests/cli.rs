//! The `parallel` command's answers when there is nothing to talk to: each
//! says what to do next and exits non-zero. (The commands against a running
//! head and node are tested in `integration-tests/tests/cluster_pool.rs`; this
//! file also makes `cargo test --workspace` build the `parallel` binary that
//! those tests run.)

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn parallel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parallel"))
        .args(args)
        .env_remove("PARALLEL_PASSWORD")
        .env_remove("PARALLEL_PASSWORD_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("the parallel binary runs")
}

fn empty_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parallel-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_every_command() {
    let out = parallel(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["head", "node", "status", "stop"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from:\n{text}"
        );
    }
}

#[test]
fn status_without_a_head_says_how_to_name_one() {
    let dir = empty_dir("status");
    let out = parallel(&["status", "--data", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no head join line"), "{err}");
    assert!(err.contains("pass --join LINE"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stopping_a_node_that_does_not_run_is_an_error_naming_the_directory() {
    let dir = empty_dir("stop");
    let out = parallel(&["stop", "--node", "--data", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no node agent runs"), "{err}");
    assert!(err.contains(dir.to_str().unwrap()), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_needs_a_well_formed_join_line() {
    let missing = parallel(&["node"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("--join"), "{}", stderr(&missing));
    let garbage = parallel(&["node", "--join", "garbage"]);
    assert_eq!(garbage.status.code(), Some(2));
    let err = stderr(&garbage);
    assert!(err.contains("expected quic://<ip>:<port>#sha256="), "{err}");
}
