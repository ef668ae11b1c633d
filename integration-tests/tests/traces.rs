//! A job followed through the logs of every process it crosses: the pool
//! owner that submits it, the head that hands it out and takes its result,
//! the worker (a process under a node agent) that runs it in a span naming
//! the job, the worker's actor and its node — all with `PARALLEL_LOG`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parallel_integration_tests::printed::Printed;
use tokio::process::Command;

const CLUSTER: &str = env!("CARGO_BIN_EXE_cluster");

/// The test program with `args`, its log (stderr) written to `log`.
fn start(args: &[&str], log: &Path) -> Printed {
    let mut cmd = Command::new(CLUSTER);
    cmd.env("PARALLEL_LOG", "parallel=debug")
        // Plain text, to search.
        .env("NO_COLOR", "1")
        .stderr(File::create(log).expect("log file"));
    Printed::start(cmd, args)
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The lines of `log` that mention job `job` of `pool` and `what`.
fn lines_of<'a>(log: &'a str, pool: &str, job: u64, what: &str) -> Vec<&'a str> {
    let job = format!("job={job}");
    log.lines()
        .filter(|l| {
            l.contains(pool) && l.split([' ', ':', '{', '}']).any(|w| w == job) && l.contains(what)
        })
        .collect()
}

#[tokio::test]
async fn a_job_is_followed_from_submit_to_result_across_processes_in_the_logs() {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "parallel-traces-{}-{}",
        std::process::id(),
        parallel::NodeId::new()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let logs = ["head", "node", "pool"].map(|p| dir.join(format!("{p}.log")));
    let data = |what: &str| dir.join(what).to_str().unwrap().to_owned();
    let mut h = start(&["head", &data("head"), "0"], &logs[0]);
    let line = h.wait_for("READY ").await;
    let line = line.trim_start_matches("READY ").to_owned();
    let mut n = start(&["node", &line, &data("node"), "2"], &logs[1]);
    n.wait_for("READY").await;
    let mut p = start(&["pool", &line, "map", "20", "0"], &logs[2]);
    let results = p.wait_for("RESULTS").await;
    assert!(results.contains("RESULTS 20 WRONG 0"), "{results}");
    assert!(p.exit_ok().await);
    // Logs are written as things happen; give the last lines a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (head, node, pool) = (read(&logs[0]), read(&logs[1]), read(&logs[2]));
    // The pool's id, from its first submit.
    let submitted = pool
        .lines()
        .find(|l| l.contains("job submitted"))
        .unwrap_or_else(|| panic!("the pool logs no submit:\n{pool}"));
    let pool_id = submitted
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pool="))
        .expect("a pool field")
        .to_owned();
    let job = 7;
    let found = [
        ("pool", &pool, "job submitted"),
        ("head", &head, "job accepted"),
        ("head", &head, "job handed out"),
        ("node", &node, "job started"),
        ("node", &node, "job finished"),
        ("head", &head, "result taken"),
        ("pool", &pool, "result received"),
    ];
    for (process, log, what) in found {
        let hits = lines_of(log, &pool_id, job, what);
        assert!(
            !hits.is_empty(),
            "the {process}'s log has no {what:?} for job {job} of pool {pool_id}:\n{log}"
        );
    }
    // In the worker, the job's span names the worker's actor and its node.
    let started = lines_of(&node, &pool_id, job, "job started")[0];
    assert!(
        started.contains("worker=actor-") && started.contains("node=node-"),
        "{started}"
    );
    // And the worker that ran it is the one the head handed it to.
    let worker = started
        .split([' ', '{', '}'])
        .find_map(|w| w.strip_prefix("worker="))
        .expect("the worker");
    let handed = lines_of(&head, &pool_id, job, "job handed out");
    assert!(
        handed.iter().any(|l| l.contains(worker)),
        "the head handed job {job} to another worker than {worker}: {handed:?}"
    );
    n.stop().await;
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
