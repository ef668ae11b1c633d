//! What the head saw happen, for the dashboard and `/metrics`: jobs
//! submitted, started, done and failed per second over the last minutes,
//! the most recent jobs (the task stream) and running totals.
//!
//! Pure bookkeeping, owned by the head's actor: every call is a few integer
//! additions or one push onto a bounded ring, and recording can be turned
//! off ([`crate::cluster::HeadOptions::record_activity`]) to measure what it
//! costs.

use std::collections::VecDeque;

use crate::id::ActorId;

/// Seconds of per-second rates kept.
pub const RATE_SECONDS: usize = 300;
/// Recent jobs kept for the task stream.
pub const STREAM_JOBS: usize = 1000;

/// Jobs counted within one second (Unix time `t`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RatePoint {
    /// The second, in Unix time.
    pub t: u64,
    /// Jobs the head accepted.
    pub submitted: u64,
    /// Jobs handed to workers (tries, so a retried job counts again).
    pub started: u64,
    /// Jobs whose result came back.
    pub done: u64,
    /// Of those, jobs that failed (panicked, died, were aborted, ...).
    pub failed: u64,
}

/// One finished job as the head records it: a few numbers, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RanJob {
    /// The worker that ran it.
    pub worker: ActorId,
    /// Its pool.
    pub pool: uuid::Uuid,
    /// Its index in the pool.
    pub job: u64,
    /// When it started, Unix microseconds by the worker's clock.
    pub start_us: u64,
    /// When it ended, likewise.
    pub end_us: u64,
    /// Whether it gave an output (not a panic or an error).
    pub ok: bool,
}

impl RanJob {
    /// How long it ran, in microseconds.
    pub fn took_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }

    /// The job with its worker's label, as the dashboard shows it.
    pub fn labelled(&self, label: String) -> StreamJob {
        StreamJob {
            worker: self.worker,
            label,
            pool: self.pool,
            job: self.job,
            start_us: self.start_us,
            end_us: self.end_us,
            ok: self.ok,
        }
    }
}

/// One finished job in the task stream.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StreamJob {
    /// The worker that ran it.
    #[serde(serialize_with = "super::view::display")]
    pub worker: ActorId,
    /// What the dashboard calls that worker (`host / id`).
    pub label: String,
    /// Its pool.
    pub pool: uuid::Uuid,
    /// Its index in the pool.
    pub job: u64,
    /// When it started, Unix microseconds by the worker's clock.
    pub start_us: u64,
    /// When it ended, likewise.
    pub end_us: u64,
    /// Whether it gave an output (not a panic or an error).
    pub ok: bool,
}

impl StreamJob {
    /// How long it ran, in microseconds.
    pub fn took_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

/// Totals since the head started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs handed to workers, tries included.
    pub started: u64,
    /// Results taken (failures included).
    pub done: u64,
    /// Failed results.
    pub failed: u64,
    /// Jobs handed out again after their worker went down.
    pub retries: u64,
}

/// The head's record of activity (see the module docs).
#[derive(Debug)]
pub struct Activity {
    enabled: bool,
    rates: VecDeque<RatePoint>,
    stream: VecDeque<RanJob>,
    totals: Totals,
}

