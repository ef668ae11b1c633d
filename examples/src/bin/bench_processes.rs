//! Costs of the process layer (`fork`, `join`/`yield`, `send`/`receive`),
//! each measured against a raw baseline in the same run (STYLE §7: compare
//! ratios, not absolute numbers).
//!
//! Run with `cargo run --release -p parallel-examples --bin bench_processes`
//! (add `--json` for one JSON object per benchmark on stdout).
//!
//! | bench                   | framework                                              | baseline                                           |
//! |-------------------------|--------------------------------------------------------|----------------------------------------------------|
//! | `nfork4_ready_ms`       | `nfork(4)` + `exec` + one `join` answered by each child | `std::process::Command`: 4 × `/bin/true`, spawned then waited |
//! | `same_host_64mib_gbps`  | `send` of a 64 MiB `Tensor<f32>` to a child that sums it in place and `send`s the sum back (shared memory) | one single-threaded 64 MiB `memcpy` |
//! | `join_roundtrip_p50_us` | one `join`/`yield_value` cycle with a child            | 16-byte echo on one raw QUIC stream (quinn 0.11, rustls ring, TLS 1.3) between two processes of this program |
//!
//! Fork timings are medians of several rounds alternating with the
//! baseline; the bulk pair alternates too; round trips are p50 of 5,000,
//! taken in blocks alternating with the baseline's, after 500 warm-up. Children are closed between benches (`join("break")`
//! then `sync`), and every answer is checked. The raw quinn server is this
//! program started again with `BENCH_PROCESSES_ROLE=raw`; it prints
//! `RAW <addr> <cert der hex>` and exits when its standard input closes.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parallel::Tensor;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

type BoxError = Box<dyn Error + Send + Sync>;

const ROLE_ENV: &str = "BENCH_PROCESSES_ROLE";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

const FORKS: usize = 4;
const FORK_WARMUP: usize = 1;
const FORK_REPS: usize = 7;
const BULK_MIB: usize = 64;
const BULK_BYTES: usize = BULK_MIB << 20;
const BULK_WARMUP: usize = 1;
const BULK_REPS: usize = 5;
const PING_WARMUP: usize = 500;
const PING_N: usize = 5_000;
const PING_LEN: usize = 16;
/// Round trips alternate between the pair in this many blocks.
const BLOCKS: usize = 10;
/// The node's UDP socket buffers (framework/src/transport/endpoint.rs).
const SOCKET_BUFFER: usize = 4 << 20;

// ---------------------------------------------------------------- child functions

/// Yields until told "break".
#[parallel::remote]
fn looper() {
    while parallel::yield_value::<String>().expect("yield") != "break" {}
}

/// Yields until told "break"; on every other join receives a tensor, sums
/// it in place and sends the sum back.
#[parallel::remote]
fn summer() {
    let parent = parallel::parent().expect("a child");
    while parallel::yield_value::<String>().expect("yield") != "break" {
        let t = parent.receive::<Tensor<f32>>().expect("receive");
        parent.send(&sum_f32(t.as_slice())).expect("send");
    }
}

/// Sum with eight lanes (vectorizes).
fn sum_f32(xs: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(x)).sum();
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + tail
}

fn bulk_values() -> Vec<f32> {
    // Small integers: every partial sum is exact, so the total checks the transfer.
    (0..BULK_BYTES / 4).map(|i| (i % 4) as f32).collect()
}

fn bulk_expected() -> f64 {
    (BULK_BYTES / 4 / 4 * (1 + 2 + 3)) as f64
}

// ---------------------------------------------------------------- main

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var(ROLE_ENV).is_ok_and(|r| r == "raw") {
        return raw_serve_until_stdin_closes()
            .await
            .map_err(|e| e as Box<dyn Error>);
    }
    let json = std::env::args().any(|a| a == "--json");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let header = format!(
        "bench_processes: nproc {nproc}, parent and children on this machine; machines here are \
         noisy: compare the ratios to the same-run baselines, not the absolute numbers"
    );
    if json {
        eprintln!("{header}");
    } else {
        println!("{header}");
    }
    let rows = run_benches().await.map_err(|e| e as Box<dyn Error>)?;
    for row in &rows {
        if json {
            println!("{}", row.json());
        } else {
            println!("{}", row.text());
        }
    }
    Ok(())
}

