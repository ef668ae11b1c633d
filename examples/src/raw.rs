//! The "raw quinn" baselines the benchmarks share: a plain quinn server in a
//! second process of the benchmark, and a client in the first, with the
//! node's TLS set-up and UDP socket buffers
//! ([`parallel::transport::baseline`]) and none of its protocol.
//!
//! The server process prints `RAW <addr> <fingerprint hex>` (the SHA-256 of
//! its fresh certificate, which the client pins) and serves until its
//! standard input closes, so it never outlives the benchmark: it echoes
//! pings on bidirectional streams ([`pings`]; the stream's first byte says
//! whether the echo passes through a thread of its own, [`ECHO`] or
//! [`HANDOFF`]) and takes bulk bytes on unidirectional ones, one way
//! ([`bulk_one_way_gbps`]) or while sending as many back
//! ([`bulk_both_ways_gbps`]).

use std::error::Error;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use parallel::transport::baseline::{SERVER_NAME, raw_client, raw_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{Goal, Row};

/// The error type of the benchmarks.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Bytes of one ping (and of its echo).
pub const PING_LEN: usize = 16;
/// How long a connect, or a process printing its first lines or exiting, may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A ping stream's first byte: the server's stream task echoes each ping.
pub const ECHO: u8 = b'E';
/// A ping stream's first byte: the server's stream task hands each ping to
/// a thread of its own and writes what that thread hands back — the two
/// hand-offs between threads of a `join`/`yield` round trip, whose child
/// runs its function on a thread of its own ([`handoff_echo`]).
pub const HANDOFF: u8 = b'H';
/// How long the hand-off thread looks for the next ping, yielding its CPU,
/// before it parks: what a child's function does while it waits in `yield`.
const HANDOFF_SPIN: Duration = Duration::from_micros(100);

/// Where a raw server listens and the certificate it shows: what its
/// `RAW` line carries.
#[derive(Clone, Copy, Debug)]
pub struct RawAddr {
    /// The server's UDP address.
    pub addr: SocketAddr,
    /// SHA-256 of the server's certificate.
    pub fingerprint: [u8; 32],
}

impl RawAddr {
    /// Parses a `RAW <addr> <fingerprint hex>` line; `None` when `line` is
    /// not a `RAW` line at all.
    pub fn parse(line: &str) -> Option<Result<RawAddr, BoxError>> {
        let rest = line.strip_prefix("RAW ")?;
        Some((|| {
            let (addr, fingerprint) = rest.split_once(' ').ok_or("malformed RAW line")?;
            Ok(RawAddr {
                addr: addr.parse()?,
                fingerprint: unhex32(fingerprint)?,
            })
        })())
    }

    /// A raw client connection to the server, within [`TIMEOUT`].
    pub async fn connect(&self) -> Result<quinn::Connection, BoxError> {
        let endpoint = raw_client(self.fingerprint)?;
        let conn = endpoint.connect(self.addr, SERVER_NAME)?;
        Ok(tokio::time::timeout(TIMEOUT, conn)
            .await
            .map_err(|_| "raw quinn connect timed out")??)
    }
}

impl fmt::Display for RawAddr {
    /// The `RAW` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RAW {} {}", self.addr, hex(&self.fingerprint))
    }
}

/// Binds a raw server on loopback and prints its `RAW` line for the parent.
pub fn start_server() -> Result<quinn::Endpoint, BoxError> {
    let (endpoint, addr) = bind_server()?;
    println!("{addr}");
    Ok(endpoint)
}

