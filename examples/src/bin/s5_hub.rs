//! The s5 seed's hub: the head keeps every load-balanced task and its
//! result in its ledger. A second client fetches results by task number
//! after the head was killed and started again — one task was still
//! running then, and the second client waits for it — and purges them.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s5_hub`.

use std::error::Error;
use std::time::Duration;

use parallel::client::Client;
use parallel_examples::local_cluster::{self, LocalCluster};

/// `x³`, after `ms` milliseconds.
#[parallel::remote]
fn cube(x: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x * x
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(part) = local_cluster::run_part().await {
        return part; // this process is the head or the node
    }
    let mut cluster = LocalCluster::start(1, 2).await?;
    let mut rc = Client::connect(&cluster.line, cluster.password()).await?;
    rc.wait_for_engines(2, Duration::from_secs(60)).await?;

    // ANCHOR: submit
    let mut lview = rc.load_balanced_view();
    let batch = lview.map(cube, (0..8u64).map(|x| (x, 0))).await?;
    let mut ids = batch.msg_ids().to_vec();
    let cubes: Vec<u64> = batch.get().await?.into_iter().collect::<Result<_, _>>()?;
    println!("client 1: tasks {ids:?} gave {cubes:?}");
    // One more, still running when the head dies.
    let slow = lview.apply(cube, (9, 1500)).await?;
    ids.extend_from_slice(slow.msg_ids());
    // ANCHOR_END: submit

    // ANCHOR: restart
    cluster.kill_head_and_restart().await?;
    let mut rc2 = Client::attach(&cluster.line, cluster.password(), rc.id()).await?;
    let status = rc2.result_status(&ids).await?;
    println!(
        "client 2, after the head was killed and started again: completed {:?}, pending {:?}",
        status.completed, status.pending
    );
    let fetched = rc2.get_result::<u64>(&ids, Duration::from_secs(60)).await?;
    let fetched: Vec<u64> = fetched.into_iter().collect::<Result<_, _>>()?;
    println!("client 2 fetched {fetched:?}");
    // ANCHOR_END: restart

    // ANCHOR: purge
    let purged = rc2.purge_results(&ids[..4]).await?;
    let after = rc2.result_status(&ids).await?;
    println!(
        "purged {purged:?}: {} completed, {} unknown",
        after.completed.len(),
        after.unknown.len()
    );
    if let [Err(e)] = &rc2
        .get_result::<u64>(&ids[..1], Duration::from_secs(5))
        .await?[..]
    {
        println!("get_result([{}]) -> {e}", ids[0]);
    }
    let rest = rc2.purge_all_results().await?;
    println!("purged the other {} results", rest.len());
    // ANCHOR_END: purge

    let first = slow.get().await;
    // ANCHOR: shutdown
    // Any client may stop the engines (`true`: the head too).
    rc2.shutdown(false).await?;
    // ANCHOR_END: shutdown
    rc.close().await;
    cluster.stop().await?;
    let expected: Vec<u64> = (0..8u64).chain([9]).map(|x| x * x * x).collect();
    if fetched != expected
        || first.ok() != Some(729)
        || purged.len() != 4
        || after.unknown.len() != 4
        || rest.len() != 5
    {
        return Err("the hub did not give what it should".into());
    }
    Ok(())
}
