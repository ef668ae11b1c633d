//! A pool's (or engine set's) state on the head: its queue, running jobs,
//! results, and what its tasks wait for; how it is rebuilt from the ledger.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::id::ActorId;
use crate::remote::ActorRef;

use super::super::ledger::{LedgerOp, PoolKey, PoolState};
use super::super::message::*;
use super::{PoolOwner, PoolRecord};

/// A job handed to a worker.
pub(super) struct RunningJob {
    /// The worker.
    pub(super) worker: ActorId,
    /// Which try this is.
    pub(super) attempt: u32,
    /// The job (back to the queue if the worker goes down).
    pub(super) job: Vec<u8>,
    /// When it was handed out (the worker's credit adapts to it).
    pub(super) sent: Instant,
}

/// One pool (or engine set) on the head.
pub(super) struct PoolEntry {
    /// Its lasting record.
    pub(super) record: PoolRecord,
    /// Where its results go, while connected.
    pub(super) owner: Option<ActorRef<PoolOwner>>,
    /// Since when its owner is away.
    pub(super) owner_gone_since: Option<Instant>,
    /// Jobs waiting for a worker, in order.
    pub(super) pending: VecDeque<u64>,
    /// The bytes of queued (and blocked) jobs.
    pub(super) jobs: HashMap<u64, Vec<u8>>,
    /// Jobs handed to workers.
    pub(super) running: HashMap<u64, RunningJob>,
    /// How many times each job was handed out.
    pub(super) tries: HashMap<u64, u32>,
    /// Results the owner has not read yet.
    pub(super) unread: BTreeMap<u64, Finished>,
    /// Bytes of `unread`: at the queue limit no more jobs are handed out
    /// until the owner reads.
    pub(super) unread_bytes: u64,
    /// Whether results the owner read are kept for the hub (an engine set).
    pub(super) keeps: bool,
    /// Results the owner read, kept for the hub's queries until purged.
    pub(super) kept: BTreeMap<u64, Finished>,
    /// Bytes of `kept` (at most the head's results limit).
    pub(super) kept_bytes: u64,
    /// Results in `unread` the hub was asked to purge: removed once the
    /// owner has read them, not kept.
    pub(super) forgotten: HashSet<u64>,
    /// Jobs whose result is being written to the ledger (then `unread`).
    pub(super) finishing: HashSet<u64>,
    /// Flags (dependencies, retries) of jobs not finished.
    pub(super) flags: HashMap<u64, TaskFlags>,
    /// Jobs waiting for their dependencies (in `jobs`, not in `pending`),
    /// with when they started waiting.
    pub(super) blocked: BTreeMap<u64, Instant>,
    /// Jobs that may run only on some workers (they follow tasks that ran
    /// there, or name their engines).
    pub(super) pinned: HashMap<u64, Vec<ActorId>>,
    /// Engines (by number) that went down while this head ran.
    pub(super) gone: HashSet<u32>,
    /// Workers whose `depend` predicate refused a job.
    pub(super) refused: HashMap<u64, Vec<ActorId>>,
    /// Which worker gave each result (an engine set's, while kept).
    pub(super) ran_on: HashMap<u64, ActorId>,
    /// Bytes of `updates`: an update past the queue limit is refused.
    pub(super) update_bytes: u64,
    /// Its updates, by number.
    pub(super) updates: Vec<(u64, Vec<u8>)>,
    /// Its workers connected now.
    pub(super) workers: Vec<ActorId>,
    /// Engines (an engine set's "workers"), in join order.
    pub(super) engines: Vec<EngineRow>,
    /// The number the next engine gets: above every number given to an
    /// engine of this set, also before the head restarted (the ledger's
    /// `engines` table).
    pub(super) next_engine: u32,
    /// The numbers given (and written to the ledger) so far.
    pub(super) numbered: HashSet<u32>,
    /// Bytes of queued and running jobs.
    pub(super) queued_bytes: u64,
    /// Jobs done since the head started.
    pub(super) done: u64,
    /// Of those, failures.
    pub(super) failed: u64,
    /// Jobs accepted since the head started, with those restored from the
    /// ledger: each is queued, running, finishing or done (else lost).
    pub(super) accepted: u64,
    /// Submits waiting for room in the queue, with where to answer.
    pub(super) waiting: VecDeque<(Submit, oneshot::Sender<Submitted>)>,
}

impl PoolEntry {
    /// Jobs accepted that are neither queued, running, being written as
    /// done, nor done: 0 unless the head lost track of one.
    pub(super) fn lost(&self) -> u64 {
        let held = self.jobs.len() + self.running.len() + self.finishing.len();
        self.accepted.saturating_sub(self.done + held as u64)
    }

    pub(super) fn new(record: PoolRecord) -> Self {
        Self {
            keeps: record.kind == super::super::engine::ENGINE_KIND,
            kept: BTreeMap::new(),
            kept_bytes: 0,
            forgotten: HashSet::new(),
            finishing: HashSet::new(),
            flags: HashMap::new(),
            blocked: BTreeMap::new(),
            pinned: HashMap::new(),
            refused: HashMap::new(),
            gone: HashSet::new(),
            ran_on: HashMap::new(),
            record,
            owner: None,
            owner_gone_since: Some(Instant::now()),
            pending: VecDeque::new(),
            jobs: HashMap::new(),
            running: HashMap::new(),
            tries: HashMap::new(),
            unread: BTreeMap::new(),
            unread_bytes: 0,
            update_bytes: 0,
            updates: Vec::new(),
            workers: Vec::new(),
            engines: Vec::new(),
            next_engine: 0,
            numbered: HashSet::new(),
            queued_bytes: 0,
            done: 0,
            failed: 0,
            accepted: 0,
            waiting: VecDeque::new(),
        }
    }

