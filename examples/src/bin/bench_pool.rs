//! The s4 pool against same-run baselines.
//!
//! Run with `cargo run --release -p parallel-examples --bin bench_pool`
//! (`--json` prints one JSON object per figure on stdout; `--quick` runs
//! fewer jobs, for a smoke run).
//!
//! | bench | framework | baseline |
//! |---|---|---|
//! | `pool_tiny_jobs_per_s` | `Pool::map` of no-op `u64` jobs on 2 workers (head, ledger on, and node in this process), in rounds alternating with the Python baseline's runs, medians | Python `multiprocessing.Pool(2).map(f, range(N), chunksize=1)`; and a `std::sync::mpsc` two-thread pool |
//! | `pool_job_rtt_p50_us` | one job at a time through the pool, the workers on another CPU than this process (`parallel_examples::placement`) | a raw quinn 16-byte ping to another process of this program on loopback (`parallel_examples::raw`), placed alike, in blocks alternating with the jobs' |
//! | `pool_job_rtt_p50_us_one_cpu` | the same, with every process on one CPU | the same ping, also on that CPU |
//! | `pool_cold_start_ms` | `start_head_node` + `Pool::connect` + first result, on a fresh data directory: the median of 3 | Python `multiprocessing.Pool(2)` start + first result: the median of its 3 runs |
//! | `pool_kill_node` | 200 jobs of 50 ms on 2 nodes × 2 workers, one node SIGKILLed at 25 %: lost, duplicated, finished-then-rerun jobs, wall time | the ideal wall time |
//! | `head_rss_mib` | the head process's peak RSS with 10,000 queued 64 KiB jobs | the head's queue limit (512 MiB) |
//! | `pool_metrics_on_per_s` | tiny jobs/s on a head that records its activity and serves the dashboard, nobody looking | the same on a head that records nothing and serves no dashboard; blocks alternate between the two, medians |
//! | `pool_metrics_scraped_per_s` | the same, with `/metrics` scraped every 250 ms (4 times an open dashboard's rate) | likewise |
//!
//! Beside the round trips the bench prints their floor, measured in the
//! same run: a job crosses two hops each way (the pool to the head, the head
//! to a worker), and its result is on the head's disk before the pool gets
//! it, so no round trip through the head is shorter than two raw pings and
//! one durable write (a 4 KiB `write` + `fdatasync` in the head's data
//! directory, the least a ledger commit does).

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parallel::Password;
use parallel::cluster::{self, HeadOptions};
use parallel::pool::{Pool, Worker};
use parallel_examples::local_cluster::{self, LocalCluster};
use parallel_examples::report::{self, Goal, Row, Widths};
use parallel_examples::{multiprocessing, raw};

type BoxError = Box<dyn Error>;

/// One job: a number, how long to take, padding, and whether to note the run.
#[parallel::wire]
struct Job {
    n: u64,
    sleep_ms: u32,
    pad: Vec<u8>,
}

/// The bench's worker: answers `n`; notes every run in its runs directory
/// when it has one (for the kill-node bench).
struct Bench {
    runs: Option<PathBuf>,
}

impl Worker for Bench {
    type Init = String;
    type Job = Job;
    type Output = u64;
    type Update = ();

    fn init(runs: String) -> Self {
        Bench {
            runs: (!runs.is_empty()).then(|| PathBuf::from(runs)),
        }
    }

    fn run(&mut self, job: Job) -> u64 {
        if job.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(job.sleep_ms.into()));
        }
        if let Some(dir) = &self.runs {
            let name = format!("{}.{}.{}", job.n, std::process::id(), job.pad.len());
            let _ = std::fs::write(dir.join(name), b"");
        }
        job.n
    }
}
parallel::register_worker!(Bench);

fn tiny(n: u64) -> Job {
    Job {
        n,
        sleep_ms: 0,
        pad: Vec::new(),
    }
}

fn temp(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bench_pool-{what}-{}", std::process::id()))
}

