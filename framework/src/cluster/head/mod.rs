//! The head: one actor, [`HeadActor`], registered under [`head_id`] on the
//! head's node. It keeps the directory (node agents, workers, pools), the
//! scheduler (each pool's queue, handed to its workers up to their credit)
//! and the ledger (every accepted job, unread result and update, in redb),
//! and it stores the pools' programs for the agents to fetch.
//!
//! Exactly once: every job handed to a worker is a numbered try; a result
//! is taken only from the try the head handed out last, so a late result
//! from a worker the head gave up on is dropped; a taken result is written
//! to the ledger before it goes to the pool, and the job leaves the queue
//! for good. Jobs of a worker that goes down (its process, its node) go back
//! to the front of the queue.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::{ActorFutureExt, AsyncContext, Handler, WrapFuture};
use rkyv::{Archive, Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::id::{ActorId, NodeId};
use crate::launch::program::{Program, ProgramStore, Receiving, StagedFile};

use crate::remote::ActorRef;

use super::agent::AgentActor;
use super::ledger::{Ledger, LedgerOp};
use super::message::*;
use super::worker::WorkerActor;

/// The id of a cluster's head actor: the same in every process.
pub fn head_id() -> ActorId {
    ActorId::named("para||el cluster", "head")
}

/// How many times a job is handed out again after its worker went down
/// while running it, before it fails with [`Outcome::Died`].
pub const MAX_TRIES: u32 = 5;
/// How long a pool whose owner went away (without closing it) is kept for
/// the owner to come back.
pub const OWNER_GRACE: Duration = Duration::from_secs(120);
/// Most jobs one worker may hold (tiny jobs: a batch per round trip).
pub const MAX_CREDIT: usize = 256;
/// A worker whose jobs come back sooner than this after they were handed
/// out gets twice the credit (it idles between round trips)...
const CREDIT_GROW: Duration = Duration::from_millis(4);
/// ... and one whose jobs take longer than this gets half (down to what it
/// asked for): at most this much work waits on one worker, so a node that
/// joins or dies moves little.
const CREDIT_SHRINK: Duration = Duration::from_millis(20);
/// How often the head looks for pools whose owner did not come back.
const TICK: Duration = Duration::from_secs(1);
/// How long a copy made for [`StageLocal`] waits for the [`OpenPool`]
/// that names it before it is removed.
const STAGE_PATIENCE: Duration = Duration::from_secs(60);
/// Most copies made for [`StageLocal`] that wait at once.
const MAX_STAGED: usize = 16;

/// The head's settings.
#[derive(Clone, Debug)]
pub struct HeadSettings {
    /// Most bytes of queued and running jobs per pool (default 512 MiB);
    /// a submit beyond waits, one job beyond is refused.
    pub queue_limit: u64,
    /// Programs the head accepts (empty: any from a peer with the password).
    pub allow: Vec<[u8; 32]>,
    /// Whether programs are copied as files between processes of the head's
    /// own machine (default) rather than always sent over the network.
    pub local_copies: bool,
    /// Which worker gets the next job (default [`Scheduler::LeastLoad`]).
    pub scheduler: Scheduler,
    /// Most bytes of delivered results an engine set keeps for the hub's
    /// queries (default 256 MiB); past it the oldest are dropped.
    pub results_limit: u64,
    /// Whether the head records jobs per second and the recent jobs for
    /// the dashboard (default true).
    pub record_activity: bool,
}

impl Default for HeadSettings {
    fn default() -> Self {
        Self {
            queue_limit: 512 << 20,
            allow: Vec::new(),
            local_copies: true,
            scheduler: Scheduler::default(),
            results_limit: 256 << 20,
            record_activity: true,
        }
    }
}

/// A pool's lasting record, as the ledger stores it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub(super) struct PoolRecord {
    pub program: Program,
    pub kind: String,
    pub init: Vec<u8>,
}

/// The pool owner's side: where the head sends a pool's results. It hands
/// them to the [`crate::pool`] handle over a channel.
#[derive(crate::Actor)]
#[actor(messages(Results), name = "parallel::cluster::PoolOwner")]
pub struct PoolOwner {
    /// Where results go.
    pub(crate) results: tokio::sync::mpsc::UnboundedSender<Results>,
}

impl Handler<Results> for PoolOwner {
    type Result = ();
    fn handle(&mut self, msg: Results, _: &mut actix::Context<Self>) {
        let _ = self.results.send(msg);
    }
}

