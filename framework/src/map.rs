//! `parallel::map`: run a function on `n` background threads and collect
//! the results in order — torch-ipc's `parallel.map(n, fn, args):join()`,
//! handy for I/O off the main thread.
//!
//! ```
//! let sizes = parallel::map(3, |names: &Vec<&str>, id| names[id - 1].len(), vec!["a", "bb", "ccc"])
//!     .join()
//!     .unwrap();
//! assert_eq!(sizes, vec![1, 2, 3]);
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::actor::panic_text;

/// Why a `map` produced no results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The function panicked on one of the threads.
    #[error("map worker {id} of {n} panicked: {message}")]
    Panicked {
        /// The worker's id (1-based, as the function saw it).
        id: usize,
        /// How many workers there were.
        n: usize,
        /// The panic message.
        message: String,
    },
    /// A thread could not be started.
    #[error("could not start map worker {id}: {reason}; lower `n` or raise the thread limit")]
    Spawn {
        /// The worker's id.
        id: usize,
        /// What the OS said.
        reason: String,
    },
}

/// Work running on background threads; [`Mapped::join`] collects it.
pub struct Mapped<R> {
    n: usize,
    threads: Vec<Result<JoinHandle<R>, MapError>>,
}

/// Runs `f(&args, id)` for `id` in `1..=n`, each on its own thread, sharing
/// `args` (the seed's `parallel.map(n, fn, args)`). The threads start at
/// once; [`Mapped::join`] waits for them and returns the results in id order.
pub fn map<A, R, F>(n: usize, f: F, args: A) -> Mapped<R>
where
    A: Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(&A, usize) -> R + Send + Sync + 'static,
{
    let shared = Arc::new((f, args));
    let threads = (1..=n)
        .map(|id| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("parallel-map-{id}"))
                .spawn(move || (shared.0)(&shared.1, id))
                .map_err(|e| MapError::Spawn {
                    id,
                    reason: e.to_string(),
                })
        })
        .collect();
    Mapped { n, threads }
}

impl<R: Send + 'static> Mapped<R> {
    /// Waits for every thread; the results in id order, or the first failure
    /// (a panic on a thread is an error here, not a crash).
    pub fn join(self) -> Result<Vec<R>, MapError> {
        let n = self.n;
        let mut results = Vec::with_capacity(n);
        let mut first_error = None;
        for (i, thread) in self.threads.into_iter().enumerate() {
            match thread.and_then(|t| {
                t.join().map_err(|p| MapError::Panicked {
                    id: i + 1,
                    n,
                    message: panic_text(p.as_ref()),
                })
            }) {
                Ok(r) => results.push(r),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// [`Mapped::join`] for async code: waits without blocking the runtime.
    pub async fn joined(self) -> Result<Vec<R>, MapError> {
        let n = self.n;
        tokio::task::spawn_blocking(move || self.join())
            .await
            .unwrap_or_else(|e| {
                Err(MapError::Panicked {
                    id: 0,
                    n,
                    message: e.to_string(),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_id_order() {
        let out = map(8, |base: &u64, id| base + id as u64, 100)
            .join()
            .unwrap();
        assert_eq!(out, (101..=108).collect::<Vec<u64>>());
    }

    #[test]
    fn a_panic_is_an_error_not_a_crash() {
        let err = map(
            3,
            |_: &(), id| {
                if id == 2 {
                    panic!("worker two fails")
                } else {
                    id
                }
            },
            (),
        )
        .join()
        .unwrap_err();
        assert_eq!(
            err,
            MapError::Panicked {
                id: 2,
                n: 3,
                message: "worker two fails".into()
            }
        );
    }

    #[test]
    fn the_work_really_runs_in_parallel() {
        let barrier = std::sync::Barrier::new(4);
        let out = map(
            4,
            |b: &std::sync::Barrier, id| {
                b.wait(); // deadlocks unless all four run at once
                id
            },
            barrier,
        )
        .join()
        .unwrap();
        assert_eq!(out, vec![1, 2, 3, 4]);
    }

    #[actix_rt::test]
    async fn joined_waits_without_blocking_the_runtime() {
        let out = map(2, |_: &(), id| id * 10, ()).joined().await.unwrap();
        assert_eq!(out, vec![10, 20]);
    }
}
