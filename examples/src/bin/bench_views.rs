//! s5's direct views against same-run baselines.
//!
//! Run with `cargo run --release -p parallel-examples --bin bench_views`
//! (`--json` prints one JSON object per figure; `--quick` does fewer rounds).
//!
//! | bench | framework | baseline |
//! |---|---|---|
//! | `apply_sync_rtt_p50_us` | `rc.view(0).apply_sync(f, ())` of a no-op `#[parallel::remote]` function, the engines on another CPU than the client (`parallel_examples::placement`) | a raw quinn 16-byte ping to another process of this program on loopback (`parallel_examples::raw`), placed alike, in blocks alternating with the applies' |
//! | `apply_sync_rtt_p50_us_one_cpu` | the same, with every process of the run on one CPU | the same ping, also on that CPU |
//! | `push_pull_64mib_gbps` | `push` then `pull` of 64 MiB (`Vec<u8>`) to an engine on this machine | one single-threaded 64 MiB `memcpy` |
//! | `lb_tiny_tasks_per_s` | `load_balanced_view().map_sync` of a no-op function, 2 engines | Python `multiprocessing.Pool(2).map(f, range(N), chunksize=1)` when `python3` is there; and `Pool::map` of the same no-op jobs on 2 pool workers of the same cluster (target 0.8) |

use std::error::Error;
use std::time::{Duration, Instant};

use parallel::client::Client;
use parallel_examples::local_cluster::{self, LocalCluster};
use parallel_examples::report::{self, Goal, Row, Widths};
use parallel_examples::{multiprocessing, raw};

/// Does nothing, on an engine.
#[parallel::remote]
fn noop() -> u32 {
    0
}

/// Gives its argument back, on an engine.
#[parallel::remote]
fn echo(x: u64) -> u64 {
    x
}

/// A pool worker that gives its job back: the same tiny job as `echo`,
/// through a `Pool` on the same cluster (the same-run baseline of the
/// load-balanced view).
struct Echo;

impl parallel::pool::Worker for Echo {
    type Init = ();
    type Job = u64;
    type Output = u64;
    type Update = ();

    fn init((): ()) -> Self {
        Echo
    }

    fn run(&mut self, x: u64) -> u64 {
        x
    }
}
parallel::register_worker!(Echo);

const MIB: usize = 1 << 20;

/// Whether every result is its own place (what echoing 0..n gives).
fn echoes_its_place<E>(results: &[Result<u64, E>]) -> bool {
    results
        .iter()
        .enumerate()
        .all(|(i, r)| r.as_ref().ok() == Some(&(i as u64)))
}
/// Rounds of load-balanced tasks alternating with rounds of pool jobs.
const LB_ROUNDS: usize = 3;
/// Blocks of applies alternating with blocks of raw pings.
const BLOCKS: usize = 10;

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(part) = local_cluster::run_part().await {
        return part;
    }
    if let Some(served) = raw::serve_if_asked().await {
        return served.map_err(|e| e as Box<dyn Error>);
    }
    let json = std::env::args().any(|a| a == "--json");
    let quick = std::env::args().any(|a| a == "--quick");
    let (pings, rounds, tasks) = if quick {
        (100, 2, 2_000)
    } else {
        (1_000, 5, 20_000)
    };
    report::header(
        json,
        &format!(
            "[bench] views: {pings} applies, {rounds} push/pull rounds of 64 MiB, {LB_ROUNDS} rounds of {tasks} load-balanced tasks and pool jobs, median"
        ),
    );
    let cluster = LocalCluster::start(1, 2).await?;
    let mut rc = Client::connect(&cluster.line, cluster.password()).await?;
    rc.wait_for_engines(2, Duration::from_secs(60)).await?;
    // The same tiny tasks through the load-balanced view and as jobs of a
    // pool on two pool workers of the same node, in alternating rounds.
    let mut pool =
        parallel::pool::Pool::<Echo>::connect(&cluster.line, cluster.password(), ()).await?;
    pool.progress(false);
    pool.map(0..100u64).await?;
    let mut lb = rc.load_balanced_view();
    lb.map_sync(echo, (0..100u64).map(|x| (x,))).await?;
    let (mut lb_rates, mut pool_rates) = (Vec::new(), Vec::new());
    for _ in 0..LB_ROUNDS {
        let t = Instant::now();
        let echoed = lb.map_sync(echo, (0..tasks).map(|x| (x,))).await?;
        lb_rates.push(tasks as f64 / t.elapsed().as_secs_f64());
        if !echoes_its_place(&echoed) {
            return Err("a load-balanced task gave a wrong result".into());
        }
        let t = Instant::now();
        let pooled = pool.map(0..tasks).await?;
        pool_rates.push(tasks as f64 / t.elapsed().as_secs_f64());
        if !echoes_its_place(&pooled) {
            return Err("a pool job gave a wrong result".into());
        }
    }
    pool.close().await;
    let (lb_rate, pool_rate) = (report::median(lb_rates), report::median(pool_rates));
    let view = rc.view(0)?;
    for _ in 0..50 {
        view.apply_sync(noop, ()).await?;
    }
    // Applies and raw pings in alternating blocks, so that both see the
    // same machine: all on one CPU, then the engines on another CPU than
    // this client.
    let trips = raw::alternate_p50_us(pings, BLOCKS, raw::Floor::None, async |_| {
        view.apply_sync(noop, ()).await.map(drop)
    })
    .await
    .map_err(|e| e.to_string())?;
    let data = vec![7u8; 64 * MIB];
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        view.push("blob", &data).await?;
        let back: Vec<Vec<u8>> = view.pull("blob").await?;
        let secs = t.elapsed().as_secs_f64();
        if back.first().map(Vec::len) != Some(data.len()) {
            return Err("the pulled blob is not the pushed one".into());
        }
        // Bytes moved: there and back.
        rates.push(2.0 * data.len() as f64 / secs / 1e9);
    }
    let push_pull = report::median(rates);
    view.clear().await?;
    drop(view);
    rc.close().await;
    cluster.stop().await?;
    let src = vec![1f32; 16 * MIB];
    let mut dst = vec![0f32; 16 * MIB];
    let memcpy = report::memcpy_gbps(&src, &mut dst);
    let py = multiprocessing::pool_of_two(tasks).map_or(f64::NAN, |(_, rate)| rate);
    let [rtt, rtt_one_cpu] = trips.rows(
        ["apply_sync_rtt_p50_us", "apply_sync_rtt_p50_us_one_cpu"],
        "apply_sync round trip",
        2.0,
    );
    let rows = [
        rtt,
        rtt_one_cpu,
        Row::new(
            ["push_pull_64mib_gbps", "push+pull 64 MiB", "GB/s", "memcpy"],
            Goal::AtLeast(0.3),
            push_pull,
            memcpy,
        ),
        Row::new(
            [
                "lb_tiny_tasks_per_s",
                "load-balanced tiny tasks",
                "/s",
                "multiprocessing",
            ],
            Goal::AtLeast(1.0),
            lb_rate,
            py,
        ),
        Row::new(
            [
                "lb_tiny_tasks_per_s",
                "load-balanced tiny tasks",
                "/s",
                "pool map, same cluster",
            ],
            Goal::AtLeast(0.8),
            lb_rate,
            pool_rate,
        ),
    ];
    let widths = Widths {
        label: 22,
        figure: 9,
        unit: 5,
        ratio: 6,
    };
    report::print(&rows, json, widths);
    Ok(())
}
