//! AllReduce over the process tree against Open MPI's `MPI_Allreduce`, both
//! measured in the same run on this machine (STYLE §7: compare ratios, not
//! absolute numbers).
//!
//! Run with `cargo run --release -p parallel-examples --bin bench_collectives`
//! (`--json` prints one JSON object with every figure on stdout; `--quick`
//! runs fewer iterations, for a smoke run).
//!
//! | bench                                  | framework                                    | baseline |
//! |----------------------------------------|----------------------------------------------|----------|
//! | `allreduce_sum_{1,16,64}mib_{2,4}ranks_gbps` | `Children::all_reduce` (rank 0) with `collective::all_reduce` in 1 or 3 children, `Vec<f32>`, `ReduceOp::Sum`, in place | `MPI_Allreduce(MPI_IN_PLACE, …, MPI_FLOAT, MPI_SUM)` with as many ranks |
//! | the 64 MiB rows again                  | the same figure                              | one single-threaded 64 MiB `memcpy` |
//! | `allreduce_8b_latency_us`              | the same with two `f32` (8 bytes), 4 ranks   | `MPI_Allreduce` of two `MPI_FLOAT`s, 4 ranks |
//! | `allreduce_quic_16mib_2ranks_gbps`     | the 16 MiB 2-rank AllReduce with the tree's collectives over QUIC links between the ranks (`CollectiveTransport::Quic`: the path between machines, taken on this one) | 16 MiB on one raw quinn stream to another process (`raw_quinn_bulk_16mib_gbps`, the target's baseline); and 16 MiB each way at once (`raw_quinn_bulk_both_ways_16mib_gbps`: a 2-rank AllReduce's traffic, its limit on one machine, printed under the table) |
//! | `workqueue_items_per_s`                | a `WorkQueue` read by 2 other processes      | `std::sync::mpsc` read by 2 threads of this process (context, no target) |
//! | the same figure again                  | the same figure                              | the target rate, [`WQ_TARGET_ITEMS_PER_S`] (ratio key `workqueue_items_per_s_target_ratio`) |
//!
//! The two sides alternate: per group size, `ROUNDS` rounds of the MPI
//! program then ours, each a fresh `mpirun` or `nfork`; a figure is the
//! median of its rounds. Both sides run the same iterations: every rank
//! fills its buffer with known values, the first call's result is checked
//! on every rank (the sum of the ranks' inputs, exact in `f32`), the
//! buffers are zeroed (no value grows over the iterations), then warm-up
//! calls, then timed ones, then one more checked call with known values
//! (so a path taken only after the first call is checked too). Before each timed call the ranks synchronise
//! (MPI: `MPI_Barrier`; here: an `all_reduce` of one `f32`), and rank 0
//! times the call alone. A round's figure is its median call; bandwidth is
//! algorithm bandwidth, bytes of the buffer / median time (GB/s, 10⁹
//! bytes).
//!
//! The MPI side is `examples/mpi/allreduce.c`, embedded here: written to a
//! temporary directory, built with `mpicc -O2` and run with `mpirun -np N`
//! and `MPIRUN_FLAGS` (shared memory through the `vader` BTL; 4 ranks
//! oversubscribe a small machine). Without `mpicc`/`mpirun` the framework's
//! side still runs and the baseline reads `n/a` (`null` in JSON).

use std::error::Error;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use parallel::collective::ReduceOp;
use parallel::{CollectiveTransport, Tree};
use parallel_examples::raw::{self, RawServer};
use parallel_examples::report::{self, Goal, Widths, median};

/// The error type of this benchmark.
type BoxError = Box<dyn Error + Send + Sync>;

