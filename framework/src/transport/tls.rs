//! TLS 1.3 set-up: the listener's side with this node's [`Identity`], and a
//! client verifier that accepts exactly the certificate pinned by the join line.

use std::sync::{Arc, Mutex};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::config::TransportConfig;
use super::error::BindError;
use super::identity::Identity;

/// ALPN protocol name of this wire version.
pub(crate) const ALPN: &[u8] = b"parallel/1";
/// Server name the connector asks for; the verifier ignores names and pins
/// the certificate itself.
pub(crate) const SERVER_NAME: &str = "parallel";

/// SHA-256 of a certificate's DER bytes.
pub(crate) fn fingerprint(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The QUIC transport parameters derived from our configuration.
pub(crate) fn quic_transport(cfg: &TransportConfig) -> Result<quinn::TransportConfig, BindError> {
    let varint = |v: u64, what: &str| {
        quinn::VarInt::from_u64(v)
            .map_err(|_| BindError::Config(format!("{what} = {v} is too large")))
    };
    let mut t = quinn::TransportConfig::default();
    t.receive_window(varint(cfg.connection_window, "connection_window")?)
        .stream_receive_window(varint(cfg.stream_window, "stream_window")?)
        .send_window(cfg.connection_window.saturating_mul(2))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(cfg.max_uni_streams))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(1))
        // Streams of one priority go out in the order they were written,
        // each to its end (not round-robin): bulk streams are read in `seq`
        // order, so the first one's last byte is what the receiver waits
        // for. Round-robin finished every open one together: in a 16 MiB
        // AllReduce over QUIC, the pieces a rank reduces and sends on
        // arrived all at once, after the ones it sent next had shared the
        // link with them (a rank waited 37–44 ms for its first piece of a
        // 45–57 ms call). The long-lived lanes are ranked above bulk
        // streams (`lanes::Lane::priority`), so a small frame never waits
        // behind a tensor.
        .send_fairness(false);
    // No QUIC keep-alive: the acceptor's heartbeats (and their
    // acknowledgements) are an idle pair's signs of life; a keep-alive PING
    // would also answer for a node whose heartbeats a test paused.
    //
    // No QUIC idle timeout either: `control::watch` is the one judge of
    // liveness. QUIC's idle timer reads the wall clock, so after a pause of
    // the whole machine (both processes stopped past it) it fired at once
    // on resuming, on whichever side ran first, and dropped the connection
    // silently (the other side then read "reset by peer"), while the watch
    // saw that its process had not run and gave the peer another timeout.
    // A connection the watch does not judge yet is bounded by the
    // handshake timeout; one it declares dead is closed by it.
    t.max_idle_timeout(None);
    Ok(t)
}

/// The listener's side: our certificate, TLS 1.3 only, our ALPN.
pub(crate) fn server_config(
    id: &Identity,
    cfg: &TransportConfig,
) -> Result<quinn::ServerConfig, BindError> {
    let tls_err = |e: rustls::Error| BindError::Tls(e.to_string());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(
            vec![id.cert.clone()],
            PrivateKeyDer::Pkcs8(id.key.clone_key()),
        )
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| BindError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(quic_transport(cfg)?));
    server.max_incoming(cfg.max_incoming.max(1));
    server.migration(false);
    Ok(server)
}

/// The connector's side: TLS 1.3 only, accepting exactly `pinned`. The
/// fingerprint the listener actually showed is written to `seen`.
pub(crate) fn client_config(
    pinned: [u8; 32],
    seen: Arc<Mutex<Option<[u8; 32]>>>,
    cfg: &TransportConfig,
) -> Result<quinn::ClientConfig, BindError> {
    let provider = provider();
    let verifier = PinnedVerifier {
        pinned,
        seen,
        schemes: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| BindError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| BindError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(quic_transport(cfg)?));
    Ok(client)
}

/// Accepts the one certificate whose SHA-256 the join line pins; checks
/// handshake signatures with the ring provider's TLS 1.3 verification.
#[derive(Debug)]
struct PinnedVerifier {
    pinned: [u8; 32],
    seen: Arc<Mutex<Option<[u8; 32]>>>,
    schemes: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(got);
        }
        if got == self.pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;
    use crate::transport::lanes::Lane;

    const WAIT: Duration = Duration::from_secs(20);

    /// Reads `recv` to its end, logging its first and last chunk as
    /// `(name, "first" | "last")` in arrival order.
    async fn read_logged(
        name: &'static str,
        mut recv: quinn::RecvStream,
        log: Arc<Mutex<Vec<(&'static str, &'static str)>>>,
    ) -> usize {
        let mut got = 0;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.expect("read") {
            if got == 0 {
                log.lock().unwrap().push((name, "first"));
            }
            got += chunk.bytes.len();
        }
        log.lock().unwrap().push((name, "last"));
        got
    }

    #[tokio::test]
    async fn streams_go_out_one_after_the_other_and_a_lane_goes_before_bulk() {
        let cfg = TransportConfig::default();
        let id = Identity::generate().expect("identity");
        let server = quinn::Endpoint::server(
            server_config(&id, &cfg).expect("server config"),
            "127.0.0.1:0".parse().unwrap(),
        )
        .expect("server endpoint");
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client");
        client.set_default_client_config(
            client_config(id.fingerprint, Arc::new(Mutex::new(None)), &cfg).expect("client config"),
        );
        let addr = server.local_addr().expect("addr");
        let accepting = tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("accepted");
            let log = Arc::new(Mutex::new(Vec::new()));
            let mut readers = Vec::new();
            for name in ["bulk 1", "bulk 2", "lane"] {
                let recv = conn.accept_uni().await.expect("stream");
                readers.push(tokio::spawn(read_logged(name, recv, log.clone())));
            }
            let mut sizes = Vec::new();
            for reader in readers {
                sizes.push(reader.await.expect("reader"));
            }
            let log = log.lock().unwrap().clone();
            (sizes, log)
        });
        let conn = timeout(WAIT, client.connect(addr, SERVER_NAME).expect("connect"))
            .await
            .expect("connect timed out")
            .expect("connected");
        // All three written at once, into the connection's send buffer
        // (room for them all), before it has sent much of the first.
        let bulk = vec![7u8; 2 << 20];
        let mut streams = Vec::new();
        for (payload, priority) in [
            (&bulk[..], 0),
            (&bulk[..], 0),
            (&b"small"[..], Lane::Small.priority()),
        ] {
            let mut send = conn.open_uni().await.expect("open");
            send.set_priority(priority).expect("priority");
            timeout(WAIT, send.write_all(payload))
                .await
                .expect("write timed out")
                .expect("write");
            send.finish().expect("finish");
            streams.push(send);
        }
        let (sizes, log) = timeout(WAIT, accepting)
            .await
            .expect("reading timed out")
            .expect("server");
        assert_eq!(sizes, [2 << 20, 2 << 20, 5]);
        let at = |event| log.iter().position(|e| *e == event).expect("logged");
        assert!(
            at(("bulk 1", "last")) < at(("bulk 2", "first")),
            "the second bulk stream began before the first ended: {log:?}"
        );
        assert!(
            at(("lane", "last")) < at(("bulk 1", "last")),
            "the lane's frame waited for a bulk stream: {log:?}"
        );
        drop(streams);
    }
}
