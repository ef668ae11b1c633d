//! A streaming test client of `net_client_server`: joins the server whose
//! join line is its one argument (password from the environment), sends
//! `(TAG, seq)` pairs in bursts and checks their echoes, forever. Prints
//! `READY <its own node's join line>` after the first burst came back, so
//! the test knows it is mid-stream when it kills it.

use parallel::net::Client;
use parallel_integration_tests::net::STREAM_TAG;

const BURST: u64 = 32;

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let line = std::env::args()
        .nth(1)
        .ok_or("usage: net_client <server join line>")?;
    let client = Client::connect(line.as_str()).await?;
    let mut seq = 0u64;
    loop {
        for i in 0..BURST {
            client.send(&(STREAM_TAG, seq + i)).await?;
        }
        for i in 0..BURST {
            let echo = client.recv::<(u64, u64)>().await?;
            let got = (echo.0.to_native(), echo.1.to_native());
            if got != (STREAM_TAG, seq + i) {
                return Err(format!("echo {got:?} out of order, expected {}", seq + i).into());
            }
        }
        if seq == 0 {
            println!("READY {}", client.node().join_line());
        }
        seq += BURST;
    }
}
