//! Where a transport's tasks run: on the actix arbiter of the thread that
//! bound it, beside the actors they feed, when it was bound on one;
//! otherwise on the tokio runtime.
//!
//! Actix runs its actors (and the dispatchers that hand them messages) as
//! local tasks inside the `block_on` future of a current-thread tokio
//! runtime. A message that wakes a local task from a runtime task (QUIC's
//! drivers, the lanes) costs the runtime one more look at its I/O driver
//! (an `epoll_wait` with no timeout) before the local task runs: seen with
//! `strace` on remote `ask`s with both processes on one CPU, one such call
//! per hop from a runtime task to a local one (the `ask`'s server had one
//! per round trip; with its tasks on the arbiter, none). So QUIC's endpoint
//! and connection drivers and the lanes' tasks run on the arbiter too, and
//! a message stays on one queue from the socket to the actor.
//!
//! Two ways in: [`Spawner::spawn_root`] for a task started from a call a
//! user made (binding, connecting: any thread, any task, local or not),
//! which hands it to the arbiter ([`actix_rt::ArbiterHandle::spawn`]); and
//! [`Spawner::spawn`] for a task started by one of the transport's own
//! tasks, which on an arbiter are local tasks already, so it is spawned
//! locally at once. Tasks are spawned per connection and per large
//! payload, never per small message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::oneshot;

/// Spawns a transport's tasks: see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Spawner {
    /// The arbiter of the thread the transport was bound on, if any.
    arbiter: Option<actix_rt::ArbiterHandle>,
}

impl Spawner {
    /// A spawner for a transport bound on this thread.
    pub(crate) fn here() -> Self {
        Self {
            arbiter: actix_rt::Arbiter::try_current(),
        }
    }

    /// Runs `task` on the arbiter, or on the tokio runtime where the
    /// transport has no arbiter; callable from any thread and any task.
    /// Dropping the returned [`Task`] lets it run on; [`Task::abort`] stops
    /// it.
    pub(crate) fn spawn_root<F>(&self, task: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(arbiter) = &self.arbiter else {
            return Task::Runtime(tokio::spawn(task));
        };
        let (done, output) = oneshot::channel();
        let (abort, aborted) = oneshot::channel::<()>();
        // Refused only once the arbiter stopped: the task is dropped, and
        // awaiting it gives `None`, as for a runtime that shut down.
        let _ = arbiter.spawn(async move {
            // Only an explicit abort stops it, not a dropped handle.
            let stopped = async {
                if aborted.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                biased;
                () = stopped => {}
                out = task => {
                    let _ = done.send(out);
                }
            }
        });
        Task::Arbiter { output, abort }
    }

    /// Runs `task` beside the caller: a local task of the arbiter, or a
    /// runtime task where the transport has no arbiter. Only for a task the
    /// transport starts from inside one of its own tasks (those
    /// [`Spawner::spawn_root`] or this started), which on an arbiter run
    /// inside its `LocalSet`.
    pub(crate) fn spawn<F>(&self, task: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Task::Runtime(match self.arbiter {
            Some(_) => tokio::task::spawn_local(task),
            None => tokio::spawn(task),
        })
    }
}

/// A task a [`Spawner`] started; awaiting it gives its output, or `None`
/// if it was stopped (aborted, panicked, or its runtime or arbiter ended)
/// before it finished.
#[derive(Debug)]
pub(crate) enum Task<T> {
    /// Started by the runtime or the arbiter's `LocalSet` directly.
    Runtime(tokio::task::JoinHandle<T>),
    /// Handed to the arbiter.
    Arbiter {
        output: oneshot::Receiver<T>,
        abort: oneshot::Sender<()>,
    },
}

impl<T> Task<T> {
    /// Stops the task at its next wait.
    pub(crate) fn abort(self) {
        match self {
            Self::Runtime(handle) => handle.abort(),
            Self::Arbiter { abort, .. } => {
                let _ = abort.send(());
            }
        }
    }
}

impl<T> Future for Task<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.get_mut() {
            Self::Runtime(handle) => Pin::new(handle).poll(cx).map(Result::ok),
            Self::Arbiter { output, .. } => Pin::new(output).poll(cx).map(Result::ok),
        }
    }
}

/// quinn's tokio runtime, with its endpoint and connection drivers spawned
/// by a [`Spawner`].
#[derive(Debug)]
pub(crate) struct QuicRuntime {
    tokio: quinn::TokioRuntime,
    tasks: Spawner,
}

impl QuicRuntime {
    /// The runtime of an endpoint whose tasks `tasks` spawns.
    pub(crate) fn new(tasks: Spawner) -> Arc<Self> {
        Arc::new(Self {
            tokio: quinn::TokioRuntime,
            tasks,
        })
    }
}

impl quinn::Runtime for QuicRuntime {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn quinn::AsyncTimer>> {
        self.tokio.new_timer(at)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        // quinn starts drivers from the caller's task (binding, connecting)
        // as well as from its own; the driver runs until its endpoint or
        // connection ends.
        drop(self.tasks.spawn_root(future));
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        self.tokio.wrap_udp_socket(socket)
    }

    fn now(&self) -> Instant {
        self.tokio.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn on_an_arbiter_tasks_run_there_give_their_output_and_stop_when_aborted() {
        let tasks = Spawner::here();
        assert!(tasks.arbiter.is_some());
        let here = std::thread::current().id();
        let ran_on = tasks
            .spawn_root(async { std::thread::current().id() })
            .await;
        assert_eq!(ran_on, Some(here));
        // From inside one of them, beside it.
        let nested = {
            let tasks = tasks.clone();
            tasks
                .clone()
                .spawn_root(async move { tasks.spawn(async { std::thread::current().id() }).await })
        };
        assert_eq!(nested.await, Some(Some(here)));
        // Spawned from a thread that is not the arbiter's: it still runs there.
        let from_elsewhere = {
            let tasks = tasks.clone();
            std::thread::spawn(move || tasks.spawn_root(async { std::thread::current().id() }))
                .join()
                .unwrap()
        };
        assert_eq!(from_elsewhere.await, Some(here));
        // A dropped handle lets the task run on; an aborted one stops it.
        let (tx, rx) = oneshot::channel();
        drop(tasks.spawn_root(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = tx.send(());
        }));
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), rx).await;
        assert!(matches!(waited, Ok(Ok(()))), "a dropped task stopped");
        assert_stops_when_aborted(&tasks).await;
    }

    /// A task that waits forever, aborted, is dropped (and so is what it holds).
    async fn assert_stops_when_aborted(tasks: &Spawner) {
        let (held, gone) = oneshot::channel::<()>();
        let stopped = tasks.spawn_root(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        stopped.abort();
        let dropped = tokio::time::timeout(std::time::Duration::from_secs(5), gone).await;
        assert!(matches!(dropped, Ok(Err(_))), "an aborted task still runs");
    }

    #[tokio::test]
    async fn without_an_arbiter_tasks_run_on_the_runtime() {
        let tasks = Spawner::here();
        assert!(tasks.arbiter.is_none());
        assert_eq!(tasks.spawn_root(async { 7 }).await, Some(7));
        assert_eq!(tasks.spawn(async { 8 }).await, Some(8));
        assert_stops_when_aborted(&tasks).await;
    }
}
