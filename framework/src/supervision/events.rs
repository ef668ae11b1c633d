//! What a supervisor reports, each report stamped with when it happened,
//! and the bounded history that lets a reader who comes late see what
//! happened before it subscribed.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use crate::actor::ExitReason;
use crate::id::ActorId;

/// How many reports a supervisor keeps for [`super::SupervisorRef::history`]
/// and for the replay of [`super::SupervisorRef::events`]; older ones are dropped.
pub const HISTORY: usize = 256;

/// What a supervisor reports as it works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A child stopped.
    Down {
        /// Its name in the spec.
        name: String,
        /// Its id (kept across restarts).
        id: ActorId,
        /// Why.
        reason: ExitReason,
    },
    /// A child was started again, as incarnation `incarnation` (a remote or
    /// process child is then on its way up: [`super::SupervisorRef::running`]
    /// says when it runs).
    Restarted {
        /// Its name.
        name: String,
        /// Its id: the same as before.
        id: ActorId,
        /// How many times it has been started, this start included: 2 after
        /// the first restart, whether the child failed or the supervisor
        /// stopped it to restart it with a failed sibling.
        incarnation: u64,
    },
    /// Too many restarts within the intensity window: every child was
    /// terminated and the supervisor stopped.
    GaveUp,
}

impl fmt::Display for SupervisorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorEvent::Down { name, id, reason } => {
                write!(f, "child {name} ({id}) is down: {reason}")
            }
            SupervisorEvent::Restarted {
                name,
                id,
                incarnation,
            } => write!(
                f,
                "child {name} ({id}) restarted, incarnation {incarnation}"
            ),
            SupervisorEvent::GaveUp => {
                f.write_str("gave up: too many restarts within the intensity window")
            }
        }
    }
}

/// A [`SupervisorEvent`] with when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampedEvent {
    /// Its number among the supervisor's reports, from 1: a gap means
    /// reports were dropped (a reader too slow, or older than the history).
    pub seq: u64,
    /// The wall-clock time it happened.
    pub at: SystemTime,
    /// How long after the supervisor started it happened (monotonic clock).
    pub since_start: Duration,
    /// What happened.
    pub event: SupervisorEvent,
}

impl fmt::Display for StampedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{:.3}s #{} {}",
            self.since_start.as_secs_f64(),
            self.seq,
            self.event
        )
    }
}

/// The reports of one supervisor: sent to live readers and kept, the last
/// [`HISTORY`] of them, for late ones.
pub(super) struct Journal {
    started: Instant,
    /// Held while a report is numbered, kept and sent, so that a reader
    /// subscribing under it misses none and gets none twice.
    kept: Mutex<Kept>,
}

struct Kept {
    seq: u64,
    history: VecDeque<StampedEvent>,
    /// `None` once the supervisor stopped: readers then end.
    live: Option<broadcast::Sender<StampedEvent>>,
}

impl Journal {
    pub(super) fn new() -> Self {
        Journal {
            started: Instant::now(),
            kept: Mutex::new(Kept {
                seq: 0,
                history: VecDeque::with_capacity(HISTORY),
                live: Some(broadcast::channel(HISTORY).0),
            }),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stamps `event`, keeps it and sends it to the live readers.
    pub(super) fn record(&self, event: SupervisorEvent) {
        let mut kept = self.kept();
        kept.seq += 1;
        let stamped = StampedEvent {
            seq: kept.seq,
            at: SystemTime::now(),
            since_start: self.started.elapsed(),
            event,
        };
        if kept.history.len() == HISTORY {
            kept.history.pop_front();
        }
        kept.history.push_back(stamped.clone());
        if let Some(live) = &kept.live {
            // No live reader is fine: the history has it.
            let _ = live.send(stamped);
        }
    }

    /// The supervisor stopped: readers end after the reports they have.
    pub(super) fn close(&self) {
        self.kept().live = None;
    }

    /// The kept reports, oldest first.
    pub(super) fn history(&self) -> Vec<StampedEvent> {
        self.kept().history.iter().cloned().collect()
    }

    /// A reader that gets the kept reports first, then every later one.
    pub(super) fn subscribe(&self) -> EventStream {
        let kept = self.kept();
        let live = match &kept.live {
            Some(live) => live.subscribe(),
            // A receiver whose sender is gone: it reads as closed.
            None => broadcast::channel(1).1,
        };
        EventStream {
            backlog: kept.history.clone(),
            live,
        }
    }
}

/// The reports of a supervisor, as [`super::SupervisorRef::events`] gives
/// them: first those it kept from before (at most [`HISTORY`]), then each
/// new one as it happens; none twice, none skipped unless the reader falls
/// more than [`HISTORY`] reports behind.
pub struct EventStream {
    backlog: VecDeque<StampedEvent>,
    live: broadcast::Receiver<StampedEvent>,
}

impl EventStream {
    /// The next report; waits for one. `Err(Closed)` once the supervisor
    /// stopped and every report was read; `Err(Lagged(n))` when this reader
    /// fell behind and `n` reports were dropped for it (read on to continue).
    pub async fn recv(&mut self) -> Result<StampedEvent, broadcast::error::RecvError> {
        match self.backlog.pop_front() {
            Some(event) => Ok(event),
            None => self.live.recv().await,
        }
    }

    /// The next report if there is one now, without waiting.
    pub fn try_recv(&mut self) -> Result<StampedEvent, broadcast::error::TryRecvError> {
        match self.backlog.pop_front() {
            Some(event) => Ok(event),
            None => self.live.try_recv(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gave_up(journal: &Journal, n: usize) {
        for _ in 0..n {
            journal.record(SupervisorEvent::GaveUp);
        }
    }

    #[test]
    fn a_late_reader_gets_the_kept_reports_then_the_new_ones_each_once() {
        let journal = Journal::new();
        let before = SystemTime::now();
        gave_up(&journal, 2);
        let mut late = journal.subscribe();
        gave_up(&journal, 1);
        let seqs: Vec<u64> = std::iter::from_fn(|| late.try_recv().ok())
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        let history = journal.history();
        assert_eq!(history.len(), 3);
        assert!(history.iter().all(|e| e.at >= before));
        assert!(
            history
                .windows(2)
                .all(|w| w[0].since_start <= w[1].since_start)
        );
        journal.close();
        let mut after = journal.subscribe();
        assert_eq!(after.try_recv().map(|e| e.seq), Ok(1));
        assert_eq!(late.try_recv(), Err(broadcast::error::TryRecvError::Closed));
    }

    #[test]
    fn the_history_keeps_only_the_latest_reports() {
        let journal = Journal::new();
        gave_up(&journal, HISTORY + 5);
        let history = journal.history();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history[0].seq, 6);
        assert_eq!(history[HISTORY - 1].seq, (HISTORY + 5) as u64);
    }
}