/// Binds a raw server on loopback; where it listens.
pub fn bind_server() -> Result<(quinn::Endpoint, RawAddr), BoxError> {
    let (endpoint, fingerprint) = raw_server(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = endpoint.local_addr()?;
    Ok((endpoint, RawAddr { addr, fingerprint }))
}

/// The server side of a ping stream: echoes every [`PING_LEN`] bytes until
/// the client finishes the stream.
pub async fn echo(send: quinn::SendStream, recv: quinn::RecvStream) -> Result<(), BoxError> {
    answer_pings(send, recv, None).await
}

/// The two channels of a [`HANDOFF`] stream: pings to the thread, echoes
/// back from it.
struct Handoff {
    to_thread: std::sync::mpsc::Sender<[u8; PING_LEN]>,
    echoes: tokio::sync::mpsc::UnboundedReceiver<[u8; PING_LEN]>,
}

/// Writes back every [`PING_LEN`] bytes read (through the thread of
/// `handoff`, if any), until the client finishes the stream.
async fn answer_pings(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut handoff: Option<&mut Handoff>,
) -> Result<(), BoxError> {
    let mut buf = [0u8; PING_LEN];
    loop {
        match recv.read_exact(&mut buf).await {
            Ok(()) => {
                let answer = match &mut handoff {
                    None => buf,
                    Some(h) => {
                        let ended = "the hand-off thread ended";
                        h.to_thread.send(buf).map_err(|_| ended)?;
                        h.echoes.recv().await.ok_or(ended)?
                    }
                };
                send.write_all(&answer).await?
            }
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The server side of a [`HANDOFF`] ping stream: each ping goes to a thread
/// of its own over a `std` channel; that thread looks for it the way a
/// child's function does in `yield` (it yields its CPU for up to
/// 100 µs, then parks) and hands it back over a tokio channel,
/// which wakes this task to write the echo.
pub async fn handoff_echo(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> Result<(), BoxError> {
    let (to_thread, pings) = std::sync::mpsc::channel::<[u8; PING_LEN]>();
    let (to_task, echoes) = tokio::sync::mpsc::unbounded_channel();
    let thread = std::thread::spawn(move || {
        while let Some(ping) = wait_as_in_yield(&pings) {
            if to_task.send(ping).is_err() {
                return;
            }
        }
    });
    let mut handoff = Handoff { to_thread, echoes };
    let served = answer_pings(send, recv, Some(&mut handoff)).await;
    drop(handoff);
    let _ = thread.join();
    served
}

/// The next ping, looked for the way a child's function waits in `yield`:
/// yielding its CPU for up to [`HANDOFF_SPIN`], then parked. `None` once
/// the stream's task is gone.
fn wait_as_in_yield(pings: &std::sync::mpsc::Receiver<[u8; PING_LEN]>) -> Option<[u8; PING_LEN]> {
    let start = Instant::now();
    while start.elapsed() < HANDOFF_SPIN {
        match pings.try_recv() {
            Ok(ping) => return Some(ping),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    pings.recv().ok()
}

/// Nanoseconds as microseconds.
fn micros(ns: Vec<u64>) -> Vec<f64> {
    ns.into_iter().map(|v| v as f64 / 1000.0).collect()
}

/// Opens a ping stream of `mode` ([`ECHO`] or [`HANDOFF`]) to a raw server.
pub async fn ping_stream(
    conn: &quinn::Connection,
    mode: u8,
) -> Result<(quinn::SendStream, quinn::RecvStream), BoxError> {
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(&[mode]).await?;
    Ok((send, recv))
}

/// Nanoseconds of `n` sequential [`PING_LEN`]-byte echoes on one raw stream.
pub async fn pings(
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

/// The server process: returns once the benchmark closes our standard
/// input (or dies).
pub async fn until_stdin_closes() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
}

/// The benchmark's side: closes the server process's standard input and
/// waits for it to exit; kills it after [`TIMEOUT`].
pub async fn stop(child: &mut tokio::process::Child) {
    drop(child.stdin.take());
    if tokio::time::timeout(TIMEOUT, child.wait()).await.is_err() {
        let _ = child.start_kill();
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes that `s` spells in hex.
pub fn unhex32(s: &str) -> Result<[u8; 32], BoxError> {
    if s.len() != 64 || !s.is_ascii() {
        return Err("bad fingerprint: 64 hex digits expected".into());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair)?, 16)?;
    }
    Ok(out)
}

/// p50 of `n` raw quinn pings (after 50 warm-up ones) to a raw server in
/// this process, on loopback, in µs: no process crossing at all, printed
/// for scale by [`alternate_p50_us`] beside the cross-process baseline.
async fn ping_in_process_p50_us(n: usize) -> Result<f64, BoxError> {
    let (endpoint, addr) = bind_server()?;
    let server = tokio::spawn(async move {
        if let Some(incoming) = endpoint.accept().await
            && let Ok(conn) = incoming.await
            && let Ok((send, recv)) = conn.accept_bi().await
        {
            let _ = echo(send, recv).await;
        }
    });
    let conn = addr.connect().await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    pings(&mut send, &mut recv, 50).await?;
    let ns = pings(&mut send, &mut recv, n).await?;
    send.finish()?;
    let _ = tokio::time::timeout(TIMEOUT, server).await;
    Ok(crate::report::median(micros(ns)))
}

/// The role ([`crate::role`]) of a benchmark's copy that is the raw server.
const SERVER_ROLE: &str = "raw";

/// In the raw server process (started by [`RawServer::start`]): echoes
/// pings on every stream of every connection until standard input closes,
/// and returns `Some`; `None` in any other process. A benchmark's `main`
/// calls it first.
pub async fn serve_if_asked() -> Option<Result<(), BoxError>> {
    match crate::role().as_deref() {
        Some(SERVER_ROLE) => Some(serve_until_stdin_closes().await),
        Some(DIAL_ROLE) => Some(dial_once().await),
        Some(START_ROLE) => Some(Ok(())),
        _ => None,
    }
}

/// The role of a benchmark's copy that exits as soon as its `main` runs
/// ([`start_floor_ms`]).
const START_ROLE: &str = "start";

/// What starting `n` copies of this program costs here, no network at
/// all: milliseconds from spawning `n` copies (each exits as soon as its
/// `main` runs, its runtime started) until every one has exited — the part
/// of [`dial_floor_ms`] that is program start.
pub fn start_floor_ms(n: usize) -> Result<f64, BoxError> {
    let exe = std::env::current_exe()?;
    spawned_ms(n, || {
        let mut copy = std::process::Command::new(&exe);
        copy.env(crate::ROLE_ENV, START_ROLE);
        copy
    })
}

/// Milliseconds from spawning `n` processes, each from `command()`, until
/// every one has exited with success.
pub fn spawned_ms(n: usize, command: impl Fn() -> std::process::Command) -> Result<f64, BoxError> {
    let start = Instant::now();
    let mut procs = Vec::with_capacity(n);
    for _ in 0..n {
        procs.push(command().spawn()?);
    }
    for mut p in procs {
        let status = p.wait()?;
        if !status.success() {
            return Err(format!("{:?} ended with {status}", command()).into());
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// The role of a benchmark's copy that connects to a raw server once,
/// answers one ping and exits ([`dial_floor_ms`]).
const DIAL_ROLE: &str = "raw dial";

/// In a dialing copy: reads the server's `RAW` line from standard input
/// (the benchmark writes it there), connects, sends one ping, reads its
/// echo, and returns.
async fn dial_once() -> Result<(), BoxError> {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    tokio::time::timeout(
        TIMEOUT,
        tokio::io::BufReader::new(tokio::io::stdin()).read_line(&mut line),
    )
    .await
    .map_err(|_| "no RAW line on standard input")??;
    let addr = RawAddr::parse(line.trim_end()).ok_or("standard input held no RAW line")??;
    let conn = addr.connect().await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    tokio::time::timeout(TIMEOUT, pings(&mut send, &mut recv, 1))
        .await
        .map_err(|_| "the raw server did not echo")??;
    send.finish()?;
    conn.close(0u32.into(), b"done");
    Ok(())
}

/// The least that starting `n` processes of this program and reaching each
/// over QUIC can cost here: milliseconds from spawning `n` copies of this
/// program (each connects to a raw server in this process, with the node's
/// TLS set-up, and sends one ping) until every copy's ping was echoed. No
/// protocol of the framework on either side: the floor under `nfork(n)`,
/// whose children also start this program and answer over QUIC.
pub async fn dial_floor_ms(n: usize) -> Result<f64, BoxError> {
    let (endpoint, addr) = bind_server()?;
    let (echoed_tx, mut echoed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let accepting = endpoint.clone();
    let server = tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            let echoed = echoed_tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                    return;
                };
                let mut buf = [0u8; PING_LEN];
                if recv.read_exact(&mut buf).await.is_ok() && send.write_all(&buf).await.is_ok() {
                    let _ = echoed.send(());
                    let _ = recv.read_to_end(0).await;
                }
            });
        }
    });
    let exe = std::env::current_exe()?;
    let line = format!("{addr}\n");
    let start = Instant::now();
    let mut copies = Vec::with_capacity(n);
    for _ in 0..n {
        let mut copy = tokio::process::Command::new(&exe)
            .env(crate::ROLE_ENV, DIAL_ROLE)
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = copy
            .stdin
            .take()
            .ok_or("no standard input to a dialing copy")?;
        stdin.write_all(line.as_bytes()).await?;
        copies.push(copy);
    }
    let mut answered = 0;
    while answered < n {
        match tokio::time::timeout(TIMEOUT, echoed.recv()).await {
            Ok(Some(())) => answered += 1,
            _ => return Err(format!("{answered} of {n} dialing copies answered in time").into()),
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    for mut copy in copies {
        let exited = tokio::time::timeout(TIMEOUT, copy.wait())
            .await
            .map_err(|_| "a dialing copy did not exit")??;
        if !exited.success() {
            return Err("a dialing copy failed".into());
        }
    }
    server.abort();
    endpoint.close(0u32.into(), b"done");
    Ok(ms)
}

async fn serve_until_stdin_closes() -> Result<(), BoxError> {
    let endpoint = start_server()?;
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let bulk = conn.clone();
                tokio::spawn(async move {
                    while let Ok(recv) = bulk.accept_uni().await {
                        let conn = bulk.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_bulk(&conn, recv).await {
                                eprintln!("[raw server] bulk stream failed: {e}");
                            }
                        });
                    }
                });
                while let Ok((send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut mode = [0u8; 1];
                        if recv.read_exact(&mut mode).await.is_err() {
                            return;
                        }
                        let served = match mode[0] {
                            HANDOFF => handoff_echo(send, recv).await,
                            _ => echo(send, recv).await,
                        };
                        if let Err(e) = served {
                            eprintln!("[raw server] ping stream failed: {e}");
                        }
                    });
                }
            });
        }
    });
    until_stdin_closes().await;
    endpoint.close(0u32.into(), b"bye");
    Ok(())
}

