//! A burst of 1,000,000 tells to a remote actor that handles them slowly
//! arrives complete and in order, and the memory of both processes stays
//! bounded: senders wait (backpressure) instead of queueing without limit.

use std::time::Duration;

use parallel_integration_tests::*;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");
const BURST: u64 = 1_000_000;
/// Both processes must stay under this peak RSS. Queuing the whole burst
/// would take several hundred MiB (1,000,000 boxed deliveries plus frames).
const MEMORY_LIMIT_KIB: u64 = 96 * 1024;

#[actix_rt::test]
async fn a_million_tells_arrive_complete_in_order_with_bounded_memory() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let remote = join(&node, &server).await;
    let sink = timeout(
        DEADLINE,
        remote.spawn(SlowSink {
            pause_every: 1000,
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .with_timeout(Duration::from_secs(120));
    let burst = async {
        for i in 0..BURST {
            sink.tell(Seq(i)).await.expect("tell");
        }
    };
    timeout(Duration::from_secs(300), burst)
        .await
        .expect("the burst was sent within 300 s");
    let stats = timeout(Duration::from_secs(120), sink.ask(Stats))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.received, BURST, "every tell arrived");
    assert_eq!(stats.out_of_order, 0, "in order");
    let sender = peak_rss_kib();
    eprintln!(
        "peak RSS: sender {sender} KiB, receiver {} KiB",
        stats.peak_rss_kib
    );
    assert!(
        stats.peak_rss_kib < MEMORY_LIMIT_KIB,
        "receiver peak {} KiB",
        stats.peak_rss_kib
    );
    assert!(sender < MEMORY_LIMIT_KIB, "sender peak {sender} KiB");
    drop(server);
}
