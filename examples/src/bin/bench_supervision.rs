//! Failure detection and recovery across processes on loopback, each figure
//! next to a baseline from the same run:
//!
//! - `detect_kill_ms` / `detect_kill_tight_ms`: SIGKILL of a process hosting
//!   a watched actor until its `Down` arrives, median over 20 kills, with the
//!   default heartbeats (`TransportConfig::default()`: 500 ms / 1500 ms) and
//!   tight ones (100 ms / 500 ms);
//!   baseline: the configured heartbeat timeout.
//! - `restart_remote_ms`: SIGKILL until a replacement actor, spawned by hand
//!   on a standby process once the `Down` arrives, answers its first ask
//!   (median over 10); baseline: `detect_kill_ms` of this run.
//! - `heartbeat_cpu_pct`: CPU (% of one core, `/proc/<pid>/stat` utime +
//!   stime over 10 s) of a node holding 100 idle peer connections, which
//!   live in one helper process; baseline: the same node with no peers.
//!   Beside it the bench prints its floor: the CPU of a raw quinn server
//!   (the node's TLS set-up, none of its protocol) holding 100 raw
//!   connections from one helper process and sending each one datagram of
//!   a heartbeat's size every interval, all in one burst, which their QUIC
//!   stacks acknowledge — what the node's liveness check does, and nothing
//!   else (`--raw-host`, `--raw-peers`).
//!
//! `cargo run --release -p parallel-examples --bin bench_supervision [-- --json]`
//! (`--json`: one JSON object per benchmark on stdout). The started copies
//! of this program run with `--host INTERVAL,TIMEOUT` or `--peers N LINE`.

use std::error::Error;
use std::process::Stdio;
use std::time::{Duration, Instant};

use actix::Handler;
use parallel::actor::ExitReason;
use parallel::{Actor, JoinLine, Message, Node, Password};
use parallel_examples::raw::{self, RawAddr};
use parallel_examples::report::{self, Goal, Row, Widths, median};
use rkyv::{Archive, Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

type BoxError = Box<dyn Error + Send + Sync>;

/// Kills per heartbeat configuration for `detect_kill_ms`.
const KILLS: usize = 20;
/// Kills for `restart_remote_ms`.
const RESTARTS: usize = 10;
/// Idle peers for `heartbeat_cpu_pct`.
const PEERS: usize = 100;
/// How long CPU time is sampled.
const CPU_WINDOW: Duration = Duration::from_secs(10);
/// Bound on every wait for a process or an answer.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Default heartbeats (interval, timeout) in ms: `TransportConfig::default()`'s.
fn default_hb() -> (u64, u64) {
    let config = parallel::transport::TransportConfig::default();
    (
        config.heartbeat_interval.as_millis() as u64,
        config.heartbeat_timeout.as_millis() as u64,
    )
}
/// Tight heartbeats (interval, timeout).
const TIGHT_HB: (u64, u64) = (100, 500);

const WIDTHS: Widths = Widths {
    label: 24,
    figure: 8,
    unit: 3,
    ratio: 5,
};

/// Answers its number: the actor that is watched, killed and replaced.
#[derive(Actor, Archive, Serialize, Deserialize, Default, Debug)]
#[actor(messages(Ping), spawn)]
struct Echo;

/// Asks an [`Echo`] for `0` back.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = u64)]
struct Ping(u64);

impl Handler<Ping> for Echo {
    type Result = u64;
    fn handle(&mut self, msg: Ping, _: &mut actix::Context<Self>) -> u64 {
        msg.0
    }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--host") => host(args.get(2).map_or("250,1500", String::as_str)).await,
        Some("--peers") => peers(&args[2..]).await,
        Some("--raw-host") => raw_host(args.get(2).map_or("500,1500", String::as_str)).await,
        Some("--raw-peers") => raw_peers(&args[2..]).await,
        _ => driver(args.iter().any(|a| a == "--json")).await,
    };
    result.map_err(|e| e as Box<dyn Error>)
}

