//! Running jobs: [`Pool::map`] (results in input order) and
//! [`Pool::imap_unordered`] (results as they finish). Jobs are numbered,
//! submitted in batches with backpressure (a full head queue makes the
//! submit wait), and every result is taken once: a result whose number was
//! already taken (its job ran twice after a worker or the head went down)
//! is dropped here.

use std::collections::{HashSet, VecDeque};

use crate::cluster::message::Outcome;
use crate::cluster::session::Batches;

use super::{Pool, PoolError, Worker};

/// Most jobs submitted and not finished at once (the head's byte limit
/// applies too).
const WINDOW: usize = 8192;

/// Why one job gave no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// `run` panicked; its worker process was restarted.
    #[error("the job panicked on its worker: {0}")]
    Panicked(String),
    /// The job's bytes were not a valid job for the worker, or its output
    /// could not be read (the program on the nodes differs?).
    #[error("the job or its output could not be decoded: {0}")]
    Invalid(String),
    /// Its workers kept dying while running it.
    #[error("the job was given up: {0}")]
    Died(String),
    /// The job was aborted before it started.
    #[error("the job was aborted before it started")]
    Aborted,
}

/// Results as they finish (see [`Pool::imap_unordered`]); read with
/// [`Unordered::next`].
pub struct Unordered<'p, W: Worker> {
    pool: &'p mut Pool<W>,
    jobs: Box<dyn Iterator<Item = W::Job> + Send + 'p>,
    exhausted: bool,
    outstanding: HashSet<u64>,
    batches: Batches,
    ready: VecDeque<(u64, Result<W::Output, JobError>)>,
    bar: Option<indicatif::ProgressBar>,
}

impl<W: Worker> Pool<W> {
    /// Runs every job and returns each one's output (or error) in input
    /// order.
    pub async fn map<'p, I>(
        &'p mut self,
        jobs: I,
    ) -> Result<Vec<Result<W::Output, JobError>>, PoolError>
    where
        I: IntoIterator<Item = W::Job>,
        I::IntoIter: Send + 'p,
    {
        let base = self.next_index;
        let mut stream = self.imap_unordered(jobs);
        let mut slots: Vec<Option<Result<W::Output, JobError>>> = Vec::new();
        while let Some((index, result)) = stream.next_indexed().await? {
            let at = (index - base) as usize;
            if slots.len() <= at {
                slots.resize_with(at + 1, || None);
            }
            slots[at] = Some(result);
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| PoolError::Refused(format!("job {i} gave no result"))))
            .collect()
    }

    /// Runs every job; results come as they finish.
    pub fn imap_unordered<'p, I>(&'p mut self, jobs: I) -> Unordered<'p, W>
    where
        I: IntoIterator<Item = W::Job>,
        I::IntoIter: Send + 'p,
    {
        let jobs = jobs.into_iter();
        let bar = self
            .progress
            .then(|| progress_bar(jobs.size_hint()))
            .flatten();
        Unordered {
            jobs: Box::new(jobs),
            bar,
            pool: self,
            exhausted: false,
            outstanding: HashSet::new(),
            batches: Batches::default(),
            ready: VecDeque::new(),
        }
    }
}

/// A progress bar on standard error when it is a terminal: with a length
/// when the jobs say how many they are, a counter otherwise.
fn progress_bar((low, high): (usize, Option<usize>)) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match high {
        Some(n) if n == low => indicatif::ProgressBar::new(n as u64),
        _ => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bar:40} {pos}/{len} jobs [{elapsed_precise}, {per_sec}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

impl<W: Worker> Unordered<'_, W> {
    /// The next result to finish: `None` once every job's result came; a
    /// job's failure is `Err(PoolError::Job(..))`.
    pub async fn next(&mut self) -> Option<Result<W::Output, PoolError>> {
        match self.next_indexed().await {
            Ok(Some((_, Ok(out)))) => Some(Ok(out)),
            Ok(Some((_, Err(e)))) => Some(Err(PoolError::Job(e))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The pool, to send updates between results.
    pub fn pool(&mut self) -> &mut Pool<W> {
        self.pool
    }

    /// Submits while the window has room, then waits for results.
    async fn next_indexed(
        &mut self,
    ) -> Result<Option<(u64, Result<W::Output, JobError>)>, PoolError> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                return Ok(Some(r));
            }
            let room = WINDOW.saturating_sub(self.outstanding.len());
            if !self.exhausted && room > 0 {
                // Jobs are numbered and encoded as the batch takes them.
                let (pool, mut failed) = (self.pool.id(), None);
                let (jobs, exhausted) = (&mut self.jobs, &mut self.exhausted);
                let next_index = &mut self.pool.next_index;
                let mut numbered = std::iter::from_fn(|| {
                    let Some(job) = jobs.next() else {
                        *exhausted = true;
                        return None;
                    };
                    match crate::wire::encode(&job) {
                        Ok(bytes) => {
                            let index = *next_index;
                            *next_index += 1;
                            tracing::debug!(%pool, job = index, "job submitted");
                            Some((index, bytes.to_vec()))
                        }
                        Err(e) => {
                            failed = Some(e);
                            None
                        }
                    }
                })
                .take(room);
                let batch = self.batches.fill(&mut numbered);
                if let Some(e) = failed {
                    return Err(PoolError::Encode {
                        what: "a job",
                        reason: e.to_string(),
                    });
                }
                if !batch.is_empty() {
                    self.outstanding.extend(batch.iter().map(|(i, _)| *i));
                    self.pool.submit(batch).await?;
                    // Take what has come meanwhile before submitting more.
                    self.drain_ready();
                    continue;
                }
            }
            if self.outstanding.is_empty() {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                return Ok(None);
            }
            let results = self.pool.session.next_results().await?;
            self.take(results);
        }
    }

    fn drain_ready(&mut self) {
        while let Some(results) = self.pool.session.try_results() {
            self.take(results);
        }
    }

    fn take(&mut self, results: crate::cluster::message::Results) {
        let mut read = Vec::with_capacity(results.results.len());
        for (index, outcome) in results.results {
            read.push(index);
            if !self.outstanding.remove(&index) {
                continue;
            }
            tracing::debug!(pool = %results.pool, job = index, "result received");
            let result = match outcome.output {
                Outcome::Output(bytes) => crate::wire::decode_owned::<W::Output>(&bytes)
                    .map_err(|e| JobError::Invalid(e.to_string())),
                Outcome::Panicked(panic) => Err(JobError::Panicked(panic.to_string())),
                Outcome::Invalid(why) => Err(JobError::Invalid(why)),
                Outcome::Died(why) => Err(JobError::Died(why)),
                Outcome::Aborted => Err(JobError::Aborted),
                // A pool's jobs have no dependencies: a head that says so
                // is not this version's.
                Outcome::DependencyTimeout | Outcome::Impossible(_) | Outcome::Unmet => Err(JobError::Invalid(
                    "the head answered with a dependency failure, which pool jobs cannot have: \
                     run the same para||el version on the head and here"
                        .into(),
                )),
            };
            self.ready.push_back((index, result));
        }
        self.pool.acknowledge(read);
    }
}
