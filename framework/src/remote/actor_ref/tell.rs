//! `tell`: a message sent without waiting for a reply, the fast path of a
//! tell that needs no wait, and the waits of one that does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::actor::{Accepts, Deliver, Message, RemoteActor, push};
use crate::transport::Refused;
use crate::wire::FrameKind;

use super::{
    ActorRef, AskError, PeerLink, RequestError, Route, RouteRef, SendError, encode_in_for,
};

impl<A: RemoteActor> ActorRef<A> {
    /// Sends `msg` without waiting for a reply. Waits while the actor's
    /// mailbox or the connection is full (backpressure); never drops the
    /// message silently: if it cannot be delivered, it comes back in the error
    /// ([`SendError::Restarting`] while its supervisor restarts it, unless the
    /// reference retries: [`ActorRef::with_retry`]).
    /// Messages from one sender to one actor arrive in the order sent.
    ///
    /// Like every future, the returned [`Tell`] does nothing until it is
    /// awaited (or polled).
    pub fn tell<M>(&self, msg: M) -> Tell<'_, A, M>
    where
        M: Message,
        A: Accepts<M>,
    {
        Tell {
            to: self,
            msg: Some(msg),
            waits: None,
        }
    }

    /// The tell that needs no wait, the local fast path aside (see
    /// [`Tell`]): `Ok(Ok(()))` once sent, `Ok(Err(_))` when it failed for
    /// good, and `Err(msg)` when it must wait (or retry while its actor
    /// restarts): see [`Self::tell_waiting`].
    fn tell_now<M>(&self, msg: M) -> Result<Result<(), SendError<M>>, M>
    where
        M: Message,
        A: Accepts<M>,
    {
        match self.try_tell(msg) {
            Ok(()) => Ok(Ok(())),
            Err(SendError::Full(msg)) => Err(msg),
            Err(SendError::Restarting { message, .. }) if self.retry.is_some() => Err(message),
            Err(e) => Ok(Err(e)),
        }
    }

    /// A tell that must wait: for a mailbox slot or room in the
    /// connection's queue, or for its actor to be restarted.
    async fn tell_waiting<M>(&self, mut msg: M) -> Result<(), SendError<M>>
    where
        M: Message,
        A: Accepts<M>,
    {
        let mut attempt = 0;
        loop {
            match self.tell_once(msg).await {
                Err(SendError::Restarting { message, id }) => match self.retry {
                    Some(retry) if attempt < retry.attempts => {
                        attempt += 1;
                        msg = message;
                        tokio::time::sleep(retry.delay).await;
                    }
                    _ => return Err(SendError::Restarting { message, id }),
                },
                other => return other,
            }
        }
    }

    /// The tell to a local actor that needs no wait, in as few steps as the
    /// cached route allows; the message comes back for the general path
    /// (no cached route, a remote one, a restarted actor, a full mailbox,
    /// a stopped actor) to handle and report.
    #[inline(always)]
    fn try_tell_local<M>(&self, msg: M) -> Result<(), M>
    where
        M: Message,
        A: Accepts<M>,
    {
        let Some(Route::Local { addr, entry }) = self.route.get() else {
            return Err(msg);
        };
        if entry.has_exited() {
            return Err(msg);
        }
        let Some(slot) = entry.try_slot() else {
            return Err(msg);
        };
        push(addr, entry, Deliver::new(msg, None, Some(slot))).map_err(Deliver::into_message)
    }

    async fn tell_once<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        M: Message,
        A: Accepts<M>,
    {
        let route = match self.current_route().await {
            Ok(route) => route,
            Err(e) => return Err(self.send_error(msg, e)),
        };
        match &*route {
            Route::Local { addr, entry } => {
                let fresh = self.restarted(entry);
                let (addr, entry) = fresh.as_ref().map_or((addr, entry), |(a, e)| (a, e));
                let slot = match entry.try_slot() {
                    Some(slot) => slot,
                    None => entry.slot().await,
                };
                let slot = Some(slot);
                push(addr, entry, Deliver::new(msg, None, slot))
                    .map_err(|d| self.stopped(d.into_message()))
            }
            Route::Remote(link) => self.tell_remote_waiting(link, msg).await,
        }
    }

