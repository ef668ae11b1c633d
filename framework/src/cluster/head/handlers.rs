//! The head's handlers: what it does with each message (see the parent
//! module for the model).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::{ActorFutureExt, AsyncContext, Handler, Response, WrapFuture};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::launch::program::{CHUNK, ProgramError};

use super::super::ledger::LedgerOp;
use super::super::message::*;
use super::{
    AgentEntry, CREDIT_GROW, CREDIT_SHRINK, HeadActor, MAX_CREDIT, OWNER_GRACE, PoolEntry,
    PoolRecord, WorkerEntry, key, outcome_bytes,
};

impl Handler<AgentHello> for HeadActor {
    type Result = actix::MessageResult<AgentHello>;

    fn handle(&mut self, msg: AgentHello, ctx: &mut actix::Context<Self>) -> Self::Result {
        let id = msg.agent.id();
        tracing::info!(host = %msg.host, workers = msg.workers, "node joined");
        let agent = msg.agent.clone();
        self.agents.insert(
            id,
            AgentEntry {
                node: agent.node(),
                actor: msg.agent,
                host: msg.host,
                workers: msg.workers,
                gpus: msg.gpus,
                resources: msg.resources,
                os: msg.os,
                arch: msg.arch,
            },
        );
        let down = async move { agent.watch().await };
        ctx.spawn(down.into_actor(self).map(move |down, act, _| {
            if let Some(a) = act.agents.remove(&id) {
                tracing::info!(host = %a.host, "node left ({})", down.reason);
            }
        }));
        // The agent learns of the pools once it has this answer.
        ctx.run_later(Duration::from_millis(0), move |act, _| {
            act.run_pools_on(Some(id))
        });
        actix::MessageResult(AgentWelcome::Joined)
    }
}

impl Handler<FetchChunk> for HeadActor {
    type Result = Response<Chunk>;

    fn handle(&mut self, msg: FetchChunk, _: &mut actix::Context<Self>) -> Self::Result {
        let store = self.programs.clone();
        Response::fut(async move {
            let read = tokio::task::spawn_blocking(move || {
                store.read_chunk(&msg.sha256, msg.offset, CHUNK)
            })
            .await;
            match read {
                Ok(Ok(bytes)) => Chunk::Bytes(bytes),
                Ok(Err(e)) => Chunk::Missing(e.to_string()),
                Err(e) => Chunk::Missing(format!("reading the program failed: {e}")),
            }
        })
    }
}

impl Handler<WorkerHello> for HeadActor {
    type Result = actix::MessageResult<WorkerHello>;

    fn handle(&mut self, msg: WorkerHello, ctx: &mut actix::Context<Self>) -> Self::Result {
        let Some(pool) = self.pools.get_mut(&msg.pool) else {
            return actix::MessageResult(WorkerWelcome::Gone);
        };
        let id = msg.worker.id();
        if !pool.workers.contains(&id) {
            pool.workers.push(id);
        }
        let welcome = WorkerWelcome::Start {
            init: pool.record.init.clone(),
            updates: pool.updates.clone(),
        };
        self.workers.insert(
            id,
            WorkerEntry {
                pool: msg.pool,
                actor: msg.worker.clone(),
                agent: msg.agent,
                min_credit: msg.credit.max(1) as usize,
                credit: msg.credit.max(1) as usize,
                holding: HashSet::new(),
                completed: 0,
                last_given: 0,
            },
        );
        self.watch_worker(msg.worker, ctx);
        let pool = msg.pool;
        ctx.run_later(Duration::from_millis(0), move |act, _| act.dispatch(pool));
        actix::MessageResult(welcome)
    }
}

impl Handler<Done> for HeadActor {
    type Result = ();

