//! Local actors on actix: the message and actor traits, the route table,
//! delivery with bounded mailboxes, zero-copy [`Received`] views, and
//! actors pinned to a device ([`DeviceHost`]).

mod deliver;
mod device;
mod exit;
mod failure;
mod inbound;
mod inbox;
mod local;
mod message;
mod panic;
mod received;
mod registry;
mod tensor;

pub use deliver::{Deliver, ReplySink, deliver, panic_text, push};
pub use device::{
    DeviceChoice, DeviceHost, DeviceInfo, DeviceSupport, PlaceError, built_in_devices, choose,
    describe,
};
pub use exit::{Down, ExitReason};
pub use failure::{Failure, code};
pub use inbound::{ByteSink, Inbound, handle_plain, handle_view};
pub use inbox::{DRAIN_BUDGET, Drain, Inbox, Queued, drain};
#[cfg(test)]
pub(crate) use local::Local;
pub use local::{LocalBox, LocalCall};
pub use message::{Accepts, Message, RemoteActor};
pub(crate) use panic::{HandlerScope, install_handler_panic_hook};
pub use received::Received;
pub use registry::{DEFAULT_MAILBOX, LocalEntry, Registry};
pub use tensor::{
    ArchivedTensor, Element, ShapeError, Tensor, copy_elements, element_bytes, elements_from_bytes,
    elements_view,
};
