//! s4 on real processes over QUIC on loopback: a head, node agents and
//! pool owners, each a process of the `cluster` test program; the workers
//! are that program too, shipped to the nodes through the head.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use parallel_integration_tests::PASSWORD;
use parallel_integration_tests::netbed::NetBed;
use parallel_integration_tests::printed::{Printed, STEP};
use tokio::process::Command;

const CLUSTER: &str = env!("CARGO_BIN_EXE_cluster");

/// A process of the test program.
type Proc = Printed;

/// Starts the test program with `args`.
fn cluster(args: &[&str]) -> Proc {
    Printed::start(Command::new(CLUSTER), args)
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "parallel-cluster-{what}-{}-{}",
        std::process::id(),
        parallel::NodeId::new()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

async fn head(data: &std::path::Path, port: u16, extra: &[&str]) -> (Proc, String) {
    let port = port.to_string();
    let mut args = vec!["head", data.to_str().unwrap(), port.as_str()];
    args.extend(extra);
    let mut p = cluster(&args);
    let line = p.wait_for("READY ").await;
    let line = line.trim_start_matches("READY ").to_owned();
    (p, line)
}

async fn node(line: &str, data: &std::path::Path, workers: u32) -> Proc {
    let workers = workers.to_string();
    let mut p = cluster(&["node", line, data.to_str().unwrap(), &workers]);
    p.wait_for("READY").await;
    p
}

/// Stops the test's processes in order and removes its directory.
async fn stop_all<const N: usize>(procs: [Proc; N], dir: &std::path::Path) {
    for p in procs {
        p.stop().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The parent process of `pid` (while it runs).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command in parentheses: state, then the parent's pid.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn field(line: &str, name: &str) -> u64 {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
        }
    }
    panic!("no {name} in {line:?}")
}

#[tokio::test]
async fn a_pool_maps_in_order_and_counts_its_nodes_and_workers() {
    let dir = temp_dir("map");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let b = node(&line, &dir.join("b"), 1).await;
    let mut p = cluster(&["pool", &line, "map", "300", "0"]);
    let results = p.wait_for("RESULTS").await;
    assert_eq!(field(&results, "RESULTS"), 300, "{results}");
    assert_eq!(field(&results, "WRONG"), 0, "{results}");
    assert!(p.exit_ok().await, "{:?}", p.seen);
    let mut c = cluster(&["pool", &line, "counts", "3"]);
    let counts = c.wait_for("NODES").await;
    assert_eq!(field(&counts, "NODES"), 2, "{counts}");
    assert_eq!(field(&counts, "WORKERS"), 3, "{counts}");
    assert!(c.exit_ok().await);
    stop_all([a, b, h], &dir).await;
}

#[tokio::test]
async fn a_node_killed_mid_map_loses_and_doubles_nothing_and_a_new_node_takes_jobs() {
    let dir = temp_dir("kill");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let mut b = node(&line, &dir.join("b"), 2).await;
    let mut p = cluster(&["pool", &line, "unordered", "2000", "5"]);
    p.wait_for("PROGRESS 500").await;
    b.kill();
    // A node that joins mid-map gets jobs too.
    p.wait_for("PROGRESS 600").await;
    let c = node(&line, &dir.join("c"), 2).await;
    let c_pid = c.child.id().expect("node c runs");
    let pids = p.wait_for("PIDLIST").await;
    let results = p.wait_for("RESULTS").await;
    assert_eq!(field(&results, "RESULTS"), 2000, "{results}");
    assert_eq!(field(&results, "LOST"), 0, "{results}");
    assert_eq!(field(&results, "DUP"), 0, "{results}");
    let from_c = pids
        .trim_start_matches("PIDLIST ")
        .split(',')
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(c_pid))
        .count();
    assert!(
        from_c > 0,
        "a worker of the node that joined mid-map answered: {pids}"
    );
    assert!(p.exit_ok().await, "{:?}", p.seen);
    stop_all([a, c, h], &dir).await;
}

