//! The collective groups of one process tree, kept in its [`Tree`] (no
//! process-wide globals): on the parent, the same-host arena and the group
//! of direct links it keeps for the children that took part last, and the
//! children for which direct links could not form; on a child, the groups
//! its parent announced.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::CollectiveTransport;
use crate::id::{ActorId, NodeId};
use crate::process::{Child, Tree};

use super::group::Group;
use super::local::LocalGroup;

/// A group the parent keeps between calls, with the children (`K`) it is
/// for: the same-host arena, or the group of direct links.
pub(super) struct Current<K, G> {
    slot: Mutex<Option<(K, Arc<tokio::sync::Mutex<G>>)>>,
}

impl<K, G> Default for Current<K, G> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }
}

impl<K: PartialEq, G> Current<K, G> {
    /// The group kept for `members`, if it is idle and still `usable`.
    pub(super) fn get(
        &self,
        members: &K,
        usable: impl Fn(&G) -> bool,
    ) -> Option<Arc<tokio::sync::Mutex<G>>> {
        let current = lock(&self.slot);
        let (kept, group) = current.as_ref()?;
        (kept == members && group.try_lock().is_ok_and(|g| usable(&g))).then(|| group.clone())
    }

    /// Takes the kept group out (to retire or drop it).
    pub(super) fn take(&self) -> Option<Arc<tokio::sync::Mutex<G>>> {
        lock(&self.slot).take().map(|(_, group)| group)
    }

    /// Keeps `group` for `members` and returns it.
    pub(super) fn keep(&self, members: K, group: G) -> Arc<tokio::sync::Mutex<G>> {
        let group = Arc::new(tokio::sync::Mutex::new(group));
        *lock(&self.slot) = Some((members, group.clone()));
        group
    }
}

/// The collective state of one tree.
pub(super) struct TreeGroups {
    /// How the tree's collectives travel (its config's).
    pub transport: CollectiveTransport,
    /// Bytes of each rank's slot in a same-host arena.
    pub slot: usize,
    /// The parent's same-host group, for these children (process actors).
    pub local: Current<Vec<ActorId>, LocalGroup>,
    /// The parent's group of direct links, for these children.
    pub mesh: Current<Vec<(ActorId, NodeId)>, Group>,
    /// The children for which a group of direct links could not form: they keep the relay.
    pub failed: Mutex<Option<Vec<(ActorId, NodeId)>>>,
    /// The parent's communicator made last (for the children it is for).
    pub current: Mutex<Option<super::Communicator>>,
    /// The children last told their ranks (a `Ranks` post each).
    pub announced: Mutex<Option<Vec<ActorId>>>,
    /// Numbers the groups of direct links.
    pub names: AtomicU64,
    /// Numbers the collectives through the parent.
    pub rounds: AtomicU64,
    /// A child's same-host group, as its parent announced it.
    pub mine_local: Mutex<Option<LocalGroup>>,
    /// A child's group of direct links, as its parent announced it.
    pub mine_mesh: Mutex<Option<Group>>,
}

impl TreeGroups {
    fn new(config: &crate::Config) -> Self {
        Self {
            transport: config.get_collective_transport(),
            slot: config.get_collective_slot(),
            local: Current::default(),
            mesh: Current::default(),
            failed: Mutex::new(None),
            current: Mutex::new(None),
            announced: Mutex::new(None),
            names: AtomicU64::new(1),
            rounds: AtomicU64::new(1),
            mine_local: Mutex::new(None),
            mine_mesh: Mutex::new(None),
        }
    }

    /// The state of the tree of `children` (the default tree's when the
    /// children's tree is gone or there are none).
    pub(super) fn of(children: &[Child]) -> Arc<Self> {
        match children.first() {
            Some(child) => {
                let shared = child.shared();
                shared.extension(|| Self::new(&shared.config))
            }
            None => Self::own(),
        }
    }

    /// The state of this process's own tree (a child's, in a child).
    pub(super) fn own() -> Arc<Self> {
        let tree = Tree::global();
        tree.extension(|| Self::new(tree.config()))
    }

    /// Retires the parent's same-host group, if one is kept.
    pub(super) fn retire_local(&self) {
        if let Some(old) = self.local.take()
            && let Ok(g) = old.try_lock()
        {
            g.retire();
        }
    }
}

/// Locks `m`, also after a panic elsewhere.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