/// A bulk stream's first byte: the server takes the bytes and answers how
/// many arrived.
const BULK_ONE_WAY: u8 = 1;
/// A bulk stream's first byte: the server sends as many bytes back while
/// it takes them.
const BULK_BOTH_WAYS: u8 = 2;
/// Bytes per write of the bytes the server sends back.
const BULK_CHUNK: usize = 1 << 20;

/// The server side of a unidirectional bulk stream (a kind byte, the
/// length as a little-endian `u64`, then the bytes): [`BULK_ONE_WAY`] takes
/// the bytes, then answers their count (8 bytes) on a unidirectional
/// stream of its own; [`BULK_BOTH_WAYS`] opens that stream at once and
/// sends as many bytes on it while it takes them.
async fn serve_bulk(conn: &quinn::Connection, mut recv: quinn::RecvStream) -> Result<(), BoxError> {
    let mut head = [0u8; 9];
    recv.read_exact(&mut head).await?;
    let len = u64::from_le_bytes(head[1..].try_into()?);
    let take = drain(&mut recv);
    let mut back = conn.open_uni().await?;
    match head[0] {
        BULK_ONE_WAY => {
            let got = take.await?;
            back.write_all(&got.to_le_bytes()).await?;
        }
        BULK_BOTH_WAYS => {
            let chunk = vec![1u8; BULK_CHUNK];
            let give = async {
                let mut left = len as usize;
                while left > 0 {
                    let n = left.min(BULK_CHUNK);
                    back.write_all(&chunk[..n]).await?;
                    left -= n;
                }
                Ok::<(), BoxError>(())
            };
            let (got, gave) = tokio::join!(take, give);
            let (got, ()) = (got?, gave?);
            if got != len {
                return Err(format!("{got} bytes arrived, {len} were announced").into());
            }
        }
        other => return Err(format!("unknown bulk stream kind {other}").into()),
    }
    back.finish()?;
    Ok(())
}

