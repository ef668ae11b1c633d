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

use parallel::cluster::{self, HeadOptions, NodeOptions};
use parallel::pool::{Pool, Worker};
use parallel::{JoinLine, Password};
use parallel_examples::{Worker as Part, one_time_password, role, stdin_closed};

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
parallel::register_worker!(Trainer);
// ANCHOR_END: worker

const HEAD_LINE_ENV: &str = "S4_HEAD_LINE";

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match role().as_deref() {
        Some("head") => return run_head().await,
        Some("node") => return run_node().await,
        _ => {}
    }
    let password = one_time_password();
    let data = std::env::temp_dir().join(format!("s4_pool-{}", std::process::id()));
    let head = Part::start_with(
        "head",
        &password,
        &[("S4_DATA", data.display().to_string())],
    )
    .await?;
    let line = head.join_line.clone();
    let mut nodes = Vec::new();
    for n in 0..2 {
        let dir = data.join(format!("node{n}"));
        nodes.push(
            Part::start_with(
                "node",
                &password,
                &[
                    (HEAD_LINE_ENV, line.to_string()),
                    ("S4_DATA", dir.display().to_string()),
                ],
            )
            .await?,
        );
    }

    // ANCHOR: pool
    let parameter_sets: Vec<Params> = (0..40)
        .map(|i| Params {
            learning_rate: 0.01 * (i + 1) as f64,
            epochs: 3,
            seed: (i % 2 == 0).then_some(i as u64),
        })
        .collect();
    let started = Instant::now();
    let mut pool = Pool::<Trainer>::connect(&line, Password::new(password.clone()), 2_000).await?;
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

    for part in nodes.into_iter().chain([head]) {
        part.stop().await?;
    }
    let _ = std::fs::remove_dir_all(&data);
    if results.len() != 40 || results.iter().any(|r| r.is_err()) {
        return Err("some jobs gave no result".into());
    }
    Ok(())
}

async fn run_head() -> Result<(), Box<dyn Error>> {
    let data = std::env::var("S4_DATA")?;
    let options = HeadOptions::new(Password::resolve()?)
        .listen("127.0.0.1:0".parse()?)
        .data(data);
    let head = cluster::start_head(options).await?;
    println!("READY {}", head.join_line());
    stdin_closed().await;
    head.stop().await;
    Ok(())
}

async fn run_node() -> Result<(), Box<dyn Error>> {
    let line: JoinLine = std::env::var(HEAD_LINE_ENV)?.parse()?;
    let options = NodeOptions::new(line.clone(), Password::resolve()?)
        .workers(2)
        .data(std::env::var("S4_DATA")?);
    let node = cluster::start_node(options).await?;
    println!("READY {line}");
    stdin_closed().await;
    node.stop().await;
    Ok(())
}
