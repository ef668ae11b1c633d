//! The worker role: a process of the pool owner's program, started by a
//! node agent, in which `#[parallel::main]` hands over to [`run_if_worker`]
//! instead of the program's `main`. It joins the head, introduces its
//! [`WorkerActor`], builds the registered worker type from the pool's init
//! data and runs jobs and updates, in the order they come, on a thread of
//! its own (user code never runs on the actor runtime's threads).
//!
//! The worker types are registered by the pool layer as [`WorkerKind`]s
//! (an inventory, like actors): the cluster only moves bytes.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use actix::Handler;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::id::ActorId;
use crate::remote::{ActorRef, Node};
use crate::transport::{JoinLine, Password};

use super::head::{HeadActor, head_id};
use super::message::*;

/// Jobs a worker may hold at once: the one it runs and one waiting, so the
/// next job is there when the current one ends.
pub const WORKER_CREDIT: u32 = 2;
/// How long a worker keeps trying to reach its head before it exits.
pub const HEAD_PATIENCE: Duration = Duration::from_secs(60);

/// Builds a worker from its pool's encoded init data (or says why not).
pub type StartWorker = fn(&[u8]) -> Result<Box<dyn JobRunner>, String>;

/// A worker type, type-erased: how the pool layer's registration
/// (`parallel::pool::register!`) tells the cluster what to run.
pub struct WorkerKind {
    /// Its name (the Rust type name), as pools ask for it.
    pub name: fn() -> &'static str,
    /// Builds a worker from its pool's encoded init data.
    pub start: StartWorker,
}

inventory::collect!(WorkerKind);

/// Finds the registered worker type `name`.
pub fn kind(name: &str) -> Option<&'static WorkerKind> {
    inventory::iter::<WorkerKind>
        .into_iter()
        .find(|k| (k.name)() == name)
}

/// Why a job gave no output (a panic that unwinds out of `run` is caught
/// by the worker, which then starts again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// The bytes were no valid job (or its output could not be encoded).
    Invalid(String),
    /// The job failed and the runner caught it (the worker goes on).
    Raised(Panic),
    /// The job may not run on this worker (its `depend` predicate said
    /// no): the head gives it to another.
    Unmet,
}

/// A built worker: runs encoded jobs and updates.
pub trait JobRunner: Send {
    /// Runs one encoded job: its encoded output, or why there is none.
    fn run(&mut self, job: &[u8]) -> Result<Vec<u8>, JobFailure>;
    /// Handles one encoded update.
    fn update(&mut self, update: &[u8]) -> Result<(), String>;
}

/// What the job thread is given, in order.
enum Work {
    Init {
        init: Vec<u8>,
        updates: Vec<(u64, Vec<u8>)>,
    },
    Job(JobOrder),
    Update(u64, Vec<u8>),
}

/// The worker's actor: what the head sends goes to the job thread, in order.
#[derive(crate::Actor)]
#[actor(messages(Jobs, Update), name = "parallel::cluster::WorkerActor")]
pub struct WorkerActor {
    work: std_mpsc::Sender<Work>,
}

impl Handler<Jobs> for WorkerActor {
    type Result = ();
    fn handle(&mut self, msg: Jobs, _: &mut actix::Context<Self>) {
        for job in msg.jobs {
            let _ = self.work.send(Work::Job(job));
        }
    }
}

impl Handler<Update> for WorkerActor {
    type Result = ();
    fn handle(&mut self, msg: Update, _: &mut actix::Context<Self>) {
        let _ = self.work.send(Work::Update(msg.seq, msg.update));
    }
}

/// What a worker process was started with (from the agent, in its
/// environment: see [`crate::config::WorkerEnv`]).
pub(crate) struct WorkerStart {
    pub(super) head: JoinLine,
    pub(super) pool: Uuid,
    pub(super) kind: String,
    pub(super) agent: ActorId,
}

/// In a process started as a worker, runs the worker and exits; elsewhere
/// returns at once. Called by `#[parallel::main]` before the program's `main`.
pub fn run_if_worker() {
    let Some(env) = &crate::config::environment().worker else {
        return;
    };
    let start = match parse(env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("para||el worker: {e}");
            std::process::exit(2);
        }
    };
    let Some(kind) = kind(&start.kind) else {
        let known: Vec<&str> = inventory::iter::<WorkerKind>
            .into_iter()
            .map(|k| (k.name)())
            .collect();
        eprintln!(
            "para||el worker: this program registers no worker type {:?} (it has {known:?}); register it with parallel::pool::register!",
            start.kind
        );
        std::process::exit(2);
    };
    let system = actix_rt::System::new();
    let code = system.block_on(serve(kind, start));
    std::process::exit(code);
}

fn parse(env: &crate::config::WorkerEnv) -> Result<WorkerStart, String> {
    let head = env
        .head
        .parse::<JoinLine>()
        .map_err(|e| format!("bad head join line: {e}"))?;
    let pool = env
        .pool
        .parse::<Uuid>()
        .map_err(|e| format!("bad pool id {:?}: {e}", env.pool))?;
    let agent = env
        .agent
        .parse::<Uuid>()
        .map(ActorId)
        .map_err(|e| format!("bad agent id {:?}: {e}", env.agent))?;
    Ok(WorkerStart {
        head,
        pool,
        kind: env.kind.clone(),
        agent,
    })
}