    /// Sends `msg` only if that needs no waiting; gives it back with
    /// [`SendError::Full`] otherwise (and with [`SendError::Restarting`]
    /// while its supervisor restarts it; `try_tell` never retries).
    pub fn try_tell<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        M: Message,
        A: Accepts<M>,
    {
        let cached = match self.route.get() {
            Some(route) => route,
            None => match self.resolve_now() {
                Some(route) => self.route.get_or_init(|| route),
                None => match self.located() {
                    Err(e) => return Err(self.send_error(msg, e)),
                    Ok(_) => return Err(SendError::Full(msg)),
                },
            },
        };
        let route = if cached.is_healthy() {
            RouteRef::Cached(cached)
        } else {
            match self.reroute(cached) {
                Ok(route) => RouteRef::Fresh(route),
                Err(e) => return Err(self.send_error(msg, e)),
            }
        };
        match &*route {
            Route::Local { addr, entry } => {
                let fresh = self.restarted(entry);
                let (addr, entry) = fresh.as_ref().map_or((addr, entry), |(a, e)| (a, e));
                let Some(slot) = entry.try_slot() else {
                    return Err(SendError::Full(msg));
                };
                push(addr, entry, Deliver::new(msg, None, Some(slot)))
                    .map_err(|d| self.stopped(d.into_message()))
            }
            Route::Remote(link) => {
                let peer = link.peer();
                // Into the lane's batch while nothing else is queued; else queued.
                let header = self.header::<M>(FrameKind::Tell);
                let gathered =
                    peer.try_gather_encoding(header, |buf| encode_in_for(link, &msg, buf));
                let (header, bytes) = match gathered {
                    Err(e) => return Err(SendError::Encode(msg, e)),
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(Refused::Queue(header, bytes))) => (header, bytes),
                    Ok(Err(Refused::Wait)) => return Err(SendError::Full(msg)),
                };
                match peer.try_reserve_slot() {
                    Ok(slot) => {
                        slot.send(header, bytes);
                        Ok(())
                    }
                    Err(crate::transport::TryReserveError::Full) => {
                        peer.unsent(bytes);
                        Err(SendError::Full(msg))
                    }
                    Err(e) => Err(self.peer_lost(msg, link, e)),
                }
            }
        }
    }

    /// A remote tell that may wait: gathered into the lane's batch once the
    /// writer made room (encoded again each try: a wait comes once a full
    /// batch), or queued once the queue has room.
    async fn tell_remote_waiting<M: Message>(
        &self,
        link: &PeerLink,
        msg: M,
    ) -> Result<(), SendError<M>> {
        let peer = link.peer();
        loop {
            let mut room = std::pin::pin!(peer.gather_room());
            room.as_mut().enable();
            let header = self.header::<M>(FrameKind::Tell);
            match peer.try_gather_encoding(header, |buf| encode_in_for(link, &msg, buf)) {
                Err(e) => return Err(SendError::Encode(msg, e)),
                Ok(Ok(())) => return Ok(()),
                Ok(Err(Refused::Queue(header, bytes))) => {
                    return match peer.reserve_slot().await {
                        Ok(slot) => {
                            slot.send(header, bytes);
                            Ok(())
                        }
                        Err(e) => Err(self.peer_lost(msg, link, e)),
                    };
                }
                Ok(Err(Refused::Wait)) => {
                    tokio::select! {
                        _ = room => {}
                        reason = peer.closed() => return Err(self.peer_lost(msg, link, reason)),
                    }
                }
            }
        }
    }

    /// The error of a tell whose actor stopped.
    fn stopped<M>(&self, msg: M) -> SendError<M> {
        let why = AskError::Gone(format!("actor {} stopped", self.address.id));
        self.send_error(msg, why)
    }

    /// The error of a tell whose connection is lost.
    fn peer_lost<M>(&self, msg: M, link: &PeerLink, e: impl std::fmt::Display) -> SendError<M> {
        let why = AskError::Request(RequestError::PeerLost {
            node: link.node(),
            reason: e.to_string(),
        });
        self.send_error(msg, why)
    }
}

/// The future of [`ActorRef::tell`]: `Ok(())` once the message is on its
/// way, or the message back in a [`SendError`].
///
/// Most tells need no wait (a free mailbox slot, room in the connection's
/// queue) and finish in their first poll, in the fewest steps; only one
/// that must wait (or whose actor restarts while the reference retries)
/// puts the state of its waits on the heap. So this future is hardly
/// larger than its message, and moving it, as every `.await` does, costs
/// little: a future holding the waits' state inline is over ten times larger.
#[must_use = "a tell sends nothing until it is awaited"]
pub struct Tell<'a, A: Accepts<M>, M: Message> {
    to: &'a ActorRef<A>,
    /// The message until the first poll.
    msg: Option<M>,
    /// The waits of a tell that must wait, on the heap.
    waits: Option<Waits<'a, M>>,
}

/// What a [`Tell`] that must wait waits on.
type Waits<'a, M> = Pin<Box<dyn Future<Output = Result<(), SendError<M>>> + Send + 'a>>;

// The message is moved out by value before anything could pin it, and the
// waits are pinned on the heap: a `Tell` may move between polls whatever
// its message.
impl<A: Accepts<M>, M: Message> Unpin for Tell<'_, A, M> {}

impl<A: Accepts<M>, M: Message> Future for Tell<'_, A, M> {
    type Output = Result<(), SendError<M>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let waits = match this.waits.take() {
            Some(waits) => waits,
            None => {
                let Some(msg) = this.msg.take() else {
                    panic!("a `Tell` was polled after it had finished");
                };
                // A local tell in the fewest steps, its result written
                // here once (returned through another `Result`, the whole
                // result, message-sized, was copied on every tell).
                let msg = match this.to.try_tell_local(msg) {
                    Ok(()) => return Poll::Ready(Ok(())),
                    Err(msg) => msg,
                };
                match this.to.tell_now(msg) {
                    Ok(done) => return Poll::Ready(done),
                    Err(msg) => Box::pin(this.to.tell_waiting(msg)),
                }
            }
        };
        let waits = this.waits.insert(waits);
        let out = std::task::ready!(waits.as_mut().poll(cx));
        this.waits = None;
        Poll::Ready(out)
    }
}