const MIB: usize = 1 << 20;
/// The bandwidth sizes, in MiB.
const SIZES_MIB: [usize; 3] = [1, 16, 64];
/// The group sizes (parent included).
const RANKS: [usize; 2] = [2, 4];
/// The latency test: two `f32`s among this many ranks.
const LATENCY_BYTES: usize = 8;
const LATENCY_RANKS: usize = 4;
/// Items through the workqueue and its baseline channel.
const WQ_ITEMS: u64 = 200_000;
const WQ_ITEMS_QUICK: u64 = 20_000;
/// The rate the work queue is to reach with 2 reader processes on this
/// machine, in items per second (items that take no time to work on: the
/// queue's own cost).
const WQ_TARGET_ITEMS_PER_S: f64 = 1_000_000.0;
/// Runs of the workqueue and of its baseline, alternating; the median counts.
const WQ_RUNS: usize = 3;
/// Rounds per group size, each running MPI's side then ours (1 with `--quick`).
const ROUNDS: usize = 3;
/// The AllReduce over QUIC: bytes of the buffer, and ranks.
const QUIC_BYTES: usize = 16 * MIB;
const QUIC_RANKS: usize = 2;
/// Raw bulk transfers per round, each way; the median counts.
const RAW_BULK_REPS: usize = 5;
/// Copies per memcpy size; the best one counts.
const MEMCPY_REPS: usize = 9;

/// The MPI program, built at start-up.
const MPI_SOURCE: &str = include_str!("../../mpi/allreduce.c");
/// What `mpirun` runs with besides `-np N`: oversubscribe (more ranks than
/// cores), no pinning (pinned oversubscribed ranks share a core), shared
/// memory (`vader`) and the `ob1` messaging layer for every transfer.
const MPIRUN_FLAGS: [&str; 9] = [
    "--oversubscribe",
    "--bind-to",
    "none",
    "--mca",
    "btl",
    "self,vader",
    "--mca",
    "pml",
    "ob1",
];
/// How long one `mpirun` may take.
const MPIRUN_TIMEOUT: Duration = Duration::from_secs(300);
/// What to do when the MPI baseline cannot run.
const INSTALL_HINT: &str = "install Open MPI for the baseline: apt-get install openmpi-bin libopenmpi-dev \
     (then `mpicc --version` and `mpirun --version` must work)";

// ---------------------------------------------------------------- the plan

/// One configuration: a buffer of `bytes`, `warmup` untimed calls, `timed`
/// timed ones. Both sides run the same plan.
#[derive(Clone, Copy, Debug)]
struct Config {
    bytes: usize,
    warmup: u32,
    timed: u32,
}

impl Config {
    /// Warm-up and timed iterations for `bytes` (fewer with `--quick`).
    fn new(bytes: usize, quick: bool) -> Config {
        let (warmup, timed) = match (bytes, quick) {
            (b, false) if b <= LATENCY_BYTES => (200, 2000),
            (b, true) if b <= LATENCY_BYTES => (20, 200),
            (b, false) if b <= MIB => (5, 30),
            (b, false) if b <= 16 * MIB => (3, 15),
            (_, false) => (2, 9),
            (_, true) => (1, 3),
        };
        Config {
            bytes,
            warmup,
            timed,
        }
    }

    /// `f32` elements.
    fn len(&self) -> usize {
        self.bytes / 4
    }

    /// The argument of the MPI program.
    fn mpi_arg(&self) -> String {
        format!("{}:{}:{}", self.bytes, self.warmup, self.timed)
    }
}

/// The configurations one group of `ranks` runs, in order.
fn plan(ranks: usize, quick: bool) -> Vec<Config> {
    let mut plan: Vec<Config> = SIZES_MIB
        .iter()
        .map(|mib| Config::new(mib * MIB, quick))
        .collect();
    if ranks == LATENCY_RANKS {
        plan.push(Config::new(LATENCY_BYTES, quick));
    }
    plan
}

/// Rank `rank`'s input at index `i`; the same as `input` in `allreduce.c`.
/// Sums over a few ranks are exact in `f32`.
fn input(i: usize, rank: usize) -> f32 {
    (i % 1000) as f32 + 1000.0 * rank as f32
}

/// Rank `rank`'s buffer of `len` inputs.
fn inputs(len: usize, rank: usize) -> Vec<f32> {
    (0..len).map(|i| input(i, rank)).collect()
}