impl Activity {
    /// A record that counts (`enabled`) or ignores every call.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            rates: VecDeque::with_capacity(if enabled { RATE_SECONDS } else { 0 }),
            stream: VecDeque::with_capacity(if enabled { STREAM_JOBS } else { 0 }),
            totals: Totals::default(),
        }
    }

    /// Whether it records.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The bucket of second `now`; seconds skipped get empty buckets, so
    /// the plot shows the quiet.
    fn bucket(&mut self, now: u64) -> &mut RatePoint {
        let last = self.rates.back().map(|p| p.t);
        match last {
            Some(t) if now <= t => {}
            Some(t) => {
                // At most a window's worth of empty seconds.
                let from = t
                    .saturating_add(1)
                    .max(now.saturating_sub(RATE_SECONDS as u64 - 1));
                for second in from..=now {
                    self.push(RatePoint {
                        t: second,
                        ..RatePoint::default()
                    });
                }
            }
            None => self.push(RatePoint {
                t: now,
                ..RatePoint::default()
            }),
        }
        // A clock that went back counts into the newest second.
        self.rates.back_mut().expect("a bucket was just pushed")
    }

    fn push(&mut self, point: RatePoint) {
        if self.rates.len() == RATE_SECONDS {
            self.rates.pop_front();
        }
        self.rates.push_back(point);
    }

    /// `n` jobs accepted at second `now`.
    pub fn submitted(&mut self, n: u64, now: u64) {
        if !self.enabled || n == 0 {
            return;
        }
        self.totals.submitted += n;
        self.bucket(now).submitted += n;
    }

    /// `n` jobs handed to workers at second `now`.
    pub fn started(&mut self, n: u64, now: u64) {
        if !self.enabled || n == 0 {
            return;
        }
        self.totals.started += n;
        self.bucket(now).started += n;
    }

    /// `done` results taken at second `now`, `failed` of them failures.
    pub fn finished(&mut self, done: u64, failed: u64, now: u64) {
        if !self.enabled || done == 0 {
            return;
        }
        self.totals.done += done;
        self.totals.failed += failed;
        let bucket = self.bucket(now);
        bucket.done += done;
        bucket.failed += failed;
    }

    /// `n` jobs queued again because their worker went down.
    pub fn retried(&mut self, n: u64) {
        if self.enabled {
            self.totals.retries += n;
        }
    }

    /// A job that ran, for the task stream (the oldest is dropped past
    /// [`STREAM_JOBS`]). Jobs that never ran (no start time) are skipped.
    pub fn ran(&mut self, job: RanJob) {
        if !self.enabled || job.start_us == 0 {
            return;
        }
        if self.stream.len() == STREAM_JOBS {
            self.stream.pop_front();
        }
        self.stream.push_back(job);
    }

    /// Totals since the head started.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Per-second counts, oldest first, up to second `now` (quiet seconds
    /// since the last job included), at most [`RATE_SECONDS`] of them.
    pub fn rates(&self, now: u64) -> Vec<RatePoint> {
        let mut points: Vec<RatePoint> = self.rates.iter().copied().collect();
        if let Some(last) = points.last().map(|p| p.t) {
            let from = last
                .saturating_add(1)
                .max(now.saturating_sub(RATE_SECONDS as u64 - 1));
            points.extend((from..=now).map(|t| RatePoint {
                t,
                ..RatePoint::default()
            }));
        }
        let skip = points.len().saturating_sub(RATE_SECONDS);
        points.drain(..skip);
        points
    }

    /// The recent jobs, oldest first, each worker named by `label`.
    pub fn stream(&self, label: impl Fn(&ActorId) -> String) -> Vec<StreamJob> {
        self.stream
            .iter()
            .map(|j| j.labelled(label(&j.worker)))
            .collect()
    }

    /// The `n` slowest of the recent jobs, slowest first.
    pub fn slowest(&self, n: usize, label: impl Fn(&ActorId) -> String) -> Vec<StreamJob> {
        let mut jobs: Vec<&RanJob> = self.stream.iter().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.took_us()));
        jobs.into_iter()
            .take(n)
            .map(|j| j.labelled(label(&j.worker)))
            .collect()
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(index: u64, start_us: u64, end_us: u64) -> RanJob {
        RanJob {
            worker: ActorId::new(),
            pool: uuid::Uuid::nil(),
            job: index,
            start_us,
            end_us,
            ok: true,
        }
    }

    #[test]
    fn counts_land_in_their_second_and_quiet_seconds_are_zero() {
        let mut a = Activity::new(true);
        a.submitted(10, 100);
        a.started(4, 100);
        a.finished(3, 1, 102);
        a.retried(2);
        let rates = a.rates(104);
        assert_eq!(
            rates.iter().map(|p| p.t).collect::<Vec<_>>(),
            [100, 101, 102, 103, 104]
        );
        assert_eq!((rates[0].submitted, rates[0].started), (10, 4));
        assert_eq!(
            rates[1],
            RatePoint {
                t: 101,
                ..RatePoint::default()
            }
        );
        assert_eq!((rates[2].done, rates[2].failed), (3, 1));
        let totals = a.totals();
        assert_eq!(
            (
                totals.submitted,
                totals.started,
                totals.done,
                totals.failed,
                totals.retries
            ),
            (10, 4, 3, 1, 2)
        );
    }

    #[test]
    fn only_the_last_minutes_are_kept() {
        let mut a = Activity::new(true);
        for t in 0..(RATE_SECONDS as u64 * 2) {
            a.submitted(1, t);
        }
        let rates = a.rates(RATE_SECONDS as u64 * 2 - 1);
        assert_eq!(rates.len(), RATE_SECONDS);
        assert_eq!(rates[0].t, RATE_SECONDS as u64);
        // A long quiet spell: a window of zeros, not one per second since.
        a.submitted(1, 1_000_000);
        let rates = a.rates(1_000_000);
        assert_eq!(rates.len(), RATE_SECONDS);
        assert_eq!(rates.iter().map(|p| p.submitted).sum::<u64>(), 1);
    }

    #[test]
    fn a_clock_that_goes_back_counts_into_the_newest_second() {
        let mut a = Activity::new(true);
        a.submitted(1, 50);
        a.submitted(1, 49);
        assert_eq!(
            a.rates(50),
            [RatePoint {
                t: 50,
                submitted: 2,
                ..RatePoint::default()
            }]
        );
    }

    #[test]
    fn the_stream_is_bounded_and_the_slowest_come_first() {
        let mut a = Activity::new(true);
        for i in 0..(STREAM_JOBS as u64 + 5) {
            a.ran(job(i, 1_000, 1_000 + i));
        }
        a.ran(job(9_999, 0, 0));
        let stream = a.stream(|_| "host / w".into());
        assert_eq!(stream.len(), STREAM_JOBS);
        assert_eq!(stream[0].job, 5);
        let slowest = a.slowest(3, |_| String::new());
        assert_eq!(
            slowest.iter().map(|j| j.job).collect::<Vec<_>>(),
            [
                STREAM_JOBS as u64 + 4,
                STREAM_JOBS as u64 + 3,
                STREAM_JOBS as u64 + 2
            ]
        );
    }

    #[test]
    fn a_disabled_record_keeps_nothing() {
        let mut a = Activity::new(false);
        a.submitted(3, 1);
        a.finished(3, 0, 1);
        a.ran(job(1, 10, 20));
        assert_eq!(a.totals(), Totals::default());
        assert!(a.rates(5).is_empty() && a.stream(|_| String::new()).is_empty());
    }
}
