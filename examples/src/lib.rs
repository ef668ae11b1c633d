//! Helpers shared by the example programs: start another process of the
//! same program as a node, and serve as such a process.
//!
//! (The processes issue brings `parallel::fork()`, which does this for any
//! program; these helpers are what the first examples need.)
//!
//! [`raw`] holds the "raw quinn" baselines the benchmarks share, [`bulk`]
//! their bulk payload, [`report`] their report, [`placement`] where their
//! processes run while a round trip is measured.

use std::error::Error;
use std::process::Stdio;
use std::time::Duration;

use parallel::{JoinLine, Node};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub mod bulk;
pub mod local_cluster;
pub mod multiprocessing;
pub mod placement;
pub mod raw;
pub mod report;
pub mod workqueue_bench;

/// Environment variable that tells a started copy which role it plays.
pub const ROLE_ENV: &str = "PARALLEL_EXAMPLE_ROLE";

/// The role this process was started with, if it is a started copy.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// `GET path` over plain HTTP on `addr`, as a scraper does: the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// What a GPU example built without the `cuda` feature prints: how to run
/// it (it then exits 0: there is nothing to show without a GPU).
pub fn needs_cuda(bin: &str) {
    println!(
        "{bin} needs the cuda feature: nothing to show; run `cargo run --release -p parallel-examples --features cuda --bin {bin}` on a GPU machine"
    );
}

/// A random one-time cluster password for the processes of one run.
pub fn one_time_password() -> String {
    format!("{}{}", parallel::NodeId::new(), parallel::NodeId::new())
}

/// Another process of this program, running a node.
pub struct Worker {
    child: Child,
    /// How to join its node.
    pub join_line: JoinLine,
}

impl Worker {
    /// Starts this program again with `role`, the password in its environment
    /// (never on its command line), and waits at most 10 s for the line
    /// `READY <join line>` it prints once its node listens.
    pub async fn start(role: &str, password: &str) -> Result<Worker, Box<dyn Error>> {
        Self::start_with(role, password, &[]).await
    }

    /// [`Worker::start`] with command-line arguments for the copy (its
    /// settings; the password stays in its environment).
    pub async fn start_with(
        role: &str,
        password: &str,
        args: &[String],
    ) -> Result<Worker, Box<dyn Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .env(ROLE_ENV, role)
            .env("PARALLEL_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| format!("worker {role} did not print READY within 10 s"))??
            .ok_or_else(|| format!("worker {role} exited before it was ready"))?;
        let join_line = line
            .strip_prefix("READY ")
            .ok_or_else(|| format!("unexpected line from worker {role}: {line}"))?
            .parse()?;
        // What it prints later (its own lines, its children's) shows here.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                println!("{line}");
            }
        });
        Ok(Worker { child, join_line })
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Kills the worker at once (SIGKILL: it cleans nothing up) and waits
    /// for it to be gone.
    pub async fn kill(mut self) -> Result<(), Box<dyn Error>> {
        self.child.kill().await?;
        Ok(())
    }

    /// Closes the worker's standard input (it then shuts down) and waits at
    /// most 10 s for it to exit; kills it otherwise.
    pub async fn stop(mut self) -> Result<(), Box<dyn Error>> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.start_kill()?,
        }
        Ok(())
    }
}

/// The worker side: prints `READY <join line>` for the parent, then serves
/// until the parent closes our standard input (or dies), then shuts down.
pub async fn serve(node: Node) -> Result<(), Box<dyn Error>> {
    println!("READY {}", node.join_line());
    raw::until_stdin_closes().await;
    node.shutdown().await;
    Ok(())
}
