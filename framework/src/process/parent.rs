//! The parent side: this process's node for its children, the table of
//! living children, `fork`/`nfork`, `close`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::remote::Node;
use crate::transport::{JoinLine, Password};
use crate::wire::decode_owned;

use super::child_handle::{Child, ChildInner, Children, Inbox};
use super::error::ForkError;
use super::launch::{LaunchSpec, Launched, launch_local};
use super::protocol::{ChildHello, boot_id, op};

/// How long a new child has to connect back (`PARALLEL_FORK_TIMEOUT` in seconds overrides it).
pub const DEFAULT_FORK_TIMEOUT: Duration = Duration::from_secs(15);

/// Posts a child's mailbox on the parent holds before the child waits.
const INBOX_CAPACITY: usize = 64;

/// Set by `#[parallel::main]`: only such a program may fork (its copies
/// know they are children).
pub(crate) static MAIN_RAN: AtomicBool = AtomicBool::new(false);

pub(crate) struct ParentState {
    pub node: Node,
    pub password: String,
}

static STATE: OnceCell<ParentState> = OnceCell::const_new();
static CHILDREN: Mutex<BTreeMap<u32, Child>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn table() -> std::sync::MutexGuard<'static, BTreeMap<u32, Child>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn forget(id: u32) {
    table().remove(&id);
}

/// Where a new child runs. Made from a count (`nfork(4)`: this machine) or
/// from remote specs (see [`crate::Remote`]).
#[derive(Clone, Debug)]
pub enum Placement {
    /// On this machine.
    Local,
    /// On another host, through ssh.
    Ssh(crate::launch::ssh::SshHost),
}

/// What `nfork` accepts: a number of local processes, or remote specs.
pub trait IntoPlacements {
    /// One placement per process to start.
    fn into_placements(self) -> Vec<Placement>;
}

impl IntoPlacements for usize {
    fn into_placements(self) -> Vec<Placement> {
        vec![Placement::Local; self]
    }
}

impl IntoPlacements for Vec<Placement> {
    fn into_placements(self) -> Vec<Placement> {
        self
    }
}

pub(crate) async fn state() -> Result<&'static ParentState, ForkError> {
    if !MAIN_RAN.load(Ordering::Relaxed) {
        return Err(ForkError::NoMain);
    }
    if super::child::is_child() {
        return Err(ForkError::InChild);
    }
    STATE
        .get_or_try_init(|| async {
            let password = format!("{}{}", crate::id::NodeId::new(), crate::id::NodeId::new());
            let listen = std::env::var(super::protocol::env::LISTEN)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(crate::launch::ssh::parent_listen_addr);
            let node = Node::builder()
                .password(Password::new(password.clone()))
                .listen(listen)
                .start()
                .await?;
            Ok(ParentState { node, password })
        })
        .await
}

/// Starts one child process on this machine.
pub async fn fork() -> Result<Child, ForkError> {
    let mut children = nfork(1).await?;
    Ok(children.0.remove(0))
}

/// Starts child processes: `nfork(4)` on this machine, or on other hosts
/// with remote specs (`nfork(vec![Remote::ssh("host").procs(4).into()])`).
/// Every child runs this same program, connects back over the authenticated
/// QUIC transport, and waits for `exec`. Fails, naming the host and the
/// reason, if any child does not come up; the others are then closed.
pub async fn nfork(what: impl IntoPlacements) -> Result<Children, ForkError> {
    let state = state().await?;
    let placements = what.into_placements();
    let timeout = std::env::var("PARALLEL_FORK_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_FORK_TIMEOUT);
    let mut pending = Vec::new();
    for placement in placements {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let inbox = state.node.open_mailbox(INBOX_CAPACITY);
        let base = state.node.join_line();
        let (parent, listen) = match &placement {
            Placement::Local => (local_line(&base), "127.0.0.1:0".to_string()),
            Placement::Ssh(host) => (host.parent_line(&base), "0.0.0.0:0".to_string()),
        };
        let spec = LaunchSpec {
            id,
            parent,
            mailbox: inbox.id(),
            password: state.password.clone(),
            listen,
        };
        let launched = match &placement {
            Placement::Local => launch_local(&spec).await,
            Placement::Ssh(host) => host.launch(&spec).await,
        };
        pending.push(actix_rt::spawn(welcome(
            state.node.clone(),
            id,
            inbox,
            launched,
            timeout,
        )));
    }
    let mut children = Vec::new();
    let mut first_error = None;
    for task in pending {
        match task.await {
            Ok(Ok(child)) => children.push(child),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(ForkError::Spawn {
                    host: "localhost".into(),
                    reason: e.to_string(),
                });
            }
        }
    }
    if let Some(e) = first_error {
        for child in &children {
            child.kill().await;
        }
        return Err(e);
    }
    let mut table = table();
    for child in &children {
        table.insert(child.id(), child.clone());
    }
    Ok(Children(children))
}

