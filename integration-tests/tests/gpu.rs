//! GPU actors across real processes (feature `cuda`; each test needs a
//! GPU and is ignored elsewhere): run them with `cargo test -p
//! parallel-integration-tests --features cuda --test gpu -- --ignored`, or
//! `integration-tests/gpu-check.sh`, which also runs the GPU unit tests and
//! `bench_gpu`.
#![cfg(feature = "cuda")]

use parallel_integration_tests::run_to_end;

const GPU: &str = env!("CARGO_BIN_EXE_gpu");

/// Runs a scenario of the `gpu` program: it must succeed, print each of
/// `expected` after `OK`, and print no `BAD` line.
async fn scenario(name: &str, expected: &[&str]) {
    let (ok, out, err) = run_to_end(GPU, &[name]).await;
    assert!(ok, "{name} failed\n{out}\n{err}");
    assert!(!out.contains("BAD"), "{out}\n{err}");
    for line in expected {
        assert!(
            out.lines().any(|l| l.starts_with("OK") && l.contains(line)),
            "no `OK {line}` in\n{out}\n{err}"
        );
    }
}

#[tokio::test]
#[ignore = "needs a CUDA device"]
async fn ipc_is_bit_exact_and_the_sender_frees_once_the_receiver_drops() {
    scenario(
        "ipc",
        &[
            "ipc round trip is bit-exact",
            "the shared memory is held",
            "the sender frees once the receiver drops",
        ],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a CUDA device"]
async fn a_reader_whose_owner_is_killed_gets_an_error_not_a_crash() {
    scenario(
        "owner-killed",
        &[
            "the reader reads while the owner lives",
            "a read after the owner's death is an error, not a crash",
            "the reader still answers",
        ],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a CUDA device"]
async fn all_reduce_of_1_16_64_mib_matches_the_host_reference_on_every_rank() {
    let mut expected = Vec::new();
    for mib in [1, 16, 64] {
        for op in ["Sum", "Max"] {
            for rank in 0..3 {
                expected.push(format!("all_reduce {op} {mib} MiB rank {rank} over Ipc"));
            }
        }
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    scenario("all-reduce", &expected).await;
}

#[tokio::test]
#[ignore = "needs a CUDA device"]
async fn a_restarted_gpu_actor_keeps_its_device() {
    scenario("restart", &["the restart keeps the device"]).await;
}
