//! torch-ipc's client-server example: a server, a client that says "hi",
//! the server's `recv_any` hears it, and both close. Then three clients
//! send tensors and the server sums what each sent and answers it.
//!
//! Server and clients run in one program here; in real use they are
//! separate processes or machines that share the cluster password and the
//! server's join line (an address alone is not enough: the client pins the
//! server's certificate).
//!
//! Run it with `cargo run --release -p parallel-examples --bin s2_client_server`.

use parallel::net::{Client, Server};
use parallel::{Password, Tensor};
use parallel_examples::one_time_password;

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Both sides need the cluster password; `Server::bind(addr)` and
    // `Client::connect(line)` read it from PARALLEL_PASSWORD_FILE or
    // PARALLEL_PASSWORD (or prompt). This one-program demo makes one up.
    let password = Password::new(one_time_password());

    // ANCHOR: hello
    // Create a server (port 0 picks a free port; "127.0.0.1:8080" works too)
    let server = Server::bind_with("127.0.0.1:0", password.clone()).await?;
    // Create a client and connect to the server: it needs the join line
    let client = Client::connect_with(server.join_line(), password.clone()).await?;
    // Say hello
    client.send("hi").await?;
    // Listen for any client to say something
    let (_from, msg) = server.recv_any::<String>().await?;
    assert_eq!(msg.as_str(), "hi");
    // Disconnect and shutdown
    client.close().await?;
    server.close().await;
    // ANCHOR_END: hello
    println!("server heard {:?}", msg.as_str());

    // ANCHOR: tensors
    let server = Server::bind_with("127.0.0.1:0", password.clone()).await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect_with(server.join_line(), password.clone()).await?);
    }
    // Each client sends a tensor filled with its number...
    for (k, client) in clients.iter().enumerate() {
        let grads = Tensor::full(&[256, 256], (k + 1) as f32);
        client.send(&grads).await?;
    }
    // ...the server takes them in whatever order they come, and answers
    // each client with the sum of the tensor it sent.
    for _ in 0..clients.len() {
        let (from, grads) = server.recv_any::<Tensor<f32>>().await?;
        let sum: f32 = grads.as_slice().iter().sum();
        server.send(from, &sum).await?;
    }
    for (k, client) in clients.iter().enumerate() {
        let sum = client.recv::<f32>().await?;
        assert_eq!(sum.to_native(), (k + 1) as f32 * 65536.0);
        println!(
            "client {} sent a 256x256 tensor, sum {}",
            k + 1,
            sum.to_native()
        );
    }
    for client in clients {
        client.close().await?;
    }
    server.close().await;
    // ANCHOR_END: tensors
    Ok(())
}