/// The join line a child on this machine uses: loopback when we listen on
/// every interface.
fn local_line(base: &JoinLine) -> JoinLine {
    let mut line = base.clone();
    if line.addr.ip().is_unspecified() {
        line.addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    line
}

/// Waits for a launched child's hello: it connected back and is ready.
async fn welcome(
    node: Node,
    id: u32,
    mut inbox: crate::remote::Mailbox,
    launched: Result<Launched, ForkError>,
    timeout: Duration,
) -> Result<Child, ForkError> {
    let mut launched = launched?;
    let host = launched.host.clone();
    let hello = tokio::select! {
        d = inbox.recv() => d,
        status = launched.process.wait() => {
            // Let the stderr reader catch the last lines.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            return Err(ForkError::Exited { host, status, stderr: launched.stderr_tail() });
        }
        _ = tokio::time::sleep(timeout) => {
            let _ = launched.process.start_kill();
            return Err(ForkError::Timeout { host, secs: timeout.as_secs(), stderr: launched.stderr_tail() });
        }
    };
    let protocol = |reason: String| ForkError::Protocol {
        host: host.clone(),
        reason,
    };
    let d = hello.ok_or_else(|| protocol("the node closed".into()))?;
    if d.op != op::HELLO {
        return Err(protocol(format!("expected hello, got operation {}", d.op)));
    }
    let hello = decode_owned::<ChildHello>(&d.payload).map_err(|e| protocol(e.to_string()))?;
    let remote = node
        .remote(d.from)
        .ok_or_else(|| protocol("its connection is gone".into()))?;
    let mine = boot_id();
    let same_host = !mine.is_empty() && hello.boot_id == mine;
    Ok(Child(Arc::new(ChildInner {
        id,
        pid: hello.pid,
        host: if hello.host.is_empty() {
            host
        } else {
            hello.host
        },
        ip: hello.ip,
        same_host,
        remote,
        mailbox: hello.mailbox,
        inbox: tokio::sync::Mutex::new(Inbox::new(inbox)),
        process: tokio::sync::Mutex::new(launched),
        speed: Mutex::new(1.0),
        exited: std::sync::atomic::AtomicBool::new(false),
    })))
}

/// The living children of this process, in id order.
pub fn children() -> Children {
    Children(table().values().cloned().collect())
}

/// How many children this process has.
pub fn nchildren() -> usize {
    table().len()
}

/// How long `close` lets each child end by itself before killing it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Stops every child, local and remote, youngest first: each is told to end
/// (its stdin closes), given [`CLOSE_TIMEOUT`], then killed; all are
/// forgotten. Runs by itself when `#[parallel::main]`'s `main` returns,
/// fails, panics, or the program gets Ctrl+C / SIGTERM.
pub async fn close() {
    let all: Vec<Child> = table().values().rev().cloned().collect();
    for child in &all {
        child.stop(CLOSE_TIMEOUT).await;
    }
    crate::transport::shm::cleanup_own();
}

/// The same as [`close`], for code that cannot await (a panic or signal
/// path): kills every child process at once.
pub(crate) fn close_now() {
    let all: Vec<Child> = std::mem::take(&mut *table()).into_values().collect();
    for child in all {
        if let Ok(mut launched) = child.0.process.try_lock() {
            launched.stdin.take();
            let _ = launched.process.start_kill();
        }
    }
    crate::transport::shm::cleanup_own();
}

/// Runs the calibration kernel in every child and sets each child's
/// [`Child::speed`]: 1 for the fastest, the ratio of times for the others.
/// When hosts are registered with [`crate::addremote`] and there are no
/// children yet, first measures each host (one process per host, stopped
/// afterwards) so that [`crate::sfork()`] spreads by speed and the children
/// it starts report their host's speed.
pub async fn calibrate() -> Result<Children, super::ProcessError> {
    if nchildren() == 0 {
        crate::launch::sfork::calibrate_hosts().await?;
    }
    let all = children();
    let mut times = Vec::new();
    for child in &all {
        times.push(child.calibration_seconds().await?);
    }
    let speeds = crate::launch::calibrate::relative_speeds(&times);
    for (child, speed) in all.iter().zip(speeds) {
        child.set_speed(speed);
    }
    Ok(all)
}