    fn handle(&mut self, msg: Done, ctx: &mut actix::Context<Self>) {
        let Some(worker) = self.workers.get_mut(&msg.worker) else {
            tracing::debug!(worker = %msg.worker, "results of a worker the head gave up on are dropped");
            return;
        };
        let pool_id = worker.pool;
        let Some(pool) = self.pools.get_mut(&pool_id) else {
            return;
        };
        // The engine this worker is (none for a pool's worker).
        let engine = pool
            .engines
            .iter()
            .find(|e| e.worker == msg.worker)
            .map(|e| e.id);
        let mut taken = Vec::with_capacity(msg.results.len());
        for mut outcome in msg.results {
            // Which engine ran it (its metadata, and a panic's error, say so).
            outcome.meta.engine = engine;
            let current = pool
                .running
                .get(&outcome.index)
                .is_some_and(|r| r.worker == msg.worker && r.attempt == outcome.attempt);
            if !current {
                tracing::debug!(
                    index = outcome.index,
                    "a late result of an earlier try is dropped"
                );
                continue;
            }
            if matches!(outcome.output, Outcome::Unmet) {
                // Its `depend` predicate said no here: another worker.
                worker.holding.remove(&outcome.index);
                if let Some(failed) = pool.unmet(outcome.index, msg.worker) {
                    taken.push(failed);
                }
                continue;
            }
            if let Some(run) = pool.running.remove(&outcome.index) {
                pool.queued_bytes = pool.queued_bytes.saturating_sub(run.job.len() as u64);
                let took = run.sent.elapsed();
                if took < CREDIT_GROW && !pool.pending.is_empty() {
                    worker.credit = (worker.credit * 2).min(MAX_CREDIT);
                } else if took > CREDIT_SHRINK {
                    worker.credit = (worker.credit / 2).max(worker.min_credit);
                }
            }
            tracing::debug!(pool = %pool_id, job = outcome.index, attempt = outcome.attempt, worker = %msg.worker, "result taken");
            worker.holding.remove(&outcome.index);
            worker.completed += 1;
            self.activity.ran(super::super::activity::RanJob {
                worker: msg.worker,
                pool: pool_id,
                job: outcome.index,
                start_us: outcome.meta.started_us,
                end_us: outcome.meta.completed_us,
                ok: matches!(outcome.output, Outcome::Output(_)),
            });
            if pool.keeps {
                // For tasks that follow this one.
                pool.ran_on.insert(outcome.index, msg.worker);
            }
            taken.push(outcome);
        }
        self.dispatch(pool_id);
        if !taken.is_empty() {
            self.finish(pool_id, taken, ctx);
        }
    }
}

impl Handler<OpenPool> for HeadActor {
    type Result = actix::MessageResult<OpenPool>;

    fn handle(&mut self, msg: OpenPool, ctx: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult(self.open(msg, ctx))
    }
}

