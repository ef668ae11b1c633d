//! `all_reduce` over the process tree: parent (rank 0) and forked children,
//! through the same-host shared-memory group and, forced with
//! `PARALLEL_COLLECTIVE_TRANSPORT=quic`, over the QUIC links (the path of
//! children on other hosts).

use std::collections::HashMap;

use parallel_integration_tests::{DEADLINE, aborted_line, run_to_end, run_to_end_with_env};

const FORKER: &str = env!("CARGO_BIN_EXE_forker");

async fn run(args: &[&str]) -> (bool, String, String) {
    run_to_end(FORKER, args).await
}

/// Which path the collectives take.
#[derive(Clone, Copy)]
enum Path {
    SharedMemory,
    Quic,
    Relay,
}

/// Runs `allreduce N LEN` and checks that every rank printed, for each type
/// and op, the digest of the sequential reference.
async fn every_rank_gets_the_reference(children: usize, len: usize, path: Path) {
    let args = ["allreduce", &children.to_string(), &len.to_string()];
    let env: &[(&str, &str)] = match path {
        Path::SharedMemory => &[],
        Path::Quic => &[(parallel::collective::TRANSPORT_VAR, "quic")],
        Path::Relay => &[(parallel::collective::TRANSPORT_VAR, "relay")],
    };
    let (ok, out, err) = run_to_end_with_env(FORKER, &args, env).await;
    assert!(ok, "{out}\n{err}");
    let mut reference = HashMap::new();
    let mut results: HashMap<(String, String), Vec<(usize, String)>> = HashMap::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["REF", ty, op, digest] => {
                reference.insert((ty.to_string(), op.to_string()), digest.to_string());
            }
            ["RESULT", ty, op, "rank", rank, digest] => results
                .entry((ty.to_string(), op.to_string()))
                .or_default()
                .push((rank.parse().expect("rank"), digest.to_string())),
            _ => {}
        }
    }
    assert_eq!(reference.len(), 8, "{out}\n{err}");
    for (key, expected) in &reference {
        assert!(expected.starts_with(&format!("{len}:")), "{out}");
        let mut got = results.get(key).cloned().unwrap_or_default();
        got.sort();
        let ranks: Vec<usize> = got.iter().map(|(r, _)| *r).collect();
        assert_eq!(ranks, (0..=children).collect::<Vec<_>>(), "{key:?}\n{out}");
        for (rank, digest) in &got {
            assert_eq!(digest, expected, "{key:?} rank {rank}\n{out}");
        }
    }
    assert!(out.contains("NCHILDREN 0"), "{out}");
}

#[tokio::test]
async fn one_child_odd_length() {
    every_rank_gets_the_reference(1, 7, Path::SharedMemory).await;
    every_rank_gets_the_reference(1, 7, Path::Quic).await;
}

#[tokio::test]
async fn two_children_odd_length() {
    every_rank_gets_the_reference(2, 1001, Path::SharedMemory).await;
    every_rank_gets_the_reference(2, 1001, Path::Quic).await;
}

#[tokio::test]
async fn four_children_tree() {
    every_rank_gets_the_reference(4, 33, Path::Quic).await;
    every_rank_gets_the_reference(4, 33, Path::Relay).await;
}

#[tokio::test]
async fn four_children_ring() {
    // 100003 f32 over 5 ranks: the ring schedule, with uneven chunks.
    assert_eq!(
        parallel::collective::choose(100_003 * 4, 5),
        parallel::collective::Algorithm::Ring
    );
    assert_eq!(
        parallel::collective::choose(33 * 4, 5),
        parallel::collective::Algorithm::Tree
    );
    every_rank_gets_the_reference(4, 100_003, Path::Quic).await;
    every_rank_gets_the_reference(4, 100_003, Path::Relay).await;
    every_rank_gets_the_reference(4, 100_003, Path::SharedMemory).await;
}

#[tokio::test]
async fn a_rank_dying_mid_allreduce_fails_every_other_rank() {
    let started = std::time::Instant::now();
    let (ok, out, err) = run(&["allreduce-kill"]).await;
    assert!(ok, "{out}\n{err}");
    let (line, ms) = aborted_line(&out, &err);
    assert!(ms < 5_000, "{line}");
    // The two survivors got an error too, and returned (no hang).
    assert_eq!(out.matches("CHILD-ERR").count(), 2, "{out}\n{err}");
    assert!(!out.contains("UNEXPECTED"), "{out}");
    assert!(out.contains("SYNCED"), "{out}");
    assert!(started.elapsed() < DEADLINE, "{out}");
}
