//! Programs started by `srun` against a real `slurmctld` + `slurmd` (one
//! node, started by the test): tasks that form their group from Slurm's
//! environment alone and reduce together, and `parallel node` run as a job
//! step that adds the job's machine to a cluster. Skipped, saying why,
//! without root or Slurm.

use std::path::PathBuf;
use std::process::Stdio;

use parallel_integration_tests::printed::Printed;
use parallel_integration_tests::slurm::{Slurm, slurm_or_skip};
use parallel_integration_tests::{DEADLINE, PASSWORD};
use tokio::io::{AsyncBufReadExt, BufReader};

const TASK: &str = env!("CARGO_BIN_EXE_slurm_task");
const CLUSTER: &str = env!("CARGO_BIN_EXE_cluster");

/// One Slurm for both scenarios, one after the other: with two one-machine
/// Slurms side by side (both numbering their first job 1, on one host), a
/// step of one did not end for 40 s after its program exited; alone, it
/// ends at once.
#[tokio::test]
async fn srun_tasks_form_their_group_and_parallel_node_runs_as_a_job_step() {
    let Some(slurm) =
        slurm_or_skip("srun_tasks_form_their_group_and_parallel_node_runs_as_a_job_step")
    else {
        return;
    };
    srun_tasks_form_their_group_from_slurms_environment(&slurm).await;
    parallel_node_as_a_job_step_adds_the_job_s_machine_to_a_cluster(&slurm).await;
}

async fn srun_tasks_form_their_group_from_slurms_environment(slurm: &Slurm) {
    let out = tokio::time::timeout(
        DEADLINE * 3,
        slurm
            .srun()
            .args(["-n", "4", "--overcommit", TASK])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("srun finished in time")
    .expect("run srun");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", slurm.logs());
    for rank in 0..4 {
        let line = format!("TASK {rank} OF 4 SUM 10 PATH shared-memory");
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in\n{stdout}\n{stderr}"
        );
    }
}

async fn parallel_node_as_a_job_step_adds_the_job_s_machine_to_a_cluster(slurm: &Slurm) {
    let parallel = PathBuf::from(CLUSTER).with_file_name("parallel");
    assert!(
        parallel.exists(),
        "build it: cargo build -p parallel --bin parallel"
    );
    let dir = std::env::temp_dir().join(format!(
        "parallel-slurm-node-{}-{}",
        std::process::id(),
        parallel::NodeId::new()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let head_dir = dir.join("head");
    let mut head = Printed::start(
        tokio::process::Command::new(CLUSTER),
        &["head", head_dir.to_str().unwrap(), "0"],
    );
    let line = head.wait_for("READY ").await;
    let line = line.trim_start_matches("READY ").to_owned();
    // The step: one task per machine, as a job would add its nodes.
    let node_dir = dir.join("node");
    let mut step = slurm
        .srun()
        .args(["-n", "1", "--ntasks-per-node=1", "--overcommit"])
        .arg(&parallel)
        .args(["node", "--join", &line, "--workers", "2", "--data"])
        .arg(&node_dir)
        .env("PARALLEL_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run srun");
    let mut out = BufReader::new(step.stdout.take().expect("stdout")).lines();
    let joined = tokio::time::timeout(DEADLINE * 3, async {
        while let Ok(Some(l)) = out.next_line().await {
            if l.contains("joined the head") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        joined == Ok(true),
        "the step's node agent did not join; Slurm:\n{}",
        slurm.logs()
    );
    let mut pool = Printed::start(
        tokio::process::Command::new(CLUSTER),
        &["pool", &line, "counts", "2"],
    );
    let counts = pool.wait_for("NODES").await;
    assert_eq!(
        counts, "NODES 1 WORKERS 2",
        "the step's node runs the pool's workers"
    );
    assert!(pool.exit_ok().await);
    // Stopping the cluster ends the step, and srun with it.
    let stop = tokio::process::Command::new(&parallel)
        .args(["stop", "--join", &line])
        .env("PARALLEL_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output();
    let stop = tokio::time::timeout(DEADLINE, stop)
        .await
        .expect("parallel stop in time")
        .expect("run parallel stop");
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let ended = match tokio::time::timeout(DEADLINE * 2, step.wait()).await {
        Ok(status) => status.expect("srun's status"),
        Err(_) => {
            let _ = step.start_kill();
            let mut printed = Vec::new();
            while let Ok(Ok(Some(l))) =
                tokio::time::timeout(std::time::Duration::from_secs(2), out.next_line()).await
            {
                printed.push(l);
            }
            let mut err = String::new();
            if let Some(mut e) = step.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    e.read_to_string(&mut err),
                )
                .await;
            }
            panic!(
                "the step did not end once its node agent was asked to stop; it printed {printed:?}\n{err}\n{}",
                slurm.logs()
            );
        }
    };
    assert!(ended.success(), "srun: {ended}\n{}", slurm.logs());
    head.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
