//! One typed configuration. Every setting lives in a builder ([`Config`],
//! `Node::builder()`, `GroupOptions`); the environment is read in exactly
//! one place, [`Environment::read`], once per process, and each variable
//! is documented here and in the book's chapter "Configuration".
//!
//! | variable | what it sets | default |
//! |---|---|---|
//! | `PARALLEL_FORK_TIMEOUT` | [`Config::fork_timeout`], seconds | 15 |
//! | `PARALLEL_LISTEN` | [`Config::listen`]: where a tree's node listens | loopback, or every interface once another host is named |
//! | `PARALLEL_SHM_THRESHOLD` | [`Config::shm_threshold`], bytes | 1 MiB |
//! | `PARALLEL_COLLECTIVE_SLOT` | [`Config::collective_slot`], bytes (at least 64) | 512 KiB |
//! | `PARALLEL_COLLECTIVE_TRANSPORT` | [`Config::collective_transport`]: `auto`, `quic` or `relay` | `auto` |
//! | `PARALLEL_PASSWORD_FILE` | the file holding the cluster password | none |
//! | `PARALLEL_PASSWORD` | the cluster password itself | none (then a prompt) |
//! | `PARALLEL_LOG`, else `RUST_LOG` | the log filter (`tracing` `EnvFilter` syntax) | `warn` |
//! | `PARALLEL_HEAD`, `PARALLEL_POOL`, `PARALLEL_WORKER_KIND`, `PARALLEL_AGENT` (with `PARALLEL_ROLE=worker`) | set by a node agent for the cluster workers it starts: the start protocol, not settings | unset |
//! | `XDG_DATA_HOME`, else `HOME` | the default data directory of `parallel head` / `parallel node` (`<dir>/parallel/head`, `.../node`) | `~/.local/share` |
//! | `CUDA_VISIBLE_DEVICES` | the GPUs a node agent counts (one worker each) | every GPU the driver lists |
//! | `RUST_BACKTRACE` | a handler panic prints the standard backtrace instead of one line | unset |
//!
//! A forked child also reads the variables its parent set for it
//! ([`ChildEnv`]): they are the start protocol, not settings.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// Names of the variables read by [`Environment::read`].
pub mod vars {
    /// [`super::Config::fork_timeout`] in seconds.
    pub const FORK_TIMEOUT: &str = "PARALLEL_FORK_TIMEOUT";
    /// [`super::Config::listen`].
    pub const LISTEN: &str = "PARALLEL_LISTEN";
    /// [`super::Config::shm_threshold`] in bytes.
    pub const SHM_THRESHOLD: &str = "PARALLEL_SHM_THRESHOLD";
    /// [`super::Config::collective_slot`] in bytes.
    pub const COLLECTIVE_SLOT: &str = "PARALLEL_COLLECTIVE_SLOT";
    /// [`super::Config::collective_transport`].
    pub const COLLECTIVE_TRANSPORT: &str = "PARALLEL_COLLECTIVE_TRANSPORT";
    /// The path of a file holding the cluster password.
    pub const PASSWORD_FILE: &str = "PARALLEL_PASSWORD_FILE";
    /// The cluster password.
    pub const PASSWORD: &str = "PARALLEL_PASSWORD";
    /// The log filter (before `RUST_LOG`).
    pub const LOG: &str = "PARALLEL_LOG";
    /// The log filter, when `PARALLEL_LOG` is not set.
    pub const RUST_LOG: &str = "RUST_LOG";
    /// Backtraces of handler panics.
    pub const RUST_BACKTRACE: &str = "RUST_BACKTRACE";
    /// `child` in a process started by `fork`.
    pub const ROLE: &str = "PARALLEL_ROLE";
    /// A child's parent's join line.
    pub const PARENT: &str = "PARALLEL_PARENT";
    /// A child's tree's parent actor.
    pub const PARENT_ACTOR: &str = "PARALLEL_PARENT_ACTOR";
    /// A child's number among its parent's children.
    pub const ID: &str = "PARALLEL_ID";
    /// A child's parent's host key (machine and network namespace).
    pub const PARENT_HOST: &str = "PARALLEL_PARENT_HOST";
    /// The pid of a child's parent process, for a child started on the
    /// parent's machine (it arranges to die with it).
    pub const PARENT_PID: &str = "PARALLEL_PARENT_PID";
    /// The value of [`ROLE`] in a child.
    pub const CHILD: &str = "child";
    /// The user's home (default data directories of a head and a node agent).
    pub const HOME: &str = "HOME";
    /// Where user data lives (before `~/.local/share`).
    pub const XDG_DATA_HOME: &str = "XDG_DATA_HOME";
    /// Slurm: this task's rank in its step.
    pub const SLURM_PROCID: &str = "SLURM_PROCID";
    /// Slurm: how many tasks the step has.
    pub const SLURM_NTASKS: &str = "SLURM_NTASKS";
    /// Slurm: the job.
    pub const SLURM_JOB_ID: &str = "SLURM_JOB_ID";
    /// Slurm: the step of the job.
    pub const SLURM_STEP_ID: &str = "SLURM_STEP_ID";
    /// Slurm: where the job was submitted.
    pub const SLURM_SUBMIT_DIR: &str = "SLURM_SUBMIT_DIR";
    /// Slurm: the job's nodes.
    pub const SLURM_JOB_NODELIST: &str = "SLURM_JOB_NODELIST";
    /// The GPUs a node agent may hand to its workers.
    pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
    /// The value of [`ROLE`] in a cluster worker (started by a node agent).
    pub const WORKER: &str = "worker";
    /// A cluster worker's head join line.
    pub const WORKER_HEAD: &str = "PARALLEL_HEAD";
    /// A cluster worker's pool.
    pub const WORKER_POOL: &str = "PARALLEL_POOL";
    /// A cluster worker's registered worker type.
    pub const WORKER_KIND: &str = "PARALLEL_WORKER_KIND";
    /// The actor id of a cluster worker's node agent.
    pub const WORKER_AGENT: &str = "PARALLEL_AGENT";
    /// The GPU a cluster worker was given (the machine's id for it; the
    /// worker's `CUDA_VISIBLE_DEVICES` shows only that one).
    pub const WORKER_GPU: &str = "PARALLEL_WORKER_GPU";
}

