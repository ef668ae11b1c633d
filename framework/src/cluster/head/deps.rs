//! Dependencies of load-balanced tasks (the seed's `after`, `follow` and
//! `timeout`). A task whose dependencies are not done waits in its pool's
//! `blocked` set, not in the queue. Whenever results come in, an engine goes
//! down, a task's timeout passes or a second goes by, the head looks at the
//! blocked tasks again: ready ones join the queue (pinned to one engine when
//! they follow tasks), ones that can never run and ones past their timeout
//! fail with [`Outcome::Impossible`] and [`Outcome::DependencyTimeout`].

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::id::ActorId;

use super::super::message::{Finished, JobMeta, JobOutcome, Outcome, TaskFlags};
use super::{HeadActor, MAX_TRIES, PoolEntry};

/// `now` kept to those also in `more` (all of `more` when there is no
/// limit yet).
fn narrow(now: Option<Vec<ActorId>>, more: Vec<ActorId>) -> Vec<ActorId> {
    match now {
        None => more,
        Some(now) => now.into_iter().filter(|w| more.contains(w)).collect(),
    }
}

/// What a blocked task may do now.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Check {
    /// Its dependencies are not done yet.
    Wait,
    /// Run it (only on these workers, when it follows tasks or names its
    /// engines).
    Ready(Option<Vec<ActorId>>),
    /// It can never run: why.
    Impossible(String),
}