/// On the network test bed: four hosts with a node agent each, the head
/// and the pool outside them. One host is cut off mid-map: its jobs run
/// again elsewhere, every result arrives exactly once; once the network
/// heals, the head still refuses that agent's old incarnation, and the
/// agent joins again as a new node by itself.
#[tokio::test]
async fn a_host_cut_off_mid_map_is_fenced_and_rejoins_by_itself_as_a_new_node_without_doubles() {
    let Some(mut bed) = parallel_integration_tests::netbed::bed_or_skip(4, "cluster on the bed")
    else {
        return;
    };
    let dir = temp_dir("bed");
    let bind = format!("bind={}", bed.gateway);
    let (h, line) = head(&dir.join("head"), 0, &[&bind]).await;
    let on_bed = |bed: &NetBed, i: usize, data: &str| {
        let data = dir.join(data);
        let cmd = bed.command(i, CLUSTER);
        Printed::start(cmd, &["node", &line, data.to_str().unwrap(), "1"])
    };
    let mut agents = Vec::new();
    for i in 0..4 {
        let mut a = on_bed(&bed, i, &format!("n{i}"));
        a.wait_for("READY").await;
        agents.push(a);
    }
    let mut p = cluster(&["pool", &line, "unordered", "6000", "5"]);
    p.wait_for("PROGRESS 500").await;
    bed.isolate(1).expect("cut host 1 off");
    // Longer than the heartbeat timeout: the head declares it dead.
    p.wait_for("PROGRESS 1500").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    bed.heal().expect("heal");
    // Refused as the incarnation the head declared dead, the agent starts
    // again as a new node and joins.
    agents[1].wait_for("REJOINING").await;
    agents[1].wait_for("READY").await;
    let results = p.wait_for("RESULTS").await;
    assert_eq!(field(&results, "RESULTS"), 6000, "{results}");
    assert_eq!(field(&results, "LOST"), 0, "{results}");
    assert_eq!(field(&results, "DUP"), 0, "{results}");
    assert!(p.exit_ok().await, "{:?}", p.seen);
    let mut c = cluster(&["pool", &line, "counts", "4"]);
    let counts = c.wait_for("NODES").await;
    assert_eq!(
        field(&counts, "NODES"),
        4,
        "the new incarnation counts once: {counts}"
    );
    assert!(c.exit_ok().await);
    let [a0, a1, a2, a3] = <[Proc; 4]>::try_from(agents).ok().expect("four agents");
    stop_all([a0, a1, a2, a3, h], &dir).await;
    drop(bed);
}

#[tokio::test]
async fn a_head_killed_mid_map_and_started_again_loses_nothing() {
    let dir = temp_dir("head");
    let port = free_port();
    let (mut h, line) = head(&dir.join("head"), port, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let mut p = cluster(&["pool", &line, "unordered", "1000", "3"]);
    p.wait_for("PROGRESS 300").await;
    h.kill();
    let _ = h.child.wait().await;
    let (h2, line2) = head(&dir.join("head"), port, &[]).await;
    assert_eq!(line, line2, "a head started again keeps its join line");
    let results = p.wait_for("RESULTS").await;
    assert_eq!(field(&results, "RESULTS"), 1000, "{results}");
    assert_eq!(field(&results, "LOST"), 0, "{results}");
    assert_eq!(field(&results, "DUP"), 0, "{results}");
    assert!(p.exit_ok().await, "{:?}", p.seen);
    stop_all([a, h2], &dir).await;
}

#[tokio::test]
async fn a_node_that_joins_late_gets_every_earlier_update_in_order() {
    let dir = temp_dir("updates");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 1).await;
    let mut p = cluster(&["pool", &line, "updates", "60", "50"]);
    p.wait_for("UPDATED").await;
    let b = node(&line, &dir.join("b"), 2).await;
    let results = p.wait_for("RESULTS").await;
    assert_eq!(field(&results, "RESULTS"), 60, "{results}");
    assert_eq!(field(&results, "BAD"), 0, "{results}\n{:?}", p.seen);
    assert!(
        field(&results, "PIDS") >= 2,
        "the late node worked too: {results}"
    );
    assert!(p.exit_ok().await);
    stop_all([a, b, h], &dir).await;
}