/// Default of [`Config::fork_timeout`].
pub const DEFAULT_FORK_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of [`Config::shm_threshold`].
pub const DEFAULT_SHM_THRESHOLD: usize = 1 << 20;
/// Default of [`Config::collective_slot`].
pub const DEFAULT_COLLECTIVE_SLOT: usize = 512 * 1024;

/// How a process tree's collectives travel between its ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CollectiveTransport {
    /// Shared memory on one machine; direct QUIC links between machines,
    /// through the parent when the children cannot reach each other.
    #[default]
    Auto,
    /// Direct QUIC links between the ranks even on one machine (to compare,
    /// or to test the cross-host path on one machine).
    Quic,
    /// Every collective through the parent.
    Relay,
}

impl std::str::FromStr for CollectiveTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "quic" => Ok(Self::Quic),
            "relay" => Ok(Self::Relay),
            other => Err(format!(
                "{other:?} is not a collective transport: write auto, quic or relay"
            )),
        }
    }
}

/// The settings of a process tree and its collectives. Build one with
/// [`Config::default`] (the defaults above) or [`Config::from_env`] (the
/// defaults, then the environment), then change what you need:
///
/// ```
/// use std::time::Duration;
/// let config = parallel::Config::default()
///     .fork_timeout(Duration::from_secs(60))
///     .shm_threshold(64 * 1024);
/// assert_eq!(config.get_shm_threshold(), 64 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    fork_timeout: Duration,
    listen: Option<SocketAddr>,
    shm_threshold: usize,
    collective_slot: usize,
    collective_transport: CollectiveTransport,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fork_timeout: DEFAULT_FORK_TIMEOUT,
            listen: None,
            shm_threshold: DEFAULT_SHM_THRESHOLD,
            collective_slot: DEFAULT_COLLECTIVE_SLOT,
            collective_transport: CollectiveTransport::Auto,
        }
    }
}

impl Config {
    /// The defaults, overridden by the environment (see the module's table).
    /// A variable that cannot be read as its setting is ignored with a
    /// warning naming it.
    pub fn from_env() -> Self {
        let env = environment();
        let mut config = Self::default();
        if let Some(secs) = parsed::<u64>(&env.fork_timeout, vars::FORK_TIMEOUT) {
            config.fork_timeout = Duration::from_secs(secs);
        }
        config.listen = parsed(&env.listen, vars::LISTEN);
        if let Some(bytes) = parsed::<usize>(&env.shm_threshold, vars::SHM_THRESHOLD) {
            config = config.shm_threshold(bytes);
        }
        if let Some(bytes) = parsed::<usize>(&env.collective_slot, vars::COLLECTIVE_SLOT) {
            config = config.collective_slot(bytes);
        }
        if let Some(t) = parsed(&env.collective_transport, vars::COLLECTIVE_TRANSPORT) {
            config.collective_transport = t;
        }
        config
    }

