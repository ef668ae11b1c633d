//! `all_reduce` over the process tree: parent (rank 0) and forked children.

use std::collections::HashMap;

use parallel_integration_tests::{DEADLINE, run_to_end};

const FORKER: &str = env!("CARGO_BIN_EXE_forker");

async fn run(args: &[&str]) -> (bool, String, String) {
    run_to_end(FORKER, args).await
}

/// Runs `allreduce N LEN` and checks that every rank printed, for each type
/// and op, the digest of the sequential reference.
async fn every_rank_gets_the_reference(children: usize, len: usize) {
    let (ok, out, err) = run(&["allreduce", &children.to_string(), &len.to_string()]).await;
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
    every_rank_gets_the_reference(1, 7).await;
}

#[tokio::test]
async fn two_children_odd_length() {
    every_rank_gets_the_reference(2, 1001).await;
}

#[tokio::test]
async fn four_children_tree() {
    every_rank_gets_the_reference(4, 33).await;
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
    every_rank_gets_the_reference(4, 100_003).await;
}

#[tokio::test]
async fn a_rank_dying_mid_allreduce_fails_every_other_rank() {
    let started = std::time::Instant::now();
    let (ok, out, err) = run(&["allreduce-kill"]).await;
    assert!(ok, "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("ABORTED"))
        .unwrap_or_else(|| panic!("no error in the parent\n{out}\n{err}"));
    let ms: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("milliseconds");
    assert!(ms < 5_000, "{line}");
    // The two survivors got an error too, and returned (no hang).
    assert_eq!(out.matches("CHILD-ERR").count(), 2, "{out}\n{err}");
    assert!(!out.contains("UNEXPECTED"), "{out}");
    assert!(out.contains("SYNCED"), "{out}");
    assert!(started.elapsed() < DEADLINE, "{out}");
}
