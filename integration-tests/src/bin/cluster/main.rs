//! The cluster tests' program: a head, a node agent, or a pool owner
//! (whose workers, started by the node agents, are this same program).
//!
//! - `cluster head DATA PORT [limit=BYTES] [allow=SHA256] [network] [scheduler=NAME]`: a head on
//!   127.0.0.1:PORT (0: any), programs sent over the network with `network`; prints
//!   `READY <join line>`, runs until its standard input closes.
//! - `cluster node LINE DATA WORKERS [resource=NAME]...`: a node agent;
//!   prints `READY`, runs until its standard input closes.
//! - `cluster pool LINE SCENARIO ...`: a pool owner; prints what the test
//!   checks, exits 0 when the scenario held.
//! - `cluster client|lbkill|lbhead|lbabort|sched|hubowner|hubreader|renumber|deps|require LINE ...`:
//!   a client of an engine set (s5, in `views.rs`); the same.

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use parallel::cluster::{self, HeadOptions, NodeOptions};
use parallel::pool::{JobError, Pool, PoolError, Worker};
use parallel::{JoinLine, Password};

mod views;

use views::{
    client, dependencies, hub_owner, hub_reader, lb_abort, lb_head, lb_kill, placements, renumber,
    requirements,
};

/// One job: a number to square, how long to take, whether to panic.
#[parallel::wire]
#[derive(Clone)]
struct Job {
    n: u64,
    sleep_ms: u32,
    panic: bool,
    bytes: Vec<u8>,
}

/// What a job gives: the square, the worker process, the updates it had seen.
#[parallel::wire]
#[derive(Clone, Debug)]
struct Answer {
    square: u64,
    pid: u32,
    updates: Vec<u64>,
}

struct Probe {
    updates: Vec<u64>,
}

impl Worker for Probe {
    type Init = u64;
    type Job = Job;
    type Output = Answer;
    type Update = u64;

    fn init(first: u64) -> Self {
        Probe {
            updates: vec![first],
        }
    }

    fn run(&mut self, job: Job) -> Answer {
        if job.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(job.sleep_ms.into()));
        }
        if job.panic {
            panic!("job {} was asked to panic", job.n);
        }
        Answer {
            square: job.n * job.n,
            pid: std::process::id(),
            updates: self.updates.clone(),
        }
    }

    fn handle_update(&mut self, update: u64) {
        self.updates.push(update);
    }
}
parallel::register_worker!(Probe);

fn job(n: u64, sleep_ms: u32) -> Job {
    Job {
        n,
        sleep_ms,
        panic: false,
        bytes: Vec::new(),
    }
}

pub(crate) async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
}

fn arg(args: &[String], i: usize, what: &str) -> Result<String, Box<dyn Error>> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing argument {i}: {what}").into())
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, 1, "role")?.as_str() {
        "head" => {
            let data = arg(&args, 2, "data dir")?;
            let port: u16 = arg(&args, 3, "port")?.parse()?;
            let mut options = HeadOptions::new(Password::resolve()?)
                .listen(([127, 0, 0, 1], port).into())
                .data(data);
            // Options after the port: limit=BYTES, allow=SHA256, network,
            // bind=IP (an address of the network test bed).
            for option in &args[4..] {
                if let Some(ip) = option.strip_prefix("bind=") {
                    let ip: std::net::IpAddr = ip.parse()?;
                    options = options.listen((ip, port).into());
                } else if let Some(limit) = option.strip_prefix("limit=") {
                    options = options.queue_limit(limit.parse()?);
                } else if let Some(allow) = option.strip_prefix("allow=") {
                    let mut hash = [0u8; 32];
                    for (i, byte) in hash.iter_mut().enumerate() {
                        let hex = allow.get(2 * i..2 * i + 2).ok_or("short hash")?;
                        *byte = u8::from_str_radix(hex, 16)?;
                    }
                    options = options.allow_programs(vec![hash]);
                } else if let Some(name) = option.strip_prefix("scheduler=") {
                    options = options.scheduler(name.parse()?);
                } else if option == "network" {
                    options = options.local_copies(false);
                } else {
                    return Err(format!("unknown head option {option:?}").into());
                }
            }
            let mut head = cluster::start_head(options).await?;
            println!("READY {}", head.join_line());
            tokio::select! {
                _ = stdin_closed() => {}
                _ = head.wait() => {}
            }
            head.stop().await;
            Ok(())
        }
        "node" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            let data = arg(&args, 3, "data dir")?;
            let workers: u32 = arg(&args, 4, "workers")?.parse()?;
            // `resource=NAME` options after the workers.
            let resources = args[5..].iter().filter_map(|a| a.strip_prefix("resource="));
            let options = NodeOptions::new(line, Password::resolve()?)
                .workers(workers)
                .data(data)
                .resources(resources);
            // As `parallel node`: again as a new node when the head declared
            // this one dead; `REJOINING` says so.
            loop {
                let mut node = match cluster::start_node(options.clone()).await {
                    Ok(n) => n,
                    Err(cluster::StartClusterError::AlreadyRunning { .. }) => {
                        println!("ALREADY RUNNING");
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                if !node.joined(Duration::from_secs(60)).await {
                    return Err("the node agent did not join its head within 60 s".into());
                }
                println!("READY");
                let fenced = tokio::select! {
                    _ = stdin_closed() => false,
                    _ = node.wait() => node.fenced(),
                };
                node.stop().await;
                if !fenced {
                    return Ok(());
                }
                println!("REJOINING");
            }
        }
        "pool" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            let scenario = arg(&args, 3, "scenario")?;
            let password = Password::resolve()?;
            pool(line, password, &scenario, &args[4..]).await
        }
        "lbhead" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            lb_head(line, Password::resolve()?).await
        }
        "lbabort" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            lb_abort(line, Password::resolve()?).await
        }
        "sched" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            placements(line, Password::resolve()?).await
        }
        "hubowner" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            hub_owner(line, Password::resolve()?).await
        }
        "renumber" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            renumber(line, Password::resolve()?).await
        }
        "hubreader" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            let set = arg(&args, 3, "engine set")?.parse()?;
            hub_reader(line, Password::resolve()?, set).await
        }
        "deps" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            dependencies(line, Password::resolve()?).await
        }
        "require" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            requirements(line, Password::resolve()?).await
        }
        "lbkill" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            lb_kill(line, Password::resolve()?).await
        }
        "client" => {
            let line: JoinLine = arg(&args, 2, "join line")?.parse()?;
            let engines: usize = arg(&args, 3, "engines")?.parse()?;
            client(line, Password::resolve()?, engines).await
        }
        other => Err(format!("unknown role {other:?}").into()),
    }
}

