//! The s5 seed's DirectView walk-through on four local engines: views by
//! number, list, negative index and slice; `dview['a'] = ['foo', 'bar']`;
//! `scatter('a', range(16))` / `gather('a')`; apply.
//!
//! This program plays every part on one machine: a head and a node agent
//! with four workers as processes of itself; the engines are processes of
//! it too (on real machines: `parallel head` and `parallel node`).
//!
//! Run it with `cargo run --release -p parallel-examples --bin s5_direct_view`.

use std::error::Error;
use std::time::Duration;

use parallel::client::{Client, Targets};
use parallel_examples::local_cluster::{self, LocalCluster};

// ANCHOR: function
/// Runs on an engine: which process it is, and a square.
#[parallel::remote]
fn where_and_square(x: u64) -> (u32, u64) {
    (std::process::id(), x * x)
}
// ANCHOR_END: function

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(part) = local_cluster::run_part().await {
        return part; // this process is the head or the node
    }
    let cluster = LocalCluster::start(1, 4).await?;

    // ANCHOR: views
    let mut rc = Client::connect(&cluster.line, cluster.password()).await?;
    let ids = rc.wait_for_engines(4, Duration::from_secs(60)).await?;
    println!("rc.ids             -> {ids:?}");
    println!(
        "rc[0]              -> <DirectView {:?}>",
        rc.view(0)?.targets()
    );
    println!(
        "rc[0,1,2]          -> <DirectView {:?}>",
        rc.view([0, 1, 2])?.targets()
    );
    println!(
        "rc[-1]             -> <DirectView {:?}>",
        rc.view(-1)?.targets()
    );
    let stepped = rc.view(Targets::Stepped { start: 0, step: 2 })?;
    println!("rc[::2]            -> <DirectView {:?}>", stepped.targets());
    // The same engines give the same view.
    println!("rc[::2] == rc[0,2] -> {}", stepped == rc.view([0, 2])?);
    // ANCHOR_END: views

    // ANCHOR: data
    let dview = rc.direct_view_all();
    dview
        .push("a", &vec!["foo".to_string(), "bar".to_string()])
        .await?;
    let a: Vec<Vec<String>> = dview.pull("a").await?;
    println!("dview['a']         -> {a:?}");

    dview.scatter("a", (0..16u64).collect()).await?;
    let parts: Vec<Vec<u64>> = dview.pull("a").await?;
    println!("dview['a']         -> {parts:?}");
    let gathered: Vec<u64> = dview.gather("a").await?;
    println!("dview.gather('a')  -> {gathered:?}");
    // ANCHOR_END: data

    // ANCHOR: apply
    let answers = dview.apply_sync(where_and_square, (12u64,)).await?;
    for (id, (pid, square)) in dview.targets().iter().zip(&answers) {
        println!("engine {id} (pid {pid}): 12² = {square}");
    }
    // block=False: keep the AsyncResult, ask it later.
    let mut pending = rc.view(-1)?.apply(where_and_square, (5u64,));
    let done = pending.wait(Duration::from_secs(30)).await;
    let (_, five) = pending.get().await?[0];
    println!("rc[-1].apply(..)   -> ready {done}, {five}");
    // block=True: await it at once.
    let (_, six) = rc.view(-1)?.apply(where_and_square, (6u64,)).await?[0];
    println!("rc[-1].apply(..)   -> {six}");
    // Zero-copy: the result read where it arrived (read-only).
    let seen = rc
        .view(0)?
        .apply_received(where_and_square, (7u64,))
        .await?;
    println!("rc[0] (received)   -> {}", seen[0].1.to_native());
    // ANCHOR_END: apply

    dview.clear().await?;
    rc.close().await;
    cluster.stop().await?;
    if gathered != (0..16).collect::<Vec<_>>() || parts.iter().any(|p| p.len() != 4) {
        return Err("scatter / gather did not give the seed's output".into());
    }
    Ok(())
}