/// Joins the head (again after it restarted), runs jobs until the pool is
/// gone or the head stays away past [`HEAD_PATIENCE`]; the exit code.
async fn serve(kind: &'static WorkerKind, start: WorkerStart) -> i32 {
    let password = match Password::resolve() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("para||el worker: {e}");
            return 2;
        }
    };
    // An engine's node listens for its clients on every interface.
    let engine = start.kind == super::engine::ENGINE_KIND;
    let mut builder = Node::builder()
        .password(password)
        .listen(start.head.bind_to_reach());
    if engine {
        builder = builder.listen(std::net::SocketAddr::from((
            std::net::Ipv4Addr::UNSPECIFIED,
            0,
        )));
    }
    let node = match builder.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("para||el worker: cannot start its node: {e}");
            return 2;
        }
    };
    let engine = engine.then(|| super::engine::EngineSide::start(&node, start.head.addr));
    let (work_tx, work_rx) = std_mpsc::channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel::<String>();
    // Jobs wait in the channel until the job thread runs.
    let actor = node.spawn(WorkerActor {
        work: work_tx.clone(),
    });
    let trace = Trace {
        pool: start.pool,
        worker: actor.id(),
        node: node.id(),
    };
    let job_thread = std::thread::Builder::new()
        .name("para||el worker job".into())
        .spawn(move || job_thread(kind, trace, work_rx, done_tx, fatal_tx));
    if let Err(e) = job_thread {
        eprintln!("para||el worker: cannot start its job thread: {e}");
        return 2;
    }
    let (head_tx, head_rx) = watch::channel::<Option<ActorRef<HeadActor>>>(None);
    let sender = actix_rt::spawn(send_results(actor.id(), head_rx, done_rx));
    let mut first = true;
    let Some(mut term) = sigterm("worker") else {
        return 2;
    };
    let code = loop {
        let Some((remote, head)) = join_head(&node, &start.head, "worker").await else {
            break 1;
        };
        let hello = WorkerHello {
            pool: start.pool,
            worker: actor.clone(),
            agent: start.agent,
            credit: WORKER_CREDIT,
        };
        match head.ask(hello).await {
            Ok(WorkerWelcome::Start { init, updates }) => {
                if let Some(engine) = &engine
                    && !engine.hello(&head, start.pool, actor.id()).await
                {
                    break 0;
                }
                let _ = head_tx.send(Some(head.clone()));
                if first {
                    first = false;
                    let _ = work_tx.send(Work::Init { init, updates });
                } else {
                    for (seq, u) in updates {
                        let _ = work_tx.send(Work::Update(seq, u));
                    }
                }
            }
            Ok(WorkerWelcome::Gone) => break 0,
            Err(e) => {
                tracing::warn!("worker hello failed: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        tokio::select! {
            _ = term.recv() => break 0,
            _ = remote.closed() => {
                let _ = head_tx.send(None);
                tracing::info!("worker lost its head; joining again");
            }
            fatal = fatal_rx.recv() => {
                // Its results are sent before it goes (see `send_results`).
                if let Some(why) = fatal {
                    eprintln!("para||el worker: {why}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                break 101;
            }
        }
    };
    sender.abort();
    node.shutdown().await;
    code
}

/// Joins the head, trying for up to [`HEAD_PATIENCE`]: the link and the
/// head's actor, or `None` (said on standard error) when it stays away.
pub(super) async fn join_head(
    node: &Node,
    line: &JoinLine,
    role: &str,
) -> Option<(crate::remote::RemoteNode, ActorRef<HeadActor>)> {
    let since = Instant::now();
    loop {
        match node.join(line).await {
            Ok(remote) => {
                let head = ActorRef::<HeadActor>::remote(head_id(), remote.link())
                    .with_timeout(Duration::from_secs(30));
                return Some((remote, head));
            }
            Err(e) if since.elapsed() < HEAD_PATIENCE => {
                tracing::debug!("{role} cannot reach its head yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                eprintln!("para||el {role}: head unreachable for {HEAD_PATIENCE:?}, exiting: {e}");
                return None;
            }
        }
    }
}

/// SIGTERM as a stream (how a node agent asks a worker or engine to stop).
pub(super) fn sigterm(role: &str) -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("para||el {role}: cannot watch for SIGTERM: {e}");
            None
        }
    }
}

/// Sends what the job thread finished to the current head, batched: all
/// that is there at once goes in one [`Done`].
async fn send_results(
    worker: ActorId,
    mut head: watch::Receiver<Option<ActorRef<HeadActor>>>,
    mut done: mpsc::UnboundedReceiver<JobOutcome>,
) {
    while let Some(first) = done.recv().await {
        let mut results = vec![first];
        while let Ok(more) = done.try_recv() {
            results.push(more);
        }
        // Between heads (the link dropped, the hello to the next one is
        // under way) the results wait: the next head may already have handed
        // out these jobs again to this worker, before its hello was
        // answered, and waits for them. It takes each result of a job it
        // gave this worker and drops the rest as late.
        let Some(to) = head
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|current| current.clone())
        else {
            return; // the worker is exiting
        };
        let msg = Done { worker, results };
        if let Err(e) = to.ask(msg).await {
            tracing::warn!(
                "results not delivered to the head ({e}); it hands those jobs out again"
            );
        }
    }
}

