//! A communicator: the group of ranks one set of collectives runs in,
//! with the backend that carries them chosen once, when it forms — a
//! shared-memory arena when every rank is on one machine, direct QUIC links
//! between the ranks across machines (hierarchical: each machine's ranks
//! through their own arena), or the relay through the parent when the
//! children cannot reach each other. The parent of a tree gets one for a
//! group of its children with [`Children::communicator`] (it is rank 0, the
//! children ranks 1.. in group order); a child learns its rank and the
//! group's size with [`super::rank`] and [`super::size`], and calls the
//! seed-style functions of [`crate::collective`] with the same arguments.

use std::sync::Arc;

use crate::actor::Element;
use crate::reduce::{ReduceOp, Reducible};

use super::group::Group;
use super::local::{LocalGroup, MAX_RANKS, Wait};
use super::posts::bytes_of;
use super::relay::{ReduceBuffer, parent_all_reduce as through_parent};
use super::star::{Call, copy_into, elements, fold_bytes, if_root, no_fold, parent_star};
use super::state::{TreeGroups, lock};
use crate::config::CollectiveTransport;
use crate::id::ActorId;
use crate::process::ProcessError;
use crate::process::message::{CollectiveMsg, StarKind};
use crate::process::{Child, Children};

/// What carries a communicator's calls.
#[derive(Clone)]
enum Backend {
    /// One shared-memory arena: every rank on this machine.
    Local(Arc<tokio::sync::Mutex<LocalGroup>>),
    /// Direct QUIC links between the ranks (shared memory per machine).
    Mesh(Arc<tokio::sync::Mutex<Group>>),
    /// Every transfer through the parent.
    Relay,
}

/// A group of ranks running collectives together, on the backend chosen
/// when it formed (see the module docs). On the parent, made by
/// [`Children::communicator`]; cheap to clone.
#[derive(Clone)]
pub struct Communicator {
    inner: Arc<Inner>,
}

struct Inner {
    rank: usize,
    size: usize,
    backend: Backend,
    children: Children,
}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("rank", &self.inner.rank)
            .field("size", &self.inner.size)
            .field("backend", &self.backend_name())
            .finish()
    }
}

/// The same-host group of this process and `children`, made and announced
/// when there is none for exactly these children; `None` when a child runs
/// on another machine.
async fn parent_group(
    children: &[Child],
) -> Result<Option<Arc<tokio::sync::Mutex<LocalGroup>>>, ProcessError> {
    let groups = TreeGroups::of(children);
    let messages_only = groups.transport != CollectiveTransport::Auto;
    if messages_only || children.iter().any(|c| !c.same_host()) || children.len() + 1 > MAX_RANKS {
        groups.retire_local();
        return Ok(None);
    }
    let members: Vec<ActorId> = children.iter().map(Child::actor_id).collect();
    if let Some(group) = groups.local.get(&members, LocalGroup::usable) {
        return Ok(Some(group));
    }
    groups.retire_local();
    let mut pids = vec![std::process::id()];
    pids.extend(children.iter().map(Child::pid));
    let group = LocalGroup::create(&pids, groups.slot, Wait::Cooperate)?;
    for (i, child) in children.iter().enumerate() {
        let attach = CollectiveMsg::Attach {
            path: group.path().to_owned(),
            rank: i as u32 + 1,
            ranks: pids.len() as u32,
            slot: group.slot() as u64,
        };
        child.post_collective(attach).await?;
    }
    Ok(Some(groups.local.keep(members, group)))
}

/// Leaves the group (so the other ranks return an error instead of
/// waiting) if the parent's call is dropped before it ends.
struct LeaveUnlessDone<'a> {
    group: &'a mut LocalGroup,
    done: bool,
}

impl Drop for LeaveUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.group.leave();
        }
    }
}

