//! Starting a child process: on this machine directly, or on another one
//! through a launcher (ssh). The password reaches the child on its standard
//! input, never on a command line; the child's stderr is passed through and
//! its last lines kept for error messages.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};

use crate::id::ActorId;
use crate::transport::JoinLine;

use super::error::ForkError;
use super::protocol::{boot_id, env};

/// Lines of a child's stderr kept for error messages.
const TAIL_LINES: usize = 20;

/// What a new child needs to know to connect back.
#[derive(Clone)]
pub(crate) struct LaunchSpec {
    /// Its id among the parent's children.
    pub id: u32,
    /// The parent's join line, as the child can reach it.
    pub parent: JoinLine,
    /// The parent's mailbox for this child.
    pub mailbox: ActorId,
    /// The one-time cluster password (goes to the child's stdin).
    pub password: String,
    /// Where the child's node listens.
    pub listen: String,
}

impl LaunchSpec {
    /// The environment of the child; nothing in it is secret.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (env::ROLE, env::CHILD.to_string()),
            (env::PARENT, self.parent.to_string()),
            (env::MAILBOX, self.mailbox.0.to_string()),
            (env::ID, self.id.to_string()),
            (env::LISTEN, self.listen.clone()),
            (env::PARENT_BOOT, boot_id()),
        ]
    }
}

/// A started child: the local OS process (the program itself, or the ssh
/// client that runs it elsewhere), its stdin (closing it tells the child to
/// exit) and the tail of its stderr.
pub(crate) struct Launched {
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
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            return "(nothing on stderr)".into();
        }
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Starts `command` (already holding its program and arguments) as a child:
/// piped stdin carrying the password, stderr passed through with a kept tail,
/// stdout inherited, and — on Linux — killed when this process dies.
pub(crate) async fn start(
    mut command: Command,
    spec: &LaunchSpec,
    host: &str,
) -> Result<Launched, ForkError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut command);
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

/// Starts this program again on this machine as child `spec.id`.
pub(crate) async fn launch_local(spec: &LaunchSpec) -> Result<Launched, ForkError> {
    let exe = std::env::current_exe().map_err(|e| ForkError::Spawn {
        host: "localhost".into(),
        reason: format!("cannot find this program's path: {e}"),
    })?;
    let mut command = Command::new(exe);
    command.envs(spec.env());
    start(command, spec, "localhost").await
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (prctl, getppid, _exit).
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}
