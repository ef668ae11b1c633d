//! Every collective over real processes (parent + forked children on one
//! machine, through the shared-memory group), against the sequential
//! reference, and a rank SIGKILLed mid-allreduce.

use parallel_integration_tests::{DEADLINE, aborted_line, run_to_end};

const COLLECTIVES: &str = env!("CARGO_BIN_EXE_collectives");

/// Runs `every N LEN` and checks that each of the N + 1 ranks printed OK
/// for each of the 10 checks, and nothing BAD.
async fn every_collective_is_right(children: usize, len: usize) {
    let (ok, out, err) = run_to_end(
        COLLECTIVES,
        &["every", &children.to_string(), &len.to_string()],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(!out.contains("BAD"), "{out}\n{err}");
    let checks = [
        "all_reduce-sum",
        "all_reduce-prod",
        "all_reduce-min",
        "all_reduce-max",
        "reduce",
        "broadcast",
        "gather",
        "all_gather",
        "scatter",
        "barrier",
    ];
    for check in checks {
        for rank in 0..=children {
            let line = format!("OK {check} rank {rank}\n");
            assert!(out.contains(&line), "missing {line}{out}\n{err}");
        }
    }
    assert!(out.contains("DONE"), "{out}");
}

#[tokio::test]
async fn one_child_empty_buffers() {
    every_collective_is_right(1, 0).await;
}

#[tokio::test]
async fn three_children_odd_length() {
    every_collective_is_right(3, 1001).await;
}

#[tokio::test]
async fn seven_children_several_segments() {
    // 8 ranks; 300,007 f32 = 1.2 MB per rank: three 512 KiB segments.
    every_collective_is_right(7, 300_007).await;
}

#[tokio::test]
async fn a_rank_sigkilled_mid_allreduce_fails_every_other_rank_then_the_survivors_go_on() {
    let started = std::time::Instant::now();
    let (ok, out, err) = run_to_end(COLLECTIVES, &["sigkill", "3", "100000"]).await;
    assert!(ok, "{out}\n{err}");
    let (line, ms) = aborted_line(&out, &err);
    // The failure-detection bound of a same-host group: a few pid checks.
    assert!(ms < 1_500, "{line}");
    assert!(line.contains("rank 2"), "{line}");
    assert_eq!(out.matches("CHILD-ERR ").count(), 2, "{out}\n{err}");
    assert!(out.contains("REBUILT ok"), "{out}\n{err}");
    assert_eq!(out.matches("CHILD-REBUILT").count(), 2, "{out}\n{err}");
    assert!(
        !out.contains("UNEXPECTED") && !out.contains("WRONG"),
        "{out}"
    );
    assert!(out.contains("SYNCED"), "{out}");
    assert!(started.elapsed() < DEADLINE, "{out}");
}