impl PoolEntry {
    /// Where the dependencies of task `index` (with `flags`) stand, and
    /// which workers may run it; `offers` gives what a connected worker
    /// offers (`None`: not connected).
    pub(super) fn check<'a>(
        &self,
        index: u64,
        flags: &TaskFlags,
        offers: impl Fn(&ActorId) -> Option<&'a [String]>,
    ) -> Check {
        let mut wait = false;
        for &dep in flags.after.iter().chain(&flags.follow) {
            if dep >= index {
                return Check::Impossible(format!(
                    "it depends on task {dep}, which was not submitted before it"
                ));
            }
            match self.unread.get(&dep).or_else(|| self.kept.get(&dep)) {
                Some(Finished {
                    output: Outcome::Output(_),
                    ..
                }) => {}
                Some(_) if flags.success_only => {
                    return Check::Impossible(format!(
                        "task {dep}, which it depends on, failed (to run it all the same, \
                         submit it with .success_only(false))"
                    ));
                }
                Some(_) => {}
                None if self.pending(dep) => wait = true,
                None => {
                    return Check::Impossible(format!(
                        "task {dep}, which it depends on, is not on the hub: it was never submitted, or purged"
                    ));
                }
            }
        }
        if wait {
            return Check::Wait;
        }
        // Where it may run: where the tasks it follows ran, among its
        // targets, on workers that offer what it requires.
        let mut allowed: Option<Vec<ActorId>> = None;
        let mut place = None;
        for dep in &flags.follow {
            let worker = match self.ran_on.get(dep) {
                Some(worker) => *worker,
                // It finished before the head restarted: its engine by the
                // number its result records, once that engine is back.
                None => {
                    let ran = self.unread.get(dep).or_else(|| self.kept.get(dep));
                    let Some(n) = ran.and_then(|f| f.meta.engine) else {
                        return Check::Impossible(format!(
                            "task {dep}, which it follows, never ran on an engine"
                        ));
                    };
                    match self.engines.iter().find(|e| e.id == n) {
                        Some(engine) => engine.worker,
                        None if self.gone.contains(&n) => {
                            return Check::Impossible(
                                "the engine that ran the tasks it follows is gone".into(),
                            );
                        }
                        None => return Check::Wait,
                    }
                }
            };
            match place {
                None => place = Some(worker),
                Some(w) if w != worker => {
                    return Check::Impossible(
                        "the tasks it follows ran on different engines".into(),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(w) = place {
            if offers(&w).is_none() {
                return Check::Impossible(
                    "the engine that ran the tasks it follows is gone".into(),
                );
            }
            allowed = Some(vec![w]);
        }
        if !flags.targets.is_empty() {
            let targets: Vec<ActorId> = self
                .engines
                .iter()
                .filter(|e| flags.targets.contains(&e.id) && offers(&e.worker).is_some())
                .map(|e| e.worker)
                .collect();
            if targets.is_empty() {
                if flags.targets.iter().all(|t| self.gone.contains(t)) {
                    return Check::Impossible(format!(
                        "its target engines {:?} are gone",
                        flags.targets
                    ));
                }
                // They have not joined (again) yet.
                return Check::Wait;
            }
            allowed = Some(narrow(allowed, targets));
        }
        if !flags.require.is_empty() {
            let offering: Vec<ActorId> = self
                .workers
                .iter()
                .filter(|w| {
                    offers(w).is_some_and(|has| flags.require.iter().all(|r| has.contains(r)))
                })
                .copied()
                .collect();
            if offering.is_empty() {
                return Check::Impossible(format!(
                    "no engine offers {:?}: start a node with `parallel node --resource NAME` \
                     (a node that sees a GPU offers gpu)",
                    flags.require
                ));
            }
            allowed = Some(narrow(allowed, offering));
        }
        match allowed {
            Some(workers) if workers.is_empty() => Check::Impossible(
                "no engine is at once where the tasks it follows ran, among its targets, \
                 and offers what it requires"
                    .into(),
            ),
            allowed => Check::Ready(allowed),
        }
    }

    /// Whether task `index`, pinned to some workers, has none left once
    /// `down` is gone (`workers`: those connected).
    pub(super) fn stranded<V>(
        &self,
        index: u64,
        down: ActorId,
        workers: &std::collections::HashMap<ActorId, V>,
    ) -> bool {
        self.pinned.get(&index).is_some_and(|allowed| {
            allowed
                .iter()
                .all(|w| *w == down || !workers.contains_key(w))
        })
    }

    /// Task `index`'s `depend` predicate refused it on `worker`: it goes
    /// back to the queue for the workers that have not refused it (among
    /// those it was allowed), or fails when none is left (its outcome).
    pub(super) fn unmet(&mut self, index: u64, worker: ActorId) -> Option<JobOutcome> {
        let run = self.running.remove(&index)?;
        let refused = self.refused.entry(index).or_default();
        refused.push(worker);
        let refused = refused.clone();
        let allowed: Vec<ActorId> = match self.pinned.get(&index) {
            Some(pinned) => pinned.clone(),
            None => self.workers.clone(),
        }
        .into_iter()
        .filter(|w| !refused.contains(w))
        .collect();
        if allowed.is_empty() {
            self.queued_bytes = self.queued_bytes.saturating_sub(run.job.len() as u64);
            return Some(JobOutcome {
                index,
                attempt: run.attempt,
                output: Outcome::Impossible(format!(
                    "its depend function said no on every engine it could run on ({} of them)",
                    refused.len()
                )),
                meta: JobMeta::default(),
            });
        }
        self.pinned.insert(index, allowed);
        self.jobs.insert(index, run.job);
        self.pending.push_back(index);
        None
    }

    /// How many times task `index` may be handed out in all.
    pub(super) fn max_tries(&self, index: u64) -> u32 {
        self.flags
            .get(&index)
            .and_then(|f| f.retries)
            .map_or(MAX_TRIES, |r| r.saturating_add(1))
    }

    /// Takes task `index` out of the queue and its waiting sets, for a
    /// failure that ends it; its outcome.
    pub(super) fn drop_job(&mut self, index: u64, output: Outcome) -> JobOutcome {
        self.blocked.remove(&index);
        self.pending.retain(|i| *i != index);
        if let Some(job) = self.jobs.remove(&index) {
            self.queued_bytes = self.queued_bytes.saturating_sub(job.len() as u64);
        }
        JobOutcome {
            index,
            attempt: 0,
            output,
            meta: JobMeta::default(),
        }
    }
}

impl HeadActor {
    /// Looks at `pool`'s blocked tasks again (see the module docs).
    pub(super) fn release(&mut self, pool: Uuid, ctx: &mut actix::Context<Self>) {
        let (workers, agents) = (&self.workers, &self.agents);
        let offers = |w: &ActorId| {
            let worker = workers.get(w)?;
            Some(
                agents
                    .get(&worker.agent)
                    .map_or(&[][..], |a| &a.resources[..]),
            )
        };
        let Some(entry) = self.pools.get_mut(&pool) else {
            return;
        };
        if entry.blocked.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut failed = Vec::new();
        for (&index, since) in &entry.blocked {
            let Some(flags) = entry.flags.get(&index) else {
                ready.push((index, None));
                continue;
            };
            let timeout = Duration::from_millis(flags.timeout_ms);
            match entry.check(index, flags, offers) {
                Check::Ready(place) => ready.push((index, place)),
                Check::Impossible(why) => failed.push((index, Outcome::Impossible(why))),
                Check::Wait if flags.timeout_ms > 0 && now.duration_since(*since) >= timeout => {
                    failed.push((index, Outcome::DependencyTimeout));
                }
                Check::Wait => {}
            }
        }
        for (index, place) in ready {
            entry.blocked.remove(&index);
            if let Some(workers) = place {
                entry.pinned.insert(index, workers);
            }
            entry.pending.push_back(index);
        }
        let failed: Vec<JobOutcome> = failed
            .into_iter()
            .map(|(index, output)| entry.drop_job(index, output))
            .collect();
        if !failed.is_empty() {
            tracing::info!(%pool, tasks = failed.len(), "tasks whose dependencies cannot be met fail");
            self.finish(pool, failed, ctx);
        }
        self.dispatch(pool);
    }

    /// Looks at the blocked tasks of every pool again (timeouts).
    pub(super) fn release_all(&mut self, ctx: &mut actix::Context<Self>) {
        let blocked: Vec<Uuid> = self
            .pools
            .iter()
            .filter(|(_, p)| !p.blocked.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for pool in blocked {
            self.release(pool, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::program::Program;

    /// An engine set with task 1 done (on worker `w1`), task 2 failed (on
    /// `w2`), task 3 queued.
    fn set(w1: ActorId, w2: ActorId) -> PoolEntry {
        let record = super::super::PoolRecord {
            program: Program {
                sha256: [0; 32],
                len: 0,
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            kind: crate::cluster::engine::ENGINE_KIND.into(),
            init: Vec::new(),
        };
        let mut entry = PoolEntry::new(record);
        let finished = |output| Finished {
            output,
            meta: JobMeta::default(),
        };
        entry.kept.insert(1, finished(Outcome::Output(vec![1])));
        entry.unread.insert(
            2,
            finished(Outcome::Panicked(crate::cluster::message::Panic {
                message: "no".into(),
                location: None,
            })),
        );
        entry.ran_on.insert(1, w1);
        entry.ran_on.insert(2, w2);
        entry.jobs.insert(3, vec![3]);
        entry.pending.push_back(3);
        entry
    }

    fn flags(after: &[u64], follow: &[u64], success_only: bool) -> TaskFlags {
        TaskFlags {
            after: after.to_vec(),
            follow: follow.to_vec(),
            success_only,
            ..TaskFlags::default()
        }
    }

    #[test]
    fn a_task_waits_for_pending_dependencies_and_runs_after_done_ones() {
        let (w1, w2) = (ActorId::new(), ActorId::new());
        let entry = set(w1, w2);
        let alive = |_: &ActorId| Some(&[][..]);
        assert_eq!(
            entry.check(9, &flags(&[1], &[], true), alive),
            Check::Ready(None)
        );
        assert_eq!(
            entry.check(9, &flags(&[1, 3], &[], true), alive),
            Check::Wait
        );
        assert_eq!(
            entry.check(9, &flags(&[], &[1], true), alive),
            Check::Ready(Some(vec![w1]))
        );
        // A failed dependency: impossible, unless any outcome will do.
        assert!(matches!(
            entry.check(9, &flags(&[2], &[], true), alive),
            Check::Impossible(_)
        ));
        assert_eq!(
            entry.check(9, &flags(&[2], &[], false), alive),
            Check::Ready(None)
        );
    }

    #[test]
    fn dependencies_that_can_never_be_met_say_why() {
        let (w1, w2) = (ActorId::new(), ActorId::new());
        let entry = set(w1, w2);
        let why = |check: Check| match check {
            Check::Impossible(why) => why,
            other => panic!("{other:?} is not impossible"),
        };
        let alive = |_: &ActorId| Some(&[][..]);
        assert!(why(entry.check(9, &flags(&[7], &[], true), alive)).contains("not on the hub"));
        assert!(
            why(entry.check(5, &flags(&[6], &[], true), alive)).contains("not submitted before")
        );
        let both = flags(&[], &[1, 2], false);
        assert!(why(entry.check(9, &both, alive)).contains("different engines"));
        let gone = |w: &ActorId| (*w != w1).then_some(&[][..]);
        assert!(why(entry.check(9, &flags(&[], &[1], true), gone)).contains("gone"));
    }

    #[test]
    fn a_task_that_requires_a_resource_runs_only_where_it_is_offered() {
        let (w1, w2) = (ActorId::new(), ActorId::new());
        let mut entry = set(w1, w2);
        entry.workers = vec![w1, w2];
        let bigmem = ["bigmem".to_owned()];
        let offers = |w: &ActorId| Some(if *w == w1 { &bigmem[..] } else { &[][..] });
        let require = |names: &[&str], follow: &[u64]| TaskFlags {
            require: names.iter().map(|n| n.to_string()).collect(),
            ..flags(&[], follow, false)
        };
        assert_eq!(
            entry.check(9, &require(&["bigmem"], &[]), offers),
            Check::Ready(Some(vec![w1]))
        );
        let Check::Impossible(why) = entry.check(9, &require(&["gpu"], &[]), offers) else {
            panic!("nobody offers a gpu here");
        };
        assert!(why.contains("--resource"), "{why}");
        // Task 2 ran on w2, which offers nothing.
        assert!(matches!(
            entry.check(9, &require(&["bigmem"], &[2]), offers),
            Check::Impossible(_)
        ));
    }

    #[test]
    fn a_task_refused_by_its_depend_function_everywhere_fails_as_impossible() {
        let (w1, w2) = (ActorId::new(), ActorId::new());
        let mut entry = set(w1, w2);
        entry.workers = vec![w1, w2];
        let run = |worker| super::super::RunningJob {
            worker,
            attempt: 1,
            job: vec![4],
            sent: Instant::now(),
        };
        entry.running.insert(4, run(w1));
        assert_eq!(entry.unmet(4, w1), None);
        assert_eq!(entry.pinned.get(&4), Some(&vec![w2]));
        assert!(entry.pending.contains(&4) && entry.jobs.contains_key(&4));
        entry.pending.retain(|i| *i != 4);
        entry.jobs.remove(&4);
        entry.running.insert(4, run(w2));
        let failed = entry.unmet(4, w2).expect("no engine is left");
        assert!(matches!(failed.output, Outcome::Impossible(ref why) if why.contains("depend")));
    }

    #[test]
    fn retries_set_how_many_tries_a_task_gets() {
        let mut entry = set(ActorId::new(), ActorId::new());
        assert_eq!(entry.max_tries(3), MAX_TRIES);
        entry.flags.insert(
            3,
            TaskFlags {
                retries: Some(0),
                ..TaskFlags::default()
            },
        );
        assert_eq!(entry.max_tries(3), 1);
        let out = entry.drop_job(3, Outcome::DependencyTimeout);
        assert_eq!(out.output, Outcome::DependencyTimeout);
        assert!(entry.pending.is_empty() && entry.jobs.is_empty());
    }
}
