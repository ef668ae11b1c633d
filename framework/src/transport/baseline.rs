//! Plain quinn endpoints with the same TLS setup as a node — a fresh
//! self-signed certificate, pinned by its SHA-256 on the client — and none
//! of the framework's protocol (no handshake, no framing, no lanes). They
//! are the "raw quinn" baselines that benchmarks print next to the
//! framework's figures, so that both sides of a ratio pay for the same
//! encryption and the same 4 MiB UDP socket buffers. Not for real traffic:
//! nothing here authenticates the client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::config::TransportConfig;
use super::error::BindError;
use super::identity::Identity;
use super::tls::{client_config, server_config};

/// A listening raw endpoint on `addr` and its certificate fingerprint.
pub fn raw_server(addr: SocketAddr) -> Result<(quinn::Endpoint, [u8; 32]), BindError> {
    let identity = Identity::generate()?;
    let mut config = server_config(&identity, &TransportConfig::default())?;
    // quinn's own flow-control defaults: measured faster than the node's, so the stricter baseline.
    config.transport_config(Arc::new(quinn::TransportConfig::default()));
    let endpoint = endpoint(addr, Some(config))?;
    Ok((endpoint, identity.fingerprint))
}

/// A raw client endpoint on loopback that accepts exactly the certificate `fingerprint`.
pub fn raw_client(fingerprint: [u8; 32]) -> Result<quinn::Endpoint, BindError> {
    let mut endpoint = endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), None)?;
    let mut config = client_config(
        fingerprint,
        Arc::new(Mutex::new(None)),
        &TransportConfig::default(),
    )?;
    config.transport_config(Arc::new(quinn::TransportConfig::default()));
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// The node's UDP socket buffers (`endpoint.rs`).
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` with the node's buffer sizes (the kernel
/// may cap them, which is fine).
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// An endpoint on `addr` with the node's socket buffers, on the current runtime.
fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, BindError> {
    let socket = udp_socket(addr).map_err(|source| BindError::Socket { addr, source })?;
    let runtime = quinn::default_runtime().ok_or_else(|| {
        BindError::Config("no async runtime: call inside a tokio or actix-rt runtime".to_owned())
    })?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
        .map_err(|source| BindError::Socket { addr, source })
}

/// The server name raw clients connect with.
pub const SERVER_NAME: &str = super::tls::SERVER_NAME;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raw_client_reaches_a_raw_server() {
        let (server, fp) = raw_server("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let mut buf = [0u8; 4];
            recv.read_exact(&mut buf).await.unwrap();
            send.write_all(&buf).await.unwrap();
            send.finish().unwrap();
            let _ = send.stopped().await;
        });
        let client = raw_client(fp).unwrap();
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.connect(addr, SERVER_NAME).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            recv.read_exact(&mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(&buf, b"ping");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), accept).await;
    }
}
