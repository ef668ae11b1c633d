//! A whole cluster on this machine, for the s4 examples: a head and node
//! agents started as processes of the running program (on real machines
//! you run `parallel head` and `parallel node --join LINE` instead).
//!
//! ```ignore
//! #[parallel::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     if let Some(part) = parallel_examples::local_cluster::run_part().await {
//!         return part; // this process is the head or a node
//!     }
//!     let cluster = LocalCluster::start(2, 2).await?;
//!     // Pool::connect(&cluster.line, cluster.password(), ..)
//!     cluster.stop().await
//! }
//! ```

use std::error::Error;
use std::path::PathBuf;

use parallel::cluster::{self, HeadOptions, NodeOptions};
use parallel::{JoinLine, Password};

use crate::raw::until_stdin_closes as stdin_closed;
use crate::{Worker as Part, one_time_password, role};

/// A head and node agents, each a process of this program.
pub struct LocalCluster {
    /// The head's join line.
    pub line: JoinLine,
    password: String,
    data: PathBuf,
    parts: Vec<Part>,
}

impl LocalCluster {
    /// Starts a head and `nodes` node agents with `workers` workers each,
    /// under a one-time password.
    pub async fn start(nodes: usize, workers: u32) -> Result<LocalCluster, Box<dyn Error>> {
        let password = one_time_password();
        let data = std::env::temp_dir().join(format!("local-cluster-{}", std::process::id()));
        let head = Part::start_with("head", &password, &[data.display().to_string()]).await?;
        let line = head.join_line.clone();
        let mut parts = vec![head];
        for n in 0..nodes {
            let args = [
                line.to_string(),
                data.join(format!("node{n}")).display().to_string(),
                workers.to_string(),
            ];
            parts.push(Part::start_with("node", &password, &args).await?);
        }
        Ok(LocalCluster {
            line,
            password,
            data,
            parts,
        })
    }

    /// The cluster's password.
    pub fn password(&self) -> Password {
        Password::new(self.password.clone())
    }

    /// The head's process id.
    pub fn head_pid(&self) -> u32 {
        self.parts[0].pid()
    }

    /// Node `i`'s process id (its workers are its children).
    pub fn node_pid(&self, i: usize) -> u32 {
        self.parts.get(i + 1).map_or(0, Part::pid)
    }

    /// Kills the head process (SIGKILL, as a crash would) and starts a new
    /// one on the same data directory and port: the same join line, and
    /// what its ledger holds. The nodes and clients join it by themselves.
    pub async fn kill_head_and_restart(&mut self) -> Result<(), Box<dyn Error>> {
        self.parts.remove(0).kill().await?;
        let args = [
            self.data.display().to_string(),
            self.line.addr.port().to_string(),
        ];
        let head = Part::start_with("head", &self.password, &args).await?;
        if head.join_line != self.line {
            return Err(format!(
                "the restarted head has another join line: {}",
                head.join_line
            )
            .into());
        }
        self.parts.insert(0, head);
        Ok(())
    }

    /// Stops the nodes, then the head, and removes their data.
    pub async fn stop(self) -> Result<(), Box<dyn Error>> {
        for part in self.parts.into_iter().rev() {
            part.stop().await?;
        }
        let _ = std::fs::remove_dir_all(&self.data);
        Ok(())
    }
}

/// In a process [`LocalCluster::start`] started, runs its part (head or
/// node) until the starting process is done, and gives its outcome; `None`
/// in the program's own process.
pub async fn run_part() -> Option<Result<(), Box<dyn Error>>> {
    // A part's settings are its command-line arguments (see `start`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    match role().as_deref() {
        Some("head") => Some(run_head(&args).await),
        Some("node") => Some(run_node(&args).await),
        _ => None,
    }
}

/// Argument `i` of a part, or an error naming what is missing.
fn arg<'a>(args: &'a [String], i: usize, what: &str) -> Result<&'a str, Box<dyn Error>> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("a cluster part started without its {what} argument").into())
}

/// `head DATA [PORT]` (no port: any free one).
async fn run_head(args: &[String]) -> Result<(), Box<dyn Error>> {
    let port: u16 = args.get(1).map_or(Ok(0), |p| p.parse())?;
    let options = HeadOptions::new(Password::resolve()?)
        .listen((std::net::Ipv4Addr::LOCALHOST, port).into())
        .data(arg(args, 0, "data directory")?);
    let head = cluster::start_head(options).await?;
    println!("READY {}", head.join_line());
    stdin_closed().await;
    head.stop().await;
    Ok(())
}

/// `node LINE DATA WORKERS`.
async fn run_node(args: &[String]) -> Result<(), Box<dyn Error>> {
    let line: JoinLine = arg(args, 0, "join line")?.parse()?;
    let options = NodeOptions::new(line.clone(), Password::resolve()?)
        .workers(arg(args, 2, "workers")?.parse()?)
        .data(arg(args, 1, "data directory")?);
    let mut node = cluster::start_node(options).await?;
    if !node.joined(std::time::Duration::from_secs(60)).await {
        return Err("the node agent did not join its head within 60 s".into());
    }
    println!("READY {line}");
    stdin_closed().await;
    node.stop().await;
    Ok(())
}
