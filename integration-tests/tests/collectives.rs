//! Every collective over real processes (parent + forked children on one
//! machine), against the sequential reference: through the shared-memory
//! group; forced with `PARALLEL_COLLECTIVE_TRANSPORT=quic`, over direct QUIC
//! links between the ranks (the path of children on other hosts); forced
//! with `relay`, over the links to the parent only (the fallback when
//! children cannot reach each other); calls that disagree; and a rank
//! SIGKILLed mid-call on each path.

use parallel_integration_tests::{DEADLINE, aborted_line, run_to_end_with_env};

const COLLECTIVES: &str = env!("CARGO_BIN_EXE_collectives");

/// Which path the collectives take.
#[derive(Clone, Copy, Debug)]
enum Path {
    SharedMemory,
    Quic,
    Relay,
}

/// Runs the scenario `args` of the collectives program on `path`.
async fn run(args: &[&str], path: Path) -> (bool, String, String) {
    let env: &[(&str, &str)] = match path {
        Path::SharedMemory => &[],
        Path::Quic => &[(parallel::collective::TRANSPORT_VAR, "quic")],
        Path::Relay => &[(parallel::collective::TRANSPORT_VAR, "relay")],
    };
    run_to_end_with_env(COLLECTIVES, args, env).await
}

/// Runs `every N LEN` and checks that each of the N + 1 ranks printed OK
/// for each of the 10 checks, and nothing BAD.
async fn every_collective_is_right(children: usize, len: usize) {
    every_collective_is_right_on(children, len, Path::SharedMemory).await;
}

