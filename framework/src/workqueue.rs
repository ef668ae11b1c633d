//! Named work queues: torch-ipc's `parallel.workqueue(name)`. The first
//! handle opened under a name is the queue's *owner*; every other handle is
//! a *worker*. What the owner writes, one worker reads; what a worker
//! writes, the owner reads — the seed's pattern of background threads
//! taking commands and handing answers back. Bounded: a writer waits while
//! the queue is full. When the owner closes (or drops) the queue, workers'
//! reads return `None` once everything written is read.
//!
//! ```
//! use parallel::WorkQueue;
//! let q = WorkQueue::<String>::named("doc queue");
//! let workers = parallel::map(2, |_: &(), _| {
//!     let q = WorkQueue::<String>::named("doc queue");
//!     while let Some(name) = q.read() {
//!         q.write(name.to_uppercase()).unwrap();
//!     }
//! }, ());
//! for f in ["f1", "f2", "f3"] {
//!     q.write(f.to_string()).unwrap();
//! }
//! let mut answers: Vec<String> = (0..3).map(|_| q.read().unwrap()).collect();
//! answers.sort();
//! assert_eq!(answers, ["F1", "F2", "F3"]);
//! q.close();
//! workers.join().unwrap();
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, Weak};

/// How many items a queue holds in each direction before a writer waits.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Why a write did not happen; the item comes back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the work queue is closed; the item was not written")]
pub struct Closed<T>(pub T);

struct Lane<T> {
    items: VecDeque<T>,
}

struct State<T> {
    to_workers: Lane<T>,
    to_owner: Lane<T>,
    closed: bool,
}

struct Shared<T> {
    name: String,
    capacity: usize,
    state: Mutex<State<T>>,
    changed: Condvar,
}

/// A handle on a named queue; see the module docs for who reads what.
pub struct WorkQueue<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    owner: bool,
}

type Directory = Mutex<HashMap<String, Weak<dyn Any + Send + Sync>>>;

fn directory() -> &'static Directory {
    static DIRECTORY: std::sync::OnceLock<Directory> = std::sync::OnceLock::new();
    DIRECTORY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl<T: Send + 'static> WorkQueue<T> {
    /// Opens the queue named `name`, creating it (and becoming its owner) if
    /// it does not exist in this process yet.
    pub fn named(name: &str) -> Self {
        Self::with_capacity(name, DEFAULT_CAPACITY)
    }

    /// As [`WorkQueue::named`], with a capacity for a queue this call creates.
    pub fn with_capacity(name: &str, capacity: usize) -> Self {
        let mut dir = directory().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = dir.get(name).and_then(Weak::upgrade)
            && let Ok(shared) = existing.downcast::<Shared<T>>()
        {
            return WorkQueue {
                shared,
                owner: false,
            };
        }
        let shared = Arc::new(Shared {
            name: name.to_string(),
            capacity: capacity.max(1),
            state: Mutex::new(State {
                to_workers: Lane {
                    items: VecDeque::new(),
                },
                to_owner: Lane {
                    items: VecDeque::new(),
                },
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let any: Arc<dyn Any + Send + Sync> = shared.clone();
        dir.insert(name.to_string(), Arc::downgrade(&any));
        // Keep the type-erased handle alive exactly as long as the typed one.
        std::mem::forget(any);
        WorkQueue {
            shared,
            owner: true,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// True for the handle that created the queue.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Writes `item`: from the owner to the workers, or from a worker to the
    /// owner. Waits while that direction is full.
    pub fn write(&self, item: T) -> Result<(), Closed<T>> {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.closed {
                return Err(Closed(item));
            }
            let capacity = self.shared.capacity;
            let lane = if self.owner {
                &mut state.to_workers
            } else {
                &mut state.to_owner
            };
            if lane.items.len() < capacity {
                lane.items.push_back(item);
                self.shared.changed.notify_all();
                return Ok(());
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Reads the next item for this handle (a worker gets the owner's
    /// writes, the owner gets the workers'). Waits for one; `None` once the
    /// queue is closed and nothing is left for this handle.
    pub fn read(&self) -> Option<T> {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let lane = if self.owner {
                &mut state.to_owner
            } else {
                &mut state.to_workers
            };
            if let Some(item) = lane.items.pop_front() {
                self.shared.changed.notify_all();
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Closes the queue: writers get their item back, readers drain what is
    /// left and then read `None`.
    pub fn close(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        self.shared.changed.notify_all();
    }
}

impl<T: Send + 'static> Drop for WorkQueue<T> {
    fn drop(&mut self) {
        if self.owner {
            self.close();
            let mut dir = directory().lock().unwrap_or_else(|e| e.into_inner());
            if dir
                .get(&self.shared.name)
                .is_some_and(|w| w.strong_count() <= 1)
            {
                dir.remove(&self.shared.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::map::map;

    #[test]
    fn ten_thousand_items_through_several_readers_lose_and_duplicate_nothing() {
        let q = WorkQueue::<u64>::with_capacity("wq test 10k", 64);
        let readers = map(
            4,
            |_: &(), _| {
                let q = WorkQueue::<u64>::named("wq test 10k");
                assert!(!q.is_owner());
                let mut seen = 0u64;
                while let Some(item) = q.read() {
                    q.write(item).unwrap();
                    seen += 1;
                }
                seen
            },
            (),
        );
        // The owner writes from one thread and reads the answers on another,
        // so neither direction can fill up for good.
        let q = Arc::new(q);
        let writer = std::thread::spawn({
            let q = q.clone();
            move || {
                for i in 0..10_000u64 {
                    q.write(i).unwrap();
                }
            }
        });
        let mut back = HashSet::new();
        for _ in 0..10_000 {
            assert!(back.insert(q.read().unwrap()), "duplicate");
        }
        writer.join().unwrap();
        q.close();
        assert_eq!(back.len(), 10_000);
        assert_eq!(readers.join().unwrap().iter().sum::<u64>(), 10_000);
    }

    #[test]
    fn a_closed_queue_gives_the_item_back_and_reads_none() {
        let q = WorkQueue::<String>::named("wq test closed");
        let worker = WorkQueue::<String>::named("wq test closed");
        q.write("left".into()).unwrap();
        q.close();
        assert_eq!(q.write("late".into()), Err(Closed("late".to_string())));
        assert_eq!(worker.read().as_deref(), Some("left"));
        assert_eq!(worker.read(), None);
    }
}
