//! [`Metadata`]: when and where a task ran and what it printed (the seed's
//! `AsyncResult.metadata`).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cluster::message::JobMeta;

/// When and where a task ran, and what it printed (the seed's `metadata`).
/// Times are wall-clock: `submitted` and `received` by this client's
/// clock, `started` and `completed` by its engine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The engine that ran it.
    pub engine: Option<u32>,
    /// When this client submitted it.
    pub submitted: SystemTime,
    /// When its engine started it (`None`: it never ran, or the engine
    /// does not say: a direct apply).
    pub started: Option<SystemTime>,
    /// When its engine finished it.
    pub completed: Option<SystemTime>,
    /// When its result reached this client.
    pub received: SystemTime,
    /// What it printed with `parallel::print!` (a load-balanced task's).
    pub printed: String,
}

impl Metadata {
    /// A load-balanced task's, from what its engine and the head said.
    pub(super) fn of_task(meta: JobMeta, submitted: SystemTime) -> Metadata {
        let at = |us: u64| (us > 0).then(|| UNIX_EPOCH + Duration::from_micros(us));
        Metadata {
            engine: meta.engine,
            submitted,
            started: at(meta.started_us),
            completed: at(meta.completed_us),
            received: SystemTime::now(),
            printed: meta.printed,
        }
    }

    /// A direct apply's on `engine`, by this client's clock.
    pub(super) fn of_apply(engine: u32, submitted: SystemTime) -> Metadata {
        Metadata {
            engine: Some(engine),
            submitted,
            started: None,
            completed: None,
            received: SystemTime::now(),
            printed: String::new(),
        }
    }
}

/// The metadata of an [`super::AsyncResult`]'s tasks, each set once its
/// result is in.
pub(super) type Metas = Arc<[OnceLock<Metadata>]>;

/// Room for the metadata of `n` tasks.
pub(super) fn metas(n: usize) -> Metas {
    (0..n).map(|_| OnceLock::new()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times_become_system_times_and_zero_means_never() {
        let submitted = SystemTime::now();
        let meta = JobMeta {
            engine: Some(2),
            started_us: 1_000_000,
            completed_us: 3_500_000,
            printed: "hello\n".into(),
        };
        let m = Metadata::of_task(meta, submitted);
        assert_eq!(m.engine, Some(2));
        assert_eq!(m.started, Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(m.completed, Some(UNIX_EPOCH + Duration::from_millis(3500)));
        assert_eq!(m.printed, "hello\n");
        assert!(m.received >= submitted);
        let never = Metadata::of_task(JobMeta::default(), submitted);
        assert_eq!(
            (never.started, never.completed, never.engine),
            (None, None, None)
        );
    }
}
