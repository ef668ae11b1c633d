//! A node that keeps its identity in a directory comes back from a restart
//! with the same join line, and nodes join it with the line they had.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use parallel::transport::BindError;
use parallel::{Node, Password, StartError};
use parallel_integration_tests::*;
use tokio::time::timeout;

/// Starts a node with its identity in `dir`, on `listen`; tries again while
/// the port of a node just shut down in this process is still held.
async fn head(dir: &Path, listen: SocketAddr) -> Node {
    for _ in 0..100 {
        let started = Node::builder()
            .listen(listen)
            .identity_dir(dir)
            .password(Password::new(PASSWORD.into()))
            .start()
            .await;
        match started {
            Err(StartError::Bind(BindError::Socket { .. })) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            started => return started.expect("start the head"),
        }
    }
    panic!("the port of the first head was never freed");
}

#[actix_rt::test]
async fn a_restarted_head_keeps_its_join_line() {
    let dir = std::env::temp_dir().join(format!("parallel-identity-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let first = head(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let line = first.join_line();
    let worker = local_node().await;
    timeout(DEADLINE, worker.join(&line))
        .await
        .unwrap()
        .unwrap();
    first.shutdown().await;
    drop(first);

    let again = head(&dir, line.addr).await;
    assert_eq!(again.join_line().to_string(), line.to_string());
    let late = local_node().await;
    let remote = timeout(DEADLINE, late.join(&line)).await.unwrap().unwrap();
    assert_eq!(remote.id(), again.id());
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
