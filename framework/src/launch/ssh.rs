//! Children on other hosts, started through the system `ssh` client
//! (BatchMode: the user's keys and `~/.ssh/config`, never a password prompt).
//!
//! Before the first child starts on a host, one ssh round trip checks that
//! the program is there (`test -x`), or copies it there and compares SHA-256
//! sums when the spec says [`Remote::ship`]. The check is made once per host
//! and path for the life of this process.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::process::Command;

use crate::transport::JoinLine;

use crate::process::{ForkError, IntoPlacements, LaunchSpec, Launched, Launcher, Placement, start};

/// The longest a check or copy over ssh may take before it counts as failed
/// (ssh itself gives up connecting after 10 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// True for a host name that means this machine (`localhost`, `127.x.y.z`, `::1`).
pub(crate) fn is_loopback(hostname: &str) -> bool {
    let bare = hostname.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
    /// Copy this program to `exe` there before starting it (see [`Remote::ship`]).
    pub ship: bool,
}

/// A remote spec: `Remote::ssh("host").procs(4).exe("/path/to/bin")`.
#[derive(Clone, Debug, PartialEq)]
pub struct Remote(pub(crate) SshHost);

impl Remote {
    /// A host reached with `ssh DESTINATION` (`host` or `user@host`).
    pub fn ssh(destination: impl Into<String>) -> Self {
        let exe = std::env::current_exe().unwrap_or_default();
        let host = SshHost {
            destination: destination.into(),
            port: None,
            exe,
            ssh_args: Vec::new(),
            procs: 1,
            cores: 1,
            ship: false,
        };
        Remote(host)
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

    /// Path of this program on that host (default: the same path as here).
    /// It must be there and executable, unless [`Remote::ship`] copies it.
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

    /// Copies this program to the `exe` path on the host before the first
    /// child starts there (through ssh: `cat > tmp && chmod +x && mv`), then
    /// checks that its SHA-256 there equals the one here. Skips the copy when
    /// the file there already has the same sum.
    pub fn ship(mut self) -> Self {
        self.0.ship = true;
        self
    }

    /// The host.
    pub fn host(&self) -> &SshHost {
        &self.0
    }
}

impl From<Remote> for Placement {
    fn from(remote: Remote) -> Placement {
        remote.0.placement()
    }
}

impl IntoPlacements for Remote {
    fn into_placements(self) -> Vec<Placement> {
        vec![self.0.placement(); self.0.procs]
    }
}

impl<const N: usize> IntoPlacements for [Remote; N] {
    fn into_placements(self) -> Vec<Placement> {
        self.into_iter().flat_map(|r| r.into_placements()).collect()
    }
}

impl IntoPlacements for Vec<Remote> {
    fn into_placements(self) -> Vec<Placement> {
        self.into_iter().flat_map(|r| r.into_placements()).collect()
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SshHost {
    /// A placement on this host, for `nfork`.
    pub fn placement(&self) -> Placement {
        Placement::Via(std::sync::Arc::new(self.clone()))
    }

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
        command.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
        ]);
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
            let (hostname, port) = self.network_address();
            let ip = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                .and_then(|s| s.connect((hostname.as_str(), port)).map(|_| s))
                .and_then(|s| s.local_addr())
                .map(|a| a.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            line.addr.set_ip(ip);
        }
        line
    }

    /// The host name and port ssh really connects to, after the user's
    /// `~/.ssh/config` (`ssh -G`, which reads the configuration and does
    /// not connect); the destination's own when that fails. Cached.
    fn network_address(&self) -> (String, u16) {
        type Key = (String, Option<u16>, Vec<String>);
        static RESOLVED: Mutex<BTreeMap<Key, (String, u16)>> = Mutex::new(BTreeMap::new());
        let key = (self.destination.clone(), self.port, self.ssh_args.clone());
        let cache = || RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = cache().get(&key) {
            return found.clone();
        }
        let mut command = std::process::Command::new("ssh");
        command.arg("-G");
        if let Some(port) = self.port {
            command.args(["-p", &port.to_string()]);
        }
        let output = command
            .args(&self.ssh_args)
            .arg(&self.destination)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let config = output
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let found = parse_ssh_config(&config, self.hostname(), self.port.unwrap_or(22));
        cache().insert(key, found.clone());
        found
    }