#[tokio::test]
async fn a_panicking_job_fails_alone_and_an_oversized_job_is_refused() {
    let dir = temp_dir("panic");
    let (h, line) = head(&dir.join("head"), 0, &["limit=100000"]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let mut p = cluster(&["pool", &line, "panic"]);
    let panicked = p.wait_for("PANICKED").await;
    assert!(panicked.contains("job 7 was asked to panic"), "{panicked}");
    let ok = p.wait_for("OK").await;
    assert_eq!(field(&ok, "OK"), 19, "{ok}");
    assert!(p.exit_ok().await);
    let mut o = cluster(&["pool", &line, "oversized", "200000"]);
    let refused = o.wait_for("REFUSED").await;
    assert!(
        refused.contains("100000 bytes"),
        "the error names the limit: {refused}"
    );
    assert!(o.exit_ok().await);
    stop_all([a, h], &dir).await;
}

#[tokio::test]
async fn a_second_node_on_one_data_dir_exits_zero_and_a_wrong_password_is_refused() {
    let dir = temp_dir("second");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 1).await;
    let mut second = cluster(&["node", &line, dir.join("a").to_str().unwrap(), "1"]);
    second.wait_for("ALREADY RUNNING").await;
    assert!(second.exit_ok().await);
    let mut wrong = Command::new(CLUSTER)
        .args(["pool", &line, "map", "1", "0"])
        .env("PARALLEL_PASSWORD", "not the password")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let status = tokio::time::timeout(STEP, wrong.wait())
        .await
        .expect("exit in time")
        .expect("status");
    assert!(!status.success(), "a pool with a wrong password must fail");
    stop_all([a, h], &dir).await;
}

#[tokio::test]
async fn two_pools_from_two_programs_run_at_once_and_keep_their_results_apart() {
    let dir = temp_dir("two");
    // Programs go over the network, as to another machine.
    let (h, line) = head(&dir.join("head"), 0, &["network"]).await;
    let a = node(&line, &dir.join("a"), 1).await;
    let b = node(&line, &dir.join("b"), 1).await;
    let mut first = cluster(&["pool", &line, "map", "300", "1"]);
    let mut second = cluster(&["pool", &line, "map", "200", "1"]);
    let one = first.wait_for("RESULTS").await;
    let two = second.wait_for("RESULTS").await;
    assert_eq!(field(&one, "RESULTS"), 300, "{one}");
    assert_eq!(field(&one, "WRONG"), 0, "{one}");
    assert_eq!(field(&two, "RESULTS"), 200, "{two}");
    assert_eq!(field(&two, "WRONG"), 0, "{two}");
    assert!(first.exit_ok().await && second.exit_ok().await);
    stop_all([a, b, h], &dir).await;
}

