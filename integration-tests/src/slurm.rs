//! A real one-machine Slurm for the tests: `munged`, `slurmctld` and
//! `slurmd` (Debian's `slurm-wlm` and `munge`) started with a private
//! configuration in a temporary folder, stopped and removed on drop.
//! Needs root (the daemons run as root here); where Slurm is missing or
//! this is not root, [`slurm_or_skip`] says why and the test skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running one-node Slurm cluster.
pub struct Slurm {
    dir: PathBuf,
    daemons: Vec<Child>,
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(16817)
}

impl Slurm {
    /// Starts the daemons and waits until the node takes jobs.
    pub fn start() -> Result<Slurm, String> {
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("the Slurm test runs its daemons as root".into());
        }
        for exe in [
            "/usr/sbin/munged",
            "/usr/sbin/slurmctld",
            "/usr/sbin/slurmd",
        ] {
            if !Path::new(exe).exists() {
                return Err(format!(
                    "{exe} is missing: `apt-get install slurm-wlm munge` (bash .ci/run does)"
                ));
            }
        }
        let dir = std::env::temp_dir().join(format!("parallel-slurm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        let mut slurm = Slurm {
            dir: dir.clone(),
            daemons: Vec::new(),
        };
        let key = dir.join("munge.key");
        let bytes: Vec<u8> = (0..128).map(|_| rand_byte()).collect();
        std::fs::write(&key, bytes).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        let host = parallel::id::host_name();
        let (ctld, slurmd) = (free_tcp_port(), free_tcp_port());
        let d = dir.display();
        std::fs::write(
            dir.join("slurm.conf"),
            format!(
                "ClusterName=ptest\nSlurmctldHost={host}\nSlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
                 AuthType=auth/munge\nAuthInfo=socket={d}/munge.sock\nCredType=cred/munge\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 SlurmUser=root\nSlurmdUser=root\nProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\nMpiDefault=none\nReturnToService=2\n\
                 SchedulerType=sched/builtin\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 SlurmdParameters=config_overrides\n\
                 NodeName={host} CPUs=8 State=UNKNOWN\n\
                 PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let munged = Command::new("/usr/sbin/munged")
            .args(["--foreground", "--force", "--socket"])
            .arg(dir.join("munge.sock"))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--pid-file={d}/munged.pid"))
            .arg(format!("--log-file={d}/log/munged.log"))
            .arg(format!("--seed-file={d}/munge.seed"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start munged: {e}"))?;
        slurm.daemons.push(munged);
        slurm.wait_until(|| dir.join("munge.sock").exists(), "munged's socket")?;
        for exe in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd"] {
            let child = Command::new(exe)
                .arg("-D")
                .arg("-f")
                .arg(dir.join("slurm.conf"))
                .env("SLURM_CONF", dir.join("slurm.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {exe}: {e}"))?;
            slurm.daemons.push(child);
        }
        let conf = dir.join("slurm.conf");
        slurm.wait_until(
            || {
                Command::new("sinfo")
                    .args(["-h", "-o", "%T"])
                    .env("SLURM_CONF", &conf)
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
            },
            "the Slurm node to be idle",
        )?;
        Ok(slurm)
    }

    fn wait_until(&self, ready: impl Fn() -> bool, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            if Instant::now() > deadline {
                return Err(format!(
                    "waited 30 s for {what}; logs in {}:\n{}",
                    self.dir.display(),
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// `srun` with this cluster's configuration, run in its folder (so
    /// `SLURM_SUBMIT_DIR` is that folder).
    pub fn srun(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("srun");
        cmd.env("SLURM_CONF", self.dir.join("slurm.conf"))
            .current_dir(&self.dir);
        cmd
    }

    /// The daemons' logs.
    pub fn logs(&self) -> String {
        ["munged", "slurmctld", "slurmd"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(format!("log/{n}.log")))
                    .unwrap_or_default();
                format!("--- {n}\n{text}")
            })
            .collect()
    }
}

/// A byte from the kernel's random source (for the munge key).
fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    // SAFETY: getrandom(2) writes at most `len` bytes into the buffer.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, 0) };
    b[0]
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for child in self.daemons.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running Slurm, or `None` after printing why the test is skipped.
pub fn slurm_or_skip(test: &str) -> Option<Slurm> {
    match Slurm::start() {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}
