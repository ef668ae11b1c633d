//! The s4 seed's second example: results as they finish
//! (`imap_unordered`), each one sent back to every worker
//! (`update_workers`), so the workers keep a shared cache.
//!
//! Here the jobs search for the best of many candidates; each worker keeps
//! the best score found so far (by any worker) in its cache and skips the
//! expensive evaluation of a candidate whose cheap bound cannot beat it.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s4_update_workers`.

use std::error::Error;

use parallel::pool::{Pool, Worker};
use parallel_examples::local_cluster::{self, LocalCluster};

// ANCHOR: worker
/// A result: the candidate, its score (if it was evaluated), and how many
/// updates the worker had seen when it ran the job.
#[parallel::wire]
#[derive(Clone)]
struct Found {
    candidate: u64,
    score: Option<f64>,
    cache_updates: u32,
}

/// Keeps the best score any worker found (the shared cache).
struct Searcher {
    best: f64,
    updates: u32,
}

/// The expensive evaluation.
fn evaluate(candidate: u64) -> f64 {
    let x = candidate as f64 / 100.0;
    (0..20_000)
        .map(|i| (x + i as f64 * 1e-4).sin())
        .sum::<f64>()
        / 20_000.0
}

/// A cheap upper bound of [`evaluate`].
fn bound(candidate: u64) -> f64 {
    evaluate(candidate / 10 * 10) + 0.05
}

impl Worker for Searcher {
    type Init = ();
    type Job = u64;
    type Output = Found;
    type Update = Found;

    fn init(_: ()) -> Self {
        Searcher {
            best: f64::MIN,
            updates: 0,
        }
    }

    fn run(&mut self, candidate: u64) -> Found {
        // Skip a candidate the cache says cannot win.
        let score = (bound(candidate) > self.best).then(|| evaluate(candidate));
        Found {
            candidate,
            score,
            cache_updates: self.updates,
        }
    }

    fn handle_update(&mut self, found: Found) {
        self.updates += 1;
        if let Some(score) = found.score {
            self.best = self.best.max(score);
        }
    }
}
parallel::register_worker!(Searcher);
// ANCHOR_END: worker

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(part) = local_cluster::run_part().await {
        return part; // this process is the head or a node
    }
    let cluster = LocalCluster::start(2, 2).await?;
    let (line, password) = (cluster.line.clone(), cluster.password());

    // ANCHOR: pool
    let mut pool = Pool::<Searcher>::connect(&line, password, ()).await?;
    let mut results = Vec::new();
    let mut stream = pool.imap_unordered(0..200u64);
    while let Some(result) = stream.next().await {
        let found = result?;
        results.push(found.clone());
        // The seed's `p.update_workers(result)`: every worker's cache learns it.
        stream.pool().update_workers(&found).await?;
    }
    drop(stream);
    // ANCHOR_END: pool
    let evaluated = results.iter().filter(|f| f.score.is_some()).count();
    let best = results
        .iter()
        .filter_map(|f| f.score.map(|s| (s, f.candidate)))
        .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a });
    let most_updates = results.iter().map(|f| f.cache_updates).max().unwrap_or(0);
    println!(
        "[s4] {} results; {evaluated} evaluated, {} skipped thanks to the shared cache",
        results.len(),
        results.len() - evaluated
    );
    println!("[s4] best candidate {} with score {:.6}", best.1, best.0);
    println!("[s4] the last jobs ran on workers that had seen {most_updates} updates");
    pool.close().await;
    cluster.stop().await?;
    if results.len() != 200 || most_updates == 0 {
        return Err("the workers never saw an update".into());
    }
    Ok(())
}
