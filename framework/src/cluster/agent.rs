//! The node agent: one actor, [`AgentActor`], in the process `parallel node`
//! runs. It joins the head, says how many workers it runs, and for each
//! pool the head names it fetches the pool's program (once per hash, from
//! the head, verified), then starts that many worker processes of it under
//! a supervisor of its own: each worker process is owned by a
//! [`WorkerKeeper`] actor, a child of the pool's supervisor, which restarts
//! it (a new process) when it exits or crashes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use actix::{ActorContext, ActorFutureExt, AsyncContext, Handler, WrapFuture};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::config::vars;
use crate::launch::program::{Program, ProgramStore};
use crate::remote::{ActorRef, Node};
use crate::supervision::{ChildSpec, Strategy, Supervisor, SupervisorRef};
use crate::transport::{JoinLine, Password};

use super::head::HeadActor;
use super::message::*;

/// Restarts of one worker allowed within [`RESTART_WINDOW`] before its
/// node agent gives up on that pool's workers.
pub const MAX_RESTARTS: u32 = 20;
/// The window of [`MAX_RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(10);
/// How long a worker asked to stop (SIGTERM) may take before it is killed.
pub const WORKER_GRACE: Duration = Duration::from_secs(2);

/// What an agent runs with.
#[derive(Clone, Debug)]
pub(super) struct AgentSettings {
    pub head: JoinLine,
    pub password: Password,
    pub workers: u32,
    pub gpus: u32,
    pub programs: PathBuf,
}

/// The node agent's actor (see the module docs).
#[derive(crate::Actor)]
#[actor(
    messages(RunProgram, StopProgram, StopAgent, RetireWorker, Usage),
    name = "parallel::cluster::AgentActor",
    lifecycle
)]
pub struct AgentActor {
    node: Node,
    id: crate::id::ActorId,
    head: watch::Receiver<Option<ActorRef<HeadActor>>>,
    settings: AgentSettings,
    programs: ProgramStore,
    pools: HashMap<Uuid, SupervisorRef>,
    stop: watch::Sender<bool>,
    /// The CPU of the agent and its workers between two [`Usage`] asks.
    cpu: std::sync::Arc<std::sync::Mutex<super::usage::CpuMeter>>,
    /// Workers restarted under the supervisors of pools that closed.
    restarts_before: u64,
}

impl AgentActor {
    pub(super) fn new(
        node: Node,
        id: crate::id::ActorId,
        head: watch::Receiver<Option<ActorRef<HeadActor>>>,
        settings: AgentSettings,
        stop: watch::Sender<bool>,
    ) -> Result<Self, crate::launch::program::ProgramError> {
        Ok(Self {
            programs: ProgramStore::open(&settings.programs)?.unsynced(),
            node,
            id,
            head,
            settings,
            pools: HashMap::new(),
            stop,
            cpu: Default::default(),
            restarts_before: 0,
        })
    }

    /// Starts the pool's workers from the program at `exe`.
    fn start_workers(&mut self, order: RunProgram, exe: PathBuf) {
        let mut supervisor =
            Supervisor::new(Strategy::OneForOne).intensity(MAX_RESTARTS, RESTART_WINDOW);
        let agent = self.id.0;
        for slot in 0..self.settings.workers {
            let mut env: Vec<(String, String)> = vec![
                (vars::ROLE.into(), vars::WORKER.into()),
                (vars::WORKER_HEAD.into(), self.settings.head.to_string()),
                (vars::WORKER_POOL.into(), order.pool.to_string()),
                (vars::WORKER_KIND.into(), order.kind.clone()),
                (vars::WORKER_AGENT.into(), agent.to_string()),
                (
                    vars::PASSWORD.into(),
                    self.settings.password.secret().to_owned(),
                ),
            ];
            let visible = crate::config::environment().cuda_visible_devices.as_deref();
            if let Some(gpu) = super::gpus::worker_device(visible, self.settings.gpus, slot) {
                // The worker sees one GPU (its ordinal 0) and knows which it is.
                env.push((vars::CUDA_VISIBLE_DEVICES.into(), gpu.clone()));
                env.push((vars::WORKER_GPU.into(), gpu));
            }
            let exe = exe.clone();
            supervisor = supervisor.child(ChildSpec::actor(format!("worker {slot}"), move || {
                WorkerKeeper::new(exe.clone(), env.clone())
            }));
        }
        let running = supervisor.start(&self.node);
        tracing::info!(pool = %order.pool, workers = self.settings.workers, "started the pool's workers");
        self.pools.insert(order.pool, running);
    }
}

impl Handler<RunProgram> for AgentActor {
    type Result = ();

