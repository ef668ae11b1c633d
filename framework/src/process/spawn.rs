//! Starting a child process: on this machine directly, or on another one
//! through a [`Launcher`] (ssh, in [`crate::launch`]). The password reaches
//! the child on its standard input, never on a command line; the child's
//! stderr is passed through and its last lines kept for error messages.
//! Once started, the OS process is owned by one task ([`Owned`]): it reaps
//! the process, publishes its exit, and closes its stdin or kills it on
//! request — nothing polls it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, watch};

use crate::id::{ActorId, host_key};
use crate::transport::JoinLine;

use super::error::ForkError;
use crate::config::vars;

/// Lines of a child's stderr kept for error messages.
const TAIL_LINES: usize = 20;

/// What a new child needs to know to connect back.
#[derive(Clone)]
pub struct LaunchSpec {
    /// Its number among the parent's children.
    pub number: u32,
    /// The parent's join line, as the child can reach it.
    pub parent: JoinLine,
    /// The tree's parent actor.
    pub parent_actor: ActorId,
    /// The shared-memory threshold the child uses for what it sends.
    pub shm_threshold: usize,
    /// The one-time cluster password (goes to the child's stdin).
    pub password: String,
    /// Where the child's node listens.
    pub listen: String,
}

impl LaunchSpec {
    /// The environment of the child; nothing in it is secret.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (vars::ROLE, vars::CHILD.to_string()),
            (vars::PARENT, self.parent.to_string()),
            (vars::PARENT_ACTOR, self.parent_actor.0.to_string()),
            (vars::ID, self.number.to_string()),
            (vars::LISTEN, self.listen.clone()),
            (vars::PARENT_HOST, host_key()),
            (vars::SHM_THRESHOLD, self.shm_threshold.to_string()),
        ]
    }
}

/// A started child: the local OS process (the program itself, or the ssh
/// client that runs it elsewhere), its stdin (closing it tells the child to
/// exit) and the tail of its stderr.
pub struct Launched {
    /// The local process.
    pub process: tokio::process::Child,
    /// Its standard input, kept open while the child should live.
    pub stdin: Option<ChildStdin>,
    /// Where it runs.
    pub host: String,
    /// The last lines of its stderr.
    pub tail: Arc<Mutex<VecDeque<String>>>,
}

impl Launched {
    /// The last lines the child printed on stderr.
    pub fn stderr_tail(&self) -> String {
        tail_text(&self.tail)
    }
}

/// Starts `command` (already holding its program and arguments) as a child:
/// piped stdin carrying the password, stderr passed through with a kept tail,
/// stdout inherited, and — on Linux — killed when this process dies.
pub async fn start(
    mut command: Command,
    spec: &LaunchSpec,
    host: &str,
) -> Result<Launched, ForkError> {
    die_with_parent(&mut command);
    start_spawned(command, spec, host).await
}

/// [`start`], without the hook that makes the child die with this process
/// (run between fork and exec, it makes the OS copy this process's page
/// tables for every child: slow for a parent holding much memory).
async fn start_spawned(
    mut command: Command,
    spec: &LaunchSpec,
    host: &str,
) -> Result<Launched, ForkError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut process = command.spawn().map_err(|e| ForkError::Spawn {
        host: host.to_string(),
        reason: e.to_string(),
    })?;
    let mut stdin = process.stdin.take();
    if let Some(input) = stdin.as_mut() {
        let line = format!("{}\n", spec.password);
        if let Err(e) = input.write_all(line.as_bytes()).await {
            return Err(ForkError::Spawn {
                host: host.to_string(),
                reason: format!("could not hand over the password: {e}"),
            });
        }
        let _ = input.flush().await;
    }
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(stderr) = process.stderr.take() {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
    }
    Ok(Launched {
        process,
        stdin,
        host: host.to_string(),
        tail,
    })
}