/// A two-thread pool over `std::sync::mpsc`: jobs/s.
fn mpsc_pool(n: u64) -> f64 {
    use std::sync::{Arc, Mutex, mpsc};
    let (job_tx, job_rx) = mpsc::channel::<u64>();
    let (out_tx, out_rx) = mpsc::channel::<u64>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (rx, tx) = (job_rx.clone(), out_tx.clone());
            std::thread::spawn(move || {
                loop {
                    let job = rx.lock().map(|r| r.recv());
                    match job {
                        Ok(Ok(j)) => {
                            let _ = tx.send(std::hint::black_box(j));
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    for i in 0..n {
        let _ = job_tx.send(i);
    }
    drop(job_tx);
    let got = out_rx.iter().take(n as usize).count();
    let rate = got as f64 / start.elapsed().as_secs_f64();
    for t in threads {
        let _ = t.join();
    }
    rate
}

/// Blocks of one-job round trips alternating with blocks of raw pings.
const BLOCKS: usize = 10;
/// Rounds of tiny jobs, each followed by a run of the Python baseline; the
/// medians count.
const TINY_ROUNDS: usize = 3;

/// Cold starts measured: [`COLD_STARTS`] − 1 of their own, and the one
/// that begins [`in_process`]; the median counts.
const COLD_STARTS: usize = 3;

/// A head and node started in this process on the fresh data directory
/// `data` (2 workers), a pool connected to them and its first job's result:
/// the three, and the ms from start to result.
async fn started(data: &Path) -> Result<(ColdStarted, f64), BoxError> {
    let start = Instant::now();
    let secret = format!("{}", parallel::NodeId::new());
    let options = HeadOptions::new(Password::new(secret.clone()))
        .listen("127.0.0.1:0".parse()?)
        .data(data);
    let (head, node) = cluster::start_head_node(options, Some(2)).await?;
    let mut pool =
        Pool::<Bench>::connect(&head.join_line(), Password::new(secret), String::new()).await?;
    pool.progress(false);
    let first = pool.map([tiny(1)]).await?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match first.first() {
        Some(Ok(1)) => Ok(((head, node, pool), ms)),
        _ => Err("the first job gave no result".into()),
    }
}

/// What [`started`] started.
type ColdStarted = (cluster::HeadHandle, cluster::NodeHandle, Pool<Bench>);

/// One cold start of its own ([`started`]), stopped after: its ms.
async fn cold_start() -> Result<f64, BoxError> {
    let data = temp("cold");
    let ((head, node, pool), ms) = started(&data).await?;
    pool.close().await;
    node.stop().await;
    head.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(ms)
}

/// What [`in_process`] measured.
struct InProcess {
    /// Head, node and first result, ms: the median of [`COLD_STARTS`].
    cold_ms: f64,
    /// Tiny jobs per second: the median of [`TINY_ROUNDS`] rounds.
    rate: f64,
    /// The Python baseline's runs (cold start ms, tasks per second), one
    /// after each round; empty without `python3`.
    python: Vec<(f64, f64)>,
    /// One-job round trips and raw pings, p50 µs.
    trips: raw::RoundTrips,
    /// A durable 4 KiB append in the head's data directory, p50 µs.
    commit_us: f64,
}

/// Cold start, tiny-job rate (in rounds, each followed by a run of the
/// Python baseline), one-job round trips and raw pings on a head and node in
/// this process (2 workers).
async fn in_process(jobs: u64, pings: usize) -> Result<InProcess, BoxError> {
    let mut colds = Vec::with_capacity(COLD_STARTS);
    for _ in 1..COLD_STARTS {
        colds.push(cold_start().await?);
    }
    let data = temp("head");
    let ((head, node, mut pool), ms) = started(&data).await?;
    colds.push(ms);
    let cold_ms = report::median(colds);
    // Both workers up before the rate is measured.
    let wait = Instant::now();
    while pool.workers_count().await? < 2 && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut rates, mut python_runs) = (Vec::new(), Vec::new());
    for _ in 0..TINY_ROUNDS {
        let start = Instant::now();
        let results = pool.map((0..jobs).map(tiny)).await?;
        rates.push(jobs as f64 / start.elapsed().as_secs_f64());
        if results
            .iter()
            .enumerate()
            .any(|(i, r)| r.as_ref().ok() != Some(&(i as u64)))
        {
            return Err("a tiny job gave a wrong result".into());
        }
        // Off the runtime's thread: the head and node here keep running.
        let python = tokio::task::spawn_blocking(move || multiprocessing::pool_of_two(jobs));
        python_runs.extend(python.await?);
    }
    let rate = report::median(rates);
    // Jobs and raw pings in alternating blocks, so that both see the same
    // machine (all on one CPU, then the workers on another CPU than the head).
    let trips = raw::alternate_p50_us(pings, BLOCKS, raw::Floor::None, async |i| {
        pool.map([tiny(i)]).await.map(drop)
    })
    .await
    .map_err(|e| e.to_string())?;
    let commit_us = commit_p50_us(&data, pings)?;
    pool.close().await;
    node.stop().await;
    head.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(InProcess {
        cold_ms,
        rate,
        python: python_runs,
        trips,
        commit_us,
    })
}

/// The p50 in µs of `n` durable 4 KiB appends (`write` + `fdatasync`) to a
/// file in `dir`: the least a ledger commit costs on that disk.
fn commit_p50_us(dir: &Path, n: usize) -> std::io::Result<f64> {
    use std::io::Write;
    let path = dir.join("bench-commit");
    let mut file = std::fs::File::create(&path)?;
    let page = [0u8; 4096];
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&page)?;
        file.sync_data()?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(report::median(us))
}

/// Prints the floor under the one-job round trips: two raw pings (the
/// pool to the head to a worker, and back) and one durable commit (the
/// result is on the head's disk before it goes to the pool).
fn print_round_trip_floor(trips: &raw::RoundTrips, commit_us: f64) {
    for (placed, (job, ping)) in [("apart", trips.apart), ("on one CPU", trips.one_cpu)] {
        let floor = 2.0 * ping + commit_us;
        eprintln!(
            "[bench]   floor, {placed}: two raw pings ({ping:.1} µs each: pool -> head -> worker and back) + one \
             4 KiB write and fdatasync in the head's data directory ({commit_us:.1} µs: the result is durable before \
             it is sent) = {floor:.1} µs = {:.2} x one raw ping; one job round trip = {:.2} of that floor",
            floor / ping,
            job / floor
        );
    }
}

/// How often the bench scrapes `/metrics` when it does: 4 times as often
/// as an open dashboard asks the head, 60 times as often as Prometheus'
/// default.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Tiny jobs/s with metrics on (activity recorded, dashboard served, and
/// with `scraped` `/metrics` read every [`SCRAPE_EVERY`]) and off, on two
/// heads (2 workers each) in this process, `blocks` blocks of `jobs` each,
/// alternating: medians (on, off).
async fn metrics_overhead(jobs: u64, blocks: usize, scraped: bool) -> Result<(f64, f64), BoxError> {
    let secret = format!("{}", parallel::NodeId::new());
    let mut heads = Vec::new();
    let mut pools = Vec::new();
    for on in [true, false] {
        let data = temp(if on { "metrics-on" } else { "metrics-off" });
        let mut options = HeadOptions::new(Password::new(secret.clone()))
            .listen("127.0.0.1:0".parse()?)
            .data(&data)
            .record_activity(on);
        if on {
            options = options.dashboard(cluster::DashboardOptions::new("127.0.0.1:0".parse()?));
        }
        let (head, node) = cluster::start_head_node(options, Some(2)).await?;
        let mut pool = Pool::<Bench>::connect(
            &head.join_line(),
            Password::new(secret.clone()),
            String::new(),
        )
        .await?;
        pool.progress(false);
        let wait = Instant::now();
        while pool.workers_count().await? < 2 && wait.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        heads.push((head, node, data));
        pools.push(pool);
    }
    let board = heads[0]
        .0
        .dashboard()
        .map(|d| d.addr())
        .ok_or("the head with metrics serves no dashboard")?;
    // The scraper: /metrics every second, only while the metrics head works.
    let scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (scraping, done) = (scraping.clone(), done.clone());
        std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if scraping.load(std::sync::atomic::Ordering::Relaxed)
                    && parallel_examples::http_get(board, "/metrics").is_ok_and(|b| !b.is_empty())
                {
                    scrapes += 1;
                }
                std::thread::sleep(SCRAPE_EVERY);
            }
            scrapes
        })
    };
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut next = 0u64;
    for block in 0..blocks * 2 {
        let with = block % 2 == 0;
        scraping.store(with && scraped, std::sync::atomic::Ordering::Relaxed);
        let pool = &mut pools[if with { 0 } else { 1 }];
        let start = Instant::now();
        let results = pool.map((next..next + jobs).map(tiny)).await?;
        let rate = jobs as f64 / start.elapsed().as_secs_f64();
        if results.len() as u64 != jobs || results.iter().any(Result::is_err) {
            return Err("a tiny job gave no result".into());
        }
        next += jobs;
        if with { on.push(rate) } else { off.push(rate) }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper.join().map_err(|_| "the scraper panicked")?;
    eprintln!("[bench] metrics: {scrapes} scrapes of /metrics during the blocks with metrics");
    for pool in pools {
        pool.close().await;
    }
    for (head, node, data) in heads {
        node.stop().await;
        head.stop().await;
        let _ = std::fs::remove_dir_all(&data);
    }
    Ok((median(on), median(off)))
}

