//! Costs of the process layer (`fork`, `join`/`yield`, `send`/`receive`),
//! each measured against a raw baseline in the same run (STYLE §7: compare
//! ratios, not absolute numbers).
//!
//! Run with `cargo run --release -p parallel-examples --bin bench_processes`
//! (add `--json` for one JSON object per benchmark on stdout).
//!
//! | bench                   | framework                                              | baseline                                           |
//! |-------------------------|--------------------------------------------------------|----------------------------------------------------|
//! | `nfork4_ready_ms`       | `nfork(4)` + `exec` + one `join` answered by each child | `std::process::Command`: 4 × `/bin/true`, spawned then waited |
//! | `same_host_64mib_gbps`  | `send` of a 64 MiB `Tensor<f32>` to a child that sums it in place and `send`s the sum back (shared memory) | one single-threaded 64 MiB `memcpy` |
//! | `join_roundtrip_p50_us` | one `join`/`yield_value` cycle with a child, the child on another CPU (`parallel_examples::placement`) | 16-byte echo on one raw QUIC stream (quinn 0.11, rustls ring, TLS 1.3) between two processes of this program, placed alike |
//! | `join_roundtrip_p50_us_one_cpu` | the same, both processes on one CPU | the same echo, also on that CPU |
//!
//! Fork timings are medians of several rounds alternating with the
//! baseline; the bulk pair alternates too; round trips are p50 of 5,000,
//! taken in blocks alternating with the baseline's, after 500 warm-up. Children are closed between benches (`join("break")`
//! then `sync`), and every answer is checked. The raw quinn server is this
//! program started again in the role `raw` (`PARALLEL_EXAMPLE_ROLE=raw`, see
//! `parallel_examples::raw`); it prints `RAW <addr> <fingerprint hex>` and
//! exits when its standard input closes.
//!
//! Beside the round-trip rows it prints their floor, measured in the same
//! blocks: the raw ping with the server's echo handed to a thread of its own
//! and back (`parallel_examples::raw::HANDOFF`), as a child hands each
//! `join` to its function's thread and takes the `yield` back — the least a
//! round trip with a blocking function on its own thread costs.
//!
//! Beside the fork row the bench prints its floor, measured in the same
//! rounds: 4 copies of this program started in the role `raw dial`, each
//! opening one raw QUIC connection (the node's TLS set-up) to this process
//! and answering one ping (`parallel_examples::raw::dial_floor_ms`) — what
//! starting a program and reaching it over QUIC costs here before any of the
//! framework's protocol, the least `nfork` can take while its children are
//! programs reached through QUIC.
//! It also prints the part of that floor that is starting the program at
//! all: 4 copies started in the role `start`, each exiting as soon as its
//! `main` runs (`parallel_examples::raw::start_floor_ms`) — against
//! `/bin/true`, what a Rust program with an async runtime costs to exec
//! here, before any network.

use std::error::Error;
use std::time::Instant;

use parallel::Tensor;
use parallel_examples::bulk::{BULK_BYTES, BULK_MIB, bulk_expected, bulk_values, sum_f32};
use parallel_examples::raw::{self, BoxError};
use parallel_examples::report::{self, Goal, Names, Row, Widths, median, memcpy_gbps};

const FORKS: usize = 4;
const FORK_WARMUP: usize = 1;
const FORK_REPS: usize = 7;
/// GiB the parent holds for the fork-with-a-big-parent line.
const BIG_PARENT_GIB: usize = 2;
const BULK_WARMUP: usize = 1;
const BULK_REPS: usize = 5;
const PING_WARMUP: usize = 500;
const PING_N: usize = 5_000;
/// Round trips alternate between the pair in this many blocks.
const BLOCKS: usize = 10;

// ---------------------------------------------------------------- child functions

/// Yields until told "break".
#[parallel::remote]
fn looper() {
    while parallel::yield_value::<String>().expect("yield") != "break" {}
}

/// Yields until told "break"; on every other join receives a tensor, sums
/// it in place and sends the sum back.
#[parallel::remote]
fn summer() {
    let parent = parallel::parent().expect("a child");
    while parallel::yield_value::<String>().expect("yield") != "break" {
        let t = parent.receive::<Tensor<f32>>().expect("receive");
        parent.send(&sum_f32(t.as_slice())).expect("send");
    }
}

