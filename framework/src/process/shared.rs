//! What a tree shares with its children's handles: its settings, its node
//! and parent actor (made on the first fork), and the per-tree state of the
//! layers above (typed extensions). A `Child` holds this, not the tree, so
//! the tree owns its children's handles and not the other way round.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::remote::{ActorRef, Node};

use super::parent_actor::ParentActor;

/// The node of a tree and its parent actor, made on the first fork.
pub(crate) struct Started {
    pub node: Node,
    pub password: String,
    pub parent: ActorRef<ParentActor>,
    pub addr: actix::Addr<ParentActor>,
    /// The arbiter the node was started on (where the layers above start
    /// their actors from a thread of their own).
    pub arbiter: Option<actix_rt::ArbiterHandle>,
}

/// The shared part of a tree.
pub(crate) struct TreeShared {
    pub config: Config,
    /// The shared-memory threshold now (starts as the config's).
    pub shm_threshold: AtomicUsize,
    /// A host other than this machine was named: the node listens on every interface.
    pub other_hosts: AtomicBool,
    pub started: OnceCell<Started>,
    extensions: DashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl TreeShared {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            shm_threshold: AtomicUsize::new(config.get_shm_threshold()),
            config,
            other_hosts: AtomicBool::new(false),
            started: OnceCell::new(),
            extensions: DashMap::new(),
        }
    }

    /// The tree's node, once the first fork started it.
    pub(crate) fn node(&self) -> Option<Node> {
        self.started.get().map(|s| s.node.clone())
    }

    /// The shared-memory threshold now.
    pub(crate) fn shm_threshold(&self) -> usize {
        self.shm_threshold.load(Ordering::Relaxed)
    }

    /// The per-tree state of type `T` of a layer above (made by `make` on
    /// first use).
    pub(crate) fn extension<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        let key = TypeId::of::<T>();
        // A read first: after the first use, that is all it takes.
        let found = self.extensions.get(&key).map(|e| e.value().clone());
        let entry = match found {
            Some(entry) => entry,
            None => self
                .extensions
                .entry(key)
                .or_insert_with(|| Arc::new(make()))
                .clone(),
        };
        // The map is keyed by the type: the value is a `T`.
        entry
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("extensions are keyed by their type"))
    }
}