impl HeadActor {
    /// Opens (or resumes) the pool `msg` names: its id, and whether the
    /// owner must send the program.
    fn open(&mut self, msg: OpenPool, ctx: &mut actix::Context<Self>) -> Opened {
        let program = &msg.program;
        if !self.settings.allow.is_empty() && !self.settings.allow.contains(&program.sha256) {
            return Opened::Refused(format!(
                "program {} is not allowed on this cluster: start the head with --allow-binary {} to allow it",
                program.hash_hex(),
                program.hash_hex()
            ));
        }
        if let Some((copy, _)) = msg.staged.and_then(|token| self.staged.remove(&token))
            && !self.verified.contains(&program.sha256)
        {
            // A rename in the store's directory: the copy is hashed already.
            match copy.install(program) {
                Ok(_) => {
                    self.verified.insert(program.sha256);
                }
                Err(e) => tracing::warn!(
                    "the copy made for this pool is not its program ({e}); it is sent instead"
                ),
            }
        }
        // A file this head did not write or hash is sent again (a local
        // copy hashes the file there instead of copying it).
        let stored = self.verified.contains(&program.sha256);
        let owner = msg.owner.clone();
        let pool = match msg.resume.filter(|id| self.pools.contains_key(id)) {
            Some(id) => id,
            None => {
                let id = msg.resume.unwrap_or_else(Uuid::new_v4);
                let record = PoolRecord {
                    program: msg.program.clone(),
                    kind: msg.kind.clone(),
                    init: msg.init,
                };
                let bytes = match crate::wire::encode(&record) {
                    Ok(b) => b.to_vec(),
                    Err(e) => return Opened::Refused(format!("cannot record the pool: {e}")),
                };
                let write = self.ledger.write(vec![LedgerOp::PutPool {
                    pool: key(id),
                    record: bytes,
                }]);
                actix::spawn(async move {
                    if let Err(e) = write.await {
                        tracing::error!(pool = %id, "pool not written to the ledger: {e}");
                    }
                });
                self.pools.insert(id, PoolEntry::new(record));
                if stored {
                    self.run_pools_on(None);
                }
                id
            }
        };
        let Some(entry) = self.pools.get_mut(&pool) else {
            return Opened::Refused("the pool vanished while opening".into());
        };
        entry.owner = Some(owner.clone());
        entry.owner_gone_since = None;
        // What finished while the owner was away goes to it now.
        if !entry.unread.is_empty() {
            let results: Vec<(u64, Finished)> =
                entry.unread.iter().map(|(i, o)| (*i, o.clone())).collect();
            let _ = owner.try_tell(Results { pool, results });
        }
        let updates = entry.updates.len() as u64;
        let owner_id = owner.id();
        let down = async move { owner.watch().await };
        ctx.spawn(down.into_actor(self).map(move |_, act, _| {
            if let Some(entry) = act.pools.get_mut(&pool)
                && entry.owner.as_ref().is_some_and(|o| o.id() == owner_id)
            {
                tracing::info!(%pool, "pool owner went away; the pool waits {OWNER_GRACE:?} for it");
                entry.owner = None;
                entry.owner_gone_since = Some(Instant::now());
                if !act.verified.contains(&entry.record.program.sha256) {
                    // Its upload, if it was the one uploading, will not finish.
                    let sha = entry.record.program.sha256;
                    act.uploading.remove(&sha);
                    act.uploads.remove(&sha);
                }
            }
        }));
        // One pool uploads a program; pools of the same program opened
        // meanwhile start once it is stored.
        let upload = !stored && self.uploading.insert(msg.program.sha256);
        Opened::Ready {
            pool,
            upload,
            updates,
        }
    }
}

impl Handler<Upload> for HeadActor {
    type Result = actix::ResponseActFuture<Self, Uploaded>;

    fn handle(&mut self, msg: Upload, _: &mut actix::Context<Self>) -> Self::Result {
        let sha = msg.program.sha256;
        let receiving = if msg.offset == 0 {
            self.programs
                .receive(&msg.program)
                .map_err(|e| e.to_string())
        } else {
            self.uploads.remove(&sha).ok_or_else(|| {
                "no upload of this program in progress: start again at offset 0".to_owned()
            })
        };
        let mut receiving = match receiving {
            Ok(r) => r,
            Err(why) => {
                self.uploading.remove(&sha);
                return Box::pin(actix::fut::ready(Uploaded::Refused(why)));
            }
        };
        // File writes run off the actor's thread; the upload comes back after.
        let last = msg.offset + msg.bytes.len() as u64 >= msg.program.len;
        let io = tokio::task::spawn_blocking(move || {
            receiving.write(msg.offset, &msg.bytes)?;
            if last {
                receiving.finish().map(|_| None)
            } else {
                Ok(Some(receiving))
            }
        });
        Box::pin(io.into_actor(self).map(move |done, act, _| match done {
            Ok(Ok(Some(receiving))) => {
                act.uploads.insert(sha, receiving);
                Uploaded::More
            }
            Ok(Ok(None)) => {
                act.program_stored(sha);
                Uploaded::Stored
            }
            Ok(Err(e)) => {
                act.uploading.remove(&sha);
                Uploaded::Refused(e.to_string())
            }
            Err(e) => {
                act.uploading.remove(&sha);
                Uploaded::Refused(format!("storing the program failed: {e}"))
            }
        }))
    }
}

