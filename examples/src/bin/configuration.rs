//! Where each setting of para||el is made: a process tree's `Config` (and
//! an independent tree made with it), a node's `NodeBuilder` and
//! `TransportConfig`, a group's `GroupOptions`. The program also checks that
//! the defaults the book's "Configuration" chapter lists are the code's, so
//! the chapter cannot drift from the code unnoticed.
//!
//! Run it with `cargo run --release -p parallel-examples --bin configuration`.

use std::time::Duration;

use parallel::collective::{GroupOptions, Transport};
use parallel::transport::TransportConfig;
use parallel::{CollectiveTransport, Config, Node, Password, Tree};

/// The number of the child it runs in, times ten.
#[parallel::remote]
fn ten_times_my_number() -> u32 {
    parallel::id() * 10
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    defaults_are_the_books();

    // ANCHOR: tree
    // The defaults, then the PARALLEL_* variables, then what the program says.
    let config = Config::from_env()
        .fork_timeout(Duration::from_secs(60)) // a slow machine: wait longer for children
        .shm_threshold(64 * 1024) // values of 64 KiB and more through /dev/shm
        .collective_slot(1 << 20) // 1 MiB per rank in a same-host collective's arena
        .collective_transport(CollectiveTransport::Auto);
    // An independent tree with these settings; `parallel::fork()` and the
    // other free functions keep using the default tree (`Tree::global()`).
    let tree = Tree::new(config);
    let children = tree.nfork(2).await?;
    let values = children
        .exec(ten_times_my_number, ())
        .await?
        .results()
        .await?;
    println!("an independent tree's children returned {values:?}");
    // `#[parallel::main]` closes the default tree when `main` ends; this
    // one is closed by the program.
    tree.close().await;
    // ANCHOR_END: tree
    assert_eq!(values, [10, 20]);

    // ANCHOR: threshold
    // The threshold can change while a tree runs: children forked from now
    // on use the new one.
    Tree::global().set_shm_threshold(usize::MAX); // never through shared memory
    // ANCHOR_END: threshold
    assert_eq!(Tree::global().shm_threshold(), usize::MAX);

    // ANCHOR: node
    let transport = TransportConfig {
        max_frame: 64 << 20, // refuse frames over 64 MiB
        ..TransportConfig::default()
    };
    let node = Node::builder()
        .transport(transport) // every transport setting at once: before the ones below
        .listen("127.0.0.1:0".parse()?)
        .heartbeat(Duration::from_millis(250), Duration::from_secs(1))
        .password(Password::new("not-from-the-environment".into()))
        .ask_timeout(Duration::from_secs(5))
        .mailbox(256)
        .start()
        .await?;
    // ANCHOR_END: node
    println!("a node with its own settings: {}", node.join_line());
    node.shutdown().await;

    // ANCHOR: group
    let options = GroupOptions {
        timeout: Duration::from_secs(10),
        // `quic` in PARALLEL_COLLECTIVE_TRANSPORT: always QUIC; else Auto.
        transport: Transport::from_config(&Config::from_env()),
        ..GroupOptions::default()
    };
    // Group::form_with(&node, "grads", &peers, options).await? on every member.
    // ANCHOR_END: group
    assert!(options.host.is_none() && options.order.is_none());
    Ok(())
}

/// Fails if a default differs from the one the book states.
fn defaults_are_the_books() {
    // ANCHOR: defaults
    let config = Config::default();
    assert_eq!(config.get_fork_timeout(), Duration::from_secs(15));
    assert_eq!(config.get_listen(), None);
    assert_eq!(config.get_shm_threshold(), 1 << 20);
    assert_eq!(config.get_collective_slot(), 512 << 10);
    assert_eq!(config.get_collective_transport(), CollectiveTransport::Auto);

    assert_eq!(
        parallel::remote::DEFAULT_ASK_TIMEOUT,
        Duration::from_secs(30)
    );
    assert_eq!(parallel::actor::DEFAULT_MAILBOX, 1024);

    let t = TransportConfig::default();
    assert_eq!(t.listen, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    assert_eq!(t.max_frame, 1 << 30);
    assert_eq!(t.heartbeat_interval, Duration::from_millis(500));
    assert_eq!(t.heartbeat_timeout, Duration::from_millis(1500));
    assert_eq!(t.handshake_timeout, Duration::from_secs(5));
    assert_eq!(t.max_incoming, 256);
    assert_eq!(t.connection_window, 16 << 20);
    assert_eq!(t.stream_window, 8 << 20);
    assert_eq!(t.max_uni_streams, 64);
    assert_eq!(t.bulk_threshold, 256 << 10);
    assert_eq!(t.send_queue, 1024);
    assert_eq!(t.parked_frames, 1024);
    assert_eq!(t.parked_bytes, 8 << 20);

    let g = GroupOptions::default();
    assert_eq!(g.timeout, Duration::from_secs(30));
    assert_eq!(g.transport, Transport::Auto);

    let intensity = parallel::supervision::Intensity::default();
    assert_eq!(
        (intensity.max_restarts, intensity.within),
        (1, Duration::from_secs(5))
    );
    assert_eq!(
        parallel::supervision::DEFAULT_SHUTDOWN,
        Duration::from_secs(5)
    );
    assert_eq!(parallel::supervision::HISTORY, 256);

    assert_eq!(parallel::process::SEND_WINDOW, 64);
    assert_eq!(parallel::process::CLOSE_TIMEOUT, Duration::from_secs(1));
    assert_eq!(parallel::workqueue::DEFAULT_CAPACITY, 1024);
    assert_eq!(parallel::workqueue::DEFAULT_PREFETCH, 32);
    assert_eq!(parallel::workqueue::SERVE_WAIT, Duration::from_secs(30));
    // ANCHOR_END: defaults
}
