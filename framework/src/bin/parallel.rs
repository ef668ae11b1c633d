//! `parallel`: start a cluster head or node agent, see what runs, stop it.
//!
//! ```text
//! parallel head [--listen ADDR:PORT] [--data DIR] [--with-node] [--workers N]
//!               [--allow-binary SHA256]... [--queue-limit BYTES] [--no-local-copies]
//!               [--scheduler leastload|lru|plainrandom|twobin|weighted]
//!               [--results-limit BYTES]
//! parallel node --join LINE [--workers N] [--data DIR] [--resource NAME]...
//! parallel status [--json] [--join LINE | --data DIR]
//! parallel top [--every SECONDS] [--join LINE | --data DIR]
//! parallel stop [--node | --head] [--join LINE | --data DIR]
//! ```
//!
//! The password comes from `--password-file`, `PARALLEL_PASSWORD_FILE`,
//! `PARALLEL_PASSWORD` or a prompt: never from the command line itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use parallel::cluster::{
    self, DashboardOptions, HeadOptions, NodeOptions, StatusReport, default_data_dir,
    is_node_running,
};
use parallel::{JoinLine, Password};

#[derive(Parser)]
#[command(
    name = "parallel",
    version,
    about = "para||el cluster: a head, node agents, pools"
)]
struct Cli {
    /// A file holding the cluster password (else PARALLEL_PASSWORD_FILE,
    /// PARALLEL_PASSWORD, or a prompt).
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts the head (and with --with-node a node agent beside it).
    Head {
        /// Where it listens.
        #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], cluster::DEFAULT_PORT)))]
        listen: SocketAddr,
        /// Its certificate, ledger and programs (default ~/.local/share/parallel/head).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also run a node agent on this machine.
        #[arg(long)]
        with_node: bool,
        /// Workers of that node agent (default: one per GPU, else per core).
        #[arg(long)]
        workers: Option<u32>,
        /// Only programs with this SHA-256 may run (repeatable).
        #[arg(long = "allow-binary", value_name = "SHA256")]
        allow_binary: Vec<String>,
        /// Most bytes of queued and running jobs per pool.
        #[arg(long, default_value_t = 512 << 20)]
        queue_limit: u64,
        /// Send programs over the network even to processes on this machine
        /// (by default they copy the file).
        #[arg(long)]
        no_local_copies: bool,
        /// Which worker gets the next job: leastload, lru, plainrandom,
        /// twobin or weighted.
        #[arg(long, default_value = "leastload")]
        scheduler: cluster::Scheduler,
        /// Most bytes of results each engine set keeps for the hub's
        /// queries once its client has them (the oldest go first).
        #[arg(long, default_value_t = 256 << 20)]
        results_limit: u64,
        /// Where the web dashboard and /metrics listen (default
        /// 127.0.0.1:8265, or any free port if that one is taken). On an
        /// address other than loopback every request needs the token the
        /// head prints.
        #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_dashboard")]
        dashboard: Option<SocketAddr>,
        /// The dashboard's token (default: made up when it listens beyond
        /// loopback; 16 to 128 letters, digits, '-' or '_').
        #[arg(long, value_name = "TOKEN")]
        dashboard_token: Option<String>,
        /// Serve no dashboard and no /metrics.
        #[arg(long)]
        no_dashboard: bool,
        /// Record no jobs per second and no task stream (the dashboard then
        /// shows the cluster but not its activity).
        #[arg(long)]
        no_activity: bool,
    },
    /// Starts a node agent that joins a head and runs its pools' workers.
    Node {
        /// The head's join line, as `parallel head` printed it.
        #[arg(long)]
        join: JoinLine,
        /// Workers per pool (default: one per GPU, else one per core).
        #[arg(long)]
        workers: Option<u32>,
        /// Its program cache (default ~/.local/share/parallel/node).
        #[arg(long)]
        data: Option<PathBuf>,
        /// A resource its workers offer, for tasks that require it
        /// (repeatable; a node that sees a GPU offers `gpu` too).
        #[arg(long = "resource", value_name = "NAME")]
        resources: Vec<String>,
    },
    /// Shows nodes, workers and pools.
    Status {
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
        /// The head's join line (default: the one in the head's data directory).
        #[arg(long)]
        join: Option<JoinLine>,
        /// The head's data directory, to find its join line.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Shows the status again and again until interrupted.
    Top {
        /// Seconds between two refreshes.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
        /// The head's join line (default: the one in the head's data directory).
        #[arg(long)]
        join: Option<JoinLine>,
        /// The head's data directory, to find its join line.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Stops the head and its nodes (or only one of them).
    Stop {
        /// Only the node agent on this machine.
        #[arg(long, conflicts_with = "head")]
        node: bool,
        /// Only the head.
        #[arg(long)]
        head: bool,
        /// The head's join line (default: the one in its data directory).
        #[arg(long)]
        join: Option<JoinLine>,
        /// The data directory (of the head, or with --node of the node agent).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn password(file: &Option<PathBuf>) -> Result<Password, String> {
    match file {
        Some(path) => Password::from_file(path).map_err(|e| e.to_string()),
        None => Password::resolve().map_err(|e| e.to_string()),
    }
}

fn parse_hash(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return Err(format!(
            "--allow-binary {hex:?}: expected 64 hex digits (a SHA-256)"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("--allow-binary {hex:?}: not hex"))?;
    }
    Ok(out)
}

fn join_line_of(join: Option<JoinLine>, data: Option<&Path>) -> Result<JoinLine, String> {
    if let Some(line) = join {
        return Ok(line);
    }
    let dir = data.map_or_else(|| default_data_dir("head"), Path::to_path_buf);
    let file = dir.join(cluster::JOIN_LINE_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "no head join line at {} ({e}): pass --join LINE, or --data of a head on this machine",
            file.display()
        )
    })?;
    text.trim()
        .parse()
        .map_err(|e| format!("{}: {e}", file.display()))
}

fn print_status(report: &StatusReport) {
    println!("head {}", report.join_line);
    println!();
    println!(
        "{:<24} {:>8} {:>5} {:>10} {:>5} {:>7} {:>11}",
        "NODE", "WORKERS", "GPUS", "CONNECTED", "STATE", "CPU %", "RSS (MiB)"
    );
    for n in &report.nodes {
        let cpu = n
            .cpu_percent
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"));
        let rss = n.rss_bytes.map_or_else(
            || "-".to_owned(),
            |r| format!("{:.1}", r as f64 / 1048576.0),
        );
        println!(
            "{:<24} {:>8} {:>5} {:>10} {:>5} {:>7} {:>11}",
            n.host,
            n.workers,
            n.gpus,
            n.connected,
            if n.up { "up" } else { "down" },
            cpu,
            rss
        );
    }
    if report.nodes.is_empty() {
        println!("(no nodes)");
    }
    if !report.gpus.is_empty() {
        println!();
        println!(
            "{:<24} {:>4} {:<28} {:>19} {:<}",
            "GPU HOST", "GPU", "NAME", "MEMORY USED (MiB)", "WORKER SLOTS"
        );
        for g in &report.gpus {
            let slots: Vec<String> = g.slots.iter().map(u32::to_string).collect();
            println!(
                "{:<24} {:>4} {:<28} {:>19} {}",
                g.host,
                g.id,
                g.name,
                format!("{} / {}", g.used_mib, g.total_mib),
                slots.join(", ")
            );
        }
    }
    println!();
    println!(
        "{:<36} {:<24} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "POOL", "WORKER TYPE", "WORKERS", "QUEUED", "RUNNING", "DONE", "FAILED", "OWNER"
    );
    for p in &report.pools {
        let kind = p.kind.rsplit("::").next().unwrap_or(&p.kind);
        println!(
            "{:<36} {:<24} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7}",
            p.pool,
            kind,
            p.workers,
            p.queued,
            p.running,
            p.done,
            p.failed,
            if p.owner_connected { "yes" } else { "away" }
        );
    }
    if report.pools.is_empty() {
        println!("(no pools)");
    }
    let t = &report.totals;
    println!();
    println!(
        "jobs since the head started: {} submitted, {} done, {} failed, {} retried, {} lost",
        t.submitted, t.done, t.failed, t.retries, t.lost
    );
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Head {
            listen,
            data,
            with_node,
            workers,
            allow_binary,
            queue_limit,
            no_local_copies,
            scheduler,
            results_limit,
            dashboard,
            dashboard_token,
            no_dashboard,
            no_activity,
        } => {
            let password = password(&cli.password_file)?;
            let allow = allow_binary
                .iter()
                .map(|h| parse_hash(h))
                .collect::<Result<Vec<_>, _>>()?;
            let mut options = HeadOptions::new(password)
                .listen(listen)
                .queue_limit(queue_limit)
                .allow_programs(allow)
                .local_copies(!no_local_copies)
                .scheduler(scheduler)
                .results_limit(results_limit);
            if let Some(dir) = data {
                options = options.data(dir);
            }
            options = options.record_activity(!no_activity);
            let chosen = dashboard.is_some();
            let board_on = |listen: SocketAddr| {
                let board = DashboardOptions::new(listen);
                match &dashboard_token {
                    Some(t) => board.token(t.clone()),
                    None => board,
                }
            };
            let mut board = (!no_dashboard).then(|| {
                board_on(dashboard.unwrap_or_else(|| {
                    SocketAddr::from(([127, 0, 0, 1], cluster::DEFAULT_DASHBOARD_PORT))
                }))
            });
            let (mut head, node) = loop {
                let mut with = options.clone();
                if let Some(board) = &board {
                    with = with.dashboard(board.clone());
                }
                let started = if with_node {
                    cluster::start_head_node(with, workers)
                        .await
                        .map(|(h, n)| (h, Some(n)))
                } else {
                    cluster::start_head(with).await.map(|h| (h, None))
                };
                match started {
                    Ok(started) => break started,
                    // The default port is taken (another head?): any free one.
                    Err(cluster::StartClusterError::Dashboard(cluster::DashboardError::Bind {
                        addr,
                        ..
                    })) if !chosen && addr.port() != 0 => {
                        eprintln!(
                            "parallel: {addr} is taken; the dashboard takes a free port instead"
                        );
                        board = Some(board_on(SocketAddr::new(addr.ip(), 0)));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            };
            let line = head.join_line();
            let rule = "*".repeat(90);
            println!("{rule}");
            println!(
                "para||el head listening; data in {}",
                head.data_dir().display()
            );
            println!(
                "To start a worker node on another machine, run there (with the same password in"
            );
            println!("PARALLEL_PASSWORD_FILE or PARALLEL_PASSWORD, or typed at the prompt):");
            println!();
            println!("    parallel node --join '{line}'");
            println!();
            println!(
                "A pool connects with the same line: Pool::<W>::connect(&\"{line}\".parse()?, ..)"
            );
            if let Some(board) = head.dashboard() {
                println!();
                println!("dashboard: {}", board.url());
                println!("metrics:   {}", board.metrics_url());
            }
            println!("{rule}");
            if let Some(n) = &node {
                println!(
                    "a node agent runs here too, with {} workers per pool",
                    n.workers()
                );
            }
            let nodes_too = head.wait().await;
            if let Some(n) = node {
                n.stop().await;
            }
            if nodes_too {
                // Give the agents the head's word before the head goes.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            head.stop().await;
            println!("head stopped");
            Ok(())
        }
        Command::Node {
            join,
            workers,
            data,
            resources,
        } => {
            if is_node_running(data.as_deref()) {
                println!("a para||el node agent is already running on this machine; nothing to do");
                return Ok(());
            }
            let password = password(&cli.password_file)?;
            let mut options = NodeOptions::new(join.clone(), password).resources(resources);
            if let Some(n) = workers {
                options = options.workers(n);
            }
            if let Some(dir) = data {
                options = options.data(dir);
            }
            // Again as a new node whenever the head declares this one dead
            // (cut off longer than the heartbeat timeout).
            loop {
                let mut node = match cluster::start_node(options.clone()).await {
                    Ok(n) => n,
                    Err(cluster::StartClusterError::AlreadyRunning { .. }) => {
                        println!(
                            "a para||el node agent is already running on this machine; nothing to do"
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(e.to_string()),
                };
                println!(
                    "para||el node agent: joining {join} with {} workers per pool",
                    node.workers()
                );
                if node.joined(Duration::from_secs(10)).await {
                    println!("joined the head");
                } else {
                    println!(
                        "the head does not answer yet; still trying (check the join line and the password)"
                    );
                }
                node.wait().await;
                let fenced = node.fenced();
                node.stop().await;
                if !fenced {
                    break;
                }
                println!(
                    "the head declared this node dead (cut off too long); joining again as a new node"
                );
            }
            println!("node agent stopped");
            Ok(())
        }
        Command::Status { json, join, data } => {
            let line = join_line_of(join, data.as_deref())?;
            let password = password(&cli.password_file)?;
            let report = cluster::status(&line, password)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                println!("{}", report.to_json());
            } else {
                print_status(&report);
            }
            Ok(())
        }
        Command::Top { every, join, data } => {
            let line = join_line_of(join, data.as_deref())?;
            let password = password(&cli.password_file)?;
            let every = Duration::from_secs_f64(every.max(0.1));
            loop {
                let report = cluster::status(&line, password.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                // Clear the terminal, then the tables (Ctrl-C ends it).
                print!("\x1b[2J\x1b[H");
                print_status(&report);
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
        Command::Stop {
            node,
            head,
            join,
            data,
        } => {
            if node {
                let dir = data.unwrap_or_else(|| default_data_dir("node"));
                return cluster::stop_local_node(&dir).map_err(|e| e.to_string());
            }
            let line = join_line_of(join, data.as_deref())?;
            let password = password(&cli.password_file)?;
            cluster::stop_head(&line, password, !head)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "asked the head at {line} to stop{}",
                if head { "" } else { " with its nodes" }
            );
            Ok(())
        }
    }
}

#[parallel::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parallel: {e}");
            ExitCode::FAILURE
        }
    }
}