    /// A pool as the ledger had it (for a head that starts again): its
    /// pending jobs queued (those that wait for dependencies blocked), its
    /// results unread or, once delivered, kept.
    pub(super) fn load(record: PoolRecord, state: PoolState) -> Self {
        let mut entry = PoolEntry::new(record);
        for (index, job) in state.jobs {
            entry.queued_bytes += job.len() as u64;
            entry.pending.push_back(index);
            entry.jobs.insert(index, job);
            entry.accepted += 1;
        }
        let delivered: HashSet<u64> = state.delivered.into_iter().collect();
        for (index, result) in state.results {
            let outcome =
                crate::wire::decode_owned::<Finished>(&result).unwrap_or_else(|e| Finished {
                    output: Outcome::Invalid(format!("stored result unreadable: {e}")),
                    meta: JobMeta::default(),
                });
            if delivered.contains(&index) {
                entry.kept_bytes += outcome_bytes(&outcome);
                entry.kept.insert(index, outcome);
            } else {
                entry.unread_bytes += outcome_bytes(&outcome);
                entry.unread.insert(index, outcome);
            }
        }
        for (index, bytes) in state.flags {
            match crate::wire::decode_owned::<TaskFlags>(&bytes) {
                Ok(flags) => {
                    if flags.waits() {
                        entry.blocked.insert(index, Instant::now());
                    }
                    entry.flags.insert(index, flags);
                }
                Err(e) => {
                    tracing::error!(
                        index,
                        "a task's stored flags cannot be read ({e}); it runs without them"
                    );
                }
            }
        }
        if !entry.blocked.is_empty() {
            let blocked = &entry.blocked;
            entry.pending.retain(|i| !blocked.contains_key(i));
        }
        entry.update_bytes = state.updates.iter().map(|(_, u)| u.len() as u64).sum();
        entry.updates = state.updates;
        entry.numbered = state
            .engines
            .iter()
            .filter_map(|n| u32::try_from(*n).ok())
            .collect();
        entry.next_engine = entry.numbered.iter().max().map_or(0, |n| n + 1);
        entry
    }

    pub(super) fn knows(&self, index: u64) -> bool {
        self.jobs.contains_key(&index)
            || self.running.contains_key(&index)
            || self.unread.contains_key(&index)
            || self.kept.contains_key(&index)
            || self.finishing.contains(&index)
    }

    /// Whether `index` was submitted and has no result yet (queued, running,
    /// waiting for room in the queue, or its result on its way to the
    /// ledger).
    pub(super) fn pending(&self, index: u64) -> bool {
        self.jobs.contains_key(&index)
            || self.running.contains_key(&index)
            || self.finishing.contains(&index)
            || self
                .waiting
                .iter()
                .any(|(s, _)| s.jobs.iter().any(|(i, _)| *i == index))
    }

    /// Moves results the owner read to `kept` (marked delivered with one
    /// ledger op, to `ops`), then drops the oldest kept ones past `limit`.
    pub(super) fn keep(
        &mut self,
        pool: Uuid,
        read: Vec<(u64, Finished)>,
        limit: u64,
        ops: &mut Vec<LedgerOp>,
    ) {
        let mut indices = Vec::with_capacity(read.len());
        for (index, outcome) in read {
            self.kept_bytes += outcome_bytes(&outcome);
            self.kept.insert(index, outcome);
            indices.push(index);
        }
        if !indices.is_empty() {
            ops.push(LedgerOp::ResultsDelivered {
                pool: key(pool),
                indices,
            });
        }
        let mut dropped = 0;
        while self.kept_bytes > limit {
            let Some((index, outcome)) = self.kept.pop_first() else {
                break;
            };
            self.kept_bytes = self.kept_bytes.saturating_sub(outcome_bytes(&outcome));
            self.ran_on.remove(&index);
            ops.push(LedgerOp::ResultRead {
                pool: key(pool),
                index,
            });
            dropped += 1;
        }
        if dropped > 0 {
            tracing::warn!(%pool, dropped, "the oldest results were dropped from the hub to keep under its results limit of {limit} bytes (start the head with a larger --results-limit, or purge results you no longer need)");
        }
    }
}

/// The bytes a result holds.
pub(super) fn outcome_bytes(finished: &Finished) -> u64 {
    finished.meta.printed.len() as u64
        + match &finished.output {
            Outcome::Output(b) => b.len() as u64,
            Outcome::Panicked(p) => {
                (p.message.len() + p.location.as_ref().map_or(0, String::len)) as u64
            }
            Outcome::Invalid(s) | Outcome::Died(s) | Outcome::Impossible(s) => s.len() as u64,
            Outcome::Aborted | Outcome::DependencyTimeout | Outcome::Unmet => 0,
        }
}

pub(super) fn key(pool: Uuid) -> PoolKey {
    *pool.as_bytes()
}
