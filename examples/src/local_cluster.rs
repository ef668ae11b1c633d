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

const DATA_ENV: &str = "LOCAL_CLUSTER_DATA";
const HEAD_ENV: &str = "LOCAL_CLUSTER_HEAD";
const WORKERS_ENV: &str = "LOCAL_CLUSTER_WORKERS";

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
        let head =
            Part::start_with("head", &password, &[(DATA_ENV, data.display().to_string())]).await?;
        let line = head.join_line.clone();
        let mut parts = vec![head];
        for n in 0..nodes {
            let env = [
                (HEAD_ENV, line.to_string()),
                (
                    DATA_ENV,
                    data.join(format!("node{n}")).display().to_string(),
                ),
                (WORKERS_ENV, workers.to_string()),
            ];
            parts.push(Part::start_with("node", &password, &env).await?);
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
    match role().as_deref() {
        Some("head") => Some(run_head().await),
        Some("node") => Some(run_node().await),
        _ => None,
    }
}

async fn run_head() -> Result<(), Box<dyn Error>> {
    let options = HeadOptions::new(Password::resolve()?)
        .listen("127.0.0.1:0".parse()?)
        .data(std::env::var(DATA_ENV)?);
    let head = cluster::start_head(options).await?;
    println!("READY {}", head.join_line());
    stdin_closed().await;
    head.stop().await;
    Ok(())
}

async fn run_node() -> Result<(), Box<dyn Error>> {
    let line: JoinLine = std::env::var(HEAD_ENV)?.parse()?;
    let options = NodeOptions::new(line.clone(), Password::resolve()?)
        .workers(std::env::var(WORKERS_ENV)?.parse()?)
        .data(std::env::var(DATA_ENV)?);
    let mut node = cluster::start_node(options).await?;
    if !node.joined(std::time::Duration::from_secs(60)).await {
        return Err("the node agent did not join its head within 60 s".into());
    }
    println!("READY {line}");
    stdin_closed().await;
    node.stop().await;
    Ok(())
}
