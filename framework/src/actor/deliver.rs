//! Delivery of a message to an actor's handler, with a bounded number of
//! messages in flight (its mailbox slot) and a reply sink that works for
//! local and remote askers.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::local::Local;
use super::message::RemoteActor;
use super::registry::{LocalEntry, Slot};
use actix::dev::MessageResponse;
use actix::{Actor, ActorContext, AsyncContext, Handler};

use super::failure::Failure;
use super::panic::{HandlerScope, SeenPanic};

/// Where the result of a handled message goes: a local asker's channel, or a
/// frame back to the asking node.
pub type ReplySink<R> = Box<dyn FnOnce(Result<R, Failure>) + Send>;

/// A message on its way to an actor's handler: the message, where its reply
/// goes (`None` for a tell), and the mailbox slot it holds until handled.
pub struct Deliver<M: actix::Message> {
    msg: M,
    reply: Option<ReplySink<M::Result>>,
    _slot: Option<Slot>,
}

impl<M: actix::Message> Deliver<M> {
    /// Wraps a message with its reply sink and mailbox slot.
    #[inline(always)]
    pub fn new(msg: M, reply: Option<ReplySink<M::Result>>, slot: Option<Slot>) -> Self {
        Self {
            msg,
            reply,
            _slot: slot,
        }
    }

    /// The message back, when it could not be delivered.
    pub fn into_message(self) -> M {
        self.msg
    }

    /// The message, its reply sink and its slot.
    #[inline(always)]
    pub(crate) fn into_parts(self) -> (M, Option<ReplySink<M::Result>>, Option<Slot>) {
        (self.msg, self.reply, self._slot)
    }
}

/// Runs the actor's `Handler<M>` for a delivered message (`msg`, where its
/// reply goes, the mailbox slot it holds until handled) and routes its
/// result to the reply sink. A panicking handler stops the actor and answers
/// the asker with [`Failure::Panicked`]; the panic is logged as one error
/// line with its message and, under `#[parallel::main]`, its `file:line`.
///
/// It takes the parts, not a [`Deliver`]: a message from this process waits
/// in its inbox already taken apart, and packing it again would copy it
/// once more, a slow copy (read back at once in another layout than it was
/// written in).
#[inline(always)]
pub fn deliver<A, M>(
    actor: &mut A,
    msg: M,
    reply: Option<ReplySink<M::Result>>,
    slot: Option<Slot>,
    ctx: &mut A::Context,
) where
    A: Actor<Context = actix::Context<A>> + Handler<M>,
    M: actix::Message + 'static,
    M::Result: Send,
{
    let scope = HandlerScope::enter();
    let handled = catch_unwind(AssertUnwindSafe(|| {
        <A as Handler<M>>::handle(actor, msg, ctx)
    }));
    let seen = scope.seen();
    drop(scope);
    let response = match handled {
        Ok(response) => {
            if let Some(SeenPanic { location, message }) = seen {
                // The handler caught a panic of its own; the hook kept it quiet.
                tracing::warn!(
                    actor = std::any::type_name::<A>(),
                    "the handler caught a panic at {}: {message}",
                    location.as_deref().unwrap_or("an unknown place")
                );
            }
            response
        }
        Err(panic) => {
            let text = panic_text(panic.as_ref());
            // One line: with the hook of `#[parallel::main]` the standard
            // panic output is left out, and its location is here instead.
            match seen.and_then(|s| s.location) {
                Some(at) => tracing::error!(
                    actor = std::any::type_name::<A>(),
                    "handler panicked at {at}: {text}"
                ),
                None => tracing::error!(
                    actor = std::any::type_name::<A>(),
                    "handler panicked: {text}"
                ),
            }
            if let Some(slot) = &slot {
                slot.record_panic(text.clone());
            }
            if let Some(reply) = reply {
                reply(Err(Failure::Panicked(text)));
            }
            ctx.stop();
            return;
        }
    };
    let Some(reply) = reply else {
        response.handle(ctx, None);
        return;
    };
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    response.handle(ctx, Some(tx));
    match rx.try_recv() {
        Ok(value) => reply(Ok(value)),
        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => reply(Err(Failure::Stopped)),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
            // An asynchronous response: forward it when it completes.
            ctx.spawn(actix::fut::wrap_future(async move {
                reply(rx.await.map_err(|_| Failure::Stopped));
            }));
        }
    }
}

/// The text of a panic payload.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Puts a delivery into the inbox of the actor at `addr` (`entry` is its
/// registry entry; see [`super::Inbox`]). The framework bounds mailboxes
/// with its own slots, so the inbox never refuses; the delivery comes back
/// only when the actor has stopped. An actor that stops right after the
/// look at it drops the delivery with the rest of what waits for it (an
/// asker is answered `Stopped`), as it would a moment later.
#[inline(always)]
pub fn push<A, M>(
    addr: &actix::Addr<A>,
    entry: &LocalEntry,
    d: Deliver<M>,
) -> Result<(), Deliver<M>>
where
    A: RemoteActor + Handler<M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    if !addr.connected() {
        return Err(d);
    }
    entry.post(|| Local::<A, M>::boxed(d));
    Ok(())
}
