//! The s5 seed's load-balanced view: tasks handed to whichever engine has
//! room, through the head (which records them and runs a task again if its
//! engine dies), a task that fails alone, tasks aborted before they start,
//! dependencies (`after`, `follow`, a timeout that fires, one that can never
//! be met), and the seed's `@remote` / `@parallel` functions on a direct
//! view.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s5_load_balanced`.

use std::error::Error;
use std::time::{Duration, Instant};

use parallel::client::{Client, ClientError};
use parallel_examples::local_cluster::{self, LocalCluster};

// ANCHOR: functions
/// Simulated work: `ms` milliseconds, then which engine process did it.
#[parallel::remote]
fn work(task: u32, ms: u64) -> (u32, u32) {
    std::thread::sleep(Duration::from_millis(ms));
    (task, std::process::id())
}

/// Says what it does, then does it.
#[parallel::remote]
fn announced(x: u64) -> u64 {
    parallel::print!("squaring {x}");
    x * x
}

/// Fails on a bad input.
#[parallel::remote]
fn checked_sqrt(x: f64) -> f64 {
    assert!(x >= 0.0, "no square root of {x}");
    x.sqrt()
}
// ANCHOR_END: functions

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(part) = local_cluster::run_part().await {
        return part; // this process is the head or the node
    }
    let cluster = LocalCluster::start(1, 3).await?;
    let mut rc = Client::connect(&cluster.line, cluster.password()).await?;
    rc.wait_for_engines(3, Duration::from_secs(60)).await?;

    // ANCHOR: balanced
    let mut lview = rc.load_balanced_view();
    let started = Instant::now();
    // Uneven tasks: the engines that finish sooner take more.
    let tasks = (0..30u32).map(|t| (t, if t % 3 == 0 { 60 } else { 10 }));
    let done = lview.map_sync(work, tasks).await?;
    let mut per_engine = std::collections::BTreeMap::<u32, usize>::new();
    for (_, pid) in done.iter().flatten() {
        *per_engine.entry(*pid).or_default() += 1;
    }
    println!(
        "30 tasks in {:.0?} over {} engines: {:?} tasks each",
        started.elapsed(),
        per_engine.len(),
        per_engine.values().collect::<Vec<_>>()
    );
    let roots = lview
        .map_sync(checked_sqrt, [(16.0,), (-1.0,), (2.25,)])
        .await?;
    for r in &roots {
        match r {
            Ok(root) => println!("sqrt -> {root}"),
            Err(e) => println!("sqrt -> {e}"),
        }
    }
    // ANCHOR_END: balanced

    // ANCHOR: metadata
    let mut told = lview.apply(announced, (12,)).await?;
    told.wait(Duration::from_secs(30)).await;
    if let Some(Some(meta)) = told.metadata().first() {
        let took = meta
            .completed
            .zip(meta.started)
            .and_then(|(c, s)| c.duration_since(s).ok());
        println!(
            "engine {:?} ran it in {took:?} and printed {:?}",
            meta.engine, meta.printed
        );
    }
    let squared = told.get().await?;
    // ANCHOR_END: metadata

    // ANCHOR: abort
    // 60 tasks of 50 ms; abort them at once: those still queued at the head
    // fail as aborted, those the engines had started finish.
    let batch = lview.map(work, (100..160u32).map(|t| (t, 50))).await?;
    let aborted = batch.abort().await?;
    println!("aborted {} of 60 tasks before they started", aborted.len());
    let outcome = batch.get().await?;
    let finished = outcome.iter().filter(|r| r.is_ok()).count();
    let refused = outcome
        .iter()
        .filter(|r| matches!(r, Err(ClientError::Aborted)))
        .count();
    println!(
        "{finished} finished, {refused} failed as aborted, {} outstanding",
        rc.outstanding().len()
    );
    // ANCHOR_END: abort

    // ANCHOR: dependencies
    // A task that leaves something on its engine, then one that must run
    // after it (anywhere) and one that must run where it ran.
    let setup = rc.load_balanced_view().apply(work, (200, 300)).await?;
    let ids = setup.msg_ids().to_vec();
    let after = rc
        .load_balanced_view()
        .after(&ids)
        .apply(work, (201, 0))
        .await?;
    let follow = rc
        .load_balanced_view()
        .follow(&ids)
        .apply(work, (202, 0))
        .await?;
    let (setup, after, follow) = (setup.get().await?, after.get().await?, follow.get().await?);
    println!(
        "setup ran on {}, the task after it on {}, the task following it on {}",
        setup.1, after.1, follow.1
    );
    // A dependency that takes too long, and one that failed.
    let slow = rc.load_balanced_view().apply(work, (203, 1500)).await?;
    let impatient = rc
        .load_balanced_view()
        .after(slow.msg_ids())
        .timeout(Duration::from_millis(200))
        .apply(work, (204, 0))
        .await?;
    let failing = rc.load_balanced_view().apply(checked_sqrt, (-4.0,)).await?;
    let doomed = rc
        .load_balanced_view()
        .after(failing.msg_ids())
        .apply(checked_sqrt, (4.0,))
        .await?;
    let timed_out = impatient.get().await;
    let impossible = doomed.get().await;
    if let (Err(late), Err(never)) = (&timed_out, &impossible) {
        println!("after a slow task, with a 200 ms timeout: {late}");
        println!("after a failed task: {never}");
    }
    let _ = (slow.get().await, failing.get().await);
    // ANCHOR_END: dependencies

    // ANCHOR: decorators
    let dview = rc.direct_view_all();
    let everywhere = dview.remote(checked_sqrt);
    println!("remote(sqrt)(81)  -> {:?}", everywhere.call((81.0,)).await?);
    let split = dview.parallel(checked_sqrt);
    let squares: Vec<(f64,)> = (1..=6).map(|x| (f64::from(x * x),)).collect();
    println!("parallel(sqrt)(..) -> {:?}", split.call(squares).await?);
    // ANCHOR_END: decorators

    rc.close().await;
    cluster.stop().await?;
    if done.iter().any(|r| r.is_err())
        || squared != 144
        || follow.1 != setup.1
        || !matches!(timed_out, Err(ClientError::DependencyTimeout))
        || !matches!(impossible, Err(ClientError::ImpossibleDependency(_)))
        || roots[1].is_ok()
        || finished + refused != 60
        || refused != aborted.len()
    {
        return Err("the tasks did not give what they should".into());
    }
    Ok(())
}
