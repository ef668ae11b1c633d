//! [`AsyncResult`]: a result that comes later, from a direct view or a
//! load-balanced one.

use std::time::Duration;

use super::ClientError;
#[cfg(doc)]
use super::{DirectView, LoadBalancedView};

/// A result that comes later: from [`DirectView::apply`] and
/// [`DirectView::map`], from [`LoadBalancedView::apply`] and
/// [`LoadBalancedView::map`], and from remote and parallel functions.
/// Awaiting it gives the value (the seed's `block=True`); keeping it and
/// asking later is `block=False`.
pub struct AsyncResult<R> {
    handle: Option<actix_rt::task::JoinHandle<Result<R, ClientError>>>,
    result: Option<Result<R, ClientError>>,
    ids: Vec<u64>,
    /// Each task's metadata, once its result is in.
    metas: super::meta::Metas,
    /// Where load-balanced tasks are aborted (none for a direct apply).
    aborter: Option<super::balanced::Aborter>,
    /// How many of its sends have left (a tracked apply only).
    sending: Option<Sending>,
}

/// The sends of a tracked apply: how many of `total` were handed to QUIC.
pub(super) struct Sending {
    sent: tokio::sync::watch::Receiver<usize>,
    total: usize,
}

impl Sending {
    /// `total` sends to track, and the count to raise as each leaves.
    pub(super) fn new(total: usize) -> (tokio::sync::watch::Sender<usize>, Sending) {
        let (count, sent) = tokio::sync::watch::channel(0);
        (count, Sending { sent, total })
    }
}

/// A result read twice.
fn taken() -> ClientError {
    ClientError::Codec {
        what: "read the result",
        reason: "it was taken already".into(),
    }
}

/// Awaiting an `AsyncResult` gives its value: `view.apply(f, args).await`
/// is the seed's blocking call, keeping the `AsyncResult` its
/// non-blocking one.
impl<R: 'static> std::future::IntoFuture for AsyncResult<R> {
    type Output = Result<R, ClientError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.get())
    }
}

pub(super) fn joined<R>(
    r: Result<Result<R, ClientError>, actix_rt::task::JoinError>,
) -> Result<R, ClientError> {
    r.unwrap_or_else(|e| {
        Err(ClientError::Codec {
            what: "finish the task",
            reason: e.to_string(),
        })
    })
}

impl<R> AsyncResult<R> {
    /// A result a task computes, with the task numbers it stands for.
    pub(super) fn spawned(
        handle: actix_rt::task::JoinHandle<Result<R, ClientError>>,
        ids: Vec<u64>,
        metas: super::meta::Metas,
    ) -> Self {
        Self {
            handle: Some(handle),
            result: None,
            ids,
            metas,
            aborter: None,
            sending: None,
        }
    }

    /// The same, with its sends tracked.
    pub(super) fn tracking(mut self, sending: Sending) -> Self {
        self.sending = Some(sending);
        self
    }

    /// Whether every message of this result has left this program (the
    /// seed's `sent`): for a tracked apply ([`DirectView::apply_tracked`]),
    /// once its arguments' bytes were handed to QUIC for every target;
    /// otherwise true (its arguments were copied into the messages before
    /// it was made).
    pub fn sent(&self) -> bool {
        self.sending
            .as_ref()
            .is_none_or(|s| *s.sent.borrow() >= s.total)
    }

    /// Waits up to `timeout` until [`AsyncResult::sent`] (the seed's
    /// `wait_on_send`). [`ClientError::NotSent`] when a connection went
    /// before its message left, or a message was too large to send
    /// ([`AsyncResult::get`] then says why).
    pub async fn wait_on_send(&self, timeout: Duration) -> Result<(), ClientError> {
        let Some(sending) = &self.sending else {
            return Ok(());
        };
        let mut sent = sending.sent.clone();
        let total = sending.total;
        match tokio::time::timeout(timeout, sent.wait_for(|n| *n >= total)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ClientError::NotSent {
                sent: *sending.sent.borrow(),
                total,
            }),
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// When and where each of its tasks ran and what it printed (the
    /// seed's `metadata`), in task order; `None` for a task whose result
    /// is not in yet. A direct apply has one per target engine.
    pub fn metadata(&self) -> Vec<Option<super::Metadata>> {
        self.metas.iter().map(|m| m.get().cloned()).collect()
    }

    /// The same result with its value passed through `f` once it is there
    /// (task numbers, metadata and abort kept).
    pub(super) fn then<S: 'static>(mut self, f: impl FnOnce(R) -> S + 'static) -> AsyncResult<S>
    where
        R: 'static,
    {
        let (handle, result) = (self.handle.take(), self.result.take());
        let mapped = actix_rt::spawn(async move {
            match (result, handle) {
                (Some(r), _) => r.map(f),
                (None, Some(handle)) => joined(handle.await).map(f),
                (None, None) => Err(taken()),
            }
        });
        AsyncResult {
            handle: Some(mapped),
            result: None,
            ids: self.ids,
            metas: self.metas,
            aborter: self.aborter,
            sending: self.sending,
        }
    }

    /// The same, abortable through `aborter` (load-balanced tasks).
    pub(super) fn abortable(mut self, aborter: super::balanced::Aborter) -> Self {
        self.aborter = Some(aborter);
        self
    }

    /// Aborts the tasks of this result that have not started: each fails
    /// with [`ClientError::Aborted`]; those running or done go on. Returns
    /// the task numbers it aborted. A direct apply has started on its
    /// engines when it returns, so there is nothing to abort (empty).
    pub async fn abort(&self) -> Result<Vec<u64>, ClientError> {
        match &self.aborter {
            Some(aborter) => aborter.abort(self.ids.clone()).await,
            None => Ok(Vec::new()),
        }
    }

    /// The numbers of the load-balanced tasks this result waits for (the
    /// seed's `msg_ids`; empty for a direct apply).
    pub fn msg_ids(&self) -> &[u64] {
        &self.ids
    }

    /// True once the result is there.
    pub fn ready(&self) -> bool {
        self.result.is_some() || self.handle.as_ref().is_some_and(|h| h.is_finished())
    }

    /// Waits up to `timeout` for the result; true if it is there.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        if self.result.is_some() {
            return true;
        }
        let Some(handle) = self.handle.as_mut() else {
            return false;
        };
        match tokio::time::timeout(timeout, handle).await {
            Ok(r) => {
                self.result = Some(joined(r));
                self.handle = None;
                true
            }
            Err(_) => false,
        }
    }

    /// True when the result is there and is not an error.
    pub fn successful(&self) -> bool {
        matches!(self.result, Some(Ok(_)))
    }

    /// The result, once it is there.
    pub async fn get(mut self) -> Result<R, ClientError> {
        if let Some(r) = self.result.take() {
            return r;
        }
        match self.handle.take() {
            Some(handle) => joined(handle.await),
            None => Err(taken()),
        }
    }

    /// The result, or [`ClientError::Timeout`] after `timeout`.
    pub async fn get_timeout(mut self, timeout: Duration) -> Result<R, ClientError> {
        if self.wait(timeout).await {
            self.get().await
        } else {
            Err(ClientError::Timeout(timeout))
        }
    }
}
