//! The s4 seed's example: a worker type, a head and two worker nodes, and a
//! pool that maps parameter sets over them.
//!
//! This program plays every part on one machine: it starts a head and two
//! node agents as processes of itself (on two machines you would run
//! `parallel head` and `parallel node --join LINE` instead), then connects a
//! pool. The nodes run the workers as processes of this very program, which
//! the pool ships to the head: nothing is installed on them.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s4_pool`.

use std::error::Error;
use std::time::Instant;

use parallel::pool::{Pool, Worker};
use parallel_examples::local_cluster::{self, LocalCluster};

// ANCHOR: worker
/// The seed's `WorkerClass`: heavy preparation once per worker, then jobs.
struct Trainer {
    /// What `init` prepared (here: a table every job reads).
    weights: Vec<f64>,
}

/// One job: the seed's `run(parameter_1, parameter_2, parameter_3=None)`.
#[parallel::wire]
struct Params {
    learning_rate: f64,
    epochs: u32,
    seed: Option<u64>,
}

#[parallel::worker]
impl Worker for Trainer {
    type Init = u32;
    type Job = Params;
    type Output = f64;
    type Update = ();

    fn init(size: u32) -> Self {
        // "download_dataset(); preprocess_dataset(); do_heavy_work()"
        let weights = (0..size).map(|i| (i as f64).sin()).collect();
        Trainer { weights }
    }

    fn run(&mut self, p: Params) -> f64 {
        // "train_network(parameter_1, parameter_2); evaluate_network(parameter_3)"
        let shift = p.seed.unwrap_or(0) as f64;
        let mut score = 0.0;
        for epoch in 0..p.epochs {
            for w in &self.weights {
                score += (w * p.learning_rate + shift + epoch as f64).cos();
            }
        }
        score / (p.epochs.max(1) as f64 * self.weights.len() as f64)
    }
}
// ANCHOR_END: worker

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(part) = local_cluster::run_part().await {
        return part; // this process is the head or a node
    }
    // On two machines: `parallel head` on one, `parallel node --join LINE` on the other.
    let cluster = LocalCluster::start(2, 2).await?;
    let (line, password) = (cluster.line.clone(), cluster.password());

    // ANCHOR: pool
    let parameter_sets: Vec<Params> = (0..40)
        .map(|i| Params {
            learning_rate: 0.01 * (i + 1) as f64,
            epochs: 3,
            seed: (i % 2 == 0).then_some(i as u64),
        })
        .collect();
    let started = Instant::now();
    let mut pool = Pool::<Trainer>::connect(&line, password, 2_000).await?;
    let results = pool.map(parameter_sets).await?;
    println!(
        "[s4] {} results from {} workers on {} nodes in {:.2?}",
        results.len(),
        pool.workers_count().await?,
        pool.nodes_count().await?,
        started.elapsed()
    );
    for (i, r) in results.iter().enumerate().take(5) {
        println!(
            "[s4] job {i}: score {:.6}",
            r.as_ref().map_err(|e| e.to_string())?
        );
    }
    pool.close().await;
    // ANCHOR_END: pool

    cluster.stop().await?;
    if results.len() != 40 || results.iter().any(|r| r.is_err()) {
        return Err("some jobs gave no result".into());
    }
    Ok(())
}
