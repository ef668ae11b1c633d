//! A program started by `srun` against a real `slurmctld` + `slurmd` (one
//! node, started by the test): its tasks form their group from Slurm's
//! environment alone and reduce together. Skipped, saying why, without
//! root or Slurm.

use std::process::Stdio;

use parallel_integration_tests::DEADLINE;
use parallel_integration_tests::slurm::slurm_or_skip;

const TASK: &str = env!("CARGO_BIN_EXE_slurm_task");

#[tokio::test]
async fn srun_tasks_form_their_group_from_slurms_environment() {
    let Some(slurm) = slurm_or_skip("srun_tasks_form_their_group_from_slurms_environment") else {
        return;
    };
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