    fn handle(&mut self, order: RunProgram, ctx: &mut actix::Context<Self>) {
        if self.pools.contains_key(&order.pool) {
            return;
        }
        if let Err(e) = order.program.check_platform() {
            tracing::error!(pool = %order.pool, "this node cannot run the pool's program: {e}");
            return;
        }
        let head = self.head.borrow().clone();
        let Some(head) = head else {
            return;
        };
        let store = self.programs.clone();
        let program = order.program.clone();
        let local = order.local.clone();
        let fetch = async move { fetch(&store, &head, &program, local).await };
        ctx.spawn(
            fetch
                .into_actor(self)
                .map(move |fetched, act, _| match fetched {
                    Ok(exe) => {
                        if !act.pools.contains_key(&order.pool) {
                            act.start_workers(order, exe);
                        }
                    }
                    Err(e) => {
                        tracing::error!(pool = %order.pool, "cannot get the pool's program: {e}")
                    }
                }),
        );
    }
}

/// The program from the local cache, else fetched from the head in chunks
/// and verified.
async fn fetch(
    store: &ProgramStore,
    head: &ActorRef<HeadActor>,
    program: &Program,
    local: Option<LocalCopy>,
) -> Result<PathBuf, String> {
    let cached = {
        let (store, sha) = (store.clone(), program.sha256);
        tokio::task::spawn_blocking(move || store.get(&sha, true))
            .await
            .map_err(|e| e.to_string())?
    };
    match cached {
        Ok(Some(path)) => return Ok(path),
        Ok(None) => {}
        Err(e) => tracing::warn!("cached program dropped: {e}"),
    }
    // On the head's own machine: a link to the head's file, which the head
    // hashed before naming it (or a hashed copy of it).
    if let Some(copy) =
        local.filter(|c| !c.host_key.is_empty() && c.host_key == crate::id::host_key())
    {
        let (store, program) = (store.clone(), program.clone());
        let copied = tokio::task::spawn_blocking(move || {
            store.link_stored(&program, std::path::Path::new(&copy.path))
        })
        .await
        .map_err(|e| e.to_string())?;
        match copied {
            Ok(path) => return Ok(path),
            Err(e) => tracing::debug!("no local copy of the program ({e}); fetching it"),
        }
    }
    let mut receiving = store.receive(program).map_err(|e| e.to_string())?;
    let mut offset = 0u64;
    while offset < program.len {
        let answer = head
            .ask(FetchChunk {
                sha256: program.sha256,
                offset,
            })
            .await
            .map_err(|e| format!("fetching the program from the head: {e}"))?;
        match answer {
            Chunk::Bytes(bytes) if bytes.is_empty() => {
                return Err(format!(
                    "the head's copy ends at {offset} of {} bytes",
                    program.len
                ));
            }
            Chunk::Bytes(bytes) => {
                receiving.write(offset, &bytes).map_err(|e| e.to_string())?;
                offset += bytes.len() as u64;
            }
            Chunk::Missing(why) => return Err(format!("the head does not have it: {why}")),
        }
    }
    tokio::task::spawn_blocking(move || receiving.finish())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

impl Handler<StopProgram> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: StopProgram, _: &mut actix::Context<Self>) {
        if let Some(running) = self.pools.remove(&msg.pool) {
            tracing::info!(pool = %msg.pool, "stopping the pool's workers");
            self.restarts_before += super::usage::restarts(&running.history());
            actix::spawn(async move {
                running.shutdown().await;
            });
        }
    }
}

impl Handler<RetireWorker> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: RetireWorker, _: &mut actix::Context<Self>) {
        let Some(running) = self.pools.get(&msg.pool).cloned() else {
            return;
        };
        let slots = self.settings.workers;
        actix::spawn(async move {
            for slot in 0..slots {
                let name = format!("worker {slot}");
                let Some(keeper) = running.child::<WorkerKeeper>(&name) else {
                    continue;
                };
                if keeper.ask(WorkerPid).await.ok() == Some(msg.pid) {
                    tracing::info!(pool = %msg.pool, pid = msg.pid, "stopping a worker for good");
                    running.terminate_child(&name).await;
                    return;
                }
            }
            tracing::warn!(pool = %msg.pool, pid = msg.pid, "no worker of this pool has that process id");
        });
    }
}

impl AgentActor {
    /// What its GPUs hold now (none: no rows).
    fn gpu_usage(&self) -> impl std::future::Future<Output = Vec<super::gpus::GpuRow>> + use<> {
        let (gpus, slots) = (self.settings.gpus, self.settings.workers);
        let visible = crate::config::environment().cuda_visible_devices.clone();
        async move {
            if gpus == 0 {
                return Vec::new();
            }
            // `nvidia-smi` is a process of its own: not on the actor's thread.
            let asked = tokio::task::spawn_blocking(move || {
                super::gpus::usage(visible.as_deref(), gpus, slots)
            });
            asked.await.unwrap_or_default()
        }
    }
}

impl Handler<Usage> for AgentActor {
    type Result = actix::Response<super::usage::NodeUsage>;