/// Starts this program again on this machine as child `spec.number`.
pub(crate) async fn launch_local(spec: &LaunchSpec) -> Result<Launched, ForkError> {
    let exe = std::env::current_exe().map_err(|e| ForkError::Spawn {
        host: "localhost".into(),
        reason: format!("cannot find this program's path: {e}"),
    })?;
    let mut command = Command::new(exe);
    command.envs(spec.env());
    // The child arranges to die with this process itself, first thing
    // (`die_with(parent)`), so nothing runs between fork and exec and the
    // OS starts it without copying this process's page tables.
    command.env(vars::PARENT_PID, std::process::id().to_string());
    start_spawned(command, spec, "localhost").await
}

/// In a child started on its parent's machine: killed when the parent
/// dies (`PR_SET_PDEATHSIG`), and gone at once if the parent died before
/// this could be set (it was adopted by another process meanwhile).
pub(crate) fn die_with(parent: u32) {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl(PR_SET_PDEATHSIG)` and `getppid` have no memory
    // effects; `_exit` ends the process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() as u32 != parent {
            libc::_exit(1);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

/// Makes the process `command` starts die with this one: [`die_with`], run
/// between fork and exec (for a program that cannot do it itself, such as
/// the ssh client of a remote child).
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: `die_with` makes only async-signal-safe calls (prctl,
    // getppid, _exit), as code between fork and exec must.
    unsafe {
        command.pre_exec(move || {
            die_with(parent);
            Ok(())
        });
    }
}

/// How a child process is started on a host other than this machine (or
/// through a program other than itself): `ssh` in [`crate::launch`], and
/// whatever a cluster layer adds. The process layer calls it and owns what
/// it returns.
pub trait Launcher: Send + Sync + std::fmt::Debug {
    /// Where the child runs, for messages.
    fn host(&self) -> String;
    /// True when the child runs on this machine.
    fn is_local(&self) -> bool;
    /// The parent's join line as the child can reach it (`base` is the
    /// parent's own, possibly on an unspecified address).
    fn parent_line(&self, base: &JoinLine) -> JoinLine;
    /// The address the child's node listens on.
    fn listen(&self) -> String {
        "0.0.0.0:0".into()
    }
    /// Starts the child with `spec` (its environment and password).
    fn launch<'a>(
        &'a self,
        spec: &'a LaunchSpec,
    ) -> Pin<Box<dyn Future<Output = Result<Launched, ForkError>> + Send + 'a>>;
}

/// Where a new child runs. Made from a count (`nfork(4)`: this machine) or
/// from remote specs (`Remote::ssh("host").procs(2)` in [`crate::launch`]).
#[derive(Clone, Debug)]
pub enum Placement {
    /// On this machine, this same program.
    Local,
    /// Through a launcher (on another host).
    Via(Arc<dyn Launcher>),
}

impl Placement {
    /// Where the child runs, for messages.
    pub fn host(&self) -> String {
        match self {
            Placement::Local => "localhost".into(),
            Placement::Via(l) => l.host(),
        }
    }

    /// True when the child runs on this machine.
    pub fn is_local(&self) -> bool {
        match self {
            Placement::Local => true,
            Placement::Via(l) => l.is_local(),
        }
    }

    /// The parent's join line as the child reaches it.
    pub(crate) fn parent_line(&self, base: &JoinLine) -> JoinLine {
        match self {
            Placement::Local => {
                let mut line = base.clone();
                if line.addr.ip().is_unspecified() {
                    line.addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                line
            }
            Placement::Via(l) => l.parent_line(base),
        }
    }

    /// Where the child's node listens.
    pub(crate) fn listen(&self) -> String {
        match self {
            Placement::Local => "127.0.0.1:0".into(),
            Placement::Via(l) => l.listen(),
        }
    }

    /// Starts the child.
    pub(crate) async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, ForkError> {
        match self {
            Placement::Local => launch_local(spec).await,
            Placement::Via(l) => l.launch(spec).await,
        }
    }
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

impl IntoPlacements for Placement {
    fn into_placements(self) -> Vec<Placement> {
        vec![self]
    }
}

/// How a child's OS process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit status as the OS reports it (`exit status: 0`, `signal: 9 (SIGKILL)`).
    pub status: String,
    /// True when a signal ended it.
    pub signaled: bool,
    /// True when it exited with status 0.
    pub success: bool,
}

enum Control {
    CloseStdin,
    Kill,
}

/// A started child process, owned by one task that reaps it: its exit is
/// published once, and closing its stdin or killing it are requests to
/// that task.
#[derive(Clone)]
pub(crate) struct Owned {
    control: mpsc::UnboundedSender<Control>,
    exit: watch::Receiver<Option<Exit>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Owned {
    /// Takes `launched` over.
    pub(crate) fn own(launched: Launched) -> Self {
        let Launched {
            mut process,
            mut stdin,
            tail,
            ..
        } = launched;
        let (control, mut requests) = mpsc::unbounded_channel();
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = loop {
                tokio::select! {
                    status = process.wait() => break status,
                    request = requests.recv() => match request {
                        Some(Control::CloseStdin) => drop(stdin.take()),
                        Some(Control::Kill) | None => {
                            drop(stdin.take());
                            let _ = process.start_kill();
                        }
                    },
                }
            };
            use std::os::unix::process::ExitStatusExt;
            let exit = match status {
                Ok(s) => Exit {
                    status: s.to_string(),
                    signaled: s.signal().is_some(),
                    success: s.success(),
                },
                Err(e) => Exit {
                    status: format!("could not be waited for: {e}"),
                    signaled: false,
                    success: false,
                },
            };
            let _ = exit_tx.send(Some(exit));
        });
        Self {
            control,
            exit,
            tail,
        }
    }

    /// Closes the child's stdin: it exits at once (a child on another host
    /// through its ssh session).
    pub(crate) fn close_stdin(&self) {
        let _ = self.control.send(Control::CloseStdin);
    }

    /// Kills the child (SIGKILL locally; the ssh session for a remote one).
    pub(crate) fn kill(&self) {
        let _ = self.control.send(Control::Kill);
    }

    /// Its exit, if it has ended.
    pub(crate) fn try_exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Waits until it has ended.
    pub(crate) fn exited(&self) -> impl Future<Output = Exit> + Send + 'static {
        let mut exit = self.exit.clone();
        async move {
            loop {
                if let Some(e) = exit.borrow_and_update().clone() {
                    return e;
                }
                if exit.changed().await.is_err() {
                    return Exit {
                        status: "its owner task ended".into(),
                        signaled: false,
                        success: false,
                    };
                }
            }
        }
    }

    /// The last lines it printed on stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        tail_text(&self.tail)
    }
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    if tail.is_empty() {
        return "(nothing on stderr)".into();
    }
    tail.iter().cloned().collect::<Vec<_>>().join("\n")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::die_with;

    /// Runs `body` in a forked copy of this process and returns its exit
    /// status. `body` may call only async-signal-safe functions (the copy
    /// has one thread of a multi-threaded process).
    fn in_forked_copy(body: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the copy runs `body` (async-signal-safe calls only) and
        // `_exit`s; this side waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                libc::_exit(body());
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status), "status {status:#x}");
            libc::WEXITSTATUS(status)
        }
    }

    #[test]
    fn a_child_of_the_named_parent_is_set_to_die_with_it() {
        let parent = std::process::id();
        let code = in_forked_copy(|| {
            die_with(parent);
            let mut signal: libc::c_int = 0;
            // SAFETY: PR_GET_PDEATHSIG writes one int through the pointer.
            unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut signal as *mut libc::c_int) };
            if signal == libc::SIGKILL { 0 } else { 2 }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn a_child_whose_parent_is_already_gone_exits_at_once() {
        // Another pid than its parent's: as if the parent had died and the
        // child had been adopted before it could arrange anything.
        let code = in_forked_copy(|| {
            die_with(u32::MAX);
            3
        });
        assert_eq!(code, 1);
    }
}