// ---------------------------------------------------------------- main

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(served) = raw::serve_if_asked().await {
        return served.map_err(|e| e as Box<dyn Error>);
    }
    let json = std::env::args().any(|a| a == "--json");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let header = format!(
        "bench_processes: nproc {nproc}, parent and children on this machine; machines here are \
         noisy: compare the ratios to the same-run baselines, not the absolute numbers"
    );
    report::header(json, &header);
    let rows = run_benches().await.map_err(|e| e as Box<dyn Error>)?;
    report::print(&rows, json, WIDTHS);
    Ok(())
}

async fn run_benches() -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();

    eprintln!(
        "[bench] nfork({FORKS}) until every child answered a join, vs {FORKS} x /bin/true; \
         {FORK_REPS} rounds alternating, median"
    );
    let (mut raws, mut forks, mut floors) = (Vec::new(), Vec::new(), Vec::new());
    let mut starts = Vec::new();
    for round in 0..FORK_WARMUP + FORK_REPS {
        let r = spawn_true(FORKS)?;
        let started = raw::start_floor_ms(FORKS)?;
        let floor = raw::dial_floor_ms(FORKS).await?;
        let f = nfork_ready(FORKS).await?;
        if round >= FORK_WARMUP {
            raws.push(r);
            forks.push(f);
            floors.push(floor);
            starts.push(started);
        }
    }
    let row = Row::new(NFORK, Goal::AtMost(2.0), median(forks), median(raws));
    let floor = median(floors);
    eprintln!(
        "[bench]   floor: {FORKS} x this program started to open one raw QUIC connection (the node's TLS set-up) \
         to this process and answer one ping, no framework on either side: {floor:.1} ms median = {:.2} x /bin/true; \
         nfork({FORKS}) ready = {:.2} x that floor",
        floor / row.baseline_value,
        row.value / floor
    );
    let started = median(starts);
    eprintln!(
        "[bench]   of that floor, starting {FORKS} x this program (each exits as soon as its runtime runs, no network): \
         {started:.1} ms = {:.2} x /bin/true; the QUIC connections and pings on top: {:.1} ms",
        started / row.baseline_value,
        floor - started
    );
    if floor / row.baseline_value > 2.0 {
        eprintln!(
            "[bench]   so the 2 x /bin/true target is out of reach of any child that starts this program and \
             dials its parent over QUIC (that floor is {:.2} x); reaching it needs children that start no \
             program (forked from a process kept ready, a fork server) and reach the parent over a channel \
             handed to them at fork instead of a QUIC handshake",
            floor / row.baseline_value
        );
    }
    eprintln!(
        "[bench]   absolute target: <= 50 ms ({})",
        if row.value <= 50.0 { "met" } else { "missed" }
    );
    rows.push(row);
    // The children start without a copy of this process's page tables, so
    // a parent holding much memory forks as fast as an empty one.
    let held = vec![1u8; BIG_PARENT_GIB << 30];
    let mut big = Vec::new();
    for _ in 0..3 {
        big.push(nfork_ready(FORKS).await?);
    }
    eprintln!(
        "[bench]   for scale: the same with this process holding {BIG_PARENT_GIB} GiB (touched): {:.1} ms median of 3",
        median(big)
    );
    drop(std::hint::black_box(held));

    eprintln!(
        "[bench] {BULK_MIB} MiB tensor to a child on this machine, {BULK_REPS} rounds alternating with memcpy, median"
    );
    let tensor = Tensor::from_vec(bulk_values());
    let child = parallel::fork().await?;
    child.exec(summer, ()).await?;
    let mut dst = vec![0f32; BULK_BYTES / 4];
    let (mut copies, mut sends, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    let mut fresh = Vec::new();
    for round in 0..BULK_WARMUP + BULK_REPS {
        let c = memcpy_gbps(tensor.as_slice(), &mut dst);
        fresh.push(fresh_copy_gbps(tensor.as_slice()));
        let (s, w) = send_gbps(&child, &tensor).await?;
        if round >= BULK_WARMUP {
            copies.push(c);
            sends.push(s);
            writes.push(w);
        }
    }
    eprintln!(
        "[bench]   of which `send` (archiving into a pooled /dev/shm segment, its pages kept from the round before): {:.1} ms median; the rest is the child checking and summing it where it lies (its mapping kept too), and the answer",
        median(writes)
    );
    eprintln!(
        "[bench]   for scale: a copy into freshly allocated memory (page faults included) runs at {:.2} GB/s",
        median(fresh)
    );
    close(&child).await?;
    drop(tensor);
    rows.push(Row::new(
        BULK,
        Goal::AtLeast(0.5),
        median(sends),
        median(copies),
    ));

    eprintln!(
        "[bench] join/yield round trip vs raw quinn ping: {PING_N} each, in {BLOCKS} alternating blocks, after {PING_WARMUP} warm-up; p50"
    );
    let child = parallel::fork().await?;
    child.exec(looper, ()).await?;
    joins(&child, PING_WARMUP).await?;
    let trips = raw::alternate_p50_us(PING_N, BLOCKS, raw::Floor::Handoff, async |_| {
        child.join("").await.map(drop)
    })
    .await?;
    close(&child).await?;
    if let Some((apart, one_cpu)) = trips.handoff {
        eprintln!(
            "[bench]   floor: the raw ping with the server's echo handed to a thread of its own and back (a child's \
             function runs on its own thread, so that its node answers heartbeats while it computes; two hand-offs \
             per round trip), same blocks: apart {apart:.1} µs = {:.2} x raw ping, join/yield = {:.2} x that floor; \
             on one CPU {one_cpu:.1} µs = {:.2} x raw ping, join/yield = {:.2} x that floor",
            apart / trips.apart.1,
            trips.apart.0 / apart,
            one_cpu / trips.one_cpu.1,
            trips.one_cpu.0 / one_cpu,
        );
        if one_cpu / trips.one_cpu.1 > 1.25 {
            eprintln!(
                "[bench]   on one CPU the two hand-offs alone pass the 1.25 x target: only a function run on \
                 its node's own thread would meet it, and that node would not answer heartbeats while the \
                 function computes"
            );
        }
    }
    rows.extend(trips.rows(
        ["join_roundtrip_p50_us", "join_roundtrip_p50_us_one_cpu"],
        "join/yield p50",
        1.25,
    ));

    Ok(rows)
}