/// GB/s (10⁹ bytes per second) of `bytes` sent to the raw server on one
/// unidirectional stream: from the first byte written to the server's
/// answer that all of them arrived.
pub async fn bulk_one_way_gbps(conn: &quinn::Connection, bytes: &[u8]) -> Result<f64, BoxError> {
    let start = Instant::now();
    let mut send = conn.open_uni().await?;
    send.write_all(&bulk_head(BULK_ONE_WAY, bytes.len()))
        .await?;
    send.write_all(bytes).await?;
    send.finish()?;
    let mut answer = conn.accept_uni().await?;
    let mut got = [0u8; 8];
    answer.read_exact(&mut got).await?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_le_bytes(got);
    if got != bytes.len() as u64 {
        return Err(format!("the raw server took {got} bytes, {} were sent", bytes.len()).into());
    }
    Ok(bytes.len() as f64 / secs / 1e9)
}

/// GB/s (10⁹ bytes per second) of `bytes` sent to the raw server while it
/// sends as many back (the traffic of a two-rank AllReduce: every rank
/// sends and takes the buffer's size): bytes of one direction over the time
/// from the first byte written to the last byte back.
pub async fn bulk_both_ways_gbps(conn: &quinn::Connection, bytes: &[u8]) -> Result<f64, BoxError> {
    let start = Instant::now();
    let mut send = conn.open_uni().await?;
    let give = async move {
        send.write_all(&bulk_head(BULK_BOTH_WAYS, bytes.len()))
            .await?;
        send.write_all(bytes).await?;
        send.finish()?;
        Ok::<(), BoxError>(())
    };
    let take = async { drain(&mut conn.accept_uni().await?).await };
    let (gave, got) = tokio::join!(give, take);
    let ((), got) = (gave?, got?);
    let secs = start.elapsed().as_secs_f64();
    if got != bytes.len() as u64 {
        return Err(format!(
            "the raw server sent back {got} bytes, {} were asked",
            bytes.len()
        )
        .into());
    }
    Ok(bytes.len() as f64 / secs / 1e9)
}

