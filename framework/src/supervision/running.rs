//! What a supervisor knows of a child while it runs, whatever its kind (a
//! local actor, an actor on another node or in a process of its own, a
//! nested supervisor, a forked child it adopted), and what a start needs.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::actor::ExitReason;
use crate::id::ActorId;
use crate::remote::Node;

/// A child's exit, once it comes.
pub(crate) type Exited = Pin<Box<dyn Future<Output = ExitReason> + Send>>;

/// A running child, whatever its kind.
pub(crate) trait Running: Send + Sync {
    /// Completes with the reason once the child has stopped.
    fn exited(&self) -> Exited;
    /// Asks it to stop in order.
    fn stop(&self);
    /// Stops it at once.
    fn kill(&self);
}

/// OS process ids of a supervisor's process children, by actor id.
pub(super) type Pids = Arc<Mutex<HashMap<ActorId, u32>>>;

/// What a start needs to know.
pub(super) struct StartCtx<'a> {
    pub node: &'a Node,
    pub id: ActorId,
    pub pids: &'a Pids,
}

/// How a child is started (again, for each restart).
pub(super) type Starter = Box<dyn Fn(&StartCtx) -> Box<dyn Running>>;