    /// How long a new child has to connect back before `fork` fails.
    pub fn fork_timeout(mut self, timeout: Duration) -> Self {
        self.fork_timeout = timeout;
        self
    }

    /// Where a tree's node listens (default: loopback, or every interface
    /// once a host other than this machine is named).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Values of at least this many bytes go through shared memory between
    /// processes of one machine (`usize::MAX`: never).
    pub fn shm_threshold(mut self, bytes: usize) -> Self {
        self.shm_threshold = bytes.max(1);
        self
    }

    /// Bytes of each rank's slot in a same-host collective's arena (at least 64).
    pub fn collective_slot(mut self, bytes: usize) -> Self {
        self.collective_slot = bytes.max(64);
        self
    }

    /// How the tree's collectives travel.
    pub fn collective_transport(mut self, transport: CollectiveTransport) -> Self {
        self.collective_transport = transport;
        self
    }

    /// See [`Config::fork_timeout`].
    pub fn get_fork_timeout(&self) -> Duration {
        self.fork_timeout
    }

    /// See [`Config::listen`].
    pub fn get_listen(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// See [`Config::shm_threshold`].
    pub fn get_shm_threshold(&self) -> usize {
        self.shm_threshold
    }

    /// See [`Config::collective_slot`].
    pub fn get_collective_slot(&self) -> usize {
        self.collective_slot
    }

    /// See [`Config::collective_transport`].
    pub fn get_collective_transport(&self) -> CollectiveTransport {
        self.collective_transport
    }
}

fn parsed<T: std::str::FromStr>(value: &Option<String>, name: &str) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    let value = value.as_deref()?;
    match value.parse() {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("{name}={value:?} is ignored: {e}");
            None
        }
    }
}

/// What a child started by `fork` reads about itself (set by its parent).
#[derive(Debug, Clone, Default)]
pub struct ChildEnv {
    /// The parent's join line.
    pub parent: Option<String>,
    /// The tree's parent actor.
    pub parent_actor: Option<String>,
    /// The child's number.
    pub id: Option<String>,
    /// Where the child's node listens.
    pub listen: Option<String>,
    /// The parent's host key.
    pub parent_host: Option<String>,
    /// The parent's pid, for a child on the parent's machine.
    pub parent_pid: Option<String>,
}

/// What a task started by Slurm (`srun`, an `sbatch` step) reads about
/// itself; see [`crate::launch::slurm()`].
#[derive(Debug, Clone, Default)]
pub struct SlurmEnv {
    /// `SLURM_PROCID`: this task's rank.
    pub procid: String,
    /// `SLURM_NTASKS`: how many tasks the step has.
    pub ntasks: String,
    /// `SLURM_JOB_ID`.
    pub job_id: String,
    /// `SLURM_STEP_ID` (empty in a batch script outside a step).
    pub step_id: String,
    /// `SLURM_SUBMIT_DIR`: where the job was submitted (the rendezvous
    /// folder lives there unless told otherwise).
    pub submit_dir: Option<std::path::PathBuf>,
    /// `SLURM_JOB_NODELIST`: the job's nodes, for messages.
    pub nodelist: String,
}

/// What a cluster worker reads about itself (set by its node agent).
#[derive(Debug, Clone, Default)]
pub struct WorkerEnv {
    /// The head's join line.
    pub head: String,
    /// The pool's id.
    pub pool: String,
    /// The registered worker type.
    pub kind: String,
    /// The node agent's actor id.
    pub agent: String,
    /// The GPU it was given, if its node has GPUs.
    pub gpu: Option<String>,
}

/// The process's environment as para||el reads it: every variable of the
/// module's table, read once.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `PARALLEL_FORK_TIMEOUT`.
    pub fork_timeout: Option<String>,
    /// `PARALLEL_LISTEN`.
    pub listen: Option<String>,
    /// `PARALLEL_SHM_THRESHOLD`.
    pub shm_threshold: Option<String>,
    /// `PARALLEL_COLLECTIVE_SLOT`.
    pub collective_slot: Option<String>,
    /// `PARALLEL_COLLECTIVE_TRANSPORT`.
    pub collective_transport: Option<String>,
    /// `PARALLEL_PASSWORD_FILE`.
    pub password_file: Option<std::path::PathBuf>,
    /// `PARALLEL_PASSWORD`.
    pub password: Option<String>,
    /// `PARALLEL_LOG`, else `RUST_LOG`.
    pub log: Option<String>,
    /// `RUST_BACKTRACE` set to something else than `0`.
    pub backtrace: bool,
    /// `PARALLEL_ROLE` is `child`.
    pub is_child: bool,
    /// The start protocol of a child.
    pub child: ChildEnv,
    /// Slurm's variables, when `SLURM_PROCID` is set.
    pub slurm: Option<SlurmEnv>,
    /// `PARALLEL_ROLE` is `worker`: the start protocol of a cluster worker.
    pub worker: Option<WorkerEnv>,
    /// `HOME`.
    pub home: Option<std::path::PathBuf>,
    /// `XDG_DATA_HOME`.
    pub xdg_data_home: Option<std::path::PathBuf>,
    /// `CUDA_VISIBLE_DEVICES`.
    pub cuda_visible_devices: Option<String>,
}