async fn every_collective_is_right_on(children: usize, len: usize, path: Path) {
    let (ok, out, err) = run(&["every", &children.to_string(), &len.to_string()], path).await;
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
async fn over_quic_one_child_empty_buffers() {
    every_collective_is_right_on(1, 0, Path::Quic).await;
}

#[tokio::test]
async fn over_quic_three_children_odd_length() {
    every_collective_is_right_on(3, 1001, Path::Quic).await;
}

#[tokio::test]
async fn over_quic_four_children_longer_buffers() {
    every_collective_is_right_on(4, 20_000, Path::Quic).await;
}

#[tokio::test]
async fn relayed_by_the_parent() {
    every_collective_is_right_on(1, 0, Path::Relay).await;
    every_collective_is_right_on(3, 1001, Path::Relay).await;
    every_collective_is_right_on(4, 20_000, Path::Relay).await;
}

/// Runs `misuse 3 10`: a bad root, a wrong scatter length and another
/// length on one rank each fail on every rank with a misuse error, and the
/// next call works.
async fn calls_that_disagree_fail_on_every_rank(path: Path) {
    let (ok, out, err) = run(&["misuse", "3", "10"], path).await;
    assert!(ok, "{path:?}\n{out}\n{err}");
    assert!(!out.contains("BAD"), "{path:?}\n{out}\n{err}");
    for what in ["bad-root", "scatter-len", "length"] {
        for rank in 0..=3 {
            let line = format!("MISUSE {what} rank {rank}\n");
            assert!(out.contains(&line), "{path:?} missing {line}{out}\n{err}");
        }
    }
    for rank in 0..=3 {
        let line = format!("OK all_gather rank {rank}\n");
        assert!(out.contains(&line), "{path:?} missing {line}{out}\n{err}");
    }
    assert!(out.contains("DONE"), "{out}");
}

#[tokio::test]
async fn calls_that_disagree_fail_on_every_rank_in_shared_memory() {
    calls_that_disagree_fail_on_every_rank(Path::SharedMemory).await;
}

#[tokio::test]
async fn calls_that_disagree_fail_on_every_rank_over_quic() {
    calls_that_disagree_fail_on_every_rank(Path::Quic).await;
}

#[tokio::test]
async fn calls_that_disagree_fail_on_every_rank_relayed_by_the_parent() {
    calls_that_disagree_fail_on_every_rank(Path::Relay).await;
}

/// Runs `args` on `path`, a scenario in which child 2 of 3 is SIGKILLed
/// mid-call, and checks that the parent's call failed within `bound_ms` of
/// the kill naming the victim (as `names` it), that the two other children
/// got an error and then ran the next call right, and that the parent
/// synced, all in time. Returns the program's output.
async fn killed_mid_call(args: &[&str], path: Path, bound_ms: u64, names: &str) -> String {
    let started = std::time::Instant::now();
    let (ok, out, err) = run(args, path).await;
    assert!(ok, "{out}\n{err}");
    let (line, ms) = aborted_line(&out, &err);
    assert!(ms < bound_ms, "{line}");
    assert!(line.contains(names), "{line}");
    assert_eq!(out.matches("CHILD-ERR ").count(), 2, "{out}\n{err}");
    assert_eq!(out.matches("CHILD-REBUILT").count(), 2, "{out}\n{err}");
    assert!(
        !out.contains("UNEXPECTED") && !out.contains("WRONG") && !out.contains("AGAIN"),
        "{out}"
    );
    assert!(out.contains("SYNCED"), "{out}");
    assert!(started.elapsed() < DEADLINE, "{out}");
    out
}

#[tokio::test]
async fn a_rank_sigkilled_mid_gather_relayed_fails_every_other_rank_then_the_survivors_go_on() {
    // The parent checks its children's processes every 100 ms.
    killed_mid_call(&["star-kill", "3", "5000"], Path::Relay, 2_000, "#2").await;
}

#[tokio::test]
async fn a_rank_sigkilled_mid_gather_over_quic_fails_every_other_rank_then_the_survivors_go_on() {
    // The tree's group of direct links forms on this first call, and the
    // victim dies meanwhile: the parent sees its process end.
    killed_mid_call(&["star-kill", "3", "5000"], Path::Quic, 6_000, "#2").await;
}

#[tokio::test]
async fn a_rank_sigkilled_mid_allreduce_fails_every_other_rank_then_the_survivors_go_on() {
    // The failure-detection bound of a same-host group: a few pid checks.
    let args = ["sigkill", "3", "100000"];
    let out = killed_mid_call(&args, Path::SharedMemory, 1_500, "rank 2").await;
    assert!(out.contains("REBUILT ok"), "{out}");
}

/// `ranks 2`: after a second fork and the first children's end, the
/// survivors (ids 3 and 4) are ranks 1 and 2 of a group of 3 on every path.
async fn ranks_follow_the_group_not_the_ids(path: Path, backend: &str) {
    let (ok, out, err) = run(&["ranks", "2"], path).await;
    assert!(ok, "{out}\n{err}");
    assert!(!out.contains("BAD"), "{out}\n{err}");
    for line in ["RANK id=3 rank=1 size=3", "RANK id=4 rank=2 size=3"] {
        assert!(out.contains(line), "missing {line:?} in\n{out}\n{err}");
    }
    assert!(
        out.contains(&format!("PARENT rank=0 size=3 backend={backend}")),
        "{out}\n{err}"
    );
    for rank in 0..3 {
        assert!(out.contains(&format!("SUM ok {rank}")), "{out}\n{err}");
    }
}

#[tokio::test]
async fn ranks_after_a_second_fork_in_shared_memory() {
    ranks_follow_the_group_not_the_ids(Path::SharedMemory, "shared memory").await;
}

#[tokio::test]
async fn ranks_after_a_second_fork_over_quic() {
    ranks_follow_the_group_not_the_ids(Path::Quic, "direct QUIC links").await;
}

#[tokio::test]
async fn ranks_after_a_second_fork_relayed() {
    ranks_follow_the_group_not_the_ids(Path::Relay, "relay through the parent").await;
}

/// `regroup`: the parent changes the group between calls; every call works
/// and each rank has its rank in the group of that call.
async fn changing_the_group_between_calls_works(path: Path) {
    let (ok, out, err) = run(&["regroup"], path).await;
    assert!(ok, "{out}\n{err}");
    assert!(!out.contains("BAD"), "{out}\n{err}");
    assert_eq!(out.matches("OK all ").count(), 4, "{out}\n{err}");
    assert_eq!(out.matches("OK pair ").count(), 3, "{out}\n{err}");
    assert_eq!(out.matches("OK again ").count(), 4, "{out}\n{err}");
    assert!(out.contains("OK pair id 2 rank 2 of 3"), "{out}\n{err}");
    assert!(out.contains("OK again id 3 rank 3 of 4"), "{out}\n{err}");
}

#[tokio::test]
async fn changing_the_group_between_calls_in_shared_memory() {
    changing_the_group_between_calls_works(Path::SharedMemory).await;
}

#[tokio::test]
async fn changing_the_group_between_calls_over_quic() {
    changing_the_group_between_calls_works(Path::Quic).await;
}

#[tokio::test]
async fn changing_the_group_between_calls_relayed() {
    changing_the_group_between_calls_works(Path::Relay).await;
}