    /// Starts child `spec.number` there: `ssh host 'ENV=… exec EXE'`; the
    /// password goes through ssh's stdin.
    async fn start_there(&self, spec: &LaunchSpec) -> Result<Launched, ForkError> {
        self.ensure_exe().await?;
        let mut remote = String::from("exec env");
        for (key, value) in spec.env() {
            remote.push_str(&format!(" {key}={}", shell_quote(&value)));
        }
        remote.push(' ');
        remote.push_str(&shell_quote(&self.exe.to_string_lossy()));
        start(self.command(&remote), spec, &self.destination).await
    }
}

impl Launcher for SshHost {
    fn host(&self) -> String {
        self.destination.clone()
    }

    fn is_local(&self) -> bool {
        false
    }

    fn parent_line(&self, base: &JoinLine) -> JoinLine {
        SshHost::parent_line(self, base)
    }

    fn launch<'a>(
        &'a self,
        spec: &'a LaunchSpec,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Launched, ForkError>> + Send + 'a>>
    {
        Box::pin(self.start_there(spec))
    }
}

/// A host and program path as checked: (destination, port, exe, ship).
type CheckKey = (String, Option<u16>, PathBuf, bool);

/// The hosts and paths whose program was checked (or shipped).
static CHECKED: Mutex<BTreeSet<CheckKey>> = Mutex::new(BTreeSet::new());

impl SshHost {
    /// Makes sure the program is at `exe` on the host, once per host and
    /// path: copies it there first when `ship` is set.
    async fn ensure_exe(&self) -> Result<(), ForkError> {
        let key = (
            self.destination.clone(),
            self.port,
            self.exe.clone(),
            self.ship,
        );
        let checked = |set: &BTreeSet<_>| set.contains(&key);
        if checked(&CHECKED.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        if self.ship {
            self.ship_exe().await?;
        } else {
            self.check_exe().await?;
        }
        CHECKED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(())
    }

    fn spawn_error(&self, reason: String) -> ForkError {
        ForkError::Spawn {
            host: self.destination.clone(),
            reason,
        }
    }

    /// `test -x EXE` there.
    async fn check_exe(&self) -> Result<(), ForkError> {
        let exe = self.exe.to_string_lossy();
        let out = self
            .run_remote(&format!("test -x {}", shell_quote(&exe)), None)
            .await?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.spawn_error(format!(
            "{exe} is not an executable file there; build this program there at that path, \
             give its path with `.exe(path)`, or call `.ship()` on the Remote to copy this one"
        )))
    }