fn heartbeat(spec: &str) -> Result<(Duration, Duration), BoxError> {
    let (i, t) = spec
        .split_once(',')
        .ok_or("heartbeats are INTERVAL,TIMEOUT in ms")?;
    Ok((
        Duration::from_millis(i.parse()?),
        Duration::from_millis(t.parse()?),
    ))
}

/// Waits until standard input closes (the driver's way to stop a copy).
async fn until_stdin_closes() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
}

/// A copy that hosts `Echo`s for the driver.
async fn host(spec: &str) -> Result<(), BoxError> {
    let (interval, timeout) = heartbeat(spec)?;
    let node = Node::builder()
        .heartbeat(interval, timeout)
        .allow::<Echo>()
        .start()
        .await?;
    println!("READY {}", node.join_line());
    until_stdin_closes().await;
    node.shutdown().await;
    Ok(())
}

/// A copy that holds `n` client nodes, each joined to `line`, idle.
async fn peers(args: &[String]) -> Result<(), BoxError> {
    let n: usize = args.first().ok_or("--peers N LINE")?.parse()?;
    let line: JoinLine = args.get(1).ok_or("--peers N LINE")?.parse()?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let node = Node::builder().start().await?;
        tokio::time::timeout(TIMEOUT, node.join(&line)).await??;
        nodes.push(node);
    }
    println!("JOINED {n}");
    until_stdin_closes().await;
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// A copy with a raw quinn server that sends each of its connections one
/// datagram of a heartbeat's size every interval, all in one burst: the
/// floor under the host's heartbeat CPU. Prints its `RAW` line.
async fn raw_host(spec: &str) -> Result<(), BoxError> {
    let (interval, _) = heartbeat(spec)?;
    let endpoint = raw::start_server()?;
    let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::<quinn::Connection>::new()));
    let accepted = conns.clone();
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            if let Ok(conn) = incoming.await {
                accepted.lock().map_err(|_| "poisoned")?.push(conn);
            }
        }
        Ok::<_, BoxError>(())
    });
    let beats = async move {
        let beat = [0u8; parallel::wire::HEADER_LEN];
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let conns = conns.lock().map_err(|_| "poisoned")?;
            // A peers copy that stopped closed its connections.
            for conn in conns.iter().filter(|c| c.close_reason().is_none()) {
                conn.send_datagram(beat.to_vec().into())?;
            }
        }
    };
    // A failed beat ends this copy (the driver's reading then fails), so a
    // floor that stopped beating is never reported.
    let result: Result<(), BoxError> = tokio::select! {
        () = until_stdin_closes() => Ok(()),
        failed = beats => failed,
    };
    endpoint.close(0u32.into(), b"bye");
    result
}

/// A copy that holds `n` raw quinn connections (each from an endpoint of
/// its own, as each node has one) to the raw host at the `RAW` line, and
/// takes their datagrams.
async fn raw_peers(args: &[String]) -> Result<(), BoxError> {
    let n: usize = args.first().ok_or("--raw-peers N RAWLINE")?.parse()?;
    let line = args.get(1).ok_or("--raw-peers N RAWLINE")?;
    let addr = RawAddr::parse(line).ok_or("not a RAW line")??;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let conn = addr.connect().await?;
        let reading = conn.clone();
        tokio::spawn(async move { while reading.read_datagram().await.is_ok() {} });
        conns.push(conn);
    }
    println!("JOINED {n}");
    until_stdin_closes().await;
    for conn in &conns {
        conn.close(0u32.into(), b"done");
    }
    Ok(())
}

