//! The hand-off of a peer's received frames from the task that reads them
//! to the layer above ([`super::Inbound`]): a bounded queue that both sides
//! use in batches.
//!
//! The reading task finds frames by the hundred in one read of the small
//! lane; the layer above takes them by the hundred too. A tokio `mpsc`
//! channel between them paid for each frame on both sides (a slot claimed
//! and released, a block found, an atomic wakeup check): about 190
//! instructions a frame, `callgrind` said, on the receiving node of a
//! stream of remote tells (2,269 a tell in all). Here a batch costs one
//! lock on each side and at most one wakeup, and a frame nothing: a batch
//! given to an empty queue, and taken whole, changes hands as its vector.
//!
//! One [`Giver`] and one [`Taker`] (each owned by one task). The queue
//! holds at most its capacity: a giver waits for room, so a layer above
//! that stops taking stops the reading task, and through QUIC's flow
//! control the peer. Dropping the giver ends the queue once it is taken
//! empty; dropping the taker drops what waits, and what is given after.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A bounded batch queue of `capacity` items; see the module docs.
pub(crate) fn handoff<T>(capacity: usize) -> (Giver<T>, Taker<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: Vec::with_capacity(capacity),
            taker: None,
            giver: None,
            giver_gone: false,
            taker_gone: false,
        }),
        capacity: capacity.max(1),
    });
    (Giver(shared.clone()), Taker(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct State<T> {
    /// What waits, front first. A batch that finds it empty is swapped in
    /// (and a taker that takes it all swaps it out): no item is moved.
    queue: Vec<T>,
    /// The taker, waiting for items.
    taker: Option<Waker>,
    /// The giver, waiting for room.
    giver: Option<Waker>,
    giver_gone: bool,
    taker_gone: bool,
}

/// Registers `cx`'s waker in `slot`, unless the one there wakes the same task.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The giving side of a [`handoff`].
pub(crate) struct Giver<T>(Arc<Shared<T>>);

impl<T> Giver<T> {
    /// Moves the items of `items`, front first, into the queue as it has
    /// room; resolves once `items` is empty. Once the taker is gone the
    /// rest is dropped at once. Cancel-safe: what was not moved stays in
    /// `items`, in order.
    pub(crate) async fn give_all(&self, items: &mut Vec<T>) {
        poll_fn(|cx| self.give(Some(cx), items)).await
    }

    /// [`Giver::give_all`] unless `stop` (the peer going down) comes
    /// first; false when it did. What fits now goes in before `stop` is
    /// looked at, so the frames read before a peer's end still go up as
    /// far as there is room.
    pub(crate) async fn give_all_until(
        &self,
        items: &mut Vec<T>,
        stop: impl std::future::Future,
    ) -> bool {
        if self.give(None, items).is_ready() {
            return true;
        }
        tokio::select! {
            biased;
            _ = stop => false,
            () = self.give_all(items) => true,
        }
    }

    /// Moves what fits; with a context, registers it to be woken for room
    /// when some is left.
    fn give(&self, cx: Option<&Context<'_>>, items: &mut Vec<T>) -> Poll<()> {
        if items.is_empty() {
            return Poll::Ready(());
        }
        let mut state = self.0.lock();
        if state.taker_gone {
            drop(state);
            items.clear();
            return Poll::Ready(());
        }
        let room = self.0.capacity.saturating_sub(state.queue.len());
        let n = room.min(items.len());
        if state.queue.is_empty() && n == items.len() {
            std::mem::swap(&mut state.queue, items);
        } else {
            state.queue.extend(items.drain(..n));
        }
        let wake = if n > 0 { state.taker.take() } else { None };
        if let Some(cx) = cx
            && !items.is_empty()
        {
            register(&mut state.giver, cx);
        }
        drop(state);
        if let Some(taker) = wake {
            taker.wake();
        }
        if items.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for Giver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.giver_gone = true;
        let taker = state.taker.take();
        drop(state);
        if let Some(taker) = taker {
            taker.wake();
        }
    }
}

/// The taking side of a [`handoff`].
pub(crate) struct Taker<T>(Arc<Shared<T>>);

impl<T> Taker<T> {
    /// True when nothing waits now.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().queue.is_empty()
    }

    /// Moves what waits, at most `limit` (at least one), onto the end of
    /// `out`, in order: `Ready(n)` with the count, `Ready(0)` once the giver
    /// is gone and everything was taken, `Pending` (woken when items come)
    /// while nothing waits.
    pub(crate) fn poll_take(
        &mut self,
        cx: &Context<'_>,
        out: &mut Vec<T>,
        limit: usize,
    ) -> Poll<usize> {
        let mut state = self.0.lock();
        if state.queue.is_empty() {
            if state.giver_gone {
                return Poll::Ready(0);
            }
            register(&mut state.taker, cx);
            return Poll::Pending;
        }
        let n = limit.max(1).min(state.queue.len());
        if n == state.queue.len() && out.is_empty() {
            std::mem::swap(&mut state.queue, out);
        } else {
            out.extend(state.queue.drain(..n));
        }
        let giver = state.giver.take();
        drop(state);
        if let Some(giver) = giver {
            giver.wake();
        }
        Poll::Ready(n)
    }
}

impl<T> Drop for Taker<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.taker_gone = true;
        let dropped = std::mem::take(&mut state.queue);
        let giver = state.giver.take();
        drop(state);
        drop(dropped);
        if let Some(giver) = giver {
            giver.wake();
        }
    }
}

