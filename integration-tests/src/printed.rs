//! A process a test started, whose output it reads line by line: wait for
//! what it prints, then stop it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The longest a [`Printed::wait_for`] or [`Printed::exit_ok`] waits.
pub const STEP: Duration = Duration::from_secs(60);

/// A process a test started (see the module docs).
pub struct Printed {
    /// The process.
    pub child: Child,
    out: Lines<BufReader<ChildStdout>>,
    /// Every line it printed so far.
    pub seen: Vec<String>,
}

impl Printed {
    /// Starts `cmd` with `args` and the test password; its stdin stays open
    /// (the test programs stop when it closes) and it is killed if dropped.
    pub fn start(mut cmd: Command, args: &[&str]) -> Printed {
        let mut child = cmd
            .args(args)
            .env("PARALLEL_PASSWORD", crate::PASSWORD)
            // A panic on an engine reports its place (the hook that notes it
            // stands back when backtraces are asked for).
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the test program");
        let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Printed {
            child,
            out,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one starts with `prefix`; that line.
    pub async fn wait_for(&mut self, prefix: &str) -> String {
        let found = tokio::time::timeout(STEP, async {
            while let Ok(Some(line)) = self.out.next_line().await {
                self.seen.push(line.clone());
                if line.starts_with(prefix) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "exited before printing {prefix:?}; it printed {:?}",
                self.seen
            ),
            Err(_) => panic!("no {prefix:?} within {STEP:?}; it printed {:?}", self.seen),
        }
    }

    /// Waits for the process to exit; whether it succeeded.
    pub async fn exit_ok(&mut self) -> bool {
        tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("the process to exit in time")
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Sends it `signal`.
    pub fn signal(&mut self, signal: i32) {
        if let Some(pid) = self.child.id() {
            // SAFETY: a signal to a child this test started.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Closes its stdin (the test programs stop then); kills it if it is
    /// not gone in 15 s.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        self.reap().await;
    }

    /// Sends it SIGTERM (a `parallel` command stops then); kills it if it
    /// is not gone in 15 s.
    pub async fn terminate(mut self) {
        self.signal(libc::SIGTERM);
        self.reap().await;
    }

    async fn reap(&mut self) {
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            self.kill();
            let _ = self.child.wait().await;
        }
    }
}
