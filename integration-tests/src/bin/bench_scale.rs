//! How collectives scale with the number of hosts, on the network test bed
//! (run as root: `cargo run --release -p parallel-integration-tests --bin
//! bench_scale [-- --max-hosts 64] [--json]`).
//!
//! For 2, 4, 8, … up to `--max-hosts` hosts (network namespaces, one
//! process each), the processes form a collective group and rank 0 times
//! `all_reduce` of 8 bytes and of 1 MiB (medians). The 8-byte latency of a
//! tree schedule should grow no faster than a constant × log₂ N: the bench
//! prints the least-squares slope of latency against log₂ N and the ratio
//! of the largest bed to 2 hosts. On a small machine every host shares its
//! cores, so the larger beds measure CPU contention as much as the network.
//!
//! Then (`--head-nodes N`, default 1000, 0 to skip) a head in a process of
//! its own takes N node agents simulated in this process: it prints how
//! long they took to join, and the head's CPU (% of one core over 10 s) and
//! resident memory once they are idle (targets: < 5 %, < 512 MiB).

use std::error::Error;
use std::process::Stdio;
use std::time::{Duration, Instant};

use parallel::collective::{Group, ReduceOp};
use parallel::{Node, RemoteNode};
use parallel_integration_tests::netbed::NetBed;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type BoxError = Box<dyn Error>;

const WARMUP: usize = 20;
const SMALL_ITERS: usize = 200;
const BIG_ITERS: usize = 20;
const PASSWORD: &str = "bench-scale-password";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One host's process: listens on `listen`, prints its join line, reads
/// the join lines of the lower ranks (it joins them) and waits for the
/// higher ranks to join it, forms the group and, as rank 0, prints
/// `RESULT <p50 8 B µs> <p50 1 MiB µs>`.
async fn peer(rank: usize, n: usize, listen: &str) -> Result<(), BoxError> {
    let node = Node::builder()
        .password(parallel::Password::new(PASSWORD.into()))
        .listen(listen.parse()?)
        .start()
        .await?;
    println!("READY {}", node.join_line());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut peers: Vec<RemoteNode> = Vec::new();
    for _ in 0..rank {
        let line = lines.next_line().await?.ok_or("stdin closed")?;
        peers
            .push(tokio::time::timeout(Duration::from_secs(60), node.join(&line.parse()?)).await??);
    }
    println!("JOINED");
    while peers.len() + 1 < n {
        let remote = tokio::time::timeout(Duration::from_secs(120), node.accept())
            .await?
            .ok_or("the node stopped accepting")?;
        // Arrivals include the links this node dialed: keep each node once.
        if !peers.iter().any(|p| p.id() == remote.id()) {
            peers.push(remote);
        }
    }
    let mut group = Group::form(&node, "scale", &peers).await?;
    let mut small = [1.0f64];
    let mut big = vec![1.0f64; (1 << 20) / 8];
    for _ in 0..WARMUP {
        group.all_reduce(&mut small, ReduceOp::Sum).await?;
    }
    let mut times = Vec::with_capacity(SMALL_ITERS);
    for _ in 0..SMALL_ITERS {
        let t = Instant::now();
        group.all_reduce(&mut small, ReduceOp::Sum).await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let small_p50 = median(times);
    let mut times = Vec::with_capacity(BIG_ITERS);
    for _ in 0..BIG_ITERS {
        let t = Instant::now();
        group.all_reduce(&mut big, ReduceOp::Sum).await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let big_p50 = median(times);
    group.barrier().await?;
    if group.rank() == 0 {
        println!("RESULT {small_p50:.1} {big_p50:.1}");
    }
    println!("DONE");
    // Stay until the driver has read everything (it closes stdin).
    while let Ok(Some(_)) = lines.next_line().await {}
    Ok(())
}

/// Runs `n` hosts; (p50 8 B µs, p50 1 MiB µs) as rank 0 saw them.
async fn run_bed(n: usize) -> Result<(f64, f64), BoxError> {
    let bed = NetBed::new(n)?;
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("a program path that is not UTF-8")?;
    let mut procs = Vec::new();
    let mut joins = Vec::new();
    for i in 0..n {
        let listen = format!("{}:0", bed.hosts[i].addr);
        let mut child = bed
            .command(i, exe)
            .args(["--peer", &i.to_string(), &n.to_string(), &listen])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The processes' errors go to this one's standard error.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), out.next_line())
            .await??
            .ok_or("a peer exited before READY")?;
        let join = line
            .strip_prefix("READY ")
            .ok_or("expected READY")?
            .to_owned();
        // Hand it the lower ranks' lines.
        let stdin = child.stdin.as_mut().ok_or("stdin")?;
        for earlier in &joins {
            stdin.write_all(format!("{earlier}\n").as_bytes()).await?;
        }
        stdin.flush().await?;
        // One host joins at a time: on a small machine, 64 hosts
        // handshaking at once starve each other past the handshake timeout.
        let joined = tokio::time::timeout(Duration::from_secs(120), out.next_line())
            .await
            .map_err(|_| format!("host {i} did not join the {i} before it within 120 s"))??
            .ok_or_else(|| format!("host {i} exited before joining the hosts before it"))?;
        if joined != "JOINED" {
            return Err(format!("expected JOINED, got {joined:?}").into());
        }
        joins.push(join);
        procs.push((child, out));
    }
    let mut result = None;
    for (rank, (_, out)) in procs.iter_mut().enumerate() {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(600), out.next_line())
                .await
                .map_err(|_| format!("rank {rank} printed nothing for 600 s"))??
                .ok_or_else(|| format!("rank {rank} exited early"))?;
            if let Some(r) = line.strip_prefix("RESULT ") {
                let mut f = r.split_whitespace().map(str::parse::<f64>);
                result = Some((f.next().ok_or("RESULT")??, f.next().ok_or("RESULT")??));
            }
            if line == "DONE" {
                break;
            }
        }
    }
    for (mut child, _) in procs {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
    drop(bed);
    result.ok_or_else(|| "rank 0 printed no RESULT".into())
}

