//! Local actors on actix: the message and actor traits, the route table,
//! delivery with bounded mailboxes, and zero-copy [`Received`] views.

mod deliver;
mod failure;
mod inbound;
mod message;
mod received;
mod registry;
mod tensor;

pub use deliver::{deliver, panic_text, push, Deliver, ReplySink};
pub use failure::{code, Failure};
pub use inbound::{dispatch_plain, dispatch_view, ByteSink, Inbound};
pub use message::{Message, RemoteActor};
pub use received::Received;
pub use registry::{LocalEntry, Registry, DEFAULT_MAILBOX};
pub use tensor::{ArchivedTensor, Element, ShapeError, Tensor};
