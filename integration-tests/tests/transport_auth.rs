//! Joining is authenticated: a wrong password or a wrong certificate
//! fingerprint is refused with a clear error, and nothing is created.

use parallel::transport::ConnectError;
use parallel::{Node, Password};
use parallel_integration_tests::*;
use tokio::time::timeout;

const NODE: &str = env!("CARGO_BIN_EXE_node");

#[actix_rt::test]
async fn wrong_password_is_refused_and_no_actor_is_created() {
    let server = NodeProcess::start(NODE, &[]).await;
    let intruder = Node::builder()
        .password(Password::new("not the password".into()))
        .start()
        .await
        .unwrap();
    let err = timeout(DEADLINE, intruder.join(&server.join_line))
        .await
        .expect("answer in time")
        .err()
        .expect("refused");
    assert!(matches!(err, ConnectError::WrongPassword { .. }), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("password"), "{err}");
    assert!(intruder.remotes().is_empty());

    // The server still accepts the right password.
    let node = local_node().await;
    let remote = join(&node, &server).await;
    assert!(remote.is_alive());
    let stderr = server.stop_and_read_stderr().await;
    assert!(!stderr.contains("spawned for a peer"), "{stderr}");
}

#[actix_rt::test]
async fn wrong_certificate_fingerprint_is_refused() {
    let server = NodeProcess::start(NODE, &[]).await;
    let node = local_node().await;
    let mut line = server.join_line.clone();
    line.fingerprint[0] ^= 0xff;
    let err = timeout(DEADLINE, node.join(&line))
        .await
        .expect("answer in time")
        .err()
        .expect("refused");
    assert!(
        matches!(err, ConnectError::FingerprintMismatch { .. }),
        "{err:?}"
    );
    assert!(node.remotes().is_empty());
}
