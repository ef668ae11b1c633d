//! Programs started by Slurm: every task of a step (`srun -n 4 prog`, or a
//! step of an `sbatch` script) calls [`slurm`] and gets a node joined to
//! every other task's node, with its rank and the step's size — the group
//! Slurm started, with no hosts or ports to list.
//!
//! The tasks meet in a rendezvous folder only the user can read (by default
//! `$SLURM_SUBMIT_DIR/.parallel-slurm/<job>.<step>`, on the file system the
//! job's nodes share): rank 0 writes a one-time cluster password there,
//! every task writes its join line, and each joins all the others. The
//! folder is removed once every task has joined.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let step = parallel::launch::slurm().await?;
//! println!("rank {} of {}, joined to {} others", step.rank, step.size, step.peers.len());
//! # Ok(()) }
//! ```
//!
//! [`crate::collective::slurm_group`] forms the collective group of the
//! step in the same call.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::remote::{Node, RemoteNode, StartError};
use crate::transport::{JoinLine, Password};

/// How long [`slurm`] waits for every task by default.
pub const DEFAULT_RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(120);

/// This task's place in its Slurm step.
pub struct SlurmStep {
    /// This task's node, joined to every other task's.
    pub node: Node,
    /// The other tasks' nodes, in rank order (this task left out).
    pub peers: Vec<RemoteNode>,
    /// This task's rank (`SLURM_PROCID`).
    pub rank: usize,
    /// How many tasks the step has (`SLURM_NTASKS`).
    pub size: usize,
    /// `slurm-<job>.<step>`: a name for the step's group.
    pub name: String,
    /// The job's nodes, as Slurm lists them.
    pub nodelist: String,
}

/// Why the tasks of a step could not meet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlurmError {
    /// Not started by Slurm.
    #[error(
        "not a Slurm task (no SLURM_PROCID): start the program with `srun -n N prog` or in an sbatch script's srun step"
    )]
    NotInSlurm,
    /// A Slurm variable could not be read.
    #[error("Slurm's {var} is {value:?}, not a number; is this a Slurm step?")]
    BadVariable {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The rendezvous folder could not be used.
    #[error(
        "the rendezvous folder {dir} cannot be used: {source}; every task must reach it (a file system the job's nodes share), or name another with SlurmOptions::dir"
    )]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Some tasks did not show up in time.
    #[error(
        "waited {waited:?} in {dir} for tasks {missing:?} of the step; did they start, and do they see that folder?"
    )]
    Timeout {
        /// The folder.
        dir: PathBuf,
        /// The ranks that never wrote their join line.
        missing: Vec<usize>,
        /// How long it waited.
        waited: Duration,
    },
    /// This task's node could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Another task could not be joined.
    #[error("cannot join task {rank} at {line}: {reason}")]
    Join {
        /// Its rank.
        rank: usize,
        /// Its join line.
        line: String,
        /// Why.
        reason: String,
    },
}

/// Settings of [`slurm_with`].
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    dir: Option<PathBuf>,
    timeout: Duration,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        Self {
            dir: None,
            timeout: DEFAULT_RENDEZVOUS_TIMEOUT,
        }
    }
}

