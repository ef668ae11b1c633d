//! The test server of `net_client_server`: a `parallel::net::Server` on
//! loopback with the password from the environment. Prints
//! `READY <join line>` and serves until its stdin closes (then closes in
//! order and exits 0).
//!
//! Clients send `(u64, u64)` pairs. The server echoes each pair to its
//! sender, except `(QUERY, _)`, which it answers with `(QUERY, number of
//! connected clients)`.

use parallel::net::{NetError, Server};
use parallel_integration_tests::net::QUERY;
use tokio::io::AsyncReadExt;

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind("127.0.0.1:0").await?;
    println!("READY {}", server.join_line());
    tokio::select! {
        result = serve(&server) => result?,
        () = stdin_closed() => {}
    }
    server.close().await;
    Ok(())
}

async fn serve(server: &Server) -> Result<(), NetError> {
    loop {
        let (from, pair) = match server.recv_any::<(u64, u64)>().await {
            Ok(received) => received,
            Err(NetError::TypeMismatch { from, .. }) => {
                eprintln!("dropped a value of another type from {from}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let (a, b) = (pair.0.to_native(), pair.1.to_native());
        let answer = if a == QUERY {
            (QUERY, server.clients().len() as u64)
        } else {
            (a, b)
        };
        // A client that is gone is an error for this send only.
        if let Err(e) = server.send(from, &answer).await {
            eprintln!("{e}");
        }
    }
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
}