/// Checks that `buf` holds the sum of every rank's inputs.
fn check(buf: &[f32], ranks: usize) -> Result<(), String> {
    for (i, &got) in buf.iter().enumerate() {
        let expected: f32 = (0..ranks).map(|r| input(i, r)).sum();
        if got != expected {
            return Err(format!(
                "all_reduce of {} f32 over {ranks} ranks is wrong at index {i}: {got}, expected {expected}",
                buf.len()
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- the framework's side

/// Rank `rank` of `ranks`: runs every configuration of the plan (given as
/// `(bytes, warmup, timed)`) as rank 0 drives it; panics (which fails rank
/// 0's next call) if a result is wrong.
#[parallel::remote]
fn reducer(rank: u32, ranks: u32, plan: Vec<(u64, u32, u32)>) {
    let (rank, ranks) = (rank as usize, ranks as usize);
    let mut gate = vec![0f32; 1];
    for (bytes, warmup, timed) in plan {
        let mut buf = inputs(bytes as usize / 4, rank);
        parallel::collective::all_reduce(&mut buf, ReduceOp::Sum).expect("all_reduce");
        if let Err(e) = check(&buf, ranks) {
            panic!("rank {rank}: {e}");
        }
        buf.fill(0.0);
        for _ in 0..warmup {
            parallel::collective::all_reduce(&mut buf, ReduceOp::Sum).expect("all_reduce");
        }
        for _ in 0..timed {
            parallel::collective::all_reduce(&mut gate, ReduceOp::Sum).expect("all_reduce");
            parallel::collective::all_reduce(&mut buf, ReduceOp::Sum).expect("all_reduce");
        }
        // Once more with known inputs: checks the path the timed calls took.
        buf = inputs(bytes as usize / 4, rank);
        parallel::collective::all_reduce(&mut buf, ReduceOp::Sum).expect("all_reduce");
        if let Err(e) = check(&buf, ranks) {
            panic!("rank {rank}, after the timed calls: {e}");
        }
    }
}

/// Rank 0 of a group of `ranks`: forks the others, runs the plan with them
/// and returns the median seconds of a call, per configuration.
async fn ours(tree: &Tree, ranks: usize, plan: &[Config]) -> Result<Vec<f64>, BoxError> {
    let children = tree.nfork(ranks - 1).await?;
    let wire_plan: Vec<(u64, u32, u32)> = plan
        .iter()
        .map(|c| (c.bytes as u64, c.warmup, c.timed))
        .collect();
    for (i, child) in children.iter().enumerate() {
        let rank = i as u32 + 1;
        child
            .exec(reducer, (rank, ranks as u32, wire_plan.clone()))
            .await?;
    }
    let mut gate = vec![0f32; 1];
    let mut medians = Vec::with_capacity(plan.len());
    for c in plan {
        let mut buf = inputs(c.len(), 0);
        children.all_reduce(&mut buf, ReduceOp::Sum).await?;
        check(&buf, ranks)?;
        buf.fill(0.0);
        for _ in 0..c.warmup {
            children.all_reduce(&mut buf, ReduceOp::Sum).await?;
        }
        let mut secs = Vec::with_capacity(c.timed as usize);
        for _ in 0..c.timed {
            children.all_reduce(&mut gate, ReduceOp::Sum).await?;
            let start = Instant::now();
            children.all_reduce(&mut buf, ReduceOp::Sum).await?;
            secs.push(start.elapsed().as_secs_f64());
        }
        buf = inputs(c.len(), 0);
        children.all_reduce(&mut buf, ReduceOp::Sum).await?;
        check(&buf, ranks).map_err(|e| format!("after the timed calls: {e}"))?;
        medians.push(median(secs));
    }
    // The children return once the plan is done; wait for their processes.
    children.sync().await?;
    Ok(medians)
}

/// The AllReduce over QUIC and its raw baselines, as medians.
struct OverQuic {
    /// Seconds of one 16 MiB AllReduce of 2 ranks over QUIC links.
    allreduce_secs: f64,
    /// GB/s of 16 MiB on one raw quinn stream to another process.
    one_way_gbps: f64,
    /// GB/s of 16 MiB each way at once on raw quinn streams.
    both_ways_gbps: f64,
}

/// The 16 MiB 2-rank AllReduce over QUIC links between the ranks (a tree
/// whose collectives take the path between machines on this one), in
/// `rounds` rounds, each also running the raw quinn baselines against a
/// raw server process.
async fn allreduce_over_quic(rounds: usize, quick: bool) -> Result<OverQuic, BoxError> {
    let plan = [Config::new(QUIC_BYTES, quick)];
    eprintln!(
        "[bench] over QUIC: {rounds} rounds alternating raw quinn and ours: {} B x ({} warm-up + {} timed) \
         AllReduce of {QUIC_RANKS} ranks; raw: {RAW_BULK_REPS} transfers one way, then {RAW_BULK_REPS} \
         both ways at once, to a raw server process; medians",
        plan[0].bytes, plan[0].warmup, plan[0].timed
    );
    let tree =
        Tree::new(parallel::Config::from_env().collective_transport(CollectiveTransport::Quic));
    let mut server = RawServer::start().await?;
    let conn = server.raw.connect().await?;
    let bytes: Vec<u8> = (0..QUIC_BYTES).map(|i| i as u8).collect();
    let (mut ours_rounds, mut one_way, mut both_ways) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // One of each first: connection windows and pages warmed.
        raw::bulk_one_way_gbps(&conn, &bytes).await?;
        for _ in 0..RAW_BULK_REPS {
            one_way.push(raw::bulk_one_way_gbps(&conn, &bytes).await?);
        }
        raw::bulk_both_ways_gbps(&conn, &bytes).await?;
        for _ in 0..RAW_BULK_REPS {
            both_ways.push(raw::bulk_both_ways_gbps(&conn, &bytes).await?);
        }
        ours_rounds.push(ours(&tree, QUIC_RANKS, &plan).await?[0]);
    }
    conn.close(0u32.into(), b"done");
    raw::stop(&mut server.child).await;
    tree.close().await;
    Ok(OverQuic {
        allreduce_secs: median(ours_rounds),
        one_way_gbps: median(one_way),
        both_ways_gbps: median(both_ways),
    })
}

/// A reader of the work-queue bench: reads the parent's queue `name` until
/// it is closed (and tells the parent how many items it read).
#[parallel::remote]
fn wq_reader(name: String) -> u64 {
    parallel_examples::workqueue_bench::read_all(&name)
}

/// Items per second through a `WorkQueue` of this process that 2 children
/// read, `items` per run: the median of [`WQ_RUNS`] runs, each alternating
/// with a run of the in-process baseline (also returned, as its median).
async fn workqueue_items_per_s(items: u64) -> Result<(f64, f64), BoxError> {
    let (mut ours, mut channel) = (Vec::new(), Vec::new());
    for run in 0..WQ_RUNS {
        channel.push(channel_items_per_s(items)?);
        // A fresh queue name per run: `drive` must own the queue it opens.
        let name = format!("bench_collectives queue {run}");
        let children = parallel::nfork(2).await?;
        children.exec(wq_reader, (name.clone(),)).await?;
        let rate = parallel_examples::workqueue_bench::drive(&children, &name, items)
            .await
            .map_err(|e| e.to_string())?;
        // The readers return once the queue is closed and drained.
        children.sync().await?;
        ours.push(rate);
    }
    Ok((median(ours), median(channel)))
}

// ---------------------------------------------------------------- Open MPI's side

/// The MPI program, built, and the version of Open MPI that built it.
struct Mpi {
    dir: PathBuf,
    exe: PathBuf,
    version: String,
}

impl Mpi {
    /// Writes `allreduce.c` to a temporary directory and builds it with `mpicc -O2`.
    async fn build() -> Result<Mpi, String> {
        let version = tool_output("mpirun", &["--version"]).await?;
        let version = version
            .lines()
            .next()
            .unwrap_or("mpirun (version unknown)")
            .to_owned();
        let dir = std::env::temp_dir().join(format!("bench-collectives-{}", std::process::id()));
        let source = dir.join("allreduce.c");
        let exe = dir.join("allreduce");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&source, MPI_SOURCE))
            .map_err(|e| format!("cannot write {}: {e}", source.display()))?;
        let mpi = Mpi { dir, exe, version };
        let (src, out) = (path_str(&source)?, path_str(&mpi.exe)?);
        tool_output("mpicc", &["-O2", src, "-o", out]).await?;
        Ok(mpi)
    }

    /// Runs the plan with `ranks` MPI ranks; the median seconds of a call
    /// per configuration.
    async fn run(&self, ranks: usize, plan: &[Config]) -> Result<Vec<f64>, String> {
        let np = ranks.to_string();
        let mut args = vec!["-np", np.as_str()];
        args.extend(MPIRUN_FLAGS);
        args.push(path_str(&self.exe)?);
        let config_args: Vec<String> = plan.iter().map(Config::mpi_arg).collect();
        args.extend(config_args.iter().map(String::as_str));
        let out = tool_output("mpirun", &args).await?;
        plan.iter()
            .map(|c| parse_result(&out, c.bytes, ranks))
            .collect()
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A path as `&str` (the temporary directory's always is, in practice).
fn path_str(path: &std::path::Path) -> Result<&str, String> {
    path.to_str().ok_or_else(|| {
        format!(
            "{} is not UTF-8; set TMPDIR to a plain path",
            path.display()
        )
    })
}

/// Runs `tool` with `args` within [`MPIRUN_TIMEOUT`]; its standard output,
/// or an error that says what went wrong and what to do.
async fn tool_output(tool: &str, args: &[&str]) -> Result<String, String> {
    let run = tokio::process::Command::new(tool)
        .args(args)
        // Open MPI refuses to run as root unless told these.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(MPIRUN_TIMEOUT, run).await {
        Err(_) => {
            return Err(format!(
                "`{tool}` ran past {} s; check that `{tool} {}` finishes on its own",
                MPIRUN_TIMEOUT.as_secs(),
                args.join(" ")
            ));
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("`{tool}` not found; {INSTALL_HINT}"));
        }
        Ok(Err(e)) => return Err(format!("cannot run `{tool}`: {e}; {INSTALL_HINT}")),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "`{tool} {}` failed ({}):\n{stdout}{}\n{INSTALL_HINT}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// The median seconds in the line `RESULT <bytes> <ranks> <iters> <seconds>`
/// for `bytes` and `ranks` in the MPI program's output.
fn parse_result(out: &str, bytes: usize, ranks: usize) -> Result<f64, String> {
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["RESULT", b, r, _iters, secs] = words.as_slice()
            && b.parse() == Ok(bytes)
            && r.parse() == Ok(ranks)
        {
            return match secs.parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
                _ => Err(format!(
                    "the MPI program printed a bad time in `{line}`; rebuild it from examples/mpi/allreduce.c"
                )),
            };
        }
    }
    Err(format!(
        "the MPI program printed no `RESULT {bytes} {ranks} …` line; its output was:\n{out}\n\
         run `mpirun -np {ranks} {}` by hand to see why ({INSTALL_HINT})",
        MPIRUN_FLAGS.join(" ")
    ))
}

// ---------------------------------------------------------------- memcpy and channel baselines

/// GB/s of the best of [`MEMCPY_REPS`] single-threaded copies of `bytes`
/// into a buffer already touched.
fn best_memcpy_gbps(bytes: usize) -> f64 {
    let src = vec![1f32; bytes / 4];
    let mut dst = vec![0f32; bytes / 4];
    (0..MEMCPY_REPS)
        .map(|_| report::memcpy_gbps(&src, &mut dst))
        .fold(0.0, f64::max)
}

/// Items per second through a `std::sync::mpsc` channel that 2 threads of
/// this process read (sharing the receiver), from the first write until
/// both readers have seen the channel close.
fn channel_items_per_s(items: u64) -> Result<f64, BoxError> {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let start = Instant::now();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                loop {
                    let item = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return n,
                    };
                    match item {
                        Ok(_) => n += 1,
                        Err(_) => return n,
                    }
                }
            })
        })
        .collect();
    for i in 0..items {
        tx.send(i)?;
    }
    drop(tx);
    let mut read = 0;
    for r in readers {
        read += r.join().map_err(|_| "a channel reader panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    if read != items {
        return Err(format!("the channel readers saw {read} items of {items}").into());
    }
    Ok(items as f64 / secs)
}