impl SlurmOptions {
    /// Meets in `dir` instead of `$SLURM_SUBMIT_DIR/.parallel-slurm`
    /// (each step gets a folder `<job>.<step>` inside).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Waits at most `timeout` for every task (default 2 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Joins this task to every other task of its Slurm step (see the module
/// docs). Must run inside the actor runtime.
pub async fn slurm() -> Result<SlurmStep, SlurmError> {
    slurm_with(SlurmOptions::default()).await
}

/// [`slurm`] with options.
pub async fn slurm_with(options: SlurmOptions) -> Result<SlurmStep, SlurmError> {
    let env = crate::config::environment()
        .slurm
        .clone()
        .ok_or(SlurmError::NotInSlurm)?;
    let number = |var: &'static str, value: &str| {
        value
            .trim()
            .parse::<usize>()
            .map_err(|_| SlurmError::BadVariable {
                var,
                value: value.to_owned(),
            })
    };
    let rank = number("SLURM_PROCID", &env.procid)?;
    let size = number("SLURM_NTASKS", &env.ntasks)?.max(1);
    let step = if env.step_id.is_empty() {
        "batch".to_owned()
    } else {
        env.step_id.clone()
    };
    let base = options.dir.clone().unwrap_or_else(|| {
        env.submit_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(".parallel-slurm")
    });
    let dir = base.join(format!("{}.{step}", env.job_id));
    let folder = |source| SlurmError::Folder {
        dir: dir.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(folder)?;
    let deadline = Instant::now() + options.timeout;
    let waiting = |missing: Vec<usize>| SlurmError::Timeout {
        dir: dir.clone(),
        missing,
        waited: options.timeout,
    };

    // Rank 0 makes the step's one-time password; the others read it.
    let secret = dir.join("secret");
    if rank == 0 {
        let password = format!("{}{}", crate::id::NodeId::new(), crate::id::NodeId::new());
        publish(&dir, "secret", &password).map_err(folder)?;
    }
    let password = wait_for(&secret, deadline)
        .await
        .ok_or_else(|| waiting(vec![0]))?;
    let node = Node::builder()
        .password(Password::new(password.trim().to_owned()))
        .listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .start()
        .await?;
    let mut line = node.join_line();
    line.addr.set_ip(advertised_ip());
    publish(&dir, &format!("rank-{rank}"), &line.to_string()).map_err(folder)?;

    let mut lines = Vec::with_capacity(size);
    for r in 0..size {
        match wait_for(&dir.join(format!("rank-{r}")), deadline).await {
            Some(text) => lines.push(text),
            None => {
                let missing = (r..size)
                    .filter(|m| !dir.join(format!("rank-{m}")).exists())
                    .collect();
                return Err(waiting(missing));
            }
        }
    }
    let mut peers = Vec::with_capacity(size.saturating_sub(1));
    for (r, text) in lines.iter().enumerate() {
        if r == rank {
            continue;
        }
        let join = |reason: String| SlurmError::Join {
            rank: r,
            line: text.trim().to_owned(),
            reason,
        };
        let line: JoinLine = text.trim().parse().map_err(|e| join(format!("{e}")))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let remote = tokio::time::timeout(left, node.join(&line))
            .await
            .map_err(|_| join("no answer in time".into()))?
            .map_err(|e| join(e.to_string()))?;
        peers.push(remote);
    }
    // Everyone has read every line once every task says so; rank 0 then
    // removes the folder.
    publish(&dir, &format!("joined-{rank}"), "").map_err(folder)?;
    if rank == 0 {
        let dir = dir.clone();
        actix_rt::spawn(async move {
            for r in 0..size {
                if wait_for(&dir.join(format!("joined-{r}")), deadline)
                    .await
                    .is_none()
                {
                    return;
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
    Ok(SlurmStep {
        node,
        peers,
        rank,
        size,
        name: format!("slurm-{}.{step}", env.job_id),
        nodelist: env.nodelist,
    })
}

/// Writes `text` to `dir/name` so that readers see all of it or nothing
/// (a private temporary file, then a rename).
fn publish(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// The contents of `path` once it exists, or `None` at `deadline`.
async fn wait_for(path: &Path, deadline: Instant) -> Option<String> {
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The address other hosts reach this one at: the host name's first
/// address that is not loopback, else loopback (all tasks on one machine).
fn advertised_ip() -> IpAddr {
    let addrs: Vec<IpAddr> = (crate::id::host_name().as_str(), 0)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip()).collect())
        .unwrap_or_default();
    addrs
        .iter()
        .copied()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .or_else(|| addrs.iter().copied().find(|ip| !ip.is_loopback()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_file_appears_whole_and_private() {
        let dir = std::env::temp_dir().join(format!("parallel-slurm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        publish(&dir, "rank-3", "quic://127.0.0.1:9#sha256=00").unwrap();
        let path = dir.join("rank-3");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "quic://127.0.0.1:9#sha256=00"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[actix_rt::test]
    async fn outside_slurm_it_says_how_to_start_the_program() {
        if crate::config::environment().slurm.is_some() {
            return;
        }
        let err = slurm().await.err().expect("not in Slurm");
        assert!(matches!(err, SlurmError::NotInSlurm));
        assert!(err.to_string().contains("srun -n N"), "{err}");
    }
}
