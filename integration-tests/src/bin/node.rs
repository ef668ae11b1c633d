//! The test node: starts a para||el node with the password from the
//! environment, allows `Counter`, `SlowSink` and `Relayer` to be spawned (not
//! `Forbidden`), prints `READY <join line>` and serves until its stdin closes.
//!
//! Options: `--heartbeat-ms INTERVAL,TIMEOUT`; `--listen ADDR:PORT` (a host
//! of the network test bed listens on its address); `--rejoin`: every line read
//! on stdin is a join line to join, and the node prints `REJOINED <node id>`
//! or `REJOIN-FAILED <error>` for it (the fencing test resumes a stopped
//! node and has it try to come back as its old incarnation).

use std::time::Duration;

use parallel::Node;
use parallel_integration_tests::{Counter, Relayer, SlowSink};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

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
    if let Some(i) = args.iter().position(|a| a == "--listen") {
        let addr = args.get(i + 1).ok_or("--listen needs ADDR:PORT")?;
        builder = builder.listen(addr.parse()?);
    }
    let node = builder.start().await?;
    println!("READY {}", node.join_line());
    if args.iter().any(|a| a == "--rejoin") {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let result = match line.trim().parse() {
                Ok(join_line) => {
                    match tokio::time::timeout(Duration::from_secs(10), node.join(&join_line)).await
                    {
                        Ok(Ok(remote)) => format!("REJOINED {}", remote.id()),
                        Ok(Err(e)) => format!("REJOIN-FAILED {e}"),
                        Err(_) => "REJOIN-FAILED no answer within 10 s".to_owned(),
                    }
                }
                Err(e) => format!("REJOIN-FAILED not a join line: {e}"),
            };
            println!("{result}");
        }
        node.shutdown().await;
        return Ok(());
    }
    // Serve until the test closes our stdin (or kills us).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    node.shutdown().await;
    Ok(())
}