/// A started copy of this program.
struct Proc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    async fn start(args: &[&str], password: &str) -> Result<Proc, BoxError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .env("PARALLEL_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("stdout is piped")?;
        Ok(Proc {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// Starts a host and returns it with its join line.
    async fn host(hb: (u64, u64), password: &str) -> Result<(Proc, JoinLine), BoxError> {
        let spec = format!("{},{}", hb.0, hb.1);
        let mut copy = Proc::start(&["--host", &spec], password).await?;
        let line = copy.line().await?;
        let line = line
            .strip_prefix("READY ")
            .ok_or_else(|| format!("expected READY, got {line:?}"))?
            .parse()?;
        Ok((copy, line))
    }

    async fn line(&mut self) -> Result<String, BoxError> {
        Ok(tokio::time::timeout(TIMEOUT, self.lines.next_line())
            .await??
            .ok_or("the copy exited early")?)
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGKILL, then reap.
    async fn kill9(mut self) {
        // SAFETY: plain syscall on the pid of a child we started.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGKILL);
        }
        let _ = tokio::time::timeout(TIMEOUT, self.child.wait()).await;
    }

    /// Closes stdin and waits (killing it if it does not exit in time).
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

async fn node(password: &str, hb: (u64, u64)) -> Result<Node, BoxError> {
    Ok(Node::builder()
        .password(Password::new(password.to_owned()))
        .heartbeat(Duration::from_millis(hb.0), Duration::from_millis(hb.1))
        .start()
        .await?)
}

/// Hosts an `Echo` on a new copy, watches it, SIGKILLs the copy and
/// returns the instant of the kill and the Down's arrival.
async fn kill_watched(
    node: &Node,
    password: &str,
    hb: (u64, u64),
) -> Result<(Instant, Instant), BoxError> {
    let (copy, line) = Proc::host(hb, password).await?;
    let remote = tokio::time::timeout(TIMEOUT, node.join(&line)).await??;
    let echo = tokio::time::timeout(TIMEOUT, remote.spawn(Echo)).await??;
    tokio::time::timeout(TIMEOUT, echo.ask(Ping(1))).await??;
    let watch = {
        let echo = echo.clone();
        tokio::task::spawn_local(async move { echo.watch().await })
    };
    // Let the watch request reach the host.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let killed = Instant::now();
    copy.kill9().await;
    let down = tokio::time::timeout(TIMEOUT, watch).await??;
    let seen = Instant::now();
    if down.reason != ExitReason::NoConnection {
        return Err(format!("expected Down(NoConnection), got {:?}", down.reason).into());
    }
    Ok((killed, seen))
}

async fn detect_kill(password: &str, hb: (u64, u64)) -> Result<f64, BoxError> {
    let node = node(password, hb).await?;
    let mut times = Vec::with_capacity(KILLS);
    for _ in 0..KILLS {
        let (killed, seen) = kill_watched(&node, password, hb).await?;
        times.push((seen - killed).as_secs_f64() * 1e3);
    }
    node.shutdown().await;
    Ok(median(times))
}

async fn restart_remote(password: &str) -> Result<f64, BoxError> {
    let node = node(password, default_hb()).await?;
    let (standby, line) = Proc::host(default_hb(), password).await?;
    let spare = tokio::time::timeout(TIMEOUT, node.join(&line)).await??;
    let mut times = Vec::with_capacity(RESTARTS);
    for i in 0..RESTARTS {
        let (killed, _) = kill_watched(&node, password, default_hb()).await?;
        let echo = tokio::time::timeout(TIMEOUT, spare.spawn(Echo)).await??;
        let n = tokio::time::timeout(TIMEOUT, echo.ask(Ping(i as u64))).await??;
        if n != i as u64 {
            return Err(format!("the replacement answered {n}, not {i}").into());
        }
        times.push(killed.elapsed().as_secs_f64() * 1e3);
    }
    standby.stop().await;
    node.shutdown().await;
    Ok(median(times))
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').ok_or("odd /proc/pid/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// % of one core `pid` used over [`CPU_WINDOW`].
async fn cpu_pct(pid: u32) -> Result<f64, BoxError> {
    let (before, started) = (cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(CPU_WINDOW).await;
    let used = cpu_seconds(pid)? - before;
    Ok(100.0 * used / started.elapsed().as_secs_f64())
}

/// CPU of a raw host (see [`raw_host`]) with `PEERS` raw connections.
async fn raw_heartbeat_cpu(password: &str) -> Result<f64, BoxError> {
    let spec = format!("{},{}", default_hb().0, default_hb().1);
    let mut host = Proc::start(&["--raw-host", &spec], password).await?;
    let line = host.line().await?;
    cpu_with_peers(host, &["--raw-peers", &PEERS.to_string(), &line], password).await
}

/// CPU of a host with `PEERS` idle peers, and with none.
async fn heartbeat_cpu(password: &str) -> Result<(f64, f64), BoxError> {
    let (host, line) = Proc::host(default_hb(), password).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = cpu_pct(host.pid()).await?;
    let peers = ["--peers", &PEERS.to_string(), &line.to_string()];
    let busy = cpu_with_peers(host, &peers, password).await?;
    Ok((busy, idle))
}

/// CPU of `host` while a copy started with `peers` (which prints
/// `JOINED <PEERS>` once connected) holds its connections; stops both.
async fn cpu_with_peers(host: Proc, peers: &[&str], password: &str) -> Result<f64, BoxError> {
    let mut peers = Proc::start(peers, password).await?;
    let joined = peers.line().await?;
    if joined != format!("JOINED {PEERS}") {
        return Err(format!("the peers process said {joined:?}").into());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = cpu_pct(host.pid()).await?;
    peers.stop().await;
    host.stop().await;
    Ok(busy)
}

async fn driver(json: bool) -> Result<(), BoxError> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    report::header(
        json,
        &format!(
            "bench_supervision: nproc {nproc}, processes on loopback; machines here are noisy: \
             compare the ratios to the same-run baselines"
        ),
    );
    let password = format!("{}{}", parallel::NodeId::new(), parallel::NodeId::new());
    let mut rows = Vec::new();

    eprintln!(
        "[bench] detect_kill: {KILLS} kills, default heartbeats {:?} ms",
        default_hb()
    );
    let default = detect_kill(&password, default_hb()).await?;
    rows.push(Row::new(
        [
            "detect_kill_ms",
            "detect kill (default)",
            "ms",
            "heartbeat timeout",
        ],
        Goal::AtMost(1.0),
        default,
        default_hb().1 as f64,
    ));
    eprintln!("[bench] detect_kill: {KILLS} kills, tight heartbeats {TIGHT_HB:?} ms");
    let tight = detect_kill(&password, TIGHT_HB).await?;
    rows.push(Row::new(
        [
            "detect_kill_tight_ms",
            "detect kill (100 ms hb)",
            "ms",
            "heartbeat timeout",
        ],
        Goal::AtMost(1.0),
        tight,
        TIGHT_HB.1 as f64,
    ));
    eprintln!("[bench] restart_remote: {RESTARTS} kills, replacement on a standby process");
    let restart = restart_remote(&password).await?;
    rows.push(Row::new(
        [
            "restart_remote_ms",
            "restart remote actor",
            "ms",
            "detect_kill_ms",
        ],
        Goal::AtMost(2.0),
        restart,
        default,
    ));
    eprintln!("[bench] heartbeat_cpu: {PEERS} idle peers vs none, {CPU_WINDOW:?} each");
    let (busy, idle) = heartbeat_cpu(&password).await?;
    let floor = raw_heartbeat_cpu(&password).await?;
    eprintln!(
        "[bench]   floor: a raw quinn server holding {PEERS} raw connections, sending each a datagram of a \
         heartbeat's size every {} ms in one burst, acknowledged by their QUIC stacks: {floor:.1} % of a core; \
         the node's heartbeat CPU = {:.2} x that floor",
        default_hb().0,
        busy / floor
    );
    // The target is absolute (< 1 % of a core); the ratio to an idle node
    // is shown for scale (null in JSON when the idle node used no CPU).
    rows.push(Row::new(
        [
            "heartbeat_cpu_pct",
            "cpu, 100 idle peers",
            "%",
            "same node, 0 peers",
        ],
        Goal::AtMost(f64::INFINITY),
        busy,
        idle,
    ));
    report::print(&rows, json, WIDTHS);
    if !json {
        println!(
            "targets: detect_kill_ms <= 1500 ms, restart_remote_ms <= 2 x detect_kill_ms, heartbeat_cpu_pct < 1 % ({})",
            if default <= 1500.0 && restart <= 2.0 * default && busy < 1.0 {
                "met"
            } else {
                "missed"
            }
        );
    }
    Ok(())
}