impl Handler<StageLocal> for HeadActor {
    type Result = actix::MessageResult<StageLocal>;

    fn handle(&mut self, msg: StageLocal, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult(self.stage_local(&msg.host_key))
    }
}

impl Handler<UploadLocal> for HeadActor {
    type Result = actix::MessageResult<UploadLocal>;

    fn handle(&mut self, msg: UploadLocal, _: &mut actix::Context<Self>) -> Self::Result {
        let Some((copy, _)) = self.staged.remove(&msg.staged) else {
            return actix::MessageResult(Uploaded::Refused(
                "no copy waits under this token (it is used, or older than a minute): hand the program over again, or send it in parts".into(),
            ));
        };
        // A rename in the store's directory: the copy is hashed already.
        // The owner sends it in parts if it is not this program; what the
        // copy's bytes hash to is not told.
        let sha = msg.program.sha256;
        actix::MessageResult(match copy.install(&msg.program) {
            Ok(_) => {
                self.program_stored(sha);
                Uploaded::Stored
            }
            Err(ProgramError::Tampered { .. } | ProgramError::Length { .. }) => Uploaded::Refused(
                "the file handed over is not this program (it changed since the program started?)"
                    .into(),
            ),
            Err(e) => Uploaded::Refused(e.to_string()),
        })
    }
}

impl Handler<Submit> for HeadActor {
    type Result = Response<Submitted>;

    fn handle(&mut self, msg: Submit, ctx: &mut actix::Context<Self>) -> Self::Result {
        let limit = self.settings.queue_limit;
        let Some(entry) = self.pools.get_mut(&msg.pool) else {
            return Response::reply(Submitted::Refused(
                "no such pool on this head: it was closed, or dropped after its owner stayed away; open a new pool".into(),
            ));
        };
        if let Some((index, job)) = msg.jobs.iter().find(|(_, j)| j.len() as u64 > limit) {
            return Response::reply(Submitted::Refused(format!(
                "job {index} is {} bytes, more than the head's queue limit of {limit} bytes: make jobs smaller or start the head with a larger --queue-limit",
                job.len()
            )));
        }
        let (tx, rx) = oneshot::channel();
        entry.waiting.push_back((msg, tx));
        let pool = entry.waiting.back().map(|(s, _)| s.pool);
        if let Some(pool) = pool {
            self.admit_waiting(pool, ctx);
        }
        Response::fut(async move {
            rx.await
                .unwrap_or_else(|_| Submitted::Refused("the head stopped".into()))
        })
    }
}

impl Handler<PushUpdate> for HeadActor {
    type Result = Response<Submitted>;

    fn handle(&mut self, msg: PushUpdate, _: &mut actix::Context<Self>) -> Self::Result {
        let limit = self.settings.queue_limit;
        let Some(entry) = self.pools.get_mut(&msg.pool) else {
            return Response::reply(Submitted::Refused("no such pool on this head".into()));
        };
        let len = msg.update.len() as u64;
        if entry.update_bytes + len > limit {
            return Response::reply(Submitted::Refused(format!(
                "this pool's updates would hold {} bytes, more than the head's queue limit of {limit} bytes (every update is kept for workers that join later): send smaller updates, or start the head with a larger --queue-limit",
                entry.update_bytes + len
            )));
        }
        entry.update_bytes += len;
        let seq = entry.updates.len() as u64 + 1;
        entry.updates.push((seq, msg.update.clone()));
        for worker in &entry.workers {
            if let Some(w) = self.workers.get(worker) {
                let _ = w.actor.try_tell(Update {
                    seq,
                    update: msg.update.clone(),
                });
            }
        }
        let write = self.ledger.write(vec![LedgerOp::PutUpdate {
            pool: key(msg.pool),
            seq,
            update: msg.update,
        }]);
        Response::fut(async move {
            match write.await {
                Ok(()) => Submitted::Accepted,
                Err(e) => Submitted::Refused(format!("update not written to the ledger: {e}")),
            }
        })
    }
}