struct WorkerEntry {
    pool: Uuid,
    actor: ActorRef<WorkerActor>,
    agent: ActorId,
    /// What it asked for: the least credit it gets.
    min_credit: usize,
    /// Jobs it may hold now (adapted to how long its jobs take).
    credit: usize,
    holding: HashSet<u64>,
    /// Jobs it finished.
    completed: u64,
    /// When it was last given a job (the head's job counter; 0: never).
    last_given: u64,
}

struct AgentEntry {
    actor: ActorRef<AgentActor>,
    /// What its workers offer.
    resources: Vec<String>,
    node: NodeId,
    host: String,
    workers: u32,
    gpus: u32,
    os: String,
    arch: String,
}

/// The head's actor (see the module docs).
#[derive(crate::Actor)]
#[actor(
    messages(
        AgentHello,
        FetchChunk,
        WorkerHello,
        Done,
        OpenPool,
        Upload,
        StageLocal,
        UploadLocal,
        Submit,
        PushUpdate,
        ResultsRead,
        ClosePool,
        Status,
        StopHead,
        EngineHello,
        Engines,
        QueueStatus,
        Abort,
        HubQuery,
        PurgeResults,
        ShutdownEngines
    ),
    name = "parallel::cluster::HeadActor",
    lifecycle
)]
pub struct HeadActor {
    ledger: Ledger,
    programs: ProgramStore,
    settings: HeadSettings,
    agents: HashMap<ActorId, AgentEntry>,
    workers: HashMap<ActorId, WorkerEntry>,
    pools: HashMap<Uuid, PoolEntry>,
    uploads: HashMap<[u8; 32], Receiving>,
    /// Programs one pool is uploading now (others of the same program wait).
    uploading: HashSet<[u8; 32]>,
    /// Programs whose stored file this head wrote or hashed: the only ones
    /// it lets agents fetch (its store is not flushed to disk); a pool runs
    /// once its program is here.
    verified: HashSet<[u8; 32]>,
    /// Copies of programs on the head's machine ([`StageLocal`]) by token,
    /// and when each was made, until an [`OpenPool`] names them.
    staged: HashMap<Uuid, (StagedFile, Instant)>,
    /// Tokens given to pools on the head's machine for a file they hand
    /// over ([`StageLocal`]), and when.
    handoffs: HashMap<Uuid, Instant>,
    /// The abstract name of the socket they hand it over on, once bound.
    handoff_socket: Option<String>,
    stop: watch::Sender<Option<bool>>,
    /// The join line it advertises.
    join_line: String,
    /// Counts jobs handed out (for the `lru` scheduler).
    handed: u64,
    /// For the random schedulers.
    rng: scheduler::Rng,
    /// What happened, for the dashboard and `/metrics`.
    activity: super::activity::Activity,
}

impl actix::Actor for HeadActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.settings.local_copies
            && let Some(listener) = handoff::Listener::bind()
        {
            self.handoff_socket = Some(listener.name.clone());
            listener.serve(self, ctx);
        }
        ctx.run_interval(TICK, |act, ctx| {
            act.tick();
            act.release_all(ctx);
        });
    }
}

