//! A message from this process on its way into an actor's inbox: already a
//! typed value, handed to the actor's handler by the inbox's drain.
//!
//! Messages from this process and from other nodes wait in the same
//! [`super::Inbox`], so that an actor takes all the framework's messages in
//! one order and a burst of them costs one item of its actix mailbox. A
//! message from this process waits in place: its [`LocalBox`] holds the
//! message, its reply sink and its mailbox slot inline when they fit in 128
//! bytes (on the heap otherwise), in the inbox's queue, whose memory is
//! kept from burst to burst. So a small local message allocates nothing,
//! where actix's own mailbox allocates twice (an envelope and a queue node).

use std::any::Any;
use std::marker::PhantomData;

use actix::Handler;
use smallbox::{SmallBox, smallbox, space::S16};

use super::deliver::{Deliver, ReplySink, deliver};
use super::message::RemoteActor;
use super::registry::Slot;

/// A delivery from this process, its actor's type erased so that it waits in
/// the untyped [`super::Inbox`]; see the module docs.
pub trait LocalCall: Send {
    /// Runs the actor's handler on it (once; a second call does nothing).
    /// `actor` and `ctx` are the actor and its `actix::Context` that the
    /// inbox belongs to.
    fn call(&mut self, actor: &mut dyn Any, ctx: &mut dyn Any);
}

/// A [`LocalCall`] held inline when it is at most 128 bytes.
pub type LocalBox = SmallBox<dyn LocalCall, S16>;

/// The [`LocalCall`] of a message `M` for an actor `A`: a [`Deliver`] taken
/// apart, so that the tag of `msg` (`None` once handled) can sit in the
/// padding beside the other fields — a 100-byte message, its reply sink and
/// its slot still fit inline.
pub(crate) struct Local<A, M: actix::Message> {
    msg: Option<M>,
    reply: Option<ReplySink<M::Result>>,
    slot: Option<Slot>,
    actor: PhantomData<fn() -> A>,
}

impl<A, M> Local<A, M>
where
    A: RemoteActor + Handler<M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    /// Wraps a delivery for `A`'s inbox.
    #[inline(always)]
    pub(crate) fn boxed(delivery: Deliver<M>) -> LocalBox {
        let (msg, reply, slot) = delivery.into_parts();
        smallbox!(Self {
            msg: Some(msg),
            reply,
            slot,
            actor: PhantomData,
        })
    }
}

impl<A, M> LocalCall for Local<A, M>
where
    A: RemoteActor + Handler<M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    #[inline]
    fn call(&mut self, actor: &mut dyn Any, ctx: &mut dyn Any) {
        let (Some(actor), Some(ctx)) = (
            actor.downcast_mut::<A>(),
            ctx.downcast_mut::<actix::Context<A>>(),
        ) else {
            // An inbox belongs to one actor, and only a route to that actor
            // (an `A`) posts into it: this cannot happen. Should it, the
            // delivery is dropped, which answers an asker `Stopped`.
            tracing::error!(
                actor = std::any::type_name::<A>(),
                "a message for another actor type reached this inbox; dropped"
            );
            return;
        };
        if let Some(msg) = self.msg.take() {
            deliver(actor, msg, self.reply.take(), self.slot.take(), ctx);
        }
    }
}
