//! Children on other hosts, started through the system `ssh` client
//! (BatchMode: the user's keys and `~/.ssh/config`, never a password prompt).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::process::Command;

use crate::transport::JoinLine;

use super::error::ForkError;
use super::launch::{LaunchSpec, Launched, start};
use super::parent::Placement;

/// Set once a remote host is used: the parent's node then listens on every
/// interface instead of loopback only.
static REMOTES_USED: AtomicBool = AtomicBool::new(false);

/// Where the parent's node listens: loopback, unless remote hosts were
/// registered before the first fork.
pub(crate) fn parent_listen_addr() -> SocketAddr {
    if REMOTES_USED.load(Ordering::Relaxed) {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
    }
}

/// A host reached through ssh, and how to run this program there.
#[derive(Clone, Debug, PartialEq)]
pub struct SshHost {
    /// `host` or `user@host`, as `ssh` takes it.
    pub destination: String,
    /// ssh port (`None`: ssh's default or the user's config).
    pub port: Option<u16>,
    /// Path of this program on that host (default: the same path as here).
    pub exe: PathBuf,
    /// Extra arguments for `ssh` (identity file, options).
    pub ssh_args: Vec<String>,
    /// Processes to start there.
    pub procs: usize,
    /// Cores of that host (for `sfork`).
    pub cores: usize,
}

/// A remote spec: `Remote::ssh("host").procs(4).exe("/path/to/bin")`.
#[derive(Clone, Debug, PartialEq)]
pub struct Remote(pub(crate) SshHost);

impl Remote {
    /// A host reached with `ssh DESTINATION` (`host` or `user@host`).
    pub fn ssh(destination: impl Into<String>) -> Self {
        REMOTES_USED.store(true, Ordering::Relaxed);
        let exe = std::env::current_exe().unwrap_or_default();
        Remote(SshHost {
            destination: destination.into(),
            port: None,
            exe,
            ssh_args: Vec::new(),
            procs: 1,
            cores: 1,
        })
    }

    /// How many processes to start there (for `nfork`).
    pub fn procs(mut self, n: usize) -> Self {
        self.0.procs = n;
        self
    }

    /// How many cores the host has (for `addremote` + `sfork`).
    pub fn cores(mut self, n: usize) -> Self {
        self.0.cores = n.max(1);
        self
    }

    /// Path of this program on that host.
    pub fn exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.exe = path.into();
        self
    }

    /// The ssh port.
    pub fn port(mut self, port: u16) -> Self {
        self.0.port = Some(port);
        self
    }

    /// One more argument for `ssh` (for example `-i`, then a key path).
    pub fn ssh_arg(mut self, arg: impl Into<String>) -> Self {
        self.0.ssh_args.push(arg.into());
        self
    }

    /// The host.
    pub fn host(&self) -> &SshHost {
        &self.0
    }
}

impl super::parent::IntoPlacements for Remote {
    fn into_placements(self) -> Vec<Placement> {
        vec![Placement::Ssh(self.0.clone()); self.0.procs]
    }
}

impl<const N: usize> super::parent::IntoPlacements for [Remote; N] {
    fn into_placements(self) -> Vec<Placement> {
        self.into_iter().flat_map(|r| r.into_placements()).collect()
    }
}

impl super::parent::IntoPlacements for Vec<Remote> {
    fn into_placements(self) -> Vec<Placement> {
        self.into_iter().flat_map(|r| r.into_placements()).collect()
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SshHost {
    /// The host part of the destination (without `user@`).
    pub fn hostname(&self) -> &str {
        self.destination
            .rsplit('@')
            .next()
            .unwrap_or(&self.destination)
    }

    /// The `ssh` command for running `remote_command` there.
    pub(crate) fn command(&self, remote_command: &str) -> Command {
        let mut command = Command::new("ssh");
        command.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
        if let Some(port) = self.port {
            command.args(["-p", &port.to_string()]);
        }
        command
            .args(&self.ssh_args)
            .arg(&self.destination)
            .arg(remote_command);
        command
    }

    /// The parent's join line as this host reaches it: the address of the
    /// local interface that routes to the host.
    pub(crate) fn parent_line(&self, base: &JoinLine) -> JoinLine {
        let mut line = base.clone();
        if line.addr.ip().is_unspecified() {
            let ip = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                .and_then(|s| {
                    s.connect((self.hostname(), self.port.unwrap_or(22)))
                        .map(|_| s)
                })
                .and_then(|s| s.local_addr())
                .map(|a| a.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            line.addr.set_ip(ip);
        }
        line
    }

    /// Starts child `spec.id` there: `ssh host 'ENV=… exec EXE'`; the password
    /// goes through ssh's stdin.
    pub(crate) async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, ForkError> {
        let mut remote = String::from("exec env");
        for (key, value) in spec.env() {
            remote.push_str(&format!(" {key}={}", shell_quote(&value)));
        }
        remote.push(' ');
        remote.push_str(&shell_quote(&self.exe.to_string_lossy()));
        start(self.command(&remote), spec, &self.destination).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn remote_specs_expand_to_one_placement_per_process() {
        use super::super::parent::IntoPlacements;
        let placements = [Remote::ssh("a").procs(2), Remote::ssh("u@b").procs(3)].into_placements();
        assert_eq!(placements.len(), 5);
        assert!(matches!(&placements[4], Placement::Ssh(h) if h.hostname() == "b"));
    }
}