impl HeadActor {
    /// A head over `ledger` and `programs`, with the pools the ledger holds;
    /// `stop` is set when a [`StopHead`] arrives (`Some(true)`: nodes too).
    pub(super) fn new(
        ledger: Ledger,
        programs: ProgramStore,
        settings: HeadSettings,
        stop: watch::Sender<Option<bool>>,
        join_line: String,
    ) -> Result<Self, super::ledger::LedgerError> {
        let mut pools = HashMap::new();
        let mut verified = HashSet::new();
        // A new ledger (a fresh data directory) is still being created:
        // it holds nothing yet, and the head need not wait for it.
        let states = if ledger.is_new() {
            Vec::new()
        } else {
            ledger.load()?
        };
        for state in states {
            let record = match crate::wire::decode_owned::<PoolRecord>(&state.record) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(pool = %Uuid::from_bytes(state.pool), "a pool in the ledger cannot be read ({e}); it is skipped");
                    continue;
                }
            };
            // The store is not flushed to disk: a file from before the head
            // stopped is hashed again before agents may fetch it (a torn
            // one is removed, and its owner sends it again).
            let sha = record.program.sha256;
            if !verified.contains(&sha) && matches!(programs.get(&sha, true), Ok(Some(_))) {
                verified.insert(sha);
            }
            let pool = Uuid::from_bytes(state.pool);
            pools.insert(pool, PoolEntry::load(record, state));
        }
        Ok(Self {
            ledger,
            programs,
            agents: HashMap::new(),
            workers: HashMap::new(),
            pools,
            uploads: HashMap::new(),
            uploading: HashSet::new(),
            verified,
            staged: HashMap::new(),
            handoffs: HashMap::new(),
            handoff_socket: None,
            stop,
            join_line,
            handed: 0,
            rng: scheduler::Rng::new(Uuid::new_v4().as_u64_pair().0),
            activity: super::activity::Activity::new(settings.record_activity),
            settings,
        })
    }

    /// Drops pools whose owner stayed away past [`OWNER_GRACE`].
    fn tick(&mut self) {
        let now = Instant::now();
        self.staged
            .retain(|_, (_, at)| now.duration_since(*at) < STAGE_PATIENCE);
        self.handoffs
            .retain(|_, at| now.duration_since(*at) < STAGE_PATIENCE);
        let stale: Vec<Uuid> = self
            .pools
            .iter()
            .filter(|(_, p)| {
                p.owner.is_none()
                    && p.owner_gone_since
                        .is_some_and(|t| now.duration_since(t) > OWNER_GRACE)
            })
            .map(|(id, _)| *id)
            .collect();
        for pool in stale {
            tracing::warn!(%pool, "pool dropped: its owner did not come back within {OWNER_GRACE:?}");
            self.remove_pool(pool);
        }
    }

    fn remove_pool(&mut self, pool: Uuid) {
        let Some(entry) = self.pools.remove(&pool) else {
            return;
        };
        for (_, reply) in entry.waiting {
            let _ = reply.send(Submitted::Refused("the pool was closed".into()));
        }
        for worker in entry.workers {
            self.workers.remove(&worker);
        }
        for agent in self.agents.values() {
            let _ = agent.actor.try_tell(StopProgram { pool });
        }
        let write = self
            .ledger
            .write(vec![LedgerOp::RemovePool { pool: key(pool) }]);
        actix::spawn(async move {
            if let Err(e) = write.await {
                tracing::error!(%pool, "could not remove a closed pool from the ledger: {e}");
            }
        });
    }

    /// Tells every agent (or one) to run every pool whose program is stored.
    fn run_pools_on(&self, agent: Option<ActorId>) {
        for (pool, entry) in &self.pools {
            if !self.verified.contains(&entry.record.program.sha256) {
                continue;
            }
            for (id, a) in &self.agents {
                if agent.is_some_and(|only| only != *id) {
                    continue;
                }
                let program = &entry.record.program;
                if a.os != program.os || a.arch != program.arch {
                    tracing::warn!(
                        host = %a.host,
                        "node {} is {}/{} and cannot run pool {pool}'s program, built for {}/{}",
                        a.host, a.os, a.arch, program.os, program.arch
                    );
                    continue;
                }
                let order = RunProgram {
                    pool: *pool,
                    program: entry.record.program.clone(),
                    kind: entry.record.kind.clone(),
                    local: self.settings.local_copies.then(|| LocalCopy {
                        host_key: crate::id::host_key(),
                        path: self
                            .programs
                            .path_of(&entry.record.program.sha256)
                            .display()
                            .to_string(),
                    }),
                };
                if let Err(e) = a.actor.try_tell(order) {
                    tracing::warn!(host = %a.host, "could not ask a node to run a pool: {e}");
                }
            }
        }
    }

    /// A program is stored: its pools start on every agent.
    fn program_stored(&mut self, sha: [u8; 32]) {
        self.uploading.remove(&sha);
        self.verified.insert(sha);
        self.run_pools_on(None);
    }

    /// Hands queued jobs of `pool` to its workers, up to each one's credit.
    fn dispatch(&mut self, pool: Uuid) {
        let Some(entry) = self.pools.get_mut(&pool) else {
            return;
        };
        if entry.unread_bytes >= self.settings.queue_limit {
            // The owner reads too slowly (or is away): results wait, so do jobs.
            return;
        }
        // Who may take jobs now, then one job at a time to the worker the
        // scheduler picks.
        let (ids, mut cands): (Vec<ActorId>, Vec<scheduler::Candidate>) = entry
            .workers
            .iter()
            .filter_map(|id| {
                let w = self.workers.get(id)?;
                let held = w.holding.len();
                let free = w.credit.saturating_sub(held);
                Some((
                    *id,
                    scheduler::Candidate {
                        free,
                        held,
                        last: w.last_given,
                    },
                ))
            })
            .unzip();
        let mut orders: Vec<Vec<JobOrder>> = vec![Vec::new(); ids.len()];
        // Jobs pinned to workers without room (or not connected) wait, in
        // order, while the others go on.
        let mut skipped = Vec::new();
        while let Some(index) = entry.pending.pop_front() {
            let k = match entry.pinned.get(&index) {
                Some(allowed) => {
                    // The scheduler's pick among the allowed ones.
                    let only: Vec<scheduler::Candidate> = cands
                        .iter()
                        .zip(&ids)
                        .map(|(c, id)| scheduler::Candidate {
                            free: if allowed.contains(id) { c.free } else { 0 },
                            ..*c
                        })
                        .collect();
                    match self.settings.scheduler.pick(&only, &mut self.rng) {
                        Some(k) => k,
                        None => {
                            skipped.push(index);
                            continue;
                        }
                    }
                }
                None => match self.settings.scheduler.pick(&cands, &mut self.rng) {
                    Some(k) => k,
                    None => {
                        skipped.push(index);
                        break;
                    }
                },
            };
            let Some(job) = entry.jobs.remove(&index) else {
                continue;
            };
            let attempt = {
                let tries = entry.tries.entry(index).or_insert(0);
                *tries += 1;
                *tries
            };
            self.handed += 1;
            let c = &mut cands[k];
            c.free -= 1;
            c.held += 1;
            c.last = self.handed;
            tracing::debug!(%pool, job = index, attempt, worker = %ids[k], "job handed out");
            orders[k].push(JobOrder {
                index,
                attempt,
                job: job.clone(),
            });
            entry.running.insert(
                index,
                RunningJob {
                    worker: ids[k],
                    attempt,
                    job,
                    sent: Instant::now(),
                },
            );
        }
        for index in skipped.into_iter().rev() {
            entry.pending.push_front(index);
        }
        let handed: usize = orders.iter().map(Vec::len).sum();
        self.activity
            .started(handed as u64, super::activity::unix_now());
        for ((worker_id, orders), cand) in ids.into_iter().zip(orders).zip(cands) {
            if orders.is_empty() {
                continue;
            }
            let Some(worker) = self.workers.get_mut(&worker_id) else {
                continue;
            };
            worker.last_given = cand.last;
            worker.holding.extend(orders.iter().map(|o| o.index));
            if let Err(e) = worker.actor.try_tell(Jobs { jobs: orders }) {
                tracing::warn!(worker = %worker_id, "could not hand jobs to a worker ({e}); they go back to the queue");
                let Jobs { jobs } = e.into_message();
                for order in jobs.into_iter().rev() {
                    worker.holding.remove(&order.index);
                    if let Some(run) = entry.running.remove(&order.index) {
                        entry.jobs.insert(order.index, run.job);
                        entry.pending.push_front(order.index);
                    }
                }
            }
        }
    }

    /// A worker went down: what it held goes back to the front of its queue.
    fn worker_down(&mut self, worker: ActorId, why: String, ctx: &mut actix::Context<Self>) {
        let Some(entry) = self.workers.remove(&worker) else {
            return;
        };
        let Some(pool) = self.pools.get_mut(&entry.pool) else {
            return;
        };
        pool.workers.retain(|w| *w != worker);
        let mut held: Vec<u64> = entry.holding.into_iter().collect();
        held.sort_unstable();
        let mut failed = Vec::new();
        for index in held.into_iter().rev() {
            let Some(run) = pool.running.remove(&index) else {
                continue;
            };
            let tries = pool.max_tries(index);
            let output = if pool.stranded(index, worker, &self.workers) {
                Outcome::Impossible(format!(
                    "the engines it may run on (its targets, or where the tasks it follows ran) went down; the last while running it ({why})"
                ))
            } else if run.attempt >= tries {
                Outcome::Died(match pool.flags.get(&index).and_then(|f| f.retries) {
                    Some(retries) => format!(
                        "its engine went down while running it, {tries} times (it had {retries} retries: ask for more with .retries(..)); last: {why}"
                    ),
                    None => {
                        format!("its worker went down {tries} times while running it (last: {why})")
                    }
                })
            } else {
                tracing::debug!(pool = %entry.pool, job = index, %worker, "job queued again: its worker went down");
                pool.jobs.insert(index, run.job);
                pool.pending.push_front(index);
                self.activity.retried(1);
                continue;
            };
            pool.queued_bytes = pool.queued_bytes.saturating_sub(run.job.len() as u64);
            failed.push(JobOutcome {
                index,
                attempt: run.attempt,
                output,
                meta: JobMeta::default(),
            });
        }
        // Queued jobs that may run only on it (and others gone) cannot run.
        let stranded: Vec<u64> = pool
            .pinned
            .keys()
            .filter(|i| pool.jobs.contains_key(i) && pool.stranded(**i, worker, &self.workers))
            .copied()
            .collect();
        for index in stranded {
            failed.push(pool.drop_job(
                index,
                Outcome::Impossible(format!(
                    "the engines it may run on (its targets, or where the tasks it follows ran) went down ({why})"
                )),
            ));
        }
        if !failed.is_empty() {
            self.finish(entry.pool, failed, ctx);
        }
        tracing::info!(%worker, pool = %entry.pool, "worker down ({why}); its jobs go back to the queue");
        self.dispatch(entry.pool);
    }

    /// Takes results: into the ledger, then to the owner.
    fn finish(&mut self, pool: Uuid, outcomes: Vec<JobOutcome>, ctx: &mut actix::Context<Self>) {
        let Some(entry) = self.pools.get_mut(&pool) else {
            return;
        };
        let mut ops = Vec::with_capacity(outcomes.len());
        let mut taken = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let finished = Finished {
                output: o.output,
                meta: o.meta,
            };
            let bytes = match crate::wire::encode(&finished) {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    tracing::error!(%pool, index = o.index, "cannot store a result: {e}");
                    continue;
                }
            };
            ops.push(LedgerOp::FinishJob {
                pool: key(pool),
                index: o.index,
                result: bytes,
            });
            entry.tries.remove(&o.index);
            entry.finishing.insert(o.index);
            entry.flags.remove(&o.index);
            entry.pinned.remove(&o.index);
            entry.refused.remove(&o.index);
            taken.push((o.index, finished));
        }
        let write = self.ledger.write(ops);
        let fut = write.into_actor(self).map(move |res, act: &mut Self, ctx| {
            if let Err(e) = res {
                tracing::error!(%pool, "results not written to the ledger ({e}); they are kept in memory only");
            }
            let Some(entry) = act.pools.get_mut(&pool) else {
                return;
            };
            entry.done += taken.len() as u64;
            let failed = taken
                .iter()
                .filter(|(_, o)| !matches!(o.output, Outcome::Output(_)))
                .count() as u64;
            entry.failed += failed;
            act.activity.finished(
                taken.len() as u64,
                failed,
                super::activity::unix_now(),
            );
            for (index, outcome) in &taken {
                entry.finishing.remove(index);
                entry.unread_bytes += outcome_bytes(outcome);
                entry.unread.insert(*index, outcome.clone());
            }
            if let Some(owner) = &entry.owner {
                let _ = owner.try_tell(Results {
                    pool,
                    results: taken,
                });
            }
            act.admit_waiting(pool, ctx);
            // Tasks that waited for these may run now (or never).
            act.release(pool, ctx);
        });
        ctx.spawn(fut);
    }

    /// Accepts waiting submits of `pool` while there is room.
    fn admit_waiting(&mut self, pool: Uuid, ctx: &mut actix::Context<Self>) {
        loop {
            let Some(entry) = self.pools.get_mut(&pool) else {
                return;
            };
            let Some((submit, _)) = entry.waiting.front() else {
                return;
            };
            let bytes: u64 = submit.jobs.iter().map(|(_, j)| j.len() as u64).sum();
            if entry.queued_bytes > 0 && entry.queued_bytes + bytes > self.settings.queue_limit {
                return;
            }
            let Some((submit, reply)) = entry.waiting.pop_front() else {
                return;
            };
            self.accept(submit, reply, ctx);
        }
    }

    /// Queues `submit`'s jobs and answers once they are in the ledger.
    fn accept(
        &mut self,
        submit: Submit,
        reply: oneshot::Sender<Submitted>,
        ctx: &mut actix::Context<Self>,
    ) {
        let pool = submit.pool;
        let Some(entry) = self.pools.get_mut(&pool) else {
            let _ = reply.send(Submitted::Refused("no such pool".into()));
            return;
        };
        // Flags that change nothing are not kept.
        let flags = submit.flags.filter(|f| f.waits() || f.retries.is_some());
        let stored_flags = match flags.as_ref().map(crate::wire::encode) {
            Some(Ok(bytes)) => Some(bytes.to_vec()),
            Some(Err(e)) => {
                let _ = reply.send(Submitted::Refused(format!(
                    "cannot record the tasks' flags: {e}"
                )));
                return;
            }
            None => None,
        };
        let waits = flags.as_ref().is_some_and(TaskFlags::waits);
        let mut ops = Vec::with_capacity(submit.jobs.len());
        let before = entry.accepted;
        for (index, job) in submit.jobs {
            if entry.knows(index) {
                continue;
            }
            tracing::debug!(%pool, job = index, "job accepted");
            entry.accepted += 1;
            entry.queued_bytes += job.len() as u64;
            ops.push(LedgerOp::AcceptJob {
                pool: key(pool),
                index,
                job: job.clone(),
            });
            if let (Some(flags), Some(bytes)) = (&flags, &stored_flags) {
                ops.push(LedgerOp::PutFlags {
                    pool: key(pool),
                    index,
                    flags: bytes.clone(),
                });
                entry.flags.insert(index, flags.clone());
            }
            if waits {
                entry.blocked.insert(index, Instant::now());
            } else {
                entry.pending.push_back(index);
            }
            entry.jobs.insert(index, job);
        }
        let accepted = entry.accepted - before;
        self.activity
            .submitted(accepted, super::activity::unix_now());
        let write = self.ledger.write(ops);
        actix::spawn(async move {
            let answer = match write.await {
                Ok(()) => Submitted::Accepted,
                Err(e) => Submitted::Refused(format!(
                    "the head could not write the jobs to its ledger: {e}"
                )),
            };
            let _ = reply.send(answer);
        });
        if waits {
            self.release(pool, ctx);
            if let Some(timeout) = flags.filter(|f| f.timeout_ms > 0) {
                let after = std::time::Duration::from_millis(timeout.timeout_ms);
                ctx.run_later(after, move |act, ctx| act.release(pool, ctx));
            }
        } else {
            self.dispatch(pool);
        }
    }

    fn watch_worker(&self, worker: ActorRef<WorkerActor>, ctx: &mut actix::Context<Self>) {
        let id = worker.id();
        let down = async move { worker.watch().await };
        ctx.spawn(down.into_actor(self).map(move |down, act, ctx| {
            act.worker_down(id, down.reason.to_string(), ctx);
        }));
    }

    fn report(&self) -> StatusReport {
        let mut connected: HashMap<ActorId, u32> = HashMap::new();
        for w in self.workers.values() {
            *connected.entry(w.agent).or_default() += 1;
        }
        let mut nodes: Vec<NodeRow> = self
            .agents
            .iter()
            .map(|(id, a)| NodeRow {
                node: a.node,
                host: a.host.clone(),
                workers: a.workers,
                gpus: a.gpus,
                connected: connected.get(id).copied().unwrap_or(0),
                up: false,
                cpu_percent: None,
                rss_bytes: None,
            })
            .collect();
        nodes.sort_by(|a, b| a.host.cmp(&b.host));
        let pools = self.pool_rows();
        StatusReport {
            join_line: self.join_line.clone(),
            totals: self.job_totals(&pools),
            nodes,
            pools,
            gpus: Vec::new(),
        }
    }

    /// Every pool's row, by id.
    fn pool_rows(&self) -> Vec<PoolRow> {
        let mut pools: Vec<PoolRow> = self
            .pools
            .iter()
            .map(|(id, p)| PoolRow {
                pool: *id,
                kind: p.record.kind.clone(),
                // An engine is one of the pool's workers too: counted once.
                workers: p.workers.len() as u32,
                queued: (p.pending.len() + p.blocked.len()) as u64,
                running: p.running.len() as u64,
                submitted: p.accepted,
                done: p.done,
                failed: p.failed,
                lost: p.lost(),
                unread: p.unread.len() as u64,
                queued_bytes: p.queued_bytes,
                owner_connected: p.owner.is_some(),
            })
            .collect();
        pools.sort_by_key(|p| p.pool);
        pools
    }

    /// The activity's totals, with the jobs lost over `pools`.
    fn job_totals(&self, pools: &[PoolRow]) -> JobTotals {
        let t = self.activity.totals();
        JobTotals {
            submitted: t.submitted,
            started: t.started,
            done: t.done,
            failed: t.failed,
            retries: t.retries,
            lost: pools.iter().map(|p| p.lost).sum(),
        }
    }
}

use entry::{PoolEntry, RunningJob, key, outcome_bytes};

mod deps;
mod entry;
mod handlers;
mod handoff;
mod picture;
mod scheduler;

pub use picture::{HeadPicture, USAGE_DEADLINE, Watch};
pub use scheduler::Scheduler;

#[cfg(test)]
mod tests;
