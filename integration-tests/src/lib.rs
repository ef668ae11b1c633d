//! Shared pieces of the multi-process tests: the actors the test `node`
//! binary hosts, and helpers to start that binary and read what it prints.

use std::process::Stdio;
use std::time::Duration;

use actix::Handler;
use parallel::{Actor, ActorRef, JoinLine, Message};
use rkyv::{Archive, Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

pub mod net;
pub mod netbed;
pub mod printed;
pub mod slurm;
pub mod sshd;

/// The cluster password every test process uses.
pub const PASSWORD: &str = "integration-test-password";

/// A counter: `Add` adds and answers the new total, `Get` answers it.
#[derive(Actor, Archive, Serialize, Deserialize, Default, Debug)]
#[actor(messages(Add, AddAll, Get, Bump, Boom), spawn)]
pub struct Counter {
    /// The running total.
    pub total: u64,
}

/// Adds to a [`Counter`]; answers the new total.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = u64)]
pub struct Add(pub u64);

/// Adds every element of a tensor to a [`Counter`] (wrapping); answers the
/// new total.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = u64)]
pub struct AddAll(pub parallel::Tensor<u64>);

impl Handler<AddAll> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: AddAll, _: &mut actix::Context<Self>) -> u64 {
        let sum = msg
            .0
            .as_slice()
            .iter()
            .fold(0u64, |a, &x| a.wrapping_add(x));
        self.total = self.total.wrapping_add(sum);
        self.total
    }
}

/// Adds one to a [`Counter`] without an answer (a tell).
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Bump;

/// Makes a [`Counter`]'s handler panic with "boom".
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Boom;

impl Handler<Boom> for Counter {
    type Result = ();
    fn handle(&mut self, _: Boom, _: &mut actix::Context<Self>) {
        panic!("boom");
    }
}

/// Reads a [`Counter`]'s total.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = u64)]
pub struct Get;

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut actix::Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

impl Handler<Bump> for Counter {
    type Result = ();
    fn handle(&mut self, _: Bump, _: &mut actix::Context<Self>) {
        self.total += 1;
    }
}

impl Handler<Get> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut actix::Context<Self>) -> u64 {
        self.total
    }
}

/// An actor type the test node registers for spawning but does not allow.
#[derive(Actor, Archive, Serialize, Deserialize, Default, Debug)]
#[actor(messages(Get), spawn)]
pub struct Forbidden;

impl Handler<Get> for Forbidden {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut actix::Context<Self>) -> u64 {
        0
    }
}

/// A deliberately slow receiver of numbered tells: checks they arrive in
/// order, and sleeps 1 ms every `pause_every` messages.
#[derive(Actor, Archive, Serialize, Deserialize, Default, Debug)]
#[actor(messages(Seq, Stats, Sleep), spawn)]
pub struct SlowSink {
    /// Messages received.
    pub received: u64,
    /// Messages that arrived out of order.
    pub out_of_order: u64,
    /// Sleep 1 ms every this many messages (0: never).
    pub pause_every: u64,
}

/// The n-th message of a burst.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Seq(pub u64);

/// Asks a [`SlowSink`] what it saw.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = SinkStats)]
pub struct Stats;

/// Keeps the actor busy for this many milliseconds before answering.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = u64)]
pub struct Sleep(pub u64);

/// What a [`SlowSink`] saw, and the peak memory of its process.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkStats {
    /// Messages received.
    pub received: u64,
    /// Messages that arrived out of order.
    pub out_of_order: u64,
    /// Peak resident memory of the process, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

impl Handler<Seq> for SlowSink {
    type Result = ();
    fn handle(&mut self, msg: Seq, _: &mut actix::Context<Self>) {
        if msg.0 != self.received {
            self.out_of_order += 1;
        }
        self.received += 1;
        if self.pause_every > 0 && self.received.is_multiple_of(self.pause_every) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Handler<Stats> for SlowSink {
    type Result = actix::MessageResult<Stats>;
    fn handle(&mut self, _: Stats, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult(SinkStats {
            received: self.received,
            out_of_order: self.out_of_order,
            peak_rss_kib: peak_rss_kib(),
        })
    }
}

impl Handler<Sleep> for SlowSink {
    type Result = actix::ResponseFuture<u64>;
    fn handle(&mut self, msg: Sleep, _: &mut actix::Context<Self>) -> Self::Result {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(msg.0)).await;
            msg.0
        })
    }
}

/// Passes numbers on to a [`Counter`] whose reference arrives inside the
/// message: the reference is used on the node that received it.
#[derive(Actor, Archive, Serialize, Deserialize, Default, Debug)]
#[actor(messages(Relay), spawn)]
pub struct Relayer;

/// Asks `to` to add `n`; answers the counter's new total.
#[derive(Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = u64)]
pub struct Relay {
    /// The counter, wherever it lives.
    pub to: ActorRef<Counter>,
    /// What to add.
    pub n: u64,
}

impl Handler<Relay> for Relayer {
    type Result = actix::ResponseFuture<u64>;
    fn handle(&mut self, msg: Relay, _: &mut actix::Context<Self>) -> Self::Result {
        Box::pin(async move {
            match msg.to.ask(Add(msg.n)).await {
                Ok(total) => total,
                Err(e) => panic!("the relayed ask failed: {e}"),
            }
        })
    }
}

/// A function other processes of the test binaries may run.
#[parallel::remote]
pub fn multiply(a: u64, b: u64) -> u64 {
    a * b
}

/// Peak resident memory of this process in KiB, from `/proc/self/status`.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A running test node process; killed when dropped.
pub struct NodeProcess {
    /// The child process.
    pub child: Child,
    /// Its join line.
    pub join_line: JoinLine,
    stderr: Option<ChildStderr>,
}