impl Environment {
    /// Reads every variable of the table: the one place the environment is
    /// read. [`environment`] keeps the result for the process.
    pub fn read() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self {
            fork_timeout: var(vars::FORK_TIMEOUT),
            listen: var(vars::LISTEN),
            shm_threshold: var(vars::SHM_THRESHOLD),
            collective_slot: var(vars::COLLECTIVE_SLOT),
            collective_transport: var(vars::COLLECTIVE_TRANSPORT),
            password_file: std::env::var_os(vars::PASSWORD_FILE).map(Into::into),
            password: var(vars::PASSWORD),
            log: var(vars::LOG).or_else(|| var(vars::RUST_LOG)),
            backtrace: std::env::var_os(vars::RUST_BACKTRACE).is_some_and(|v| v != "0"),
            is_child: var(vars::ROLE).is_some_and(|r| r == vars::CHILD),
            child: ChildEnv {
                parent: var(vars::PARENT),
                parent_actor: var(vars::PARENT_ACTOR),
                id: var(vars::ID),
                listen: var(vars::LISTEN),
                parent_host: var(vars::PARENT_HOST),
                parent_pid: var(vars::PARENT_PID),
            },
            slurm: var(vars::SLURM_PROCID).map(|procid| SlurmEnv {
                procid,
                ntasks: var(vars::SLURM_NTASKS).unwrap_or_default(),
                job_id: var(vars::SLURM_JOB_ID).unwrap_or_default(),
                step_id: var(vars::SLURM_STEP_ID).unwrap_or_default(),
                submit_dir: std::env::var_os(vars::SLURM_SUBMIT_DIR).map(Into::into),
                nodelist: var(vars::SLURM_JOB_NODELIST).unwrap_or_default(),
            }),
            worker: var(vars::ROLE)
                .is_some_and(|r| r == vars::WORKER)
                .then(|| WorkerEnv {
                    head: var(vars::WORKER_HEAD).unwrap_or_default(),
                    pool: var(vars::WORKER_POOL).unwrap_or_default(),
                    kind: var(vars::WORKER_KIND).unwrap_or_default(),
                    agent: var(vars::WORKER_AGENT).unwrap_or_default(),
                    gpu: var(vars::WORKER_GPU),
                }),
            home: std::env::var_os(vars::HOME).map(Into::into),
            xdg_data_home: std::env::var_os(vars::XDG_DATA_HOME)
                .filter(|v| !v.is_empty())
                .map(Into::into),
            cuda_visible_devices: var(vars::CUDA_VISIBLE_DEVICES),
        }
    }
}

/// This process's environment, read on first use (an immutable snapshot).
pub fn environment() -> &'static Environment {
    static SNAPSHOT: OnceLock<Environment> = OnceLock::new();
    SNAPSHOT.get_or_init(Environment::read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_override_defaults_and_clamp() {
        let c = Config::default()
            .shm_threshold(0)
            .collective_slot(3)
            .collective_transport(CollectiveTransport::Relay);
        assert_eq!(c.get_shm_threshold(), 1);
        assert_eq!(c.get_collective_slot(), 64);
        assert_eq!(c.get_collective_transport(), CollectiveTransport::Relay);
        assert_eq!(c.get_fork_timeout(), DEFAULT_FORK_TIMEOUT);
    }

    #[test]
    fn transports_parse_and_a_bad_one_says_what_to_write() {
        assert_eq!("QUIC".parse(), Ok(CollectiveTransport::Quic));
        assert_eq!("relay".parse(), Ok(CollectiveTransport::Relay));
        let e = "tcp".parse::<CollectiveTransport>().unwrap_err();
        assert!(e.contains("auto, quic or relay"), "{e}");
    }

    #[test]
    fn a_bad_value_is_ignored() {
        assert_eq!(parsed::<u64>(&Some("soon".into()), "X"), None);
        assert_eq!(parsed::<u64>(&Some("7".into()), "X"), Some(7));
        assert_eq!(parsed::<u64>(&None, "X"), None);
    }
}