async fn pool(
    line: JoinLine,
    password: Password,
    scenario: &str,
    rest: &[String],
) -> Result<(), Box<dyn Error>> {
    let number = |i: usize| -> Result<u64, Box<dyn Error>> {
        Ok(rest
            .get(i)
            .ok_or("missing scenario argument")?
            .parse::<u64>()?)
    };
    let mut pool = Pool::<Probe>::connect(&line, password, 0).await?;
    println!("CONNECTED");
    match scenario {
        // map N jobs in order; check every square.
        "map" => {
            let n = number(0)?;
            let sleep = number(1)? as u32;
            let results = pool.map((0..n).map(|i| job(i, sleep))).await?;
            let mut wrong = 0;
            for (i, r) in results.iter().enumerate() {
                match r {
                    Ok(a) if a.square == (i as u64) * (i as u64) => {}
                    _ => wrong += 1,
                }
            }
            println!("RESULTS {} WRONG {wrong}", results.len());
        }
        // N jobs, results as they finish; PROGRESS every 100; each job's
        // result exactly once.
        "unordered" => {
            let n = number(0)?;
            let sleep = number(1)? as u32;
            let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
            let mut pids = std::collections::BTreeSet::new();
            let mut stream = pool.imap_unordered((0..n).map(|i| job(i, sleep)));
            let mut count = 0u64;
            while let Some(r) = stream.next().await {
                let a = r?;
                let root = (a.square as f64).sqrt().round() as u64;
                *seen.entry(root).or_default() += 1;
                pids.insert(a.pid);
                count += 1;
                if count.is_multiple_of(100) {
                    println!("PROGRESS {count}");
                }
            }
            let dup = seen.values().filter(|c| **c > 1).count();
            let lost = (0..n).filter(|i| !seen.contains_key(i)).count();
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            println!("PIDLIST {}", list.join(","));
            println!("RESULTS {count} LOST {lost} DUP {dup} PIDS {}", pids.len());
        }
        // Updates before jobs: every worker has seen them, in order.
        "updates" => {
            for u in 1..=3 {
                pool.update_workers(&u).await?;
            }
            println!("UPDATED");
            // Enough jobs, slow enough, that a node joining now takes some.
            let n = number(0)?;
            let sleep = number(1)? as u32;
            let results = pool.map((0..n).map(|i| job(i, sleep))).await?;
            let mut pids = std::collections::BTreeSet::new();
            let mut bad = 0;
            for a in results.iter().flatten() {
                pids.insert(a.pid);
                if a.updates != [0, 1, 2, 3] {
                    bad += 1;
                    println!("SAW {:?}", a.updates);
                }
            }
            println!("RESULTS {} BAD {bad} PIDS {}", results.len(), pids.len());
        }
        // A panicking job fails alone.
        "panic" => {
            let mut jobs: Vec<Job> = (0..20).map(|i| job(i, 0)).collect();
            jobs[7].panic = true;
            let results = pool.map(jobs).await?;
            let ok = results.iter().filter(|r| r.is_ok()).count();
            match &results[7] {
                Err(JobError::Panicked(msg)) => println!("PANICKED {msg}"),
                other => println!("UNEXPECTED {other:?}"),
            }
            println!("OK {ok}");
        }
        // One job larger than the head's queue limit.
        "oversized" => {
            let size = number(0)? as usize;
            let mut big = job(1, 0);
            big.bytes = vec![7; size];
            match pool.map([big]).await {
                Err(PoolError::Refused(why)) => println!("REFUSED {why}"),
                other => println!("UNEXPECTED {:?}", other.map(|v| v.len())),
            }
        }
        // How many nodes and workers the pool sees, once it sees the
        // expected number of workers (or after 30 s).
        "counts" => {
            let _ = pool.map((0..10).map(|i| job(i, 0))).await?;
            let expected = number(0)? as usize;
            let since = std::time::Instant::now();
            while pool.workers_count().await? < expected
                && since.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!(
                "NODES {} WORKERS {}",
                pool.nodes_count().await?,
                pool.workers_count().await?
            );
        }
        other => return Err(format!("unknown scenario {other:?}").into()),
    }
    pool.close().await;
    Ok(())
}