/// The deadline of every wait in these tests that has no tighter one.
pub const DEADLINE: Duration = Duration::from_secs(20);

impl NodeProcess {
    /// Starts the test node binary at `exe` with `args`, the test password in
    /// its environment, and waits (at most 20 s) for its `READY <join line>`.
    pub async fn start(exe: &str, args: &[&str]) -> NodeProcess {
        Self::start_with_password(exe, args, PASSWORD).await
    }

    /// As [`NodeProcess::start`], with another password.
    pub async fn start_with_password(exe: &str, args: &[&str], password: &str) -> NodeProcess {
        Self::start_by(Command::new(exe), args, password).await
    }

    /// As [`NodeProcess::start`], started by `cmd` (for example the test
    /// node run in a host of the network test bed).
    pub async fn start_by(mut cmd: Command, args: &[&str], password: &str) -> NodeProcess {
        let mut child = cmd
            .args(args)
            .env("PARALLEL_PASSWORD", password)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the test node binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the node printed READY within 20 s")
            .expect("read the node's stdout")
            .expect("the node printed a line");
        let join_line = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("expected `READY <join line>`, got {line:?}"))
            .parse()
            .expect("a valid join line");
        let stderr = child.stderr.take();
        NodeProcess {
            child,
            join_line,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Kills the node with SIGKILL.
    pub fn kill9(&mut self) {
        // SAFETY: plain syscall on the pid of a child we started.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGKILL);
        }
    }

    /// Stops the node and returns everything it wrote to stderr.
    pub async fn stop_and_read_stderr(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
        let mut out = String::new();
        if let Some(mut err) = self.stderr.take() {
            let _ = tokio::time::timeout(DEADLINE, err.read_to_string(&mut out)).await;
        }
        out
    }
}

/// Starts a node in this process with the test password.
pub async fn local_node() -> parallel::Node {
    parallel::Node::builder()
        .password(parallel::Password::new(PASSWORD.to_string()))
        .start()
        .await
        .expect("start a local node")
}

/// A node in this process with the test password and these heartbeats.
pub async fn local_node_with_heartbeat(interval: Duration, timeout: Duration) -> parallel::Node {
    parallel::Node::builder()
        .password(parallel::Password::new(PASSWORD.to_string()))
        .heartbeat(interval, timeout)
        .start()
        .await
        .expect("start a local node")
}

/// Joins `node` to the test node process `server` (at most 20 s).
pub async fn join(node: &parallel::Node, server: &NodeProcess) -> parallel::RemoteNode {
    tokio::time::timeout(DEADLINE, node.join(&server.join_line))
        .await
        .expect("joined in time")
        .expect("join the test node")
}

/// Runs `exe args` to its end (at most 60 s): whether it succeeded, its
/// stdout and its stderr.
pub async fn run_to_end(exe: &str, args: &[&str]) -> (bool, String, String) {
    run_to_end_with_env(exe, args, &[]).await
}

/// [`run_to_end`] with these environment variables set.
pub async fn run_to_end_with_env(
    exe: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let child = Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the program");
    let out = tokio::time::timeout(DEADLINE * 3, child.wait_with_output())
        .await
        .expect("the program finished in time")
        .expect("its output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Spawns a `Counter` on `remote` and checks it answers.
pub async fn counter_on(remote: &parallel::RemoteNode) -> ActorRef<Counter> {
    let counter = tokio::time::timeout(DEADLINE, remote.spawn(Counter::default()))
        .await
        .expect("spawn answered in time")
        .expect("spawn a Counter");
    assert_eq!(
        tokio::time::timeout(DEADLINE, counter.ask(Get))
            .await
            .expect("in time")
            .expect("ask"),
        0
    );
    counter
}

/// True while process `pid` runs (a zombie runs no code: it counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The no-orphan check: reads the `PIDS a b ...` line a forking parent
/// prints, checks `expected` children run, SIGKILLs the parent, and asserts
/// every child is gone within 3 seconds.
pub async fn children_die_with_their_parent(mut parent: tokio::process::Child, expected: usize) {
    let stdout = parent.stdout.take().expect("the parent's stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("PIDS in time")
        .expect("read the parent's stdout")
        .expect("a PIDS line");
    let pids: Vec<u32> = line
        .strip_prefix("PIDS ")
        .unwrap_or_else(|| panic!("expected `PIDS ...`, got {line:?}"))
        .split(' ')
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), expected);
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?}");
    // SAFETY: kill(2) on the pid of a process the test started.
    unsafe { libc::kill(parent.id().expect("pid") as i32, libc::SIGKILL) };
    let _ = tokio::time::timeout(DEADLINE, parent.wait()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "children {left:?} outlived their parent by 3 s"
    );
}

/// Rank `rank`'s `f32` input of `len` elements in the collective scenarios
/// (every rank can compute every rank's input, so each checks its result).
pub fn input_f32(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((rank * 7919 + i * 31) % 97) as f32 * 0.37 - 11.0 + rank as f32 * 0.013)
        .collect()
}

/// Rank `rank`'s `i64` input of `len` elements in the collective scenarios.
pub fn input_i64(rank: usize, len: usize) -> Vec<i64> {
    (0..len)
        .map(|i| ((rank * 1_000_003 + i * 7) % 1999) as i64 - 999)
        .collect()
}

/// The parent's `ABORTED <ms> ms: <error>` line of a collective scenario
/// and its milliseconds.
pub fn aborted_line<'a>(out: &'a str, err: &str) -> (&'a str, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("ABORTED"))
        .unwrap_or_else(|| panic!("no error in the parent\n{out}\n{err}"));
    let ms = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no milliseconds in {line}"));
    (line, ms)
}