async fn run_benches() -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();

    eprintln!(
        "[bench] nfork({FORKS}) until every child answered a join, vs {FORKS} x /bin/true; \
         {FORK_REPS} rounds alternating, median"
    );
    let (mut raws, mut forks) = (Vec::new(), Vec::new());
    for round in 0..FORK_WARMUP + FORK_REPS {
        let (r, f) = (spawn_true(FORKS)?, nfork_ready(FORKS).await?);
        if round >= FORK_WARMUP {
            raws.push(r);
            forks.push(f);
        }
    }
    let row = Row::new(NFORK, Goal::AtMost(2.0), median(forks), median(raws));
    eprintln!(
        "[bench]   absolute target: <= 50 ms ({})",
        if row.value <= 50.0 { "met" } else { "missed" }
    );
    rows.push(row);

    eprintln!(
        "[bench] {BULK_MIB} MiB tensor to a child on this machine, {BULK_REPS} rounds alternating with memcpy, median"
    );
    let tensor = Tensor::from_vec(bulk_values());
    let child = parallel::fork().await?;
    child.exec(summer, ()).await?;
    let mut dst = vec![0f32; BULK_BYTES / 4];
    let (mut copies, mut sends, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    let mut fresh = Vec::new();
    for round in 0..BULK_WARMUP + BULK_REPS {
        let c = memcpy_gbps(tensor.as_slice(), &mut dst);
        fresh.push(fresh_copy_gbps(tensor.as_slice()));
        let (s, w) = send_gbps(&child, &tensor).await?;
        if round >= BULK_WARMUP {
            copies.push(c);
            sends.push(s);
            writes.push(w);
        }
    }
    eprintln!(
        "[bench]   of which `send` (archiving into /dev/shm): {:.1} ms median; the rest is the child mapping, checking and summing it, and the answer",
        median(writes)
    );
    eprintln!(
        "[bench]   for scale: a copy into freshly allocated memory (page faults included) runs at {:.2} GB/s",
        median(fresh)
    );
    close(&child).await?;
    drop(tensor);
    rows.push(Row::new(
        BULK,
        Goal::AtLeast(0.5),
        median(sends),
        median(copies),
    ));

    eprintln!(
        "[bench] join/yield round trip vs raw quinn ping: {PING_N} each, in {BLOCKS} alternating blocks, after {PING_WARMUP} warm-up; p50"
    );
    let mut server = RawServer::start().await?;
    let raw = raw_connect(server.addr, server.cert.clone()).await?;
    let (mut send, mut recv) = raw.open_bi().await?;
    let child = parallel::fork().await?;
    child.exec(looper, ()).await?;
    raw_pings(&mut send, &mut recv, PING_WARMUP).await?;
    joins(&child, PING_WARMUP).await?;
    let (mut raw_ns, mut join_ns) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        raw_ns.extend(raw_pings(&mut send, &mut recv, PING_N / BLOCKS).await?);
        join_ns.extend(joins(&child, PING_N / BLOCKS).await?);
    }
    close(&child).await?;
    send.finish()?;
    raw.close(0u32.into(), b"done");
    server.stop().await;
    rows.push(Row::new(
        JOIN,
        Goal::AtMost(1.25),
        p50(join_ns),
        p50(raw_ns),
    ));

    Ok(rows)
}

/// Tells a child running `looper`/`summer` to stop and waits until its process is gone.
async fn close(child: &parallel::Child) -> Result<(), BoxError> {
    child.join("break").await?;
    child.sync().await?;
    Ok(())
}

// ---------------------------------------------------------------- framework benches

/// Milliseconds from `nfork(n)` to every child having answered one `join`.
async fn nfork_ready(n: usize) -> Result<f64, BoxError> {
    let start = Instant::now();
    let children = parallel::nfork(n).await?;
    children.exec(looper, ()).await?;
    children.join("").await?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    children.join("break").await?;
    children.sync().await?;
    Ok(ms)
}