impl Handler<ResultsRead> for HeadActor {
    type Result = ();

    fn handle(&mut self, msg: ResultsRead, _: &mut actix::Context<Self>) {
        let Some(entry) = self.pools.get_mut(&msg.pool) else {
            return;
        };
        let mut ops = Vec::with_capacity(msg.indices.len());
        let mut read = Vec::new();
        for index in msg.indices {
            if let Some(outcome) = entry.unread.remove(&index) {
                entry.unread_bytes = entry.unread_bytes.saturating_sub(outcome_bytes(&outcome));
                if entry.keeps && !entry.forgotten.remove(&index) {
                    read.push((index, outcome));
                } else {
                    ops.push(LedgerOp::ResultRead {
                        pool: key(msg.pool),
                        index,
                    });
                }
            }
        }
        // An engine set's results stay for the hub's queries.
        entry.keep(msg.pool, read, self.settings.results_limit, &mut ops);
        let write = self.ledger.write(ops);
        actix::spawn(async move {
            if let Err(e) = write.await {
                tracing::warn!("read results not removed from the ledger: {e}");
            }
        });
        // Jobs held back while results waited go out again.
        self.dispatch(msg.pool);
    }
}

impl Handler<ClosePool> for HeadActor {
    type Result = ();

    fn handle(&mut self, msg: ClosePool, _: &mut actix::Context<Self>) {
        tracing::info!(pool = %msg.pool, "pool closed by its owner");
        self.remove_pool(msg.pool);
    }
}

impl Handler<Status> for HeadActor {
    type Result = Response<StatusReport>;

    fn handle(&mut self, _: Status, _: &mut actix::Context<Self>) -> Self::Result {
        let mut report = self.report();
        let asked: Vec<_> = self
            .agents
            .values()
            .map(|a| (a.node, a.actor.clone().with_timeout(super::USAGE_DEADLINE)))
            .collect();
        if asked.is_empty() {
            return Response::reply(report);
        }
        Response::fut(async move {
            // Every agent at once; one that does not answer in time shows
            // as down, without figures or GPU rows.
            let answers = futures_util::future::join_all(
                asked
                    .into_iter()
                    .map(|(node, agent)| async move { (node, agent.ask(Usage).await.ok()) }),
            )
            .await;
            for (node, usage) in answers {
                let Some(usage) = usage else { continue };
                if let Some(row) = report.nodes.iter_mut().find(|n| n.node == node) {
                    row.up = true;
                    row.cpu_percent = usage.cpu_percent;
                    row.rss_bytes = usage.rss_bytes;
                }
                report.gpus.extend(usage.gpus);
            }
            report
        })
    }
}

impl Handler<StopHead> for HeadActor {
    type Result = ();

    fn handle(&mut self, msg: StopHead, _: &mut actix::Context<Self>) {
        if msg.nodes {
            for agent in self.agents.values() {
                let _ = agent.actor.try_tell(StopAgent);
            }
        }
        let _ = self.stop.send(Some(msg.nodes));
    }
}

impl Handler<EngineHello> for HeadActor {
    type Result = actix::MessageResult<EngineHello>;

