//! A real OpenSSH server on a loopback port, for the tests that fork
//! children through ssh: its own host key, a client key pair made for the
//! test, and its files in a temporary folder, all removed on drop.
//!
//! `.ci/run` installs Debian's `openssh-server` and `openssh-client`; without
//! them [`Sshd::start`] panics and says so, so the tests fail instead of
//! passing without having run.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The OpenSSH server binary (sshd re-executes itself, so the path is absolute).
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long the server has to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A running sshd on `127.0.0.1:port` (or a bed host's address); stopped,
/// with its sessions, on drop.
pub struct Sshd {
    process: Child,
    dir: PathBuf,
    /// The port it listens on.
    pub port: u16,
    /// The private key it accepts.
    pub key: PathBuf,
    /// A private key it does not accept.
    pub stranger_key: PathBuf,
    /// `user@127.0.0.1` (or the bed host's address) for the user running the tests.
    pub destination: String,
}

impl Sshd {
    /// Makes the keys and the configuration, starts sshd and waits until its
    /// port accepts connections. Panics, saying what to install, when
    /// OpenSSH is missing.
    pub fn start() -> Sshd {
        Self::start_at(None)
    }

    /// As [`Sshd::start`], on host `ns` of the network test bed, listening
    /// on its address `addr` (`destination` is then `user@addr`).
    pub fn start_in(ns: &str, addr: Ipv4Addr) -> Sshd {
        Self::start_at(Some((ns, addr)))
    }

    fn start_at(host: Option<(&str, Ipv4Addr)>) -> Sshd {
        let addr = host.map_or(Ipv4Addr::LOCALHOST, |(_, addr)| addr);
        let keygen = which("ssh-keygen");
        if !Path::new(SSHD).exists() || keygen.is_none() || which("ssh").is_none() {
            panic!(
                "these tests need OpenSSH ({SSHD}, ssh and ssh-keygen): run `bash .ci/run`, \
                 which installs them, or `apt-get install -y openssh-server openssh-client`"
            );
        }
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "parallel-sshd-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the sshd folder");
        for name in ["host_key", "client_key", "stranger_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(dir.join(name))
                .stdin(Stdio::null())
                .status()
                .expect("run ssh-keygen");
            assert!(status.success(), "ssh-keygen failed for {name}");
        }
        // SAFETY: getuid(2) has no preconditions.
        let root = unsafe { libc::getuid() } == 0;
        if root {
            // sshd's privilege separation needs this empty folder.
            let _ = fs::create_dir_all("/run/sshd");
        }
        let user = if root {
            "root".to_string()
        } else {
            let out = Command::new("id").arg("-un").output().expect("run id -un");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let port = free_port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress {addr}\n\
                 Port {port}\n\
                 HostKey {dir}/host_key\n\
                 AuthorizedKeysFile {dir}/client_key.pub\n\
                 PidFile {dir}/sshd.pid\n\
                 PermitRootLogin yes\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 MaxStartups 64\n\
                 MaxSessions 64\n\
                 LogLevel INFO\n",
                dir = dir.display()
            ),
        )
        .expect("write sshd_config");
        let log = fs::File::create(dir.join("sshd.log")).expect("create the sshd log");
        let mut command = match host {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SSHD]);
                c
            }
            None => Command::new(SSHD),
        };
        command
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        stop_with_this_thread(&mut command);
        let process = command.spawn().expect("start sshd");
        let mut sshd = Sshd {
            process,
            key: dir.join("client_key"),
            stranger_key: dir.join("stranger_key"),
            dir,
            port,
            destination: format!("{user}@{addr}"),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if TcpStream::connect((addr, port)).is_ok() {
                return sshd;
            }
            let exited = sshd.process.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "sshd did not start on port {port} ({exited:?}); its log:\n{}",
                    sshd.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Arguments for `ssh` that log in with `key` on `port` without asking
    /// about, or remembering, the host key, and without the user's config.
    pub fn client_args(&self, port: u16, key: &Path) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-p",
            &port.to_string(),
            "-i",
            &key.to_string_lossy(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Arguments for `ssh` that reach this server with the accepted key.
    pub fn ssh_args(&self) -> Vec<String> {
        self.client_args(self.port, &self.key)
    }

    /// A folder that lives as long as the server (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Its sessions first (they are its descendants), then the server.
        for pid in descendants(self.process.id()) {
            // SAFETY: kill(2) on a process this server started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// The path of `program` on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Every process below `pid`, children before grandchildren.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // The fields after the command name, which is in parentheses.
            let rest = &stat[stat.rfind(')')? + 1..];
            let parent = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(c, _)| c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// On Linux, sshd gets SIGTERM if the thread that started it ends without
/// dropping the [`Sshd`] (a test killed mid-way).
fn stop_with_this_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only prctl, an async-signal-safe call, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_of_a_process_with_none_is_empty() {
        let mut sleeper = Command::new("sleep").arg("5").spawn().expect("sleep");
        assert!(descendants(sleeper.id()).is_empty());
        assert!(descendants(std::process::id()).contains(&sleeper.id()));
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
}