/// Tells a child running `looper`/`summer` to stop and waits until its process is gone.
async fn close(child: &parallel::Child) -> Result<(), BoxError> {
    child.join("break").await?;
    child.sync().await?;
    Ok(())
}

// ---------------------------------------------------------------- framework benches

/// Milliseconds from `nfork(n)` to every child having answered one `join`.
async fn nfork_ready(n: usize) -> Result<f64, BoxError> {
    let start = Instant::now();
    let children = parallel::nfork(n).await?;
    children.exec(looper, ()).await?;
    children.join("").await?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    children.join("break").await?;
    children.sync().await?;
    Ok(ms)
}

/// GB/s from `send` of the tensor to the child's answer (its sum), and the
/// milliseconds `send` itself took (writing the shared-memory file).
async fn send_gbps(child: &parallel::Child, tensor: &Tensor<f32>) -> Result<(f64, f64), BoxError> {
    child.join("sum").await?;
    let start = Instant::now();
    child.send(tensor).await?;
    let sent = start.elapsed().as_secs_f64() * 1e3;
    let sum = child.receive::<f64>().await?.to_native();
    let secs = start.elapsed().as_secs_f64();
    if sum != bulk_expected() {
        return Err(format!("the child summed {sum}, expected {}", bulk_expected()).into());
    }
    Ok((BULK_BYTES as f64 / secs / 1e9, sent))
}

/// `n` sequential joins. Each waits for the yield that answers the
/// previous join, then posts this one: one full cycle.
async fn joins(child: &parallel::Child, n: usize) -> Result<(), BoxError> {
    for _ in 0..n {
        child.join("").await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- baselines

/// Milliseconds to spawn `n` copies of `/bin/true` and wait for them all.
fn spawn_true(n: usize) -> Result<f64, BoxError> {
    raw::spawned_ms(n, || std::process::Command::new("/bin/true"))
}

/// GB/s of one copy into memory allocated for it (its pages faulted in by the copy).
fn fresh_copy_gbps(src: &[f32]) -> f64 {
    let start = Instant::now();
    let copy = src.to_vec();
    std::hint::black_box(&copy);
    let secs = start.elapsed().as_secs_f64();
    std::mem::size_of_val(src) as f64 / secs / 1e9
}

// ---------------------------------------------------------------- report

const NFORK: Names = [
    "nfork4_ready_ms",
    "nfork(4) ready",
    "ms",
    "spawn 4 x /bin/true",
];
const BULK: Names = [
    "same_host_64mib_gbps",
    "64 MiB to a child",
    "GB/s",
    "memcpy 64 MiB",
];

/// The table's column widths.
const WIDTHS: Widths = Widths {
    label: 20,
    figure: 10,
    unit: 5,
    ratio: 6,
};