/// Least-squares slope of `y` against `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

/// (user + system CPU seconds, resident MiB) of process `pid`.
fn usage(pid: u32) -> Result<(f64, f64), BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("odd /proc/pid/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).ok_or("utime")?.parse::<u64>()?
        + fields.get(12).ok_or("stime")?.parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or("VmRSS")?
        .parse()?;
    Ok((ticks as f64 / hz, rss_kib / 1024.0))
}

/// A head in its own process (this program with `--head DIR`), and `n`
/// node agents in this one; prints join time, idle CPU and RSS of the head.
async fn head_with_nodes(n: usize, json: bool) -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("parallel-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut head = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--head")
        .arg(dir.join("head"))
        .env("PARALLEL_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = head.id().ok_or("the head has no pid")?;
    let mut out = BufReader::new(head.stdout.take().ok_or("stdout")?).lines();
    let line: parallel::JoinLine = tokio::time::timeout(Duration::from_secs(60), out.next_line())
        .await??
        .and_then(|l| l.strip_prefix("READY ").map(str::to_owned))
        .ok_or("the head printed no READY")?
        .parse()?;
    let started = Instant::now();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let options = parallel::cluster::NodeOptions::new(
            line.clone(),
            parallel::Password::new(PASSWORD.into()),
        )
        .workers(1)
        .data(dir.join(format!("node-{i}")));
        nodes.push(parallel::cluster::start_node(options).await?);
    }
    for node in &mut nodes {
        if !node.joined(Duration::from_secs(300)).await {
            return Err("a simulated node did not join within 300 s".into());
        }
    }
    let joined = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, _) = usage(pid)?;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu1, rss) = usage(pid)?;
    let cpu_pct = 100.0 * (cpu1 - cpu0) / window.elapsed().as_secs_f64();
    if json {
        println!(
            "{{\"bench\":\"scale_head_nodes\",\"nodes\":{n},\"join_all_s\":{:.2},\"head_idle_cpu_pct\":{cpu_pct:.2},\"head_rss_mib\":{rss:.1}}}",
            joined.as_secs_f64()
        );
    } else {
        println!(
            "head with {n} nodes: all joined in {:.2} s; head idle CPU {cpu_pct:.2} % of a core (target < 5), RSS {rss:.1} MiB (target < 512)",
            joined.as_secs_f64()
        );
    }
    for node in nodes {
        node.stop().await;
    }
    drop(head.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(30), head.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The head of `--head-nodes`: serves until its stdin closes.
async fn serve_head(data: &str) -> Result<(), BoxError> {
    let options = parallel::cluster::HeadOptions::new(parallel::Password::resolve()?)
        .listen(([127, 0, 0, 1], 0).into())
        .data(data);
    let head = parallel::cluster::start_head(options).await?;
    println!("READY {}", head.join_line());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
    head.stop().await;
    Ok(())
}

#[parallel::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--head") {
        return serve_head(args.get(i + 1).ok_or("--head DIR")?).await;
    }
    if let Some(i) = args.iter().position(|a| a == "--peer") {
        let rank = args.get(i + 1).ok_or("--peer RANK N LISTEN")?.parse()?;
        let n = args.get(i + 2).ok_or("--peer RANK N LISTEN")?.parse()?;
        let listen = args.get(i + 3).ok_or("--peer RANK N LISTEN")?;
        return peer(rank, n, listen).await;
    }
    let json = args.iter().any(|a| a == "--json");
    let max: usize = match args.iter().position(|a| a == "--max-hosts") {
        Some(i) => args.get(i + 1).ok_or("--max-hosts N")?.parse()?,
        None => 64,
    };
    let head_nodes: usize = match args.iter().position(|a| a == "--head-nodes") {
        Some(i) => args.get(i + 1).ok_or("--head-nodes N")?.parse()?,
        None => 1000,
    };
    if let Err(why) = NetBed::new(1) {
        println!("bench_scale needs the network test bed: {why}");
        return Ok(());
    }
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    if !json {
        println!(
            "bench_scale: all_reduce across N hosts of the bed (one process each), {nproc} cores shared by all"
        );
        println!("{:>6} {:>14} {:>16}", "hosts", "8 B p50 µs", "1 MiB p50 µs");
    }
    let mut points = Vec::new();
    let mut n: usize = match args.iter().position(|a| a == "--min-hosts") {
        Some(i) => args.get(i + 1).ok_or("--min-hosts N")?.parse()?,
        None => 2,
    };
    while n <= max {
        let started = Instant::now();
        let (small, big) = match run_bed(n).await {
            Ok(figures) => figures,
            Err(e) => {
                // Reported, not fatal: the sizes before it stand.
                println!(
                    "{n:>6} hosts failed after {:.1} s: {e}",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
        };
        if json {
            println!(
                "{{\"bench\":\"scale_allreduce\",\"hosts\":{n},\"p50_8b_us\":{small:.1},\"p50_1mib_us\":{big:.1}}}"
            );
        } else {
            println!(
                "{n:>6} {small:>14.1} {big:>16.1}   ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        }
        points.push(((n as f64).log2(), small));
        n *= 2;
    }
    if points.len() >= 2 {
        let fit = slope(&points);
        let ratio = points[points.len() - 1].1 / points[0].1;
        let hosts = 1usize << points[points.len() - 1].0 as u32;
        if json {
            println!(
                "{{\"bench\":\"scale_allreduce_fit\",\"slope_us_per_log2_hosts\":{fit:.1},\"ratio_largest_to_2\":{ratio:.2},\"largest\":{hosts}}}"
            );
        } else {
            println!(
                "8 B latency: slope {fit:.1} µs per doubling of hosts (log2 N); {hosts} hosts / 2 hosts = {ratio:.2} (log2 ratio {:.1})",
                (hosts as f64).log2()
            );
        }
    }
    if head_nodes > 0 {
        head_with_nodes(head_nodes, json).await?;
    }
    Ok(())
}
