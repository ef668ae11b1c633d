//! Remote mailboxes: nodes, [`ActorRef`]s that route to local actors or over
//! the transport, spawn by name and remote function calls.

mod actor_ref;
mod dispatch;
mod link;
mod mailbox;
mod node;
mod registered;
mod remote_node;
mod supervised;
pub mod value;
mod watch;

pub use actor_ref::{ActorAddress, ActorRef, ArchivedActorAddress, AskError, SendError, Tell};
pub use link::{PeerLink, RequestError};
pub use mailbox::{Delivery, Mailbox, MailboxInUse};
pub use node::{DEFAULT_ASK_TIMEOUT, Node, NodeBuilder, StartError};
pub use registered::{ActorFactory, RemoteCallable, RemoteFn, factory, invoke_remote, remote_fn};
pub use remote_node::{CallError, RemoteNode, SpawnError, at};
pub use supervised::Home;
pub use watch::{ExitError, exit};

#[cfg(test)]
mod tests;
