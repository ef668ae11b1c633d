//! `exec` and what it gives back: a child runs a `#[parallel::remote]`
//! function, and the parent reads the function's return value from the
//! handle `exec` returned (`Execution::result`, or `Executions::results`
//! for a group). A child is also an actor: `Child::actor()` is its process
//! actor, which the parent can `watch`. The seed's style, which ignores the
//! handle and talks with `join`/`send`/`receive`, works as before.
//!
//! Run it with `cargo run --release -p parallel-examples --bin exec_result`.

use parallel::ProcessError;

// ANCHOR: functions
/// The sum of the squares of 1..=n, computed in a child.
#[parallel::remote]
fn sum_of_squares(n: u64) -> u64 {
    (1..=n).map(|i| i * i).sum()
}

/// Fails on purpose: a panic in a child's function is its result too.
#[parallel::remote]
fn refuse(why: String) -> u64 {
    panic!("{why}")
}
// ANCHOR_END: functions

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: fork
    let one = parallel::fork().await?; // one process: a `Child`
    let three = parallel::nfork(3).await?; // three more: a `Children` group
    // ANCHOR_END: fork

    // ANCHOR: actor
    // Every child is an actor: its process actor has an id like any actor's,
    // and `watch` on it says when and why it ended.
    println!("child #{} is actor {}", one.id(), one.actor_id());
    let ended = tokio::spawn({
        let actor = one.actor().clone();
        async move { actor.watch().await }
    });
    // ANCHOR_END: actor

    // ANCHOR: result
    let running = one.exec(sum_of_squares, (10u64,)).await?; // returns once sent
    let value: u64 = running.result().await?; // waits for the function's return
    println!("child #{} returned {value}", one.id());
    // ANCHOR_END: result
    assert_eq!(value, 385);

    // ANCHOR: results
    let values = three
        .exec(sum_of_squares, (100u64,))
        .await?
        .results()
        .await?;
    println!("children {:?} returned {values:?}", ids(&three));
    // ANCHOR_END: results
    assert_eq!(values, [338_350; 3]);

    // ANCHOR: failed
    let again = parallel::fork().await?;
    let failed = again.exec(refuse, ("no, thanks".to_string(),)).await?;
    match failed.result().await {
        Err(ProcessError::Failed { id, message }) => println!("child #{id} failed: {message}"),
        other => return Err(format!("expected a failure, got {other:?}").into()),
    }
    // ANCHOR_END: failed

    let down = tokio::time::timeout(std::time::Duration::from_secs(10), ended).await??;
    println!("child #{}'s actor is down: {}", one.id(), down.reason);
    parallel::children().sync().await?;
    Ok(())
}

fn ids(children: &parallel::Children) -> Vec<u32> {
    children.iter().map(|c| c.id()).collect()
}