    /// Copies this program to `exe` there unless the file there already has
    /// its SHA-256, then checks the sum there.
    async fn ship_exe(&self) -> Result<(), ForkError> {
        let local = std::env::current_exe()
            .map_err(|e| self.spawn_error(format!("cannot find this program's path: {e}")))?;
        let ours = local_sha256(&local)
            .await
            .map_err(|e| self.spawn_error(format!("cannot read {}: {e}", local.display())))?;
        let exe = self.exe.to_string_lossy().into_owned();
        if self.remote_sha256(&exe).await?.as_deref() == Some(ours.as_str()) {
            return Ok(());
        }
        let quoted = shell_quote(&exe);
        let dir = self
            .exe
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| ".".into());
        let tmp = format!("{quoted}.parallel-tmp.$$");
        let copy = format!(
            "mkdir -p {} && cat > {tmp} && chmod +x {tmp} && mv -f {tmp} {quoted}",
            shell_quote(&dir)
        );
        let out = self.run_remote(&copy, Some(&local)).await?;
        if !out.status.success() {
            return Err(self.spawn_error(format!(
                "copying {} to {exe} there failed ({}): {}",
                local.display(),
                out.status,
                tail(&out.stderr)
            )));
        }
        match self.remote_sha256(&exe).await? {
            Some(theirs) if theirs == ours => Ok(()),
            Some(theirs) => Err(self.spawn_error(format!(
                "the copy of this program at {exe} there has SHA-256 {theirs}, but {} here has {ours}",
                local.display()
            ))),
            None => Err(self.spawn_error(format!(
                "after copying this program to {exe} there, `sha256sum` could not read it; \
                 check that sha256sum (coreutils) is installed there"
            ))),
        }
    }

    /// The SHA-256 of `exe` there (`None` when there is no such file, or no `sha256sum`).
    async fn remote_sha256(&self, exe: &str) -> Result<Option<String>, ForkError> {
        let command = format!("sha256sum {} 2>/dev/null || true", shell_quote(exe));
        let out = self.run_remote(&command, None).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .next()
            .filter(|sum| sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|sum| sum.to_ascii_lowercase()))
    }

    /// Runs `remote_command` there (with the file `input` on its stdin) and
    /// returns its output; an error naming the host when ssh itself fails
    /// (connection refused, authentication, timeout: exit status 255).
    async fn run_remote(
        &self,
        remote_command: &str,
        input: Option<&Path>,
    ) -> Result<std::process::Output, ForkError> {
        let stdin =
            match input {
                Some(path) => Stdio::from(std::fs::File::open(path).map_err(|e| {
                    self.spawn_error(format!("cannot read {}: {e}", path.display()))
                })?),
                None => Stdio::null(),
            };
        let mut command = self.command(remote_command);
        command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let process = command
            .spawn()
            .map_err(|e| self.spawn_error(format!("cannot run the ssh client: {e}")))?;
        let out = tokio::time::timeout(CHECK_TIMEOUT, process.wait_with_output())
            .await
            .map_err(|_| {
                self.spawn_error(format!(
                    "ssh did not finish `{remote_command}` within {} s",
                    CHECK_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| self.spawn_error(format!("the ssh client failed: {e}")))?;
        if out.status.code() == Some(255) {
            return Err(self.spawn_error(format!(
                "ssh could not run a command there ({}): {}",
                out.status,
                tail(&out.stderr)
            )));
        }
        Ok(out)
    }
}

/// `hostname` and `port` from `ssh -G`'s output, or the defaults given.
fn parse_ssh_config(config: &str, hostname: &str, port: u16) -> (String, u16) {
    let value = |key: &str| {
        config.lines().find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().to_string())
        })
    };
    (
        value("hostname").unwrap_or_else(|| hostname.to_string()),
        value("port").and_then(|p| p.parse().ok()).unwrap_or(port),
    )
}

/// The last lines of a command's stderr, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "(no message)".into()
    } else {
        tail
    }
}

/// The SHA-256 of this program's file, in lower-case hex (computed once).
async fn local_sha256(path: &Path) -> std::io::Result<String> {
    static SUM: OnceLock<String> = OnceLock::new();
    if let Some(sum) = SUM.get() {
        return Ok(sum.clone());
    }
    let path = path.to_path_buf();
    let sum = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(std::io::Error::other)??;
    Ok(SUM.get_or_init(|| sum).clone())
}

/// The SHA-256 of a file, in lower-case hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    super::program::sha256_file(path).map(|(sum, _)| super::program::hex(&sum))
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
        use crate::process::IntoPlacements;
        let placements = [Remote::ssh("a").procs(2), Remote::ssh("u@b").procs(3)].into_placements();
        assert_eq!(placements.len(), 5);
        assert!(matches!(&placements[4], Placement::Via(h) if h.host() == "u@b"));
    }

    #[test]
    fn loopback_names_are_recognised() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.2"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("server1.org"));
        assert!(!is_loopback("10.0.0.5"));
    }

    #[test]
    fn ssh_config_gives_the_real_host_and_port() {
        let config = "user root\nhostname 10.1.2.3\nport 2222\naddressfamily any\n";
        assert_eq!(
            parse_ssh_config(config, "alias", 22),
            ("10.1.2.3".to_string(), 2222)
        );
        assert_eq!(parse_ssh_config("", "h", 22), ("h".to_string(), 22));
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        assert_eq!(tail(b""), "(no message)");
        assert_eq!(tail(b"a\n\nb\nc\nd\ne\nf\n"), "b\nc\nd\ne\nf");
    }
}