// ---------------------------------------------------------------- main

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The copy of this program that is the raw quinn server.
    if let Some(served) = raw::serve_if_asked().await {
        return served.map_err(|e| e as Box<dyn Error>);
    }
    let json = std::env::args().any(|a| a == "--json");
    let quick = std::env::args().any(|a| a == "--quick");
    run(json, quick).await.map_err(|e| e as Box<dyn Error>)
}

async fn run(json: bool, quick: bool) -> Result<(), BoxError> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mpi = match Mpi::build().await {
        Ok(mpi) => Some(mpi),
        Err(e) => {
            eprintln!("[bench] no MPI baseline (the column reads n/a): {e}");
            None
        }
    };
    let mpi_version = mpi.as_ref().map(|m| m.version.clone());
    let header = format!(
        "bench_collectives: nproc {nproc}, every rank on this machine{}; baseline {}, mpirun -np N {}; \
         machines here are noisy: compare the ratios to the same-run baselines, not the absolute numbers",
        if quick { ", --quick" } else { "" },
        mpi_version.as_deref().unwrap_or("Open MPI n/a"),
        MPIRUN_FLAGS.join(" ")
    );
    report::header(json, &header);

    let mut memcpy = Vec::new();
    for mib in SIZES_MIB {
        let gbps = best_memcpy_gbps(mib * MIB);
        eprintln!("[bench] memcpy {mib} MiB, single thread, best of {MEMCPY_REPS}: {gbps:.2} GB/s");
        memcpy.push(gbps);
    }

    // Per group size: (our median seconds, MPI's) per configuration.
    let rounds = if quick { 1 } else { ROUNDS };
    let mut results = Vec::new();
    for ranks in RANKS {
        let plan = plan(ranks, quick);
        eprintln!(
            "[bench] {ranks} ranks, {rounds} rounds alternating MPI and ours, median of the rounds' medians: {}",
            plan.iter()
                .map(|c| format!("{} B x ({} warm-up + {} timed)", c.bytes, c.warmup, c.timed))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut theirs: Option<Vec<Vec<f64>>> = mpi.as_ref().map(|_| vec![Vec::new(); plan.len()]);
        let mut ours_rounds = vec![Vec::new(); plan.len()];
        for _ in 0..rounds {
            if let (Some(mpi), Some(per_config)) = (&mpi, &mut theirs) {
                match mpi.run(ranks, &plan).await {
                    Ok(t) => per_config.iter_mut().zip(t).for_each(|(v, s)| v.push(s)),
                    Err(e) => {
                        eprintln!("[bench] MPI baseline failed at {ranks} ranks (n/a): {e}");
                        theirs = None;
                    }
                }
            }
            let round = ours(Tree::global(), ranks, &plan).await?;
            ours_rounds
                .iter_mut()
                .zip(round)
                .for_each(|(v, s)| v.push(s));
        }
        let ours: Vec<f64> = ours_rounds.into_iter().map(median).collect();
        let theirs: Option<Vec<f64>> = theirs.map(|t| t.into_iter().map(median).collect());
        results.push((ranks, plan, ours, theirs));
    }

    let quic = allreduce_over_quic(rounds, quick).await?;

    let items = if quick { WQ_ITEMS_QUICK } else { WQ_ITEMS };
    eprintln!(
        "[bench] work queue: {items} u64 items to 2 reader processes vs std::sync::mpsc to 2 reader \
         threads, {WQ_RUNS} runs alternating, median"
    );
    let (workqueue, channel) = workqueue_items_per_s(items).await?;

    let mut metrics = Vec::new();
    for (ranks, plan, ours, theirs) in &results {
        for (i, c) in plan.iter().enumerate() {
            let mpi_secs = theirs.as_ref().map(|t| t[i]);
            if c.bytes == LATENCY_BYTES {
                metrics.push(Metric {
                    key: Some("allreduce_8b_latency_us".into()),
                    ratio_key: "allreduce_8b_latency_us_ratio".into(),
                    label: format!("allreduce 8 B {ranks} ranks"),
                    unit: "us",
                    value: ours[i] * 1e6,
                    baseline_label: "MPI_Allreduce".into(),
                    baseline_key: Some("allreduce_8b_latency_us_mpi".into()),
                    baseline: mpi_secs.map(|s| s * 1e6),
                    goal: None,
                });
                continue;
            }
            let mib = c.bytes / MIB;
            let key = format!("allreduce_sum_{mib}mib_{ranks}ranks_gbps");
            let gbps = |secs: f64| c.bytes as f64 / secs / 1e9;
            metrics.push(Metric {
                key: Some(key.clone()),
                ratio_key: format!("{key}_ratio"),
                label: format!("allreduce {mib} MiB {ranks} ranks"),
                unit: "GB/s",
                value: gbps(ours[i]),
                baseline_label: "MPI_Allreduce".into(),
                baseline_key: Some(format!("{key}_mpi")),
                baseline: mpi_secs.map(gbps),
                goal: Some(Goal::AtLeast(if mib == 1 { 0.5 } else { 1.0 })),
            });
        }
    }
    for (ranks, plan, ours, _) in &results {
        if let Some(i) = plan.iter().position(|c| c.bytes == 64 * MIB) {
            metrics.push(Metric {
                key: None,
                ratio_key: format!("allreduce_sum_64mib_{ranks}ranks_memcpy_fraction"),
                label: format!("allreduce 64 MiB {ranks} ranks"),
                unit: "GB/s",
                value: 64.0 * MIB as f64 / ours[i] / 1e9,
                baseline_label: "memcpy 64 MiB".into(),
                baseline_key: None,
                baseline: memcpy.last().copied(),
                goal: Some(Goal::AtLeast(0.4)),
            });
        }
    }
    let quic_gbps = QUIC_BYTES as f64 / quic.allreduce_secs / 1e9;
    let quic_label = format!("allreduce 16 MiB {QUIC_RANKS} ranks QUIC");
    metrics.push(Metric {
        key: Some("allreduce_quic_16mib_2ranks_gbps".into()),
        ratio_key: "allreduce_quic_16mib_2ranks_ratio".into(),
        label: quic_label.clone(),
        unit: "GB/s",
        value: quic_gbps,
        baseline_label: "raw quinn one way".into(),
        baseline_key: Some("raw_quinn_bulk_16mib_gbps".into()),
        baseline: Some(quic.one_way_gbps),
        goal: Some(Goal::AtLeast(0.8)),
    });
    metrics.push(Metric {
        key: None,
        ratio_key: "allreduce_quic_16mib_2ranks_both_ways_ratio".into(),
        label: quic_label,
        unit: "GB/s",
        value: quic_gbps,
        baseline_label: "raw quinn both ways".into(),
        baseline_key: Some("raw_quinn_bulk_both_ways_16mib_gbps".into()),
        baseline: Some(quic.both_ways_gbps),
        goal: None,
    });
    metrics.push(Metric {
        key: Some("workqueue_items_per_s".into()),
        ratio_key: "workqueue_items_per_s_ratio".into(),
        label: "workqueue 2 readers".into(),
        unit: "items/s",
        value: workqueue,
        baseline_label: "mpsc, 2 threads".into(),
        baseline_key: Some("workqueue_items_per_s_channel".into()),
        baseline: Some(channel),
        goal: None,
    });
    metrics.push(Metric {
        key: None,
        ratio_key: "workqueue_items_per_s_target_ratio".into(),
        label: "workqueue 2 readers".into(),
        unit: "items/s",
        value: workqueue,
        baseline_label: "target".into(),
        baseline_key: None,
        baseline: Some(WQ_TARGET_ITEMS_PER_S),
        goal: Some(Goal::AtLeast(1.0)),
    });

    if json {
        let mut fields = vec![
            json_field("open_mpi", &json_string(mpi_version.as_deref())),
            json_field("quick", if quick { "true" } else { "false" }),
        ];
        for (mib, gbps) in SIZES_MIB.iter().zip(&memcpy) {
            let key = if *mib == 64 {
                "memcpy_gbps".to_owned()
            } else {
                format!("memcpy_{mib}mib_gbps")
            };
            fields.push(json_field(&key, &json_number(Some(*gbps))));
        }
        for m in &metrics {
            fields.extend(m.json_fields());
        }
        println!("{{{}}}", fields.join(","));
    } else {
        for m in &metrics {
            println!("{}", m.text(WIDTHS));
        }
        if mpi.is_none() {
            println!("MPI_Allreduce n/a: {INSTALL_HINT}");
        }
        println!(
            "(the QUIC row's limit here: raw quinn carried 16 MiB each way at once at {:.2} of one way; a 2-rank \
             AllReduce moves the buffer each way at once, and on this machine both processes encrypt what they \
             send and decrypt what they take on the same {} cores, so no program reaches 0.80 of one way; that \
             needs a core per direction, as two hosts have. The AllReduce ran at {:.2} of that limit.)",
            quic.both_ways_gbps / quic.one_way_gbps,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            quic_gbps / quic.both_ways_gbps
        );
        println!(
            "(memcpy, single thread: {})",
            SIZES_MIB
                .iter()
                .zip(&memcpy)
                .map(|(mib, g)| format!("{mib} MiB {g:.2} GB/s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- report

/// The table's column widths.
const WIDTHS: Widths = Widths {
    label: 31,
    figure: 10,
    unit: 7,
    ratio: 6,
};

/// One figure of the report, next to its same-run baseline.
struct Metric {
    /// The figure's JSON key; `None` where another row has the figure.
    key: Option<String>,
    /// The ratio's JSON key.
    ratio_key: String,
    label: String,
    unit: &'static str,
    value: f64,
    baseline_label: String,
    /// The baseline's JSON key, if it has its own.
    baseline_key: Option<String>,
    /// `None`: the baseline could not run.
    baseline: Option<f64>,
    /// `None`: no target, only context.
    goal: Option<Goal>,
}

impl Metric {
    fn ratio(&self) -> Option<f64> {
        Some(self.value / self.baseline?)
    }

    /// The table line, in the layout of `parallel_examples::report`.
    fn text(&self, w: Widths) -> String {
        let (l, f, u, r) = (w.label, w.figure, w.unit, w.ratio);
        let unit = if self.unit == "us" { "µs" } else { self.unit };
        let (label, baseline) = (&self.label, &self.baseline_label);
        let base = self.baseline.map_or("n/a".to_owned(), report::figure);
        let value = report::figure(self.value);
        let target = match (&self.goal, self.ratio()) {
            (None, _) => "(no target)".to_owned(),
            (Some(goal), ratio) => {
                let (op, t, met) = match *goal {
                    Goal::AtMost(t) => ("<=", t, ratio.map(|x| x <= t)),
                    Goal::AtLeast(t) => (">=", t, ratio.map(|x| x >= t)),
                };
                let verdict = match met {
                    Some(true) => "",
                    Some(false) => ", missed",
                    None => ", not checked",
                };
                format!("(target {op} {t:.2}{verdict})")
            }
        };
        let ratio = self.ratio().map_or("n/a".to_owned(), |x| format!("{x:.2}"));
        format!(
            "{label:<l$} {value:>f$} {unit:<u$} {baseline:<20} {base:>f$} {unit:<u$} \
             ratio {ratio:>r$} {target}"
        )
    }

    /// Its `"key":value` pairs: the figure and the baseline (those with a
    /// key of their own in this row) and the ratio.
    fn json_fields(&self) -> Vec<String> {
        let mut fields = Vec::new();
        if let Some(key) = &self.key {
            fields.push(json_field(key, &json_number(Some(self.value))));
        }
        if let Some(key) = &self.baseline_key {
            fields.push(json_field(key, &json_number(self.baseline)));
        }
        fields.push(json_field(&self.ratio_key, &json_number(self.ratio())));
        fields
    }
}

/// `"key":value`.
fn json_field(key: &str, value: &str) -> String {
    format!("\"{key}\":{value}")
}

/// A number, or `null` when absent or not finite.
fn json_number(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_owned(), report::json_number)
}

/// A string (ours hold no quotes or backslashes but are escaped anyway), or `null`.
fn json_string(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        None => "null".to_owned(),
    }
}