    fn handle(&mut self, _: Usage, _: &mut actix::Context<Self>) -> Self::Result {
        use super::usage::{MailboxRow, NodeUsage, SupervisorRow, children};
        let names: Vec<String> = (0..self.settings.workers)
            .map(|slot| format!("worker {slot}"))
            .collect();
        let pools: Vec<(Uuid, SupervisorRef)> =
            self.pools.iter().map(|(p, s)| (*p, s.clone())).collect();
        let mailboxes = MailboxRow::deepest(&self.node, 5);
        let gpus = self.gpu_usage();
        let cpu = self.cpu.clone();
        let mut restarts = self.restarts_before;
        actix::Response::fut(async move {
            let mut pids = vec![std::process::id()];
            let mut supervisors = Vec::with_capacity(pools.len());
            for (pool, running) in pools {
                let mut worker_pids = Vec::with_capacity(names.len());
                for name in &names {
                    let pid = match running.child::<WorkerKeeper>(name) {
                        Some(keeper) => keeper
                            .with_timeout(USAGE_TIMEOUT)
                            .ask(WorkerPid)
                            .await
                            .ok()
                            .filter(|p| *p != 0),
                        None => None,
                    };
                    pids.extend(pid);
                    worker_pids.push(pid);
                }
                let history = running.history();
                restarts += super::usage::restarts(&history);
                supervisors.push(SupervisorRow {
                    pool: pool.to_string(),
                    gave_up: history
                        .iter()
                        .any(|e| e.event == crate::supervision::SupervisorEvent::GaveUp),
                    children: children(&names, &history, &worker_pids),
                });
            }
            let (cpu_percent, rss_bytes) = cpu
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .sample(&pids);
            NodeUsage {
                cpu_percent,
                rss_bytes,
                gpus: gpus.await,
                supervisors,
                mailboxes,
                restarts,
            }
        })
    }
}

/// How long an agent waits for one of its workers' keepers to answer.
const USAGE_TIMEOUT: Duration = Duration::from_secs(1);

impl Handler<StopAgent> for AgentActor {
    type Result = actix::Response<()>;

    fn handle(&mut self, _: StopAgent, _: &mut actix::Context<Self>) -> Self::Result {
        let pools: Vec<SupervisorRef> = self.pools.drain().map(|(_, s)| s).collect();
        let stop = self.stop.clone();
        actix::Response::fut(async move {
            for running in pools {
                running.shutdown().await;
            }
            let _ = stop.send(true);
        })
    }
}

impl actix::Actor for AgentActor {
    type Context = actix::Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, running) in self.pools.drain() {
            actix::spawn(async move {
                running.shutdown().await;
            });
        }
    }
}

/// Owns one worker process: starts it, and stops when it exits (its
/// supervisor then starts a new keeper, so a new process); kills it when
/// stopped itself.
#[derive(crate::Actor)]
#[actor(
    messages(WorkerPid),
    name = "parallel::cluster::WorkerKeeper",
    lifecycle
)]
pub struct WorkerKeeper {
    exe: PathBuf,
    env: Vec<(String, String)>,
    pid: u32,
    kill: Option<oneshot::Sender<()>>,
}

/// Asks a [`WorkerKeeper`] for its worker's process id (0: not running).
#[derive(crate::Message, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy)]
#[message(result = u32)]
pub struct WorkerPid;

impl Handler<WorkerPid> for WorkerKeeper {
    type Result = u32;
    fn handle(&mut self, _: WorkerPid, _: &mut actix::Context<Self>) -> u32 {
        self.pid
    }
}

impl WorkerKeeper {
    fn new(exe: PathBuf, env: Vec<(String, String)>) -> Self {
        Self {
            exe,
            env,
            pid: 0,
            kill: None,
        }
    }
}

impl actix::Actor for WorkerKeeper {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .env_remove(vars::PASSWORD_FILE)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // SAFETY: prctl in the forked child before exec, async-signal-safe:
        // the worker dies with its agent, never outlives it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(exe = %self.exe.display(), "cannot start a worker: {e}");
                ctx.stop();
                return;
            }
        };
        self.pid = child.id().unwrap_or(0);
        // The process is waited for by a task of its own, so that stopping
        // the keeper can end it in order: SIGTERM (the worker leaves its
        // head with a goodbye), SIGKILL after a grace period.
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = oneshot::channel::<String>();
        self.kill = Some(stop_tx);
        actix::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                _ = stop_rx => {
                    if let Some(pid) = child.id() {
                        // SAFETY: SIGTERM to the worker process this task owns.
                        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                    }
                    match tokio::time::timeout(WORKER_GRACE, child.wait()).await {
                        Ok(status) => status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                        Err(_) => {
                            let _ = child.kill().await;
                            "killed after its grace period".to_owned()
                        }
                    }
                }
            };
            let _ = exit_tx.send(status);
        });
        ctx.spawn(exit_rx.into_actor(self).map(|status, _, ctx| {
            if let Ok(status) = status {
                tracing::info!("worker process exited ({status})");
            }
            ctx.stop();
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}