    fn handle(&mut self, msg: EngineHello, ctx: &mut actix::Context<Self>) -> Self::Result {
        let Some(pool) = self.pools.get_mut(&msg.pool) else {
            return actix::MessageResult(EngineWelcome::Gone);
        };
        let id = msg.engine.id();
        // An engine that joins again keeps its number.
        let number = match pool.engines.iter().find(|e| e.engine.id() == id) {
            Some(known) => known.id,
            None => {
                // Its number from before the head restarted, unless taken.
                let number = msg
                    .number
                    .filter(|n| !pool.engines.iter().any(|e| e.id == *n))
                    .unwrap_or(pool.next_engine);
                pool.next_engine = pool.next_engine.max(number + 1);
                // Written, so that a restarted head gives a new engine a
                // number none had before.
                if pool.numbered.insert(number) {
                    let write = self.ledger.write(vec![LedgerOp::NumberEngine {
                        pool: key(msg.pool),
                        number: u64::from(number),
                    }]);
                    actix::spawn(async move {
                        if let Err(e) = write.await {
                            tracing::warn!(
                                engine = number,
                                "engine number not written to the ledger: {e}"
                            );
                        }
                    });
                }
                pool.engines.push(EngineRow {
                    id: number,
                    engine: msg.engine.clone(),
                    line: msg.line,
                    pid: msg.pid,
                    host_key: msg.host_key,
                    worker: msg.worker,
                });
                number
            }
        };
        let (engine, pool_id) = (msg.engine, msg.pool);
        let down = async move { engine.watch().await };
        ctx.spawn(down.into_actor(self).map(move |down, act, _| {
            if let Some(pool) = act.pools.get_mut(&pool_id) {
                pool.engines.retain(|e| e.engine.id() != id);
                pool.gone.insert(number);
                tracing::info!(engine = number, "engine down ({})", down.reason);
            }
        }));
        actix::MessageResult(EngineWelcome::Joined(number))
    }
}

impl Handler<Engines> for HeadActor {
    type Result = actix::MessageResult<Engines>;

    fn handle(&mut self, msg: Engines, _: &mut actix::Context<Self>) -> Self::Result {
        let rows = self
            .pools
            .get(&msg.pool)
            .map(|p| p.engines.clone())
            .unwrap_or_default();
        actix::MessageResult(EngineList(rows))
    }
}

impl Handler<QueueStatus> for HeadActor {
    type Result = actix::MessageResult<QueueStatus>;

    fn handle(&mut self, msg: QueueStatus, _: &mut actix::Context<Self>) -> Self::Result {
        let Some(pool) = self.pools.get(&msg.pool) else {
            return actix::MessageResult(QueueReport {
                engines: Vec::new(),
                unassigned: 0,
            });
        };
        let engines = pool
            .engines
            .iter()
            .map(|e| {
                let worker = self.workers.get(&e.worker);
                EngineQueue {
                    engine: e.id,
                    queued: worker.map_or(0, |w| w.holding.len() as u32),
                    completed: worker.map_or(0, |w| w.completed),
                }
            })
            .collect();
        actix::MessageResult(QueueReport {
            engines,
            unassigned: (pool.pending.len() + pool.blocked.len()) as u64,
        })
    }
}

impl Handler<Abort> for HeadActor {
    type Result = actix::MessageResult<Abort>;

    fn handle(&mut self, msg: Abort, ctx: &mut actix::Context<Self>) -> Self::Result {
        let Some(entry) = self.pools.get_mut(&msg.pool) else {
            return actix::MessageResult(AbortedJobs(Vec::new()));
        };
        let asked: HashSet<u64> = msg.indices.into_iter().collect();
        let mut dropped = Vec::new();
        // Keeps a job unless it is asked for (then it is dropped).
        let mut keep = |index: u64| {
            let drop = asked.contains(&index);
            if drop {
                dropped.push(index);
            }
            !drop
        };
        // Queued in the ledger, not handed to a worker yet; and submitted
        // but still waiting for room in the queue.
        entry.pending.retain(|index| keep(*index));
        entry.blocked.retain(|index, _| keep(*index));
        for (submit, _) in entry.waiting.iter_mut() {
            submit.jobs.retain(|(index, _)| keep(*index));
        }
        for index in &dropped {
            if let Some(job) = entry.jobs.remove(index) {
                entry.queued_bytes = entry.queued_bytes.saturating_sub(job.len() as u64);
            }
        }
        let outcomes = dropped
            .iter()
            .map(|&index| JobOutcome {
                index,
                attempt: 0,
                output: Outcome::Aborted,
                meta: JobMeta::default(),
            })
            .collect();
        if !dropped.is_empty() {
            tracing::info!(pool = %msg.pool, jobs = dropped.len(), "jobs aborted before they started");
            self.finish(msg.pool, outcomes, ctx);
        }
        actix::MessageResult(AbortedJobs(dropped))
    }
}

