//! Typed ask and tell across two processes over QUIC; remote spawn by name,
//! refusal of a type the node does not allow; remote function calls.

use parallel::remote::{CallError, SpawnError};
use parallel_integration_tests::*;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");

#[actix_rt::test]
async fn ask_and_tell_a_counter_spawned_by_name_on_another_process() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let remote = timeout(DEADLINE, node.join(&server.join_line))
        .await
        .expect("join in time")
        .expect("join");
    let counter = counter_on(&remote).await;
    assert!(!counter.is_local());
    assert_eq!(counter.node(), remote.id());

    assert_eq!(
        timeout(DEADLINE, counter.ask(Add(5)))
            .await
            .unwrap()
            .unwrap(),
        5
    );
    for _ in 0..10 {
        timeout(DEADLINE, counter.tell(Bump))
            .await
            .unwrap()
            .unwrap();
    }
    // Tells and asks from one sender arrive in order: the ask sees every bump.
    assert_eq!(
        timeout(DEADLINE, counter.ask(Add(100)))
            .await
            .unwrap()
            .unwrap(),
        115
    );
    assert_eq!(
        timeout(DEADLINE, counter.ask(Get)).await.unwrap().unwrap(),
        115
    );

    let stderr = server.stop_and_read_stderr().await;
    assert!(stderr.contains("spawned for a peer"), "{stderr}");
}

/// Tensors of every size reach the other process whole: small ones copied
/// into the archive, large ones sent from their own memory (as parts of the
/// payload), on a bulk stream or, where the bulk threshold is above them,
/// on the small lane; a tensor written after the ask was made is not what
/// the ask sends (the write copies the elements the message shares).
#[actix_rt::test]
async fn tensors_small_and_large_arrive_whole_whichever_lane_carries_them() {
    let server = NodeProcess::start(NODE, &[]).await;
    let sizes = [3usize, 40_000, 1 << 20, 8 << 20];
    let bulk_above_all = parallel::transport::TransportConfig {
        bulk_threshold: 64 << 20,
        ..parallel::transport::TransportConfig::default()
    };
    for config in [
        parallel::transport::TransportConfig::default(),
        bulk_above_all,
    ] {
        let node = parallel::Node::builder()
            .password(parallel::Password::new(PASSWORD.to_string()))
            .transport(config)
            .start()
            .await
            .expect("start a local node");
        let remote = join(&node, &server).await;
        let counter = counter_on(&remote).await;
        let mut total = 0u64;
        for n in sizes {
            let values: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let sum = values.iter().fold(0u64, |a, &x| a.wrapping_add(x));
            let mut tensor = parallel::Tensor::from_vec(values);
            let asked = counter.ask(AddAll(tensor.clone()));
            // Written after the ask was made: what it sends must not change.
            tensor.as_mut_slice()[0] = 12345;
            total = total.wrapping_add(sum);
            let answered = timeout(DEADLINE, asked)
                .await
                .expect("in time")
                .expect("ask");
            assert_eq!(answered, total, "a tensor of {n} elements arrived changed");
        }
        node.shutdown().await;
    }
    drop(server);
}

#[actix_rt::test]
async fn an_actor_ref_travels_inside_a_message_and_works_there() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let remote = join(&node, &server).await;
    let counter = counter_on(&remote).await;
    // Round-trip the reference through the wire format, as a message field would.
    let bytes = parallel::wire::encode(&counter).expect("encode an ActorRef");
    let copy: parallel::ActorRef<Counter> =
        parallel::wire::decode_owned(&bytes).expect("decode an ActorRef");
    assert_eq!(copy.id(), counter.id());
    assert_eq!(
        timeout(DEADLINE, copy.ask(Add(2))).await.unwrap().unwrap(),
        2
    );
    drop(server);
}

#[actix_rt::test]
async fn an_actor_ref_sent_to_another_node_is_used_there_to_reach_back() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let remote = join(&node, &server).await;
    // A counter in this process, a relayer in the other; the relayer gets the
    // counter's reference in a message and asks it across the connection.
    let counter = node.spawn(Counter::default());
    assert!(counter.is_local());
    let relayer = timeout(DEADLINE, remote.spawn(Relayer))
        .await
        .unwrap()
        .unwrap();
    let total = timeout(
        DEADLINE,
        relayer.ask(Relay {
            to: counter.clone(),
            n: 5,
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(total, 5);
    let total = timeout(
        DEADLINE,
        relayer.ask(Relay {
            to: counter.clone(),
            n: 7,
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(total, 12);
    assert_eq!(
        timeout(DEADLINE, counter.ask(Get)).await.unwrap().unwrap(),
        12
    );
}

#[actix_rt::test]
async fn spawn_of_a_type_the_node_does_not_allow_is_refused() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let remote = join(&node, &server).await;
    let err = timeout(DEADLINE, remote.spawn(Forbidden))
        .await
        .unwrap()
        .expect_err("Forbidden is not allowed");
    assert!(matches!(err, SpawnError::NotAllowed(_)), "{err:?}");
    assert!(err.to_string().contains("allow::<Forbidden>"), "{err}");
    // The node still serves allowed types.
    counter_on(&remote).await;
}

#[actix_rt::test]
async fn a_registered_function_runs_on_the_other_process() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let remote = join(&node, &server).await;
    let product = timeout(DEADLINE, remote.call(multiply, (6u64, 7u64)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(product, 42);

    fn not_registered(x: u64) -> u64 {
        x
    }
    let err = timeout(DEADLINE, remote.call(not_registered, (1u64,)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, CallError::NotRegistered(_)), "{err:?}");
    assert!(err.to_string().contains("#[parallel::remote]"), "{err}");
}
