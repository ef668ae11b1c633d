//! The traits that make a type a message or an actor reachable by id.

use crate::wire::{WireType, type_tag};

use super::inbound::Inbound;
use super::inbox::Drain;

/// A message that can be sent to an actor through an [`crate::ActorRef`],
/// locally or to another node. Derive it with `#[derive(parallel::Message)]`
/// and `#[message(result = T)]`, next to rkyv's `Archive`, `Serialize` and
/// `Deserialize`.
pub trait Message: actix::Message<Result: WireType + Send> + WireType + Send + 'static {
    /// Stable name of the type; the same binary on every node gives the same name.
    const NAME: &'static str;
    /// The tag that names this type in a frame header.
    const TAG: u64 = type_tag(Self::NAME);
}

/// An actor whose messages can arrive by id, from this process or another.
/// Derive it with `#[derive(parallel::Actor)]` and list the messages it
/// accepts: `#[actor(messages(Add, Get))]`.
pub trait RemoteActor:
    actix::Actor<Context = actix::Context<Self>> + actix::Handler<Drain>
{
    /// Stable name of the type, used to spawn it on another node by name.
    const NAME: &'static str;
    /// Names of the message types it accepts (for error messages).
    const ACCEPTS: &'static [&'static str];
    /// True for an actor declared `#[actor(gpu)]`: it runs only on a thread
    /// pinned to a GPU (see [`super::DeviceHost`]).
    const GPU: bool = false;
    /// Handles a message that arrived from another node, on the actor's own
    /// thread, choosing the handler by the frame's type tag. Gives the
    /// message back when the actor accepts no message of that type.
    fn handle_inbound(
        &mut self,
        inbound: Inbound,
        ctx: &mut actix::Context<Self>,
    ) -> Result<(), Inbound>;
}

/// An actor that lists `M` in `#[actor(messages(..))]` (or `view(..)`):
/// what an [`crate::ActorRef`] needs to send it an `M`. Its `Handler<M>`
/// handles the message from this process; from another node the type's tag
/// finds the same handler (or, for a view, its `Handler<Received<M>>`). So
/// a message an actor takes here it takes from any node, and a message it
/// does not list is a compile error, not a failure at run time. The derive
/// macro writes it; there is nothing to implement.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not list the message `{M}`",
    label = "`{Self}` accepts no `{M}` through an `ActorRef`",
    note = "list it in the actor's `#[actor(messages(..))]` (or `view(..)`) and implement `Handler<{M}>` for `{Self}`"
)]
pub trait Accepts<M: Message>: RemoteActor + actix::Handler<M> {}
