//! The decisions of a supervisor, as a pure state machine: which children
//! to terminate and restart when one exits, and when to give up. It follows
//! Erlang/OTP's `supervisor`: strategies `one_for_one`, `one_for_all`,
//! `rest_for_one`; restart types `permanent`, `transient`, `temporary`; and
//! the restart intensity (more than `max_restarts` restarts within `within`
//! makes the supervisor terminate its children and fail upward).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use crate::actor::ExitReason;

/// What a supervisor restarts when one child exits and is to be restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only that child.
    #[default]
    OneForOne,
    /// Every child: the others are terminated (in reverse start order), then all restart in order.
    OneForAll,
    /// That child and every child started after it.
    RestForOne,
}

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always.
    #[default]
    Permanent,
    /// Only after an abnormal exit (not a normal stop or a shutdown).
    Transient,
    /// Never; the child is forgotten once it exits (even when a sibling's
    /// failure terminated it).
    Temporary,
}

/// At most `max_restarts` restarts within `within`; one more and the
/// supervisor gives up (OTP's MaxR and MaxT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed in the window.
    pub max_restarts: u32,
    /// The window.
    pub within: Duration,
}

impl Default for Intensity {
    /// OTP's default: 1 restart in 5 seconds.
    fn default() -> Self {
        Intensity {
            max_restarts: 1,
            within: Duration::from_secs(5),
        }
    }
}

/// A child as the plan knows it: a stable key, its restart type, and whether it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedChild {
    /// The caller's key for the child.
    pub key: u64,
    /// Its restart type.
    pub restart: Restart,
    /// True while it runs.
    pub running: bool,
}

/// What the supervisor must do after a child exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing more: the child is not restarted (and, if it was temporary, forgotten).
    Nothing,
    /// Terminate `terminate` (in that order: reverse start order), then
    /// start `start` (in that order: start order). `forget` lists
    /// temporary children that were terminated and are not coming back.
    Restart {
        /// Running children to terminate first.
        terminate: Vec<u64>,
        /// Children to start, in order.
        start: Vec<u64>,
        /// Temporary children dropped from the supervisor.
        forget: Vec<u64>,
    },
    /// Too many restarts: terminate every running child (reverse start
    /// order) and fail upward.
    Escalate {
        /// Running children to terminate.
        terminate: Vec<u64>,
    },
}

/// A supervisor's plan: its children in start order and its recent restarts.
#[derive(Clone, Debug)]
pub struct Plan {
    strategy: Strategy,
    intensity: Intensity,
    children: Vec<PlannedChild>,
    restarts: VecDeque<Instant>,
}

impl Plan {
    /// An empty plan.
    pub fn new(strategy: Strategy, intensity: Intensity) -> Self {
        Plan {
            strategy,
            intensity,
            children: Vec::new(),
            restarts: VecDeque::new(),
        }
    }

    /// Adds a running child at the end of the start order.
    pub fn add(&mut self, key: u64, restart: Restart) {
        self.children.push(PlannedChild {
            key,
            restart,
            running: true,
        });
    }

    /// Forgets a temporary child the supervisor stopped itself (it is never
    /// started again); true when `key` was one.
    pub fn remove_temporary(&mut self, key: u64) -> bool {
        let before = self.children.len();
        self.children
            .retain(|c| !(c.key == key && c.restart == Restart::Temporary));
        self.children.len() != before
    }

    /// Forgets child `key` whatever its restart (the supervisor stopped it
    /// for good: OTP's `terminate_child` then `delete_child`); true when it
    /// was there.
    pub fn remove(&mut self, key: u64) -> bool {
        let before = self.children.len();
        self.children.retain(|c| c.key != key);
        self.children.len() != before
    }

    /// The children, in start order.
    pub fn children(&self) -> &[PlannedChild] {
        &self.children
    }

    /// Keys of the running children in reverse start order: the shutdown order.
    pub fn shutdown_order(&self) -> Vec<u64> {
        self.children
            .iter()
            .rev()
            .filter(|c| c.running)
            .map(|c| c.key)
            .collect()
    }

    /// Records that child `key` exited for `reason` at `now` and says what
    /// to do; the plan already reflects the decision (children to start are
    /// marked running, forgotten ones removed). Unknown keys change nothing.
    pub fn exited(&mut self, key: u64, reason: &ExitReason, now: Instant) -> Decision {
        let Some(at) = self.children.iter().position(|c| c.key == key) else {
            return Decision::Nothing;
        };
        self.children[at].running = false;
        let restart = match self.children[at].restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        };
        if !restart {
            if self.children[at].restart == Restart::Temporary {
                self.children.remove(at);
            }
            return Decision::Nothing;
        }
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.intensity.within)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        if self.restarts.len() > self.intensity.max_restarts as usize {
            let terminate = self.shutdown_order();
            for c in &mut self.children {
                c.running = false;
            }
            return Decision::Escalate { terminate };
        }
        let affected = match self.strategy {
            Strategy::OneForOne => at..at + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => at..self.children.len(),
        };
        let terminate: Vec<u64> = self.children[affected.clone()]
            .iter()
            .rev()
            .filter(|c| c.running)
            .map(|c| c.key)
            .collect();
        let forget: Vec<u64> = self.children[affected.clone()]
            .iter()
            .filter(|c| c.restart == Restart::Temporary)
            .map(|c| c.key)
            .collect();
        self.children.retain(|c| !forget.contains(&c.key));
        let start: Vec<u64> = self
            .children
            .iter()
            .enumerate()
            .filter(|(i, c)| match self.strategy {
                Strategy::OneForOne => c.key == key,
                Strategy::OneForAll => true,
                Strategy::RestForOne => *i >= at,
            })
            .map(|(_, c)| c.key)
            .collect();
        for c in &mut self.children {
            if start.contains(&c.key) {
                c.running = true;
            }
        }
        Decision::Restart {
            terminate,
            start,
            forget,
        }
    }
}