/// The `parallel` command, built beside the test programs by
/// `cargo test --workspace` (or `cargo build -p parallel --bin parallel`).
fn parallel_command() -> PathBuf {
    let exe = PathBuf::from(CLUSTER).with_file_name("parallel");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build -p parallel --bin parallel` (`cargo test --workspace` builds it, for framework/tests/cli.rs)",
        exe.display()
    );
    exe
}

#[tokio::test]
async fn parallel_status_shows_the_nodes_and_parallel_stop_stops_the_head() {
    let dir = temp_dir("status");
    let data = dir.join("head");
    let (mut h, line) = head(&data, 0, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let run = |args: &[&str]| {
        Command::new(parallel_command())
            .args(args)
            .env("PARALLEL_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
    };
    let status = tokio::time::timeout(STEP, run(&["status", "--data", data.to_str().unwrap()]))
        .await
        .expect("status in time")
        .expect("status runs");
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(out.contains(&format!("head {line}")), "{out}");
    let host = out
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        host.split_whitespace().nth(1) == Some("2"),
        "one node with 2 workers: {out}"
    );
    assert!(out.contains("(no pools)"), "{out}");
    let json = tokio::time::timeout(STEP, run(&["status", "--json", "--join", &line]))
        .await
        .expect("status --json in time")
        .expect("status --json runs");
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(
        json.trim()
            .starts_with(&format!("{{\"join_line\":\"{line}\",\"nodes\":[{{")),
        "{json}"
    );
    assert!(json.contains("\"workers\":2,"), "{json}");
    assert!(
        json.contains("\"pools\":[],\"gpus\":[],\"totals\":{\"submitted\":0,"),
        "{json}"
    );
    assert!(json.contains("\"up\":true,\"cpu_percent\":"), "{json}");
    let stop = tokio::time::timeout(STEP, run(&["stop", "--head", "--join", &line]))
        .await
        .expect("stop in time")
        .expect("stop runs");
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(h.exit_ok().await, "the head exits once asked to stop");
    a.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_head_that_allows_only_other_programs_refuses_this_one_by_its_hash() {
    let dir = temp_dir("allow");
    let other = format!("allow={}", "ab".repeat(32));
    let (h, line) = head(&dir.join("head"), 0, &[&other]).await;
    let refused = Command::new(CLUSTER)
        .args(["pool", &line, "map", "1", "0"])
        .env("PARALLEL_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(STEP, refused)
        .await
        .expect("exit in time")
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--allow-binary"),
        "the error says how to allow it: {err}"
    );
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_tampered_cached_program_is_refused_and_fetched_again() {
    let dir = temp_dir("tamper");
    // Programs go over the network, as to another machine.
    let (h, line) = head(&dir.join("head"), 0, &["network"]).await;
    let a = node(&line, &dir.join("a"), 1).await;
    let mut first = cluster(&["pool", &line, "map", "5", "0"]);
    assert_eq!(field(&first.wait_for("RESULTS").await, "WRONG"), 0);
    assert!(first.exit_ok().await);
    // Change one byte of the node's cached copy of the program.
    let programs = dir.join("a").join("programs");
    let cached = std::fs::read_dir(&programs)
        .expect("the node caches programs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("the cached program");
    let mut bytes = std::fs::read(&cached).expect("read the cached copy");
    bytes[4096] ^= 0xff;
    // (Written beside and renamed over: a worker may still run the file.)
    let beside = cached.with_extension("tampered");
    std::fs::write(&beside, &bytes).expect("tamper with it");
    std::fs::rename(&beside, &cached).expect("put the tampered copy in place");
    let mut second = cluster(&["pool", &line, "map", "5", "0"]);
    let results = second.wait_for("RESULTS").await;
    assert_eq!(field(&results, "RESULTS"), 5, "{results}");
    assert!(second.exit_ok().await);
    let original = std::fs::read(CLUSTER).expect("the test program");
    let now = std::fs::read(&cached).expect("the cache again");
    assert!(
        now == original,
        "the tampered copy was replaced by a verified one"
    );
    stop_all([a, h], &dir).await;
}

#[tokio::test]
async fn parallel_stop_node_stops_the_node_agent_of_a_data_dir() {
    let dir = temp_dir("stopnode");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let node_dir = dir.join("a");
    let mut a = node(&line, &node_dir, 1).await;
    let stop = Command::new(parallel_command())
        .args(["stop", "--node", "--data", node_dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(STEP, stop)
        .await
        .expect("stop in time")
        .expect("stop runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exited = tokio::time::timeout(STEP, a.child.wait())
        .await
        .expect("the node agent exits once stopped");
    assert!(exited.is_ok());
    let again = Command::new(parallel_command())
        .args(["stop", "--node", "--data", node_dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(STEP, again)
        .await
        .expect("in time")
        .expect("runs");
    assert!(!out.status.success(), "no node runs there any more");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no node agent runs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_scatters_gathers_applies_and_checks_types_on_its_engines() {
    let dir = temp_dir("client");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 4).await;
    let mut c = cluster(&["client", &line, "4"]);
    assert!(c.wait_for("IDS").await.contains("[0, 1, 2, 3]"));
    let one = c.wait_for("SCATTER 1").await;
    assert!(one.contains("SIZES [16] IN_ORDER true"), "{one}");
    let three = c.wait_for("SCATTER 3").await;
    assert!(three.contains("SIZES [6, 5, 5] IN_ORDER true"), "{three}");
    let four = c.wait_for("SCATTER 4").await;
    assert!(four.contains("SIZES [4, 4, 4, 4] IN_ORDER true"), "{four}");
    let picks = c.wait_for("LAST").await;
    assert!(picks.contains("LAST [3] STEPPED [0, 2]"), "{picks}");
    assert_eq!(c.wait_for("SAME_VIEW").await, "SAME_VIEW true true false");
    assert_eq!(c.wait_for("ORDER").await, "ORDER ok");
    assert_eq!(c.wait_for("SQUARES").await, "SQUARES [81, 81, 81, 81]");
    assert_eq!(c.wait_for("ASYNC").await, "ASYNC true 9");
    assert_eq!(c.wait_for("RECEIVED").await, "RECEIVED [121, 121] 121");
    let wrong = c.wait_for("WRONGTYPE").await;
    assert!(
        wrong.contains("u64") && wrong.contains("String"),
        "names both types: {wrong}"
    );
    c.wait_for("CLEARED").await;
    let nosuch = c.wait_for("NOSUCH").await;
    assert!(nosuch.contains("[0, 1, 2, 3]"), "{nosuch}");
    assert_eq!(c.wait_for("DIRECT_PANIC").await, "DIRECT_PANIC true");
    let lb = c.wait_for("LB ").await;
    assert!(lb.starts_with("LB 199 RIGHT"), "{lb}");
    assert!(
        lb.contains("13 is unlucky"),
        "a panic comes back as the task's error: {lb}"
    );
    assert!(
        lb.contains("on engine ") && lb.contains("src/bin/cluster/views.rs:"),
        "it names the engine and the place: {lb}"
    );
    assert!(lb.ends_with("STRUCTURED true true true"), "{lb}");
    assert_eq!(c.wait_for("LB ONE").await, "LB ONE 144");
    assert_eq!(
        c.wait_for("LB ASYNC").await,
        "LB ASYNC 36 [0, 1, 4, 9, 16] ids (1, 5)"
    );
    assert_eq!(
        c.wait_for("QUEUE").await,
        "QUEUE 4 engines, 207 completed, 0 queued, 0 unassigned"
    );
    assert_eq!(c.wait_for("IMAP").await, "IMAP [9, 16, 25, 36] 0");
    assert_eq!(c.wait_for("TRACKED").await, "TRACKED true true true");
    assert_eq!(c.wait_for("BIG").await, "BIG true true");
    assert_eq!(
        c.wait_for("CHUNKS").await,
        "CHUNKS 5 tasks 30 results 29 right true [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
    );
    assert_eq!(c.wait_for("DICT").await, "DICT [7, 7, 7, 7] [2, 2, 2, 2]");
    assert_eq!(
        c.wait_for("DMAP").await,
        "DMAP [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
    );
    assert_eq!(
        c.wait_for("DMAP_ASYNC").await,
        "DMAP_ASYNC true 4 [0, 1, 4, 9, 16]"
    );
    let dimap = c.wait_for("DIMAP").await;
    assert!(
        dimap.starts_with(r#"DIMAP ["9", "16", "#) && dimap.ends_with(r#", "25", "36", "49"] 0"#),
        "{dimap}"
    );
    assert!(dimap.contains("13 is unlucky"), "{dimap}");
    assert_eq!(c.wait_for("REMOTEFN").await, "REMOTEFN [16, 16, 16, 16]");
    assert_eq!(
        c.wait_for("PARALLELFN").await,
        "PARALLELFN [1, 4, 9, 16, 25] [25, 25, 25, 25]"
    );
    let retired = c.wait_for("RETIRED").await;
    assert_eq!(retired, "RETIRED [3] true [0, 1, 2]", "{:?}", c.seen);
    assert!(c.exit_ok().await, "{:?}", c.seen);
    stop_all([a, h], &dir).await;
}

#[tokio::test]
async fn an_engine_killed_during_a_load_balanced_map_loses_no_task() {
    let dir = temp_dir("lbkill");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 3).await;
    let mut c = cluster(&["lbkill", &line]);
    let victim: i32 = c
        .wait_for("VICTIM")
        .await
        .trim_start_matches("VICTIM ")
        .parse()
        .expect("a pid");
    c.wait_for("MAPPING").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: SIGKILL to an engine process of this test's cluster.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let right = c.wait_for("LBKILL").await;
    assert_eq!(right, "LBKILL 300 RIGHT");
    let dead = c.wait_for("DEADAPPLY").await;
    assert!(dead.starts_with("DEADAPPLY died"), "{dead}");
    assert!(c.exit_ok().await, "{:?}", c.seen);
    stop_all([a, h], &dir).await;
}

#[tokio::test]
async fn aborted_load_balanced_tasks_that_had_not_started_fail_as_aborted() {
    let dir = temp_dir("lbabort");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let mut c = cluster(&["lbabort", &line]);
    let aborted = field(&c.wait_for("ABORTED").await, "ABORTED");
    // 2 engines hold a few tasks each; the rest wait at the head.
    assert!((150..=200).contains(&aborted), "aborted {aborted}");
    assert_eq!(c.wait_for("WAITED").await, "WAITED false true");
    let done = c.wait_for("LBABORT").await;
    assert_eq!(
        done,
        format!(
            "LBABORT {} right {aborted} aborted 0 outstanding",
            200 - aborted
        )
    );
    assert_eq!(c.wait_for("AGAIN").await, "AGAIN 0");
    assert!(c.exit_ok().await, "{:?}", c.seen);
    stop_all([a, h], &dir).await;
}

/// The pids in a `WORD [a, b, ...]` line (after `skip` leading numbers).
fn pids(line: &str, skip: usize) -> Vec<u32> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .skip(skip)
        .map(|w| w.parse().expect("a pid"))
        .collect()
}

#[tokio::test]
async fn lru_rotates_over_the_engines_and_leastload_avoids_the_busy_one() {
    for scheduler in ["scheduler=lru", "scheduler=leastload"] {
        let dir = temp_dir("sched");
        let (h, line) = head(&dir.join("head"), 0, &[scheduler]).await;
        let a = node(&line, &dir.join("a"), 3).await;
        let mut c = cluster(&["sched", &line]);
        let rotate = pids(&c.wait_for("ROTATE").await, 0);
        let avoid = c.wait_for("AVOID").await;
        let (busy, short) = (pids(&avoid, 0)[0], pids(&avoid, 1));
        assert!(c.exit_ok().await, "{:?}", c.seen);
        if scheduler.ends_with("lru") {
            // One after another: each engine in turn.
            let distinct: std::collections::HashSet<_> = rotate.iter().collect();
            assert_eq!(distinct.len(), 3, "{rotate:?}");
            assert_eq!(rotate[..3], rotate[3..], "{rotate:?}");
        } else {
            // The idle engine that joined first takes them all; none goes to
            // the engine that is busy with the long task.
            assert!(rotate.iter().all(|p| *p == rotate[0]), "{rotate:?}");
            assert!(!short.contains(&busy), "busy {busy}, short on {short:?}");
        }
        stop_all([a, h], &dir).await;
    }
}

#[tokio::test]
async fn a_head_restarted_during_a_load_balanced_map_loses_no_task() {
    let dir = temp_dir("lbhead");
    let port = free_port();
    let (mut h, line) = head(&dir.join("head"), port, &[]).await;
    let a = node(&line, &dir.join("a"), 3).await;
    let mut c = cluster(&["lbhead", &line]);
    c.wait_for("MAPPING").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.kill();
    let _ = h.child.wait().await;
    let (h2, _) = head(&dir.join("head"), port, &[]).await;
    assert_eq!(c.wait_for("LBHEAD").await, "LBHEAD 600 RIGHT");
    assert_eq!(c.wait_for("SAME_NUMBERS").await, "SAME_NUMBERS true");
    assert_eq!(
        c.wait_for("FOLLOW_AFTER_RESTART").await,
        "FOLLOW_AFTER_RESTART true"
    );
    assert!(c.exit_ok().await, "{:?}", c.seen);
    stop_all([a, h2], &dir).await;
}

#[tokio::test]
async fn engines_that_join_a_restarted_head_never_take_an_old_number() {
    let dir = temp_dir("renumber");
    let port = free_port();
    let (mut h, line) = head(&dir.join("head"), port, &[]).await;
    let mut a = node(&line, &dir.join("a"), 2).await;
    let mut c = cluster(&["renumber", &line]);
    assert_eq!(c.wait_for("FIRST").await, "FIRST [0, 1]");
    // While the head is down, engines 0 and 1 go (their node is killed);
    // the engines of a new node must not be 0 and 1 again.
    h.kill();
    let _ = h.child.wait().await;
    a.kill();
    let _ = a.child.wait().await;
    let (h2, _) = head(&dir.join("head"), port, &[]).await;
    let b = node(&line, &dir.join("b"), 2).await;
    assert_eq!(c.wait_for("AFTER").await, "AFTER [2, 3]");
    assert!(c.exit_ok().await, "{:?}", c.seen);
    stop_all([b, h2], &dir).await;
}

#[tokio::test]
async fn a_second_client_gets_results_by_id_after_a_head_kill_purges_them_and_shuts_all_down() {
    let dir = temp_dir("hub");
    let port = free_port();
    let (mut h, line) = head(&dir.join("head"), port, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let mut owner = cluster(&["hubowner", &line]);
    assert_eq!(owner.wait_for("OWNER").await, "OWNER 6 RIGHT");
    let set = owner
        .wait_for("SET ")
        .await
        .trim_start_matches("SET ")
        .to_owned();
    h.kill();
    let _ = h.child.wait().await;
    let (h2, _) = head(&dir.join("head"), port, &[]).await;
    // The owner does nothing meanwhile, yet joins the new head by itself
    // (else the head would drop its engine set after a grace period).
    let owner_back = async {
        loop {
            let status = Command::new(parallel_command())
                .args(["status", "--data", dir.join("head").to_str().unwrap()])
                .env("PARALLEL_PASSWORD", PASSWORD)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .expect("status runs");
            let out = String::from_utf8_lossy(&status.stdout).into_owned();
            if out
                .lines()
                .any(|l| l.starts_with(&set) && l.ends_with(" yes"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(STEP, owner_back)
        .await
        .expect("the idle owner joined the restarted head");
    let mut reader = cluster(&["hubreader", &line, &set]);
    assert_eq!(
        reader.wait_for("STATUS").await,
        "STATUS completed [0, 1, 2, 3, 4, 5] pending [] unknown [99]"
    );
    assert_eq!(reader.wait_for("RESULTS").await, "RESULTS 6 RIGHT");
    assert_eq!(reader.wait_for("SUBMIT").await, "SUBMIT NOT_OWNER true");
    assert_eq!(reader.wait_for("PURGED ").await, "PURGED [0, 1]");
    assert_eq!(
        reader.wait_for("AFTER").await,
        "AFTER completed [2] unknown [0, 1]"
    );
    assert_eq!(reader.wait_for("GONE").await, "GONE true");
    assert_eq!(
        reader.wait_for("PURGED_ALL").await,
        "PURGED_ALL [2, 3, 4, 5]"
    );
    // The words before the numbers are not digits: skip none.
    let pids = pids(&reader.wait_for("PIDS ").await, 0);
    assert_eq!(pids.len(), 2, "{:?}", reader.seen);
    reader.wait_for("SHUTDOWN").await;
    assert!(reader.exit_ok().await, "{:?}", reader.seen);
    // The engines stop, and so does the head.
    let mut h2 = h2;
    assert!(h2.exit_ok().await, "the head stops on shutdown(hub)");
    let gone = async {
        while pids
            .iter()
            .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(STEP, gone)
        .await
        .expect("the engines stopped");
    stop_all([owner, a, h2], &dir).await;
}

#[tokio::test]
async fn load_balanced_tasks_carry_metadata_and_wait_for_or_give_up_on_their_dependencies() {
    let dir = temp_dir("deps");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let mut c = cluster(&["deps", &line]);
    assert_eq!(
        c.wait_for("META").await,
        "META true true true \"doubling 21\\n\""
    );
    assert_eq!(c.wait_for("DIRECT_META").await, "DIRECT_META true");
    assert_eq!(c.wait_for("AFTER").await, "AFTER true");
    assert_eq!(c.wait_for("FOLLOW").await, "FOLLOW true true");
    assert_eq!(c.wait_for("IMPOSSIBLE").await, "IMPOSSIBLE true true true");
    assert_eq!(c.wait_for("TIMEOUT").await, "TIMEOUT true true");
    let kill = c.wait_for("KILL ").await;
    let pid: i32 = kill.trim_start_matches("KILL ").parse().expect("a pid");
    assert!(pid > 0, "{kill}");
    // SAFETY: SIGKILL to an engine of the node agent this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(c.wait_for("NO_RETRY").await, "NO_RETRY true");
    assert_eq!(c.wait_for("TARGETS").await, "TARGETS true");
    assert_eq!(c.wait_for("GONE_TARGET").await, "GONE_TARGET true");
    assert!(c.exit_ok().await, "{:?}", c.seen);
    stop_all([a, h], &dir).await;
}

#[tokio::test]
async fn tasks_that_require_a_resource_or_depend_on_a_predicate_run_only_where_it_holds() {
    let dir = temp_dir("require");
    let (h, line) = head(&dir.join("head"), 0, &[]).await;
    let a = node(&line, &dir.join("a"), 2).await;
    let mut b = cluster(&[
        "node",
        &line,
        dir.join("b").to_str().unwrap(),
        "1",
        "resource=bigmem",
    ]);
    b.wait_for("READY").await;
    let b_pid = b.child.id().expect("node b runs");
    let mut c = cluster(&["require", &line]);
    let ran = pids(&c.wait_for("BIGMEM").await, 0);
    assert_eq!(ran.len(), 6, "{:?}", c.seen);
    assert!(
        ran.iter().all(|pid| parent_of(*pid) == Some(b_pid)),
        "every task ran on node b's worker: {ran:?}"
    );
    assert_eq!(c.wait_for("NO_GPU").await, "NO_GPU true");
    assert_eq!(c.wait_for("DEPEND").await, "DEPEND true true");
    assert!(c.exit_ok().await, "{:?}", c.seen);
    stop_all([a, b, h], &dir).await;
}