impl Handler<HubQuery> for HeadActor {
    type Result = actix::MessageResult<HubQuery>;

    fn handle(&mut self, msg: HubQuery, _: &mut actix::Context<Self>) -> Self::Result {
        let Some(entry) = self.pools.get(&msg.pool) else {
            return actix::MessageResult(HubRecords::NoSuchSet);
        };
        let records = msg
            .indices
            .iter()
            .map(
                |index| match entry.unread.get(index).or_else(|| entry.kept.get(index)) {
                    Some(outcome) => Record::Completed(msg.with_results.then(|| outcome.clone())),
                    None if entry.pending(*index) => Record::Pending,
                    None => Record::Unknown,
                },
            )
            .collect();
        actix::MessageResult(HubRecords::Records(records))
    }
}

impl Handler<PurgeResults> for HeadActor {
    type Result = Response<Purged>;

    /// Answers once the purge is in the ledger.
    fn handle(&mut self, msg: PurgeResults, _: &mut actix::Context<Self>) -> Self::Result {
        let Some(entry) = self.pools.get_mut(&msg.pool) else {
            return Response::reply(Purged::NoSuchSet);
        };
        let purge: Vec<u64> = match msg.indices {
            None => entry
                .kept
                .keys()
                .chain(entry.unread.keys())
                .copied()
                .filter(|i| !entry.forgotten.contains(i))
                .collect(),
            Some(indices) => {
                let outstanding: Vec<u64> = indices
                    .iter()
                    .copied()
                    .filter(|i| entry.pending(*i))
                    .collect();
                if !outstanding.is_empty() {
                    return Response::reply(Purged::Outstanding(outstanding));
                }
                indices
                    .into_iter()
                    .filter(|i| {
                        entry.kept.contains_key(i)
                            || (entry.unread.contains_key(i) && !entry.forgotten.contains(i))
                    })
                    .collect()
            }
        };
        let mut ops = Vec::with_capacity(purge.len());
        for index in &purge {
            if let Some(outcome) = entry.kept.remove(index) {
                entry.kept_bytes = entry.kept_bytes.saturating_sub(outcome_bytes(&outcome));
                entry.ran_on.remove(index);
                ops.push(LedgerOp::ResultRead {
                    pool: key(msg.pool),
                    index: *index,
                });
            } else {
                // Its client has not read it yet: it still gets it, and the
                // hub forgets it then.
                entry.forgotten.insert(*index);
            }
        }
        let mut purge = purge;
        purge.sort_unstable();
        let write = self.ledger.write(ops);
        let pool = msg.pool;
        Response::fut(async move {
            if let Err(e) = write.await {
                // Gone from the hub now; a head started again may list them.
                tracing::warn!(%pool, "purged results not removed from the ledger: {e}");
            }
            Purged::Purged(purge)
        })
    }
}

impl Handler<ShutdownEngines> for HeadActor {
    type Result = actix::MessageResult<ShutdownEngines>;

    fn handle(&mut self, msg: ShutdownEngines, _: &mut actix::Context<Self>) -> Self::Result {
        let Some(pool) = self.pools.get(&msg.pool) else {
            return actix::MessageResult(Retired(Vec::new()));
        };
        let mut retired = Vec::new();
        for row in pool.engines.iter().filter(|e| msg.engines.contains(&e.id)) {
            let agent = self
                .workers
                .get(&row.worker)
                .and_then(|w| self.agents.get(&w.agent));
            if let Some(agent) = agent {
                let order = RetireWorker {
                    pool: msg.pool,
                    pid: row.pid,
                };
                if agent.actor.try_tell(order).is_ok() {
                    retired.push(row.id);
                }
            }
        }
        actix::MessageResult(Retired(retired))
    }
}
