//! Failures a program meets, each made on purpose and matched by its typed
//! error: an ask that times out, a handler that panics, an ask to a node
//! that was shut down; an `exec` of a function that is not registered, a
//! `receive` of the wrong type, a `join` after the child's function
//! returned, a `send` to a child that was killed, and a collective whose
//! ranks disagree. It prints each error's message and exits 0.
//!
//! Run it with `cargo run --release -p parallel-examples --bin failures`.

use std::time::Duration;

use parallel::actor::Failure;
use parallel::collective;
use parallel::prelude::*;

/// Answers `Wait` after a while, panics on `Boom`.
#[parallel::actor(messages(Wait, Boom))]
struct Fragile;

/// Answers after this many milliseconds (without blocking the thread).
#[parallel::message(result = ())]
struct Wait(u64);

/// Panics in the handler.
#[parallel::message(result = ())]
struct Boom;

impl Handler<Wait> for Fragile {
    type Result = parallel::actix::ResponseFuture<()>;
    fn handle(&mut self, Wait(ms): Wait, _: &mut Context<Self>) -> Self::Result {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
}

impl Handler<Boom> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
        panic!("boom on purpose");
    }
}

/// Sends one number to its parent, then returns.
#[parallel::remote]
fn send_a_number() {
    let parent = parallel::parent().expect("a child has a parent");
    parent.send(&42u64).expect("send");
}

/// Waits for one join, then returns.
#[parallel::remote]
fn yield_once() {
    let _: () = parallel::yield_value().expect("yield");
}

/// Calls all_reduce with a buffer of `len` elements.
#[parallel::remote]
fn reduce_len(len: u64) -> String {
    let mut v = vec![1.0f32; len as usize];
    match collective::all_reduce(&mut v, collective::ReduceOp::Sum) {
        Ok(()) => "ok".into(),
        Err(e) => format!("{e}"),
    }
}

/// Not marked `#[parallel::remote]`: a child cannot run it.
fn not_registered() {}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    actors().await?;
    processes().await?;
    Ok(())
}

async fn actors() -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder()
        .password(Password::new(parallel::NodeId::new().to_string()))
        .start()
        .await?;
    // ANCHOR: actors
    let fragile = node.spawn(Fragile).with_timeout(Duration::from_millis(100));
    match fragile.ask(Wait(2_000)).await {
        Err(AskError::Timeout(after)) => println!("timeout after {after:?}"),
        other => return Err(format!("expected a timeout, got {other:?}").into()),
    }
    match fragile.ask(Boom).await {
        Err(AskError::Failed(Failure::Panicked(message))) => println!("panicked: {message}"),
        other => return Err(format!("expected a panic, got {other:?}").into()),
    }
    // The actor stopped with its panic: later asks say it is gone.
    match fragile.ask(Wait(0)).await {
        Err(e @ AskError::Gone(_)) => println!("{e}"),
        other => return Err(format!("expected Gone, got {other:?}").into()),
    }
    let again = node.spawn(Fragile);
    node.shutdown().await;
    match again.ask(Wait(0)).await {
        Err(e @ AskError::NodeShutDown(_)) => println!("{e}"),
        other => return Err(format!("expected NodeShutDown, got {other:?}").into()),
    }
    // ANCHOR_END: actors
    Ok(())
}

async fn processes() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: processes
    let child = parallel::fork().await?;
    // A function without #[parallel::remote] is refused before anything is sent.
    match child.exec(not_registered, ()).await {
        Err(e @ ProcessError::Misuse(_)) => println!("{e}"),
        other => return Err(format!("expected Misuse, got {other:?}").into()),
    }
    // The child sends a u64; asking for a String is an error, not a misread.
    child.exec(send_a_number, ()).await?;
    match child.receive::<String>().await {
        Err(e @ ProcessError::TypeMismatch { .. }) => println!("{e}"),
        other => return Err(format!("expected TypeMismatch, got {other:?}").into()),
    }
    child.sync().await?;

    // A join after the function returned says so.
    let child = parallel::fork().await?;
    child.exec(yield_once, ()).await?;
    child.join(()).await?;
    match child.join(()).await {
        Err(e @ ProcessError::Finished { .. }) => println!("{e}"),
        other => return Err(format!("expected Finished, got {other:?}").into()),
    }

    // A child that was killed is gone.
    let child = parallel::fork().await?;
    child.kill().await;
    match child.send(&1u64).await {
        Err(e @ ProcessError::Gone { .. }) => println!("{e}"),
        other => return Err(format!("expected Gone, got {other:?}").into()),
    }
    // ANCHOR_END: processes

    // ANCHOR: collective
    // Ranks that call with different lengths all fail with the same misuse
    // error, and the group stays usable.
    let children = parallel::nfork(2).await?;
    let answers = children.exec(reduce_len, (3u64,)).await?;
    let mut mine = vec![1.0f32; 4];
    match children
        .all_reduce(&mut mine, collective::ReduceOp::Sum)
        .await
    {
        Err(e @ ProcessError::Misuse(_)) => println!("rank 0: {e}"),
        other => return Err(format!("expected Misuse, got {other:?}").into()),
    }
    for (rank, answer) in answers.results().await?.iter().enumerate() {
        println!("rank {}: {answer}", rank + 1);
    }
    // ANCHOR_END: collective
    Ok(())
}
