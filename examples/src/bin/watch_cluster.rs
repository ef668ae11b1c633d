//! Watching a cluster: a head that serves its dashboard and `/metrics`, a
//! node with two workers in this process, a pool that maps jobs, and a
//! scrape of `/metrics` as Prometheus would do it.
//!
//! `parallel head` serves the same dashboard by default
//! (`http://127.0.0.1:8265/`); this program asks for any free port so that
//! it runs beside one.
//!
//! Run it with `cargo run --release -p parallel-examples --bin watch_cluster`.

use std::error::Error;
use std::time::Duration;

use parallel::Password;
use parallel::cluster::{self, DashboardOptions, HeadOptions};
use parallel::pool::{Pool, Worker};
use parallel_examples::http_get;

/// Squares numbers, a little slowly, so that the task stream has bars.
struct Square;

#[parallel::worker]
impl Worker for Square {
    type Init = ();
    type Job = u64;
    type Output = u64;
    type Update = ();

    fn init(_: ()) -> Self {
        Square
    }

    fn run(&mut self, n: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(2));
        n * n
    }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let data = std::env::temp_dir().join(format!("watch_cluster-{}", std::process::id()));
    let password = Password::new(format!("{}", parallel::NodeId::new()));

    // ANCHOR: head
    let options = HeadOptions::new(password.clone())
        .listen("127.0.0.1:0".parse()?)
        .data(&data)
        // `parallel head --dashboard 127.0.0.1:0`
        .dashboard(DashboardOptions::new("127.0.0.1:0".parse()?));
    let (head, node) = cluster::start_head_node(options, Some(2)).await?;
    let board = head.dashboard().ok_or("the head serves no dashboard")?;
    println!("[watch] dashboard: {}", board.url());
    println!("[watch] metrics:   {}", board.metrics_url());
    // ANCHOR_END: head

    let mut pool = Pool::<Square>::connect(&head.join_line(), password, ()).await?;
    pool.progress(false);
    let squares = pool.map(0..500u64).await?;
    if squares
        .iter()
        .enumerate()
        .any(|(i, s)| s.as_ref().ok() != Some(&((i * i) as u64)))
    {
        return Err("a wrong square".into());
    }

    // ANCHOR: metrics
    let addr = board.addr();
    let mut metrics = tokio::task::spawn_blocking(move || http_get(addr, "/metrics")).await??;
    // A scrape shows what the head has recorded: on a busy machine its
    // counters may trail the results the pool already holds by a moment.
    for _ in 0..50 {
        if metrics.lines().any(|l| l == "parallel_jobs_done_total 500") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        metrics = tokio::task::spawn_blocking(move || http_get(addr, "/metrics")).await??;
    }
    let wanted = [
        "parallel_jobs_done_total ",
        "parallel_jobs_lost ",
        "parallel_nodes ",
    ];
    for line in metrics
        .lines()
        .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
    {
        println!("[watch] {line}");
    }
    // ANCHOR_END: metrics
    if !metrics.lines().any(|l| l == "parallel_jobs_done_total 500") {
        return Err(format!("/metrics does not count the 500 jobs:\n{metrics}").into());
    }
    if !metrics.lines().any(|l| l == "parallel_jobs_lost 0") {
        return Err(format!("/metrics says jobs were lost:\n{metrics}").into());
    }

    pool.close().await;
    node.stop().await;
    head.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