/// Reads `recv` to its end as it arrives (no copy); how many bytes came.
async fn drain(recv: &mut quinn::RecvStream) -> Result<u64, BoxError> {
    let mut got = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        got += chunk.bytes.len() as u64;
    }
    Ok(got)
}

/// The head of a bulk stream: its kind, then the length.
fn bulk_head(kind: u8, len: usize) -> [u8; 9] {
    let mut head = [kind; 9];
    head[1..].copy_from_slice(&(len as u64).to_le_bytes());
    head
}

/// The raw server process as the benchmark sees it: this program again,
/// in the raw server's role; killed when dropped.
pub struct RawServer {
    /// The process.
    pub child: tokio::process::Child,
    /// Where it listens.
    pub raw: RawAddr,
}

impl RawServer {
    /// Starts the server process and reads its `RAW` line.
    pub async fn start() -> Result<RawServer, BoxError> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .env(crate::ROLE_ENV, SERVER_ROLE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the raw server")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .map_err(|_| "the raw server did not print RAW within 10 s")??
            .ok_or("the raw server exited before it was ready")?;
        let raw = RawAddr::parse(&line)
            .ok_or_else(|| format!("unexpected line from the raw server: {line}"))??;
        Ok(RawServer { child, raw })
    }
}

/// Round-trip p50s in µs (the framework's, the raw ping's), each pair
/// measured under one [`Placement`](crate::placement::Placement).
pub struct RoundTrips {
    /// This process on one CPU, the processes it started on another (NaN
    /// where this process may run on one CPU only).
    pub apart: (f64, f64),
    /// Every process on one CPU.
    pub one_cpu: (f64, f64),
    /// The p50s of [`HANDOFF`] pings in the same blocks (apart, on one
    /// CPU), when asked for ([`Floor::Handoff`]).
    pub handoff: Option<(f64, f64)>,
}

/// A second raw series [`alternate_p50_us`] measures in the same blocks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// None.
    None,
    /// [`HANDOFF`] pings: the raw ping with the server's echo passing
    /// through a thread of its own and back.
    Handoff,
}