/// Runs `$call` on the communicator's backend: `$local` on the shared
/// arena (left if the call is dropped), `$mesh` on the direct links, and
/// `$relay` (already a `Result`) through the parent.
macro_rules! on_backend {
    ($comm:expr, |$g:ident| local: $local:expr, mesh: $mesh:expr, relay: $relay:expr) => {{
        match &$comm.inner.backend {
            Backend::Local(group) => {
                let mut locked = group.lock().await;
                let mut guard = LeaveUnlessDone {
                    group: &mut locked,
                    done: false,
                };
                let $g = &mut *guard.group;
                let result = $local.await;
                guard.done = true;
                result.map_err(ProcessError::from)
            }
            Backend::Mesh(group) => {
                let mut locked = group.lock().await;
                let $g = &mut *locked;
                $mesh.await.map_err(ProcessError::from)
            }
            Backend::Relay => $relay,
        }
    }};
}

impl Children {
    /// The communicator of this process (rank 0) and these children (ranks
    /// 1.., in group order): the one kept for exactly these children while
    /// it is usable, else a new one — its backend chosen as the module docs
    /// say, and each child told its rank. Forming one of direct links needs
    /// the children to be in a collective call (or in
    /// [`crate::collective::rank`]): they join each other then.
    pub async fn communicator(&self) -> Result<Communicator, ProcessError> {
        let children = &self.0;
        let groups = TreeGroups::of(children);
        // The hot path: the one kept for exactly these children, still usable.
        if let Some(kept) = lock(&groups.current).as_ref()
            && kept.is_for(children)
            && kept.usable()
        {
            return Ok(kept.clone());
        }
        // Another group forms: the kept one must not keep its backend alive
        // (dropping a group of direct links tells its members).
        lock(&groups.current).take();
        let members: Vec<ActorId> = children.iter().map(Child::actor_id).collect();
        let size = children.len() + 1;
        if lock(&groups.announced).as_ref() != Some(&members) {
            for (i, child) in children.iter().enumerate() {
                let ranks = CollectiveMsg::Ranks {
                    rank: i as u32 + 1,
                    size: size as u32,
                };
                child.post_collective(ranks).await?;
            }
            *lock(&groups.announced) = Some(members);
        }
        let backend = if let Some(group) = parent_group(children).await? {
            Backend::Local(group)
        } else if let Some(group) = super::mesh::parent_mesh(children).await? {
            Backend::Mesh(group)
        } else {
            Backend::Relay
        };
        let communicator = Communicator {
            inner: Arc::new(Inner {
                rank: 0,
                size,
                backend,
                children: self.clone(),
            }),
        };
        *lock(&groups.current) = Some(communicator.clone());
        Ok(communicator)
    }

    /// AllReduce over this process (rank 0) and these children (ranks 1..,
    /// in group order) — [`Communicator::all_reduce`] on
    /// [`Children::communicator`].
    pub async fn all_reduce<T, B>(&self, data: &mut B, op: ReduceOp<T>) -> Result<(), ProcessError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        self.communicator().await?.all_reduce(data, op).await
    }

    /// Reduce to rank `root` — [`Communicator::reduce`] on
    /// [`Children::communicator`].
    pub async fn reduce<T, B>(
        &self,
        data: &mut B,
        op: ReduceOp<T>,
        root: usize,
    ) -> Result<(), ProcessError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        self.communicator().await?.reduce(data, op, root).await
    }

    /// Every rank gets rank `root`'s `data` — [`Communicator::broadcast`]
    /// on [`Children::communicator`].
    pub async fn broadcast<T, B>(&self, data: &mut B, root: usize) -> Result<(), ProcessError>
    where
        T: Element,
        B: ReduceBuffer<T> + ?Sized,
    {
        self.communicator().await?.broadcast(data, root).await
    }

    /// Rank `root` gets every rank's `data` — [`Communicator::gather`] on
    /// [`Children::communicator`].
    pub async fn gather<T: Element>(
        &self,
        data: &[T],
        root: usize,
    ) -> Result<Option<Vec<T>>, ProcessError> {
        self.communicator().await?.gather(data, root).await
    }

    /// Every rank gets every rank's `data` — [`Communicator::all_gather`]
    /// on [`Children::communicator`].
    pub async fn all_gather<T: Element>(&self, data: &[T]) -> Result<Vec<T>, ProcessError> {
        self.communicator().await?.all_gather(data).await
    }

    /// Rank `root`'s `send` split among the ranks —
    /// [`Communicator::scatter`] on [`Children::communicator`].
    pub async fn scatter<T: Element>(
        &self,
        send: &[T],
        recv: &mut [T],
        root: usize,
    ) -> Result<(), ProcessError> {
        self.communicator().await?.scatter(send, recv, root).await
    }

    /// Returns once every rank has called it — [`Communicator::barrier`] on
    /// [`Children::communicator`].
    pub async fn barrier(&self) -> Result<(), ProcessError> {
        self.communicator().await?.barrier().await
    }

    /// Where the group's ranks run (rank 0 is this process, then the
    /// children in group order), grouped by host; print it to see the tree
    /// and ring the collectives use and how each link is carried (shared
    /// memory on one machine, QUIC between machines).
    pub fn topology(&self) -> crate::reduce::Topology {
        let here = crate::id::host_name();
        let mut places = vec![crate::reduce::Place::new(here.clone(), std::process::id())];
        for c in &self.0 {
            let host = if c.same_host() {
                here.clone()
            } else {
                c.host().to_owned()
            };
            places.push(crate::reduce::Place::new(host, c.pid()));
        }
        crate::reduce::Topology::new(places).expect("a group always has rank 0, this process")
    }
}