/// The job thread: builds the worker, then runs jobs and updates in order.
/// What a job's log span names: its pool, the worker and its node.
#[derive(Clone, Copy)]
struct Trace {
    pool: Uuid,
    worker: ActorId,
    node: crate::id::NodeId,
}

fn job_thread(
    kind: &'static WorkerKind,
    trace: Trace,
    work: std_mpsc::Receiver<Work>,
    done: mpsc::UnboundedSender<JobOutcome>,
    fatal: mpsc::UnboundedSender<String>,
) {
    let mut runner: Option<Box<dyn JobRunner>> = None;
    let mut applied = 0u64;
    let mut early = Vec::new();
    while let Ok(item) = work.recv() {
        match item {
            Work::Init { init, updates } => {
                match guarded(|| (kind.start)(&init)) {
                    Ok(Ok(r)) => runner = Some(r),
                    Ok(Err(e)) => {
                        let _ = fatal.send(format!("init data is not valid for this worker: {e}"));
                        return;
                    }
                    Err(panic) => {
                        let _ = fatal.send(format!("the worker's init panicked: {panic}"));
                        return;
                    }
                }
                let queued = std::mem::take(&mut early);
                for w in updates
                    .into_iter()
                    .map(|(s, u)| Work::Update(s, u))
                    .chain(queued)
                {
                    if !step(
                        runner.as_deref_mut(),
                        w,
                        &trace,
                        &mut applied,
                        &done,
                        &fatal,
                    ) {
                        return;
                    }
                }
            }
            other if runner.is_none() => early.push(other),
            other => {
                if !step(
                    runner.as_deref_mut(),
                    other,
                    &trace,
                    &mut applied,
                    &done,
                    &fatal,
                ) {
                    return;
                }
            }
        }
    }
}

/// Runs one job or update; false once the worker must exit (a panic).
fn step(
    runner: Option<&mut (dyn JobRunner + 'static)>,
    work: Work,
    trace: &Trace,
    applied: &mut u64,
    done: &mpsc::UnboundedSender<JobOutcome>,
    fatal: &mpsc::UnboundedSender<String>,
) -> bool {
    let Some(runner) = runner else { return true };
    match work {
        Work::Init { .. } => true,
        Work::Update(seq, bytes) => {
            if seq <= *applied {
                return true;
            }
            *applied = seq;
            match guarded(|| runner.update(&bytes)) {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::error!(
                        "update {seq} is not valid for this worker and was skipped: {e}"
                    );
                    true
                }
                Err(panic) => {
                    let _ = fatal.send(format!("handle_update panicked on update {seq}: {panic}"));
                    false
                }
            }
        }
        Work::Job(order) => {
            // What the job logs carries its pool, index, try, worker and node.
            let span = tracing::info_span!(
                "job",
                pool = %trace.pool,
                job = order.index,
                attempt = order.attempt,
                worker = %trace.worker,
                node = %trace.node
            );
            let _in_job = span.enter();
            tracing::debug!("job started");
            let started_us = unix_micros();
            let capture = crate::process::Capture::begin();
            let ran = guarded(|| runner.run(&order.job));
            let printed = capture.end();
            let (output, ok) = match ran {
                Ok(Ok(bytes)) => (Outcome::Output(bytes), true),
                Ok(Err(JobFailure::Invalid(e))) => (Outcome::Invalid(e), true),
                Ok(Err(JobFailure::Raised(panic))) => (Outcome::Panicked(panic), true),
                Ok(Err(JobFailure::Unmet)) => (Outcome::Unmet, true),
                Err(panic) => (Outcome::Panicked(panic), false),
            };
            let gave_output = matches!(output, Outcome::Output(_));
            let _ = done.send(JobOutcome {
                index: order.index,
                attempt: order.attempt,
                output,
                meta: JobMeta {
                    engine: None,
                    started_us,
                    completed_us: unix_micros(),
                    printed,
                },
            });
            tracing::debug!(output = gave_output, "job finished");
            if !ok {
                let _ = fatal.send(format!(
                    "job {} panicked; the node agent starts this worker again",
                    order.index
                ));
            }
            ok
        }
    }
}

/// Microseconds since the Unix epoch by this machine's clock.
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Runs `f`, catching a panic with its message and place.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    let scope = crate::actor::HandlerScope::enter();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| Panic {
        message: crate::actor::panic_text(payload.as_ref()),
        location: scope.seen().and_then(|s| s.location),
    })
}