impl<T> std::fmt::Debug for Taker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taker")
            .field("waiting", &self.0.lock().queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    async fn take(taker: &mut Taker<u32>, limit: usize) -> Vec<u32> {
        let mut out = Vec::new();
        take_into(taker, &mut out, limit).await;
        out
    }

    async fn take_into(taker: &mut Taker<u32>, out: &mut Vec<u32>, limit: usize) -> usize {
        timeout(WAIT, poll_fn(|cx| taker.poll_take(cx, out, limit)))
            .await
            .expect("take timed out")
    }

    async fn give(giver: &Giver<u32>, mut items: Vec<u32>) {
        timeout(WAIT, giver.give_all(&mut items))
            .await
            .expect("give timed out");
    }

    async fn finished(task: tokio::task::JoinHandle<()>) {
        timeout(WAIT, task)
            .await
            .expect("task timed out")
            .expect("task");
    }

    #[tokio::test]
    async fn a_batch_goes_in_order_and_the_giver_waits_for_room() {
        let (giver, mut taker) = handoff::<u32>(4);
        let mut items: Vec<u32> = (0..10).collect();
        // Four fit; the giver waits with the rest, in order.
        let waited = timeout(Duration::from_millis(50), giver.give_all(&mut items)).await;
        assert!(waited.is_err(), "a full queue took more");
        assert_eq!(items, [4, 5, 6, 7, 8, 9]);
        assert_eq!(take(&mut taker, 3).await, [0, 1, 2]);
        let giving = tokio::spawn(async move {
            giver.give_all(&mut items).await;
            assert!(items.is_empty());
        });
        let mut got = Vec::new();
        while got.len() < 7 {
            got.extend(take(&mut taker, 100).await);
        }
        assert_eq!(got, [3, 4, 5, 6, 7, 8, 9]);
        finished(giving).await;
        // The giver is gone and everything was taken: the end.
        assert!(take(&mut taker, 1).await.is_empty());
    }

    #[tokio::test]
    async fn a_batch_into_an_empty_queue_taken_whole_is_not_moved() {
        let (giver, mut taker) = handoff::<u32>(16);
        let items: Vec<u32> = (0..10).collect();
        let at = items.as_ptr();
        give(&giver, items).await;
        let mut out = Vec::new();
        let n = take_into(&mut taker, &mut out, 16).await;
        assert_eq!((n, out.as_ptr()), (10, at), "the batch was copied");
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        // Taken in part, or given behind what waits: moved, in order.
        give(&giver, vec![1, 2, 3]).await;
        give(&giver, vec![4]).await;
        assert_eq!(take(&mut taker, 2).await, [1, 2]);
        assert_eq!(take(&mut taker, 8).await, [3, 4]);
    }

    #[tokio::test]
    async fn what_fits_goes_in_even_when_the_stop_has_come() {
        let (giver, mut taker) = handoff::<u32>(2);
        let mut items = vec![1, 2, 3];
        let stopped = std::future::ready(());
        assert!(
            !timeout(WAIT, giver.give_all_until(&mut items, stopped))
                .await
                .expect("give")
        );
        assert_eq!(items, [3]);
        assert_eq!(take(&mut taker, 8).await, [1, 2]);
        // With room for all, the stop is not even looked at.
        let stopped = std::future::ready(());
        assert!(
            timeout(WAIT, giver.give_all_until(&mut items, stopped))
                .await
                .expect("give")
        );
        assert_eq!(take(&mut taker, 8).await, [3]);
    }

    #[tokio::test]
    async fn a_waiting_taker_is_woken_and_what_waits_outlives_the_giver() {
        let (giver, mut taker) = handoff::<u32>(8);
        let giving = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            give(&giver, vec![1, 2]).await;
        });
        assert_eq!(take(&mut taker, 8).await, [1, 2]);
        finished(giving).await;
        assert!(take(&mut taker, 8).await.is_empty());
    }

    #[tokio::test]
    async fn without_a_taker_items_are_dropped_and_the_giver_goes_on() {
        let (giver, taker) = handoff::<u32>(2);
        let mut items = vec![1, 2, 3];
        let waited = timeout(Duration::from_millis(20), giver.give_all(&mut items)).await;
        assert!(waited.is_err());
        assert!(!taker.is_empty());
        drop(taker);
        timeout(WAIT, giver.give_all(&mut items))
            .await
            .expect("a giver without taker waited");
        assert!(items.is_empty());
    }
}