impl RoundTrips {
    /// The report's two rows, each against its raw ping with the target
    /// `at_most` times it: `keys` are the benches' names (across CPUs, on
    /// one CPU), `label` the round trip's.
    pub fn rows(&self, keys: [&'static str; 2], label: &'static str, at_most: f64) -> [Row; 2] {
        let row = |key, label, (value, raw)| {
            Row::new(
                [key, label, "us", "raw quinn ping"],
                Goal::AtMost(at_most),
                value,
                raw,
            )
        };
        [
            row(keys[0], label, self.apart),
            row(keys[1], "the same, on one CPU", self.one_cpu),
        ]
    }
}

/// p50s in µs of `n` round trips of `round(i)` (i = 0, 1, ...) and of `n`
/// raw pings to another process, taken in `blocks` alternating blocks so
/// that both see the same machine — twice: with all processes on one CPU,
/// then with this process and the processes it started on different CPUs
/// (see [`crate::placement`]: left to itself, the scheduler may place the
/// pings' server and the measured processes differently). Prints, for
/// scale, the p50 of a raw ping that crosses no process. With
/// [`Floor::Handoff`], each block of raw pings is followed by as many
/// [`HANDOFF`] pings.
pub async fn alternate_p50_us<E: Into<BoxError>>(
    n: usize,
    blocks: usize,
    floor: Floor,
    mut round: impl AsyncFnMut(u64) -> Result<(), E>,
) -> Result<RoundTrips, BoxError> {
    let mut ping = PingSession::start().await?;
    let p50s = |(rtts, raws): (Vec<f64>, Vec<f64>)| {
        (crate::report::median(rtts), crate::report::median(raws))
    };
    let (one_cpu, apart) = crate::placement::one_cpu_then_apart(async || {
        let mut handoffs = Vec::new();
        let pairs = alternate_us(n, blocks, &mut round, async |k| {
            if floor == Floor::Handoff {
                handoffs.extend(ping.handoff_pings_us(k).await?);
            }
            ping.pings_us(k).await
        })
        .await?;
        Ok::<_, BoxError>((pairs, handoffs))
    })
    .await?;
    let ((one_cpu, one_cpu_handoffs), apart) = (one_cpu, apart.unzip());
    let handoff = (floor == Floor::Handoff).then(|| {
        let apart = apart.1.map_or(f64::NAN, crate::report::median);
        (apart, crate::report::median(one_cpu_handoffs))
    });
    let apart = apart.0;
    ping.stop().await?;
    let in_process = ping_in_process_p50_us(n).await?;
    eprintln!(
        "[bench]   for scale: a raw quinn ping within one process (no process crossing) takes {in_process:.1} µs"
    );
    Ok(RoundTrips {
        apart: apart.map_or((f64::NAN, f64::NAN), p50s),
        one_cpu: p50s(one_cpu),
        handoff,
    })
}

/// The times in µs of `n` rounds of `round(i)` and of `n` raw pings
/// (`pings(k)` pings `k` times), in `blocks` alternating blocks, so that
/// both see the same machine.
pub async fn alternate_us<E: Into<BoxError>>(
    n: usize,
    blocks: usize,
    round: &mut impl AsyncFnMut(u64) -> Result<(), E>,
    mut pings: impl AsyncFnMut(usize) -> Result<Vec<f64>, BoxError>,
) -> Result<(Vec<f64>, Vec<f64>), BoxError> {
    let (mut rtts, mut raws) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let per_block = n / blocks.max(1);
    let mut i = 0;
    for _ in 0..blocks {
        for _ in 0..per_block {
            let t = Instant::now();
            round(i).await.map_err(Into::into)?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
            i += 1;
        }
        raws.extend(pings(per_block).await?);
    }
    Ok((rtts, raws))
}

/// One ping stream to a raw server in another process: the round-trip
/// baseline for anything that crosses processes. Measure in blocks
/// alternating with what it is compared to, so that both see the same
/// machine.
pub struct PingSession {
    server: RawServer,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// A [`HANDOFF`] stream, opened at its first use.
    handoff: Option<(quinn::SendStream, quinn::RecvStream)>,
}

impl PingSession {
    /// Starts the server process, connects and pings 50 times to warm up.
    pub async fn start() -> Result<PingSession, BoxError> {
        let server = RawServer::start().await?;
        let conn = server.raw.connect().await?;
        let (mut send, mut recv) = ping_stream(&conn, ECHO).await?;
        pings(&mut send, &mut recv, 50).await?;
        Ok(PingSession {
            server,
            conn,
            send,
            recv,
            handoff: None,
        })
    }

    /// Microseconds of `n` sequential [`HANDOFF`] pings (50 warm-up ones
    /// first, on the stream's first use).
    pub async fn handoff_pings_us(&mut self, n: usize) -> Result<Vec<f64>, BoxError> {
        let (send, recv) = match &mut self.handoff {
            Some(stream) => stream,
            None => {
                let (mut send, mut recv) = ping_stream(&self.conn, HANDOFF).await?;
                pings(&mut send, &mut recv, 50).await?;
                self.handoff.insert((send, recv))
            }
        };
        Ok(micros(pings(send, recv, n).await?))
    }

    /// Microseconds of `n` sequential pings.
    pub async fn pings_us(&mut self, n: usize) -> Result<Vec<f64>, BoxError> {
        Ok(micros(pings(&mut self.send, &mut self.recv, n).await?))
    }

    /// Closes the stream and stops the server process.
    pub async fn stop(mut self) -> Result<(), BoxError> {
        self.send.finish()?;
        if let Some((send, _)) = &mut self.handoff {
            send.finish()?;
        }
        self.conn.close(0u32.into(), b"done");
        stop(&mut self.server.child).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_line_round_trips() {
        let line = RawAddr {
            addr: "127.0.0.1:4433".parse().unwrap(),
            fingerprint: std::array::from_fn(|i| i as u8 * 7),
        }
        .to_string();
        let back = RawAddr::parse(&line).unwrap().unwrap();
        assert_eq!(back.to_string(), line);
        assert!(RawAddr::parse("READY x").is_none());
        assert!(RawAddr::parse("RAW 127.0.0.1:1 abc").unwrap().is_err());
    }
}