impl Communicator {
    /// True when the group is this process and exactly `children`, in order.
    fn is_for(&self, children: &[Child]) -> bool {
        let mine = &self.inner.children;
        mine.len() == children.len()
            && mine
                .iter()
                .zip(children)
                .all(|(a, b)| a.actor_id() == b.actor_id())
    }

    /// False once its backend can take no more calls (a rank died or left,
    /// the group was retired or dropped): a new one must form.
    fn usable(&self) -> bool {
        match &self.inner.backend {
            Backend::Local(g) => g.try_lock().is_ok_and(|g| g.usable()),
            Backend::Mesh(g) => g.try_lock().is_ok_and(|g| g.is_usable()),
            Backend::Relay => true,
        }
    }

    /// This process's rank (0 on the parent).
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// How many ranks the group has (the parent and its children).
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// What carries the calls: `"shared memory"`, `"direct QUIC links"` or
    /// `"relay through the parent"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Local(_) => "shared memory",
            Backend::Mesh(_) => "direct QUIC links",
            Backend::Relay => "relay through the parent",
        }
    }

    /// The children of the group (ranks 1.., in order).
    pub fn children(&self) -> &Children {
        &self.inner.children
    }

    /// AllReduce: every rank ends with the same bits, the combination of
    /// every rank's `data` (each child calls [`crate::collective::all_reduce`]
    /// with a buffer of the same length). Through shared memory the result is
    /// the left fold in rank order; across machines its order of additions
    /// is the schedule's (see [`crate::collective`]). Fails on every rank if
    /// one of them dies, leaves or makes another call.
    pub async fn all_reduce<T, B>(&self, data: &mut B, op: ReduceOp<T>) -> Result<(), ProcessError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        on_backend!(self, |g|
            local: g.all_reduce(data, &op),
            mesh: g.all_reduce(data, op.clone()),
            relay: through_parent(&self.inner.children, data, &op).await)
    }

    /// Reduce to one rank: rank `root` (0 is the parent, `k` the `k`-th
    /// child of the group) ends with the left fold in rank order of every
    /// rank's `data`, `((x0 ⊕ x1) ⊕ x2) ⊕ …`; the others keep their
    /// buffers. Each child calls [`crate::collective::reduce`] with the same
    /// length, op and root. Calls that disagree (or a root that is not a
    /// rank) fail on every rank with [`ProcessError::Misuse`]; a rank that
    /// dies makes it fail on every other rank.
    pub async fn reduce<T, B>(
        &self,
        data: &mut B,
        op: ReduceOp<T>,
        root: usize,
    ) -> Result<(), ProcessError>
    where
        T: Reducible,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        on_backend!(self, |g|
        local: g.reduce(data, &op, root),
        mesh: g.reduce(data, op.clone(), root),
        relay: {
            let call = Call::new::<T>(StarKind::Reduce, self.inner.size, root, data.len(), op.code());
            let fold = |parts: &[Vec<u8>]| fold_bytes(&op, parts);
            let result = parent_star(&self.inner.children, call, bytes_of(data), &fold).await?;
            if root == 0 {
                copy_into(data, &result)?;
            }
            Ok(())
        })
    }

    /// Every rank ends with rank `root`'s `data` (each child calls
    /// [`crate::collective::broadcast`] with a buffer of the same length).
    /// Runs and fails as [`Communicator::reduce`] does.
    pub async fn broadcast<T, B>(&self, data: &mut B, root: usize) -> Result<(), ProcessError>
    where
        T: Element,
        B: ReduceBuffer<T> + ?Sized,
    {
        let data = data.elements_mut();
        on_backend!(self, |g|
        local: g.broadcast(data, root),
        mesh: g.broadcast(data, root),
        relay: {
            let call = Call::new::<T>(StarKind::Broadcast, self.inner.size, root, data.len(), 0);
            let mine = if_root(root == 0, data);
            let result = parent_star(&self.inner.children, call, mine, &no_fold).await?;
            if root != 0 {
                copy_into(data, &result)?;
            }
            Ok(())
        })
    }

    /// Rank `root` gets every rank's `data`, concatenated in rank order
    /// (`Some`; the other ranks get `None`). Every rank passes the same
    /// length; each child calls [`crate::collective::gather`]. Runs and
    /// fails as [`Communicator::reduce`] does.
    pub async fn gather<T: Element>(
        &self,
        data: &[T],
        root: usize,
    ) -> Result<Option<Vec<T>>, ProcessError> {
        on_backend!(self, |g|
        local: g.gather(data, root),
        mesh: g.gather(data, root),
        relay: {
            let call = Call::new::<T>(StarKind::Gather, self.inner.size, root, data.len(), 0);
            let result = parent_star(&self.inner.children, call, bytes_of(data), &no_fold).await?;
            (root == 0).then(|| elements(&result)).transpose()
        })
    }

    /// Every rank gets every rank's `data`, concatenated in rank order; each
    /// child calls [`crate::collective::all_gather`]. Runs and fails as
    /// [`Communicator::reduce`] does.
    pub async fn all_gather<T: Element>(&self, data: &[T]) -> Result<Vec<T>, ProcessError> {
        on_backend!(self, |g|
        local: g.all_gather(data),
        mesh: g.all_gather(data),
        relay: {
            let call = Call::new::<T>(StarKind::AllGather, self.inner.size, 0, data.len(), 0);
            elements(&parent_star(&self.inner.children, call, bytes_of(data), &no_fold).await?)
        })
    }

    /// Rank `root`'s `send` (`size × recv.len()` elements, one part per rank
    /// in rank order) is split: every rank gets its part in `recv`. `send`
    /// is read only on the root; each child calls
    /// [`crate::collective::scatter`]. A root whose `send` is not
    /// `size × recv.len()` long makes it fail on every rank; otherwise it
    /// runs and fails as [`Communicator::reduce`] does.
    pub async fn scatter<T: Element>(
        &self,
        send: &[T],
        recv: &mut [T],
        root: usize,
    ) -> Result<(), ProcessError> {
        on_backend!(self, |g|
        local: g.scatter(send, recv, root),
        mesh: g.scatter(send, recv, root),
        relay: {
            let call = Call::new::<T>(StarKind::Scatter, self.inner.size, root, recv.len(), 0);
            let mine = if_root(root == 0, send);
            let result = parent_star(&self.inner.children, call, mine, &no_fold).await?;
            copy_into(recv, &result)
        })
    }

    /// Returns once every rank (each child in [`crate::collective::barrier`])
    /// has called it; fails on every rank if one of them dies first.
    pub async fn barrier(&self) -> Result<(), ProcessError> {
        on_backend!(self, |g|
            local: g.barrier_call(),
            mesh: g.barrier(),
            relay: through_parent::<i32>(&self.inner.children, &mut [], &ReduceOp::Sum).await)
    }
}
