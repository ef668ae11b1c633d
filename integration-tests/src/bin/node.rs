//! The test node: starts a para||el node with the password from the
//! environment, allows `Counter`, `SlowSink` and `Relayer` to be spawned (not
//! `Forbidden`), prints `READY <join line>` and serves until its stdin closes.
//!
//! Options: `--heartbeat-ms INTERVAL,TIMEOUT`.

use std::time::Duration;

use parallel::Node;
use parallel_integration_tests::{Counter, Relayer, SlowSink};
use tokio::io::AsyncReadExt;

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mut builder = Node::builder()
        .allow::<Counter>()
        .allow::<SlowSink>()
        .allow::<Relayer>();
    if let Some(i) = args.iter().position(|a| a == "--heartbeat-ms") {
        let spec = args
            .get(i + 1)
            .ok_or("--heartbeat-ms needs INTERVAL,TIMEOUT")?;
        let (interval, timeout) = spec
            .split_once(',')
            .ok_or("--heartbeat-ms needs INTERVAL,TIMEOUT")?;
        builder = builder.heartbeat(
            Duration::from_millis(interval.parse()?),
            Duration::from_millis(timeout.parse()?),
        );
    }
    let node = builder.start().await?;
    println!("READY {}", node.join_line());
    // Serve until the test closes our stdin (or kills us).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    node.shutdown().await;
    Ok(())
}
