//! torch-ipc's client/server across processes: a `net_server` process,
//! clients in this process and a streaming `net_client` process that is
//! killed mid-stream. The other clients see every echo, in order, and the
//! server keeps serving them.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use parallel::Password;
use parallel::net::{Client, NetError};
use parallel_integration_tests::net::QUERY;
use parallel_integration_tests::*;
use tokio::time::timeout;

const NET_SERVER: &str = env!("CARGO_BIN_EXE_net_server");
const NET_CLIENT: &str = env!("CARGO_BIN_EXE_net_client");

const CLIENTS: u64 = 3;
const ROUNDS: u64 = 40;
const BURST: u64 = 25;

async fn connect(server: &NodeProcess) -> Client {
    timeout(
        DEADLINE,
        Client::connect_with(&server.join_line, Password::new(PASSWORD.into())),
    )
    .await
    .expect("connected in time")
    .expect("connect to the net_server")
}

/// Sends `ROUNDS` bursts of `(k, seq)` and checks each burst's echoes come
/// back in order; counts finished rounds in `progress`.
async fn stream(client: Rc<Client>, k: u64, progress: Rc<Cell<u64>>) -> Result<(), String> {
    for round in 0..ROUNDS {
        let first = round * BURST;
        for seq in first..first + BURST {
            timeout(DEADLINE, client.send(&(k, seq)))
                .await
                .map_err(|_| format!("client {k}: send {seq} timed out"))?
                .map_err(|e| format!("client {k}: send {seq}: {e}"))?;
        }
        for seq in first..first + BURST {
            let echo = timeout(DEADLINE, client.recv::<(u64, u64)>())
                .await
                .map_err(|_| format!("client {k}: no echo of {seq} within {DEADLINE:?}"))?
                .map_err(|e| format!("client {k}: echo of {seq}: {e}"))?;
            let got = (echo.0.to_native(), echo.1.to_native());
            if got != (k, seq) {
                return Err(format!("client {k}: got {got:?}, expected {:?}", (k, seq)));
            }
        }
        progress.set(progress.get() + 1);
        // Give the other clients and the killer a turn between bursts.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn connected_clients(client: &Client) -> u64 {
    timeout(DEADLINE, client.send(&(QUERY, 0u64)))
        .await
        .expect("in time")
        .expect("query");
    let answer = timeout(DEADLINE, client.recv::<(u64, u64)>())
        .await
        .expect("the server answered in time")
        .expect("answer");
    assert_eq!(answer.0.to_native(), QUERY);
    answer.1.to_native()
}

#[actix_rt::test]
async fn a_client_killed_mid_stream_does_not_disturb_the_others() {
    let mut server = NodeProcess::start(NET_SERVER, &[]).await;
    let line = server.join_line.to_string();
    // READY comes once its first burst was echoed: it is streaming.
    let mut doomed = NodeProcess::start(NET_CLIENT, &[&line]).await;

    let clients: Vec<Rc<Client>> = {
        let mut v = Vec::new();
        for _ in 0..CLIENTS {
            v.push(Rc::new(connect(&server).await));
        }
        v
    };
    assert_eq!(connected_clients(&clients[0]).await, CLIENTS + 1);

    let progress = Rc::new(Cell::new(0));
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(k, c)| actix_rt::spawn(stream(c.clone(), k as u64, progress.clone())))
        .collect();
    // Kill the streaming client once the others are a third of the way through.
    let start = Instant::now();
    while progress.get() < CLIENTS * ROUNDS / 3 {
        assert!(
            start.elapsed() < DEADLINE,
            "no progress: {}",
            progress.get()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    doomed.kill9();
    let killed_at = progress.get();
    for task in tasks {
        timeout(DEADLINE * 2, task)
            .await
            .expect("the client finished in time")
            .expect("the client task ran")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        killed_at < CLIENTS * ROUNDS,
        "the kill came after the streams ended ({killed_at} rounds)"
    );
    let _ = timeout(DEADLINE, doomed.child.wait()).await;

    // The server notices the dead client (heartbeat timeout) and lists
    // only the live ones.
    let start = Instant::now();
    loop {
        let n = connected_clients(&clients[0]).await;
        if n == CLIENTS {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "still {n} clients listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Clients close in order; the last one still gets answers until then.
    let mut clients = clients;
    let last = clients.pop().expect("three clients");
    for c in clients {
        let c = Rc::into_inner(c).expect("the streams are done");
        timeout(DEADLINE, c.close())
            .await
            .expect("closed in time")
            .expect("close");
    }
    assert_eq!(connected_clients(&last).await, 1);

    // The server closes in order when its stdin closes: the last client
    // then hears that it is gone.
    drop(server.child.stdin.take());
    let status = timeout(DEADLINE, server.child.wait())
        .await
        .expect("the server exited in time")
        .expect("wait");
    assert!(status.success(), "{status}");
    let last = Rc::into_inner(last).expect("the streams are done");
    let err = timeout(DEADLINE, last.recv::<(u64, u64)>())
        .await
        .expect("recv ended in time")
        .expect_err("the server is gone");
    assert!(matches!(err, NetError::ServerGone { .. }), "{err:?}");
    let _ = timeout(DEADLINE, last.close()).await;
    let stderr = server.stop_and_read_stderr().await;
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[actix_rt::test]
async fn a_client_with_the_wrong_password_is_refused() {
    let server = NodeProcess::start(NET_SERVER, &[]).await;
    let result = timeout(
        DEADLINE,
        Client::connect_with(&server.join_line, Password::new("wrong".into())),
    )
    .await
    .expect("refused in time");
    let err = match result {
        Err(e) => e,
        Ok(_) => panic!("joined with the wrong password"),
    };
    assert!(matches!(err, NetError::Connect(_)), "{err:?}");
    // The server still serves a client that knows the password.
    let client = connect(&server).await;
    assert_eq!(connected_clients(&client).await, 1);
    timeout(DEADLINE, client.close())
        .await
        .expect("in time")
        .expect("close");
}
