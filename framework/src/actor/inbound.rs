//! A message that arrived from another node, on its way to a local actor.

use std::sync::Arc;

use super::registry::Slot;

use crate::id::ActorId;
use crate::transport::Spares;
use crate::wire::{Buffer, FrameHeader, RemoteFailure, WireType, decode_owned, encode};

use super::deliver::{ReplySink, deliver};
use super::failure::{Failure, code};
use super::message::{Message, RemoteActor};
use super::received::Received;

/// Where the encoded reply to a remote request goes.
pub type ByteSink = Box<dyn FnOnce(Result<Buffer, RemoteFailure>) + Send>;

/// A message that arrived from another node: its frame header, its validated
/// later payload, where the reply goes (for an ask), and the mailbox slot it holds.
pub struct Inbound {
    target: ActorId,
    type_tag: u64,
    payload: Buffer,
    reply: Option<ByteSink>,
    slot: Option<Slot>,
    /// Where the payload's buffer goes once the message is decoded.
    recycle: Option<Arc<Spares>>,
}

impl Inbound {
    /// A message from a frame; `reply` is `Some` for an ask.
    pub fn new(
        header: &FrameHeader,
        payload: Buffer,
        reply: Option<ByteSink>,
        slot: Option<Slot>,
    ) -> Self {
        Self {
            target: header.target,
            type_tag: header.type_tag,
            payload,
            reply,
            slot,
            recycle: None,
        }
    }

    /// Hands the payload's buffer to `spares` once the message is decoded
    /// into an owned value (a view keeps it): the transport copies the
    /// next small payload from the same peer into it.
    pub(crate) fn recycling(mut self, spares: &Arc<Spares>) -> Self {
        self.recycle = Some(spares.clone());
        self
    }

    /// The type tag of the message in the payload.
    pub fn type_tag(&self) -> u64 {
        self.type_tag
    }

    /// The actor the message is for.
    pub fn target(&self) -> ActorId {
        self.target
    }

    /// Answers the request with a failure (a tell has nobody to answer: the
    /// failure is logged).
    pub fn fail(self, failure: RemoteFailure) {
        match self.reply {
            Some(reply) => reply(Err(failure)),
            None => {
                tracing::warn!(target_actor = %self.target, "dropped a tell: {}", failure.message)
            }
        }
    }

    /// Answers a request whose actor stopped before it could take it (a
    /// tell is dropped, as it would be in the stopped actor's mailbox).
    pub fn stopped(self) {
        if let Some(reply) = self.reply {
            reply(Err(Failure::Stopped.to_remote()));
        }
    }

    /// Turns the byte sink into a typed reply sink that encodes the result.
    fn typed_reply<R: WireType + 'static>(reply: Option<ByteSink>) -> Option<ReplySink<R>> {
        reply.map(|sink| {
            Box::new(move |result: Result<R, Failure>| {
                let bytes = result.map_err(|f| f.to_remote()).and_then(|value| {
                    encode(&value).map_err(|e| RemoteFailure {
                        location: None,
                        code: code::ENCODE,
                        message: e.to_string(),
                    })
                });
                sink(bytes)
            }) as ReplySink<R>
        })
    }
}

/// Hands a remote message to `A`'s `Handler<M>` on the actor's own thread
/// (from its [`super::inbox::drain`]), deserializing it into an owned `M`.
/// The derive macro's `RemoteActor::handle_inbound` calls it for each
/// message type the actor accepts.
pub fn handle_plain<A, M>(
    actor: &mut A,
    mut inbound: Inbound,
    ctx: &mut actix::Context<A>,
) -> Result<(), Inbound>
where
    A: RemoteActor + actix::Handler<M>,
    M: Message,
{
    let msg = match decode_owned::<M>(&inbound.payload) {
        Ok(msg) => msg,
        Err(e) => {
            inbound.fail(invalid(&e));
            return Ok(());
        }
    };
    if let Some(spares) = &inbound.recycle {
        spares.give_back_one(std::mem::take(&mut inbound.payload));
    }
    let reply = Inbound::typed_reply::<M::Result>(inbound.reply);
    deliver(actor, msg, reply, inbound.slot, ctx);
    Ok(())
}

/// Hands a remote message to `A`'s `Handler<Received<M>>`: a validated,
/// zero-copy view of the payload.
pub fn handle_view<A, M>(
    actor: &mut A,
    inbound: Inbound,
    ctx: &mut actix::Context<A>,
) -> Result<(), Inbound>
where
    A: RemoteActor + actix::Handler<Received<M>>,
    M: Message,
{
    let Inbound {
        target,
        type_tag,
        payload,
        reply,
        slot,
        ..
    } = inbound;
    let view = match Received::<M>::new(payload) {
        Ok(view) => view,
        Err(e) => {
            let rest = Inbound {
                target,
                type_tag,
                payload: Buffer::new(),
                reply,
                slot: None,
                recycle: None,
            };
            rest.fail(invalid(&e));
            return Ok(());
        }
    };
    let reply = Inbound::typed_reply::<M::Result>(reply);
    deliver(actor, view, reply, slot, ctx);
    Ok(())
}

/// The failure of a payload that is not the message it claims to be.
fn invalid(e: &impl std::fmt::Display) -> RemoteFailure {
    RemoteFailure {
        location: None,
        code: code::INVALID,
        message: e.to_string(),
    }
}