/// GB/s from `send` of the tensor to the child's answer (its sum), and the
/// milliseconds `send` itself took (writing the shared-memory file).
async fn send_gbps(child: &parallel::Child, tensor: &Tensor<f32>) -> Result<(f64, f64), BoxError> {
    child.join("sum").await?;
    let start = Instant::now();
    child.send(tensor).await?;
    let sent = start.elapsed().as_secs_f64() * 1e3;
    let sum = child.receive::<f64>().await?.to_native();
    let secs = start.elapsed().as_secs_f64();
    if sum != bulk_expected() {
        return Err(format!("the child summed {sum}, expected {}", bulk_expected()).into());
    }
    Ok((BULK_BYTES as f64 / secs / 1e9, sent))
}

/// Nanoseconds of `n` sequential joins. Each waits for the yield that
/// answers the previous join, then posts this one: one full cycle.
async fn joins(child: &parallel::Child, n: usize) -> Result<Vec<u64>, BoxError> {
    let mut ns = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        child.join("").await?;
        ns.push(start.elapsed().as_nanos() as u64);
    }
    Ok(ns)
}

// ---------------------------------------------------------------- baselines

/// Milliseconds to spawn `n` copies of `/bin/true` and wait for them all.
fn spawn_true(n: usize) -> Result<f64, BoxError> {
    let start = Instant::now();
    let mut procs = Vec::with_capacity(n);
    for _ in 0..n {
        procs.push(std::process::Command::new("/bin/true").spawn()?);
    }
    for mut p in procs {
        if !p.wait()?.success() {
            return Err("/bin/true failed".into());
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// GB/s of one single-threaded copy into a buffer already touched.
fn memcpy_gbps(src: &[f32], dst: &mut [f32]) -> f64 {
    let start = Instant::now();
    dst.copy_from_slice(src);
    std::hint::black_box(&mut *dst);
    let secs = start.elapsed().as_secs_f64();
    std::mem::size_of_val(src) as f64 / secs / 1e9
}

/// GB/s of one copy into memory allocated for it (its pages faulted in by the copy).
fn fresh_copy_gbps(src: &[f32]) -> f64 {
    let start = Instant::now();
    let copy = src.to_vec();
    std::hint::black_box(&copy);
    let secs = start.elapsed().as_secs_f64();
    std::mem::size_of_val(src) as f64 / secs / 1e9
}

/// Nanoseconds of `n` sequential 16-byte echoes on one raw stream.
async fn raw_pings(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    n: usize,
) -> Result<Vec<u64>, BoxError> {
    let out = [7u8; PING_LEN];
    let mut back = [0u8; PING_LEN];
    let mut ns = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        send.write_all(&out).await?;
        recv.read_exact(&mut back).await?;
        ns.push(start.elapsed().as_nanos() as u64);
    }
    Ok(ns)
}

// ---------------------------------------------------------------- report

/// Bench name, table label, unit, baseline name.
type Names = [&'static str; 4];
const NFORK: Names = [
    "nfork4_ready_ms",
    "nfork(4) ready",
    "ms",
    "spawn 4 x /bin/true",
];
const BULK: Names = [
    "same_host_64mib_gbps",
    "64 MiB to a child",
    "GB/s",
    "memcpy 64 MiB",
];
const JOIN: Names = [
    "join_roundtrip_p50_us",
    "join/yield p50",
    "us",
    "raw quinn ping p50",
];

/// The ratio (value / baseline) a bench aims for.
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

struct Row {
    names: Names,
    goal: Goal,
    value: f64,
    baseline_value: f64,
}

impl Row {
    fn new(names: Names, goal: Goal, value: f64, baseline_value: f64) -> Self {
        Self {
            names,
            goal,
            value,
            baseline_value,
        }
    }

    fn ratio(&self) -> f64 {
        self.value / self.baseline_value
    }

    fn text(&self) -> String {
        let [_, label, unit, baseline] = self.names;
        let unit = if unit == "us" { "µs" } else { unit };
        let ratio = self.ratio();
        let (op, target, met) = match self.goal {
            Goal::AtMost(t) => ("<=", t, ratio <= t),
            Goal::AtLeast(t) => (">=", t, ratio >= t),
        };
        let (value, base) = (figure(self.value), figure(self.baseline_value));
        let missed = if met { "" } else { ", missed" };
        format!(
            "{label:<20} {value:>10} {unit:<5} {baseline:<20} {base:>10} {unit:<5} \
             ratio {ratio:>6.2} (target {op} {target:.2}{missed})"
        )
    }

    fn json(&self) -> String {
        let [bench, _, unit, baseline] = self.names;
        let (value, base) = (json_number(self.value), json_number(self.baseline_value));
        let ratio = json_number(self.ratio());
        format!(
            "{{\"bench\":\"{bench}\",\"value\":{value},\"unit\":\"{unit}\",\
             \"baseline\":\"{baseline}\",\"baseline_value\":{base},\"ratio\":{ratio}}}"
        )
    }
}

/// A figure with a sensible number of digits.
fn figure(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// JSON has no NaN or infinity.
fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".to_owned()
    }
}

/// The median of round-trip times, in microseconds.
fn p50(mut ns: Vec<u64>) -> f64 {
    ns.sort_unstable();
    ns[ns.len() / 2] as f64 / 1e3
}

/// The median of a few measurements.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

// ---------------------------------------------------------------- raw quinn (as in bench_remote)

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn raw_endpoint(server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint, BoxError> {
    let runtime = quinn::default_runtime().ok_or("no async runtime for quinn")?;
    let socket = udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )?)
}

/// A raw quinn server with a fresh self-signed certificate; returns it and the certificate.
fn raw_server() -> Result<(quinn::Endpoint, Vec<u8>), BoxError> {
    let certified = rcgen::generate_simple_self_signed(vec!["bench".to_owned()])?;
    let cert = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key))?;
    let server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    Ok((raw_endpoint(Some(server))?, cert.to_vec()))
}