/// 200 jobs of 50 ms on 2 nodes × 2 workers, node 1 killed at 25 %:
/// (lost, duplicated, finished-then-rerun, wall s, ideal s).
async fn kill_node() -> Result<(u64, u64, u64, f64, f64), BoxError> {
    const JOBS: u64 = 200;
    const MS: u32 = 50;
    let runs = temp("runs");
    std::fs::create_dir_all(&runs)?;
    let cluster = LocalCluster::start(2, 2).await?;
    let mut pool = Pool::<Bench>::connect(
        &cluster.line,
        cluster.password(),
        runs.display().to_string(),
    )
    .await?;
    pool.progress(false);
    let wait = Instant::now();
    while pool.workers_count().await? < 4 && wait.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut before_kill = HashSet::new();
    let mut killed = false;
    {
        let jobs = (0..JOBS).map(|n| Job {
            n,
            sleep_ms: MS,
            pad: Vec::new(),
        });
        let mut stream = pool.imap_unordered(jobs);
        while let Some(r) = stream.next().await {
            let n = r?;
            *seen.entry(n).or_default() += 1;
            if !killed {
                before_kill.insert(n);
            }
            if !killed && seen.len() as u64 >= JOBS / 4 {
                // SAFETY: SIGKILL to a node process this bench started.
                unsafe { libc::kill(cluster.node_pid(1) as i32, libc::SIGKILL) };
                killed = true;
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    pool.close().await;
    cluster.stop().await?;
    let lost = (0..JOBS).filter(|n| !seen.contains_key(n)).count() as u64;
    let dup = seen.values().filter(|c| **c > 1).count() as u64;
    let mut ran: BTreeMap<u64, u32> = BTreeMap::new();
    for entry in std::fs::read_dir(&runs)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.split('.').next().and_then(|n| n.parse().ok()) {
            *ran.entry(n).or_default() += 1;
        }
    }
    let rerun = before_kill
        .iter()
        .filter(|n| ran.get(n).copied().unwrap_or(0) > 1)
        .count() as u64;
    let _ = std::fs::remove_dir_all(&runs);
    let quarter = JOBS as f64 / 4.0;
    let ideal = (quarter / 4.0 + (JOBS as f64 - quarter) / 2.0) * f64::from(MS) / 1000.0;
    Ok((lost, dup, rerun, wall, ideal))
}

/// The head process's peak RSS (MiB) while 10,000 jobs of 64 KiB queue.
async fn head_rss(jobs: u64) -> Result<f64, BoxError> {
    let cluster = LocalCluster::start(1, 1).await?;
    let mut pool = Pool::<Bench>::connect(&cluster.line, cluster.password(), String::new()).await?;
    pool.progress(false);
    let stream_jobs = (0..jobs).map(|n| Job {
        n,
        sleep_ms: 0,
        pad: vec![1; 64 << 10],
    });
    let results = pool.map(stream_jobs).await?;
    let rss = peak_rss_mib(cluster.head_pid())?;
    pool.close().await;
    cluster.stop().await?;
    if results.len() as u64 != jobs {
        return Err("jobs gave no result".into());
    }
    Ok(rss)
}

fn peak_rss_mib(pid: u32) -> Result<f64, BoxError> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no VmHWM in /proc/PID/status")?;
    Ok(kib / 1024.0)
}

#[parallel::main]
async fn main() -> Result<(), BoxError> {
    if let Some(part) = local_cluster::run_part().await {
        return part;
    }
    if let Some(served) = raw::serve_if_asked().await {
        return served.map_err(|e| e as BoxError);
    }
    let json = std::env::args().any(|a| a == "--json");
    let quick = std::env::args().any(|a| a == "--quick");
    let (tiny_jobs, pings, rss_jobs) = if quick {
        (2_000, 50, 1_000)
    } else {
        (20_000, 300, 10_000)
    };
    report::header(
        json,
        &format!(
            "[bench] pool: {tiny_jobs} tiny jobs, {pings} single jobs, {rss_jobs} jobs of 64 KiB"
        ),
    );
    let InProcess {
        cold_ms,
        rate,
        python,
        trips,
        commit_us,
    } = in_process(tiny_jobs, pings).await?;
    print_round_trip_floor(&trips, commit_us);
    let (py_cold, py_rate) = if python.is_empty() {
        eprintln!("[bench] python3 with multiprocessing not found: its baselines read n/a");
        (f64::NAN, f64::NAN)
    } else {
        let (colds, rates) = python.into_iter().unzip();
        (report::median(colds), report::median(rates))
    };
    let channel = mpsc_pool(tiny_jobs);
    let (blocks, block_jobs) = if quick { (3, 5_000) } else { (11, 40_000) };
    let (metrics_on, metrics_off) = metrics_overhead(block_jobs, blocks, false).await?;
    let (scraped_on, scraped_off) = metrics_overhead(block_jobs, blocks, true).await?;
    let (lost, dup, rerun, wall, ideal) = kill_node().await?;
    let rss = head_rss(rss_jobs).await?;
    let [rtt, rtt_one_cpu] = trips.rows(
        ["pool_job_rtt_p50_us", "pool_job_rtt_p50_us_one_cpu"],
        "one job round trip",
        2.0,
    );
    let rows = [
        Row::new(
            [
                "pool_tiny_jobs_per_s",
                "tiny jobs, 2 workers",
                "jobs/s",
                "multiprocessing",
            ],
            Goal::AtLeast(2.0),
            rate,
            py_rate,
        ),
        Row::new(
            [
                "pool_tiny_jobs_per_s_mpsc",
                "tiny jobs, 2 workers",
                "jobs/s",
                "mpsc 2 threads",
            ],
            Goal::AtLeast(0.0),
            rate,
            channel,
        ),
        Row::new(
            [
                "pool_metrics_on_per_s",
                "tiny jobs, metrics on",
                "jobs/s",
                "metrics off",
            ],
            Goal::AtLeast(0.98),
            metrics_on,
            metrics_off,
        ),
        Row::new(
            [
                "pool_metrics_scraped_per_s",
                "tiny jobs, scraped 4/s",
                "jobs/s",
                "metrics off",
            ],
            Goal::AtLeast(0.0),
            scraped_on,
            scraped_off,
        ),
        rtt,
        rtt_one_cpu,
        Row::new(
            [
                "pool_cold_start_ms",
                "head+node+first result",
                "ms",
                "multiprocessing",
            ],
            Goal::AtMost(3.0),
            cold_ms,
            py_cold,
        ),
        Row::new(
            ["pool_kill_node_wall_s", "kill a node at 25 %", "s", "ideal"],
            Goal::AtMost(1.5),
            wall,
            ideal,
        ),
        Row::new(
            ["head_rss_mib", "head peak RSS", "MiB", "queue limit"],
            Goal::AtMost(1.5),
            rss,
            512.0,
        ),
    ];
    let widths = Widths {
        label: 24,
        figure: 9,
        unit: 6,
        ratio: 6,
    };
    report::print(&rows, json, widths);
    let counts =
        format!("pool_kill_node: lost {lost}, duplicated {dup}, finished jobs re-run {rerun}");
    if json {
        println!(
            "{{\"bench\":\"pool_kill_node\",\"lost\":{lost},\"duplicated\":{dup},\"rerun\":{rerun}}}"
        );
    } else {
        println!("{counts}");
    }
    if lost + dup + rerun > 0 {
        return Err(counts.into());
    }
    Ok(())
}