/// Accepts exactly one certificate (by its DER bytes).
#[derive(Debug)]
struct OneCert {
    der: Vec<u8>,
    schemes: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for OneCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
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

async fn raw_connect(addr: SocketAddr, cert: Vec<u8>) -> Result<quinn::Connection, BoxError> {
    let provider = provider();
    let verifier = OneCert {
        der: cert,
        schemes: provider.signature_verification_algorithms,
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let endpoint = raw_endpoint(None)?;
    let conn = endpoint.connect_with(client, addr, "bench")?;
    Ok(tokio::time::timeout(READY_TIMEOUT, conn)
        .await
        .map_err(|_| "raw quinn connect timed out")??)
}

/// The second process: echoes 16-byte pings on every stream of every
/// connection until its standard input closes.
async fn raw_serve_until_stdin_closes() -> Result<(), BoxError> {
    let (endpoint, cert) = raw_server()?;
    println!("RAW {} {}", endpoint.local_addr()?, hex(&cert));
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; PING_LEN];
                        while recv.read_exact(&mut buf).await.is_ok() {
                            if send.write_all(&buf).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        }
    });
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    endpoint.close(0u32.into(), b"bye");
    Ok(())
}

/// The raw server process as the first sees it; killed when dropped.
struct RawServer {
    child: tokio::process::Child,
    addr: SocketAddr,
    cert: Vec<u8>,
}

impl RawServer {
    async fn start() -> Result<RawServer, BoxError> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, "raw")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the raw server")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| "the raw server did not print RAW within 10 s")??
            .ok_or("the raw server exited before it was ready")?;
        let rest = line
            .strip_prefix("RAW ")
            .ok_or_else(|| format!("unexpected line from the raw server: {line}"))?;
        let (addr, cert) = rest.split_once(' ').ok_or("malformed RAW line")?;
        Ok(RawServer {
            child,
            addr: addr.parse()?,
            cert: unhex(cert)?,
        })
    }

    /// Closes its standard input and waits for it to exit; kills it after 10 s.
    async fn stop(&mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(READY_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, BoxError> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair)
                .ok()
                .filter(|p| p.len() == 2)
                .ok_or("bad hex")?;
            Ok(u8::from_str_radix(pair, 16)?)
        })
        .collect()
}
