//! Collectives over the process tree: the parent is rank 0, its children
//! ranks 1..n in group order. The parent calls the methods of
//! [`crate::Children`]; each child's function calls the functions here with
//! the same arguments.
//!
//! When every child runs on the parent's machine, the group is a
//! [`LocalGroup`]: one shared-memory arena the parent makes on the first
//! call and announces to the children (a `CollectiveMsg::Attach` post), then
//! reuses for every later call while the same children take part; data moves
//! with `memcpy` and barriers are futex words, so no call sends a message.
//! A group of different children (one died, one was added) gets a new
//! arena; the old one is retired. When a child is on another host, the
//! tree forms a group of direct links ([`super::mesh`]); when that cannot
//! be formed, every collective runs over the QUIC links through the parent:
//! `all_reduce` and `barrier` run a schedule of [`crate::reduce`]
//! ([`super::relay`]), the others a star through rank 0
//! ([`super::star`]), with the same results as on one machine.

use crate::actor::Element;
use crate::reduce::{ReduceOp, Reducible};

use super::local::{GroupError, LocalGroup, Wait};
use super::mesh::on_child_mesh;
use super::posts::bytes_of;
use super::relay::{ReduceBuffer, child_all_reduce};
use super::star::{Begun, Call, child_star, copy_into, disagree, elements, if_root};
use super::state::{TreeGroups, lock};
use crate::process::ProcessError;
use crate::process::child::link;
use crate::process::link::{ChildLink, refuse_in_async};
use crate::process::message::{CollectiveMsg, StarKind};

impl From<GroupError> for ProcessError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Mismatch(_) => ProcessError::Misuse(e.to_string()),
            _ => ProcessError::Aborted(e.to_string()),
        }
    }
}

/// The variable that, set to `quic`, makes the parent run its collectives
/// over QUIC links between the ranks even when every child is on its
/// machine (to compare the two, or to test the cross-host path on one
/// machine); set to `relay`, over the links to the parent only. Read with
/// the rest of the environment ([`crate::Config::from_env`]); a tree's
/// [`crate::Config::collective_transport`] is the same setting.
pub const TRANSPORT_VAR: &str = crate::config::vars::COLLECTIVE_TRANSPORT;

/// How the parent runs the coming collective, seen from a child.
enum Path {
    /// Through the tree's group of direct links ([`super::mesh`]).
    Mesh,
    /// Through the same-host group (the child's, as the parent announced it).
    Local,
    /// Through messages, a schedule: the parent's `Start` of an all_reduce
    /// or barrier (round, rank, ranks, len).
    Schedule((u64, usize, usize, usize)),
    /// Through messages, a star through the parent: its `Begin`.
    Star(Begun),
}

/// Waits for the parent's word on how the coming collective runs, unless
/// the child's group is still good.
fn path(ctx: &ChildLink) -> Result<Path, ProcessError> {
    if super::mesh::child_has_mesh() {
        return Ok(Path::Mesh);
    }
    super::mesh::child_drop_mesh();
    let groups = TreeGroups::own();
    let mut mine = lock(&groups.mine_local);
    if mine.as_ref().is_some_and(|g| g.usable()) {
        return Ok(Path::Local);
    }
    *mine = None;
    loop {
        match Ok::<_, ProcessError>(ctx.next_collective()?) {
            Ok(CollectiveMsg::Attach {
                path,
                rank,
                ranks,
                slot,
            }) => {
                let slot = usize::try_from(slot).unwrap_or(0);
                match LocalGroup::open(&path, rank as usize, ranks as usize, slot, Wait::Block) {
                    Ok(mut g) => match g.check() {
                        Ok(()) => {
                            *mine = Some(g);
                            return Ok(Path::Local);
                        }
                        // Replaced already: a newer announcement follows.
                        Err(GroupError::Retired) => continue,
                        // The call this rank is late for failed.
                        Err(e) => return Err(e.into()),
                    },
                    // The parent dropped it for a newer group.
                    Err(_) if !std::path::Path::new(&path).exists() => continue,
                    // The others would wait for this rank: release them.
                    Err(e) => {
                        if let Err(io) = LocalGroup::give_up(&path, rank as usize) {
                            tracing::warn!("could not leave the collective group at {path}: {io}");
                        }
                        return Err(e.into());
                    }
                }
            }
            Ok(CollectiveMsg::Start {
                round,
                rank,
                ranks,
                len,
            }) => {
                return Ok(Path::Schedule((
                    round,
                    rank as usize,
                    ranks as usize,
                    usize::try_from(len).unwrap_or(usize::MAX),
                )));
            }
            Ok(msg @ CollectiveMsg::Begin { .. }) => {
                if let Some(begun) = Begun::from_msg(&msg) {
                    return Ok(Path::Star(begun));
                }
            }
            Ok(CollectiveMsg::Abort { round: 0, reason }) => {
                return Err(ProcessError::Misuse(reason));
            }
            Ok(CollectiveMsg::Abort {
                round: super::mesh::MESH_ABORT,
                reason,
            }) => {
                return Err(ProcessError::Aborted(reason));
            }
            Ok(CollectiveMsg::Mesh {
                name,
                lines,
                order,
                quic,
            }) => {
                if super::mesh::child_join_mesh(ctx, name, lines, order, quic)? {
                    return Ok(Path::Mesh);
                }
            }
            // Posts of an earlier collective that ended.
            _ => continue,
        }
    }
}

/// Runs `call` on the child's same-host group. `None` when the parent had
/// retired that group for a newer one (it formed a group of other
/// children since): the call then finds its path again. A retired group
/// refuses a call at its first barrier, before this rank's data changed.
fn on_child_group<R>(
    call: impl FnOnce(&mut LocalGroup) -> Result<R, GroupError>,
) -> Option<Result<R, ProcessError>> {
    let groups = TreeGroups::own();
    let mut mine = lock(&groups.mine_local);
    let Some(g) = mine.as_mut() else {
        return Some(Err(ProcessError::Aborted(
            "the collective group is gone".into(),
        )));
    };
    let result = call(g);
    if !g.usable() {
        *mine = None;
    }
    match result {
        Err(GroupError::Retired) => None,
        other => Some(other.map_err(ProcessError::from)),
    }
}

/// In a child's function: AllReduce of `data` with the parent and its other
/// children (the parent calls [`crate::Children::all_reduce`]). Blocks until
/// every rank holds the result, bit-identical on every rank; fails on every
/// rank if one of them dies or the calls disagree.
///
/// On one machine the result is the left fold in rank order (parent first,
/// then the children in group order); across machines it is the fold of
/// [`crate::reduce::Schedule::reference`].
pub fn all_reduce<T, B>(data: &mut B, op: ReduceOp<T>) -> Result<(), ProcessError>
where
    T: Reducible,
    B: ReduceBuffer<T> + ?Sized,
{
    refuse_in_async("collective::all_reduce")?;
    let ctx = link()?;
    let data = data.elements_mut();
    loop {
        return match path(ctx)? {
            Path::Mesh => match on_child_mesh(async |g| g.all_reduce(&mut *data, op.clone()).await)
            {
                Some(r) => r,
                None => continue,
            },
            Path::Local => match on_child_group(|g| super::local::block(g.all_reduce(data, &op))) {
                Some(r) => r,
                None => continue,
            },
            Path::Schedule(start) => child_all_reduce(ctx, start, data, op),
            Path::Star(begun) => Err(called_instead(ctx, &begun, "all_reduce")),
        };
    }
}

/// The error of a child whose parent began a star collective when the
/// child called `what`, an all_reduce or barrier.
fn called_instead(ctx: &ChildLink, begun: &Begun, what: &str) -> ProcessError {
    let text = format!(
        "rank {} called {what}, rank 0 called {}",
        begun.rank, begun.call
    );
    disagree(ctx, begun.round, text)
}

/// Where a reduce, broadcast, gather, all_gather or scatter runs in a child.
enum Route {
    /// On the tree's group of direct links.
    Mesh,
    /// On its same-host group.
    Local,
    /// On the star through the parent, whose `Begin` has arrived.
    Star(&'static ChildLink, Begun),
}

/// Where a reduce, broadcast, gather, all_gather or scatter (`what`) runs
/// in a child.
fn star_route(what: &str) -> Result<Route, ProcessError> {
    refuse_in_async(&format!("collective::{what}"))?;
    let ctx = link()?;
    match path(ctx)? {
        Path::Mesh => Ok(Route::Mesh),
        Path::Local => Ok(Route::Local),
        Path::Star(begun) => Ok(Route::Star(ctx, begun)),
        Path::Schedule((round, rank, ..)) => {
            let text = format!("rank {rank} called {what}, rank 0 called all_reduce or barrier");
            Err(disagree(ctx, round, text))
        }
    }
}

/// In a child's function: the parent's [`crate::Children::reduce`] — rank
/// `root` ends with the left fold in rank order of every rank's `data`;
/// the other ranks' buffers stay as they were.
pub fn reduce<T, B>(data: &mut B, op: ReduceOp<T>, root: usize) -> Result<(), ProcessError>
where
    T: Reducible,
    B: ReduceBuffer<T> + ?Sized,
{
    let data = data.elements_mut();
    let (ctx, begun) = loop {
        match star_route("reduce")? {
            Route::Mesh => {
                if let Some(r) =
                    on_child_mesh(async |g| g.reduce(&mut *data, op.clone(), root).await)
                {
                    return r;
                }
            }
            Route::Local => {
                if let Some(r) = on_child_group(|g| super::local::block(g.reduce(data, &op, root)))
                {
                    return r;
                }
            }
            Route::Star(ctx, begun) => break (ctx, begun),
        }
    };
    let call = Call::new::<T>(StarKind::Reduce, begun.ranks(), root, data.len(), op.code());
    let result = child_star(ctx, &begun, call, bytes_of(data))?;
    if begun.rank == root {
        copy_into(data, &result)?;
    }
    Ok(())
}

/// In a child's function: the parent's [`crate::Children::broadcast`] —
/// every rank ends with rank `root`'s `data` (all pass the same length).
pub fn broadcast<T, B>(data: &mut B, root: usize) -> Result<(), ProcessError>
where
    T: Element,
    B: ReduceBuffer<T> + ?Sized,
{
    let data = data.elements_mut();
    let (ctx, begun) = loop {
        match star_route("broadcast")? {
            Route::Mesh => {
                if let Some(r) = on_child_mesh(async |g| g.broadcast(&mut *data, root).await) {
                    return r;
                }
            }
            Route::Local => {
                if let Some(r) = on_child_group(|g| super::local::block(g.broadcast(data, root))) {
                    return r;
                }
            }
            Route::Star(ctx, begun) => break (ctx, begun),
        }
    };
    let call = Call::new::<T>(StarKind::Broadcast, begun.ranks(), root, data.len(), 0);
    let is_root = begun.rank == root;
    let up = if_root(is_root, data);
    let result = child_star(ctx, &begun, call, up)?;
    if !is_root {
        copy_into(data, &result)?;
    }
    Ok(())
}

/// In a child's function: the parent's [`crate::Children::gather`] — rank
/// `root` gets every rank's `data` in rank order (`Some`), the others `None`.
pub fn gather<T: Element>(data: &[T], root: usize) -> Result<Option<Vec<T>>, ProcessError> {
    let (ctx, begun) = loop {
        match star_route("gather")? {
            Route::Mesh => {
                if let Some(r) = on_child_mesh(async |g| g.gather(data, root).await) {
                    return r;
                }
            }
            Route::Local => {
                if let Some(r) = on_child_group(|g| super::local::block(g.gather(data, root))) {
                    return r;
                }
            }
            Route::Star(ctx, begun) => break (ctx, begun),
        }
    };
    let call = Call::new::<T>(StarKind::Gather, begun.ranks(), root, data.len(), 0);
    let result = child_star(ctx, &begun, call, bytes_of(data))?;
    (begun.rank == root).then(|| elements(&result)).transpose()
}

/// In a child's function: the parent's [`crate::Children::all_gather`] —
/// every rank gets every rank's `data` in rank order.
pub fn all_gather<T: Element>(data: &[T]) -> Result<Vec<T>, ProcessError> {
    let (ctx, begun) = loop {
        match star_route("all_gather")? {
            Route::Mesh => {
                if let Some(r) = on_child_mesh(async |g| g.all_gather(data).await) {
                    return r;
                }
            }
            Route::Local => {
                if let Some(r) = on_child_group(|g| super::local::block(g.all_gather(data))) {
                    return r;
                }
            }
            Route::Star(ctx, begun) => break (ctx, begun),
        }
    };
    let call = Call::new::<T>(StarKind::AllGather, begun.ranks(), 0, data.len(), 0);
    elements(&child_star(ctx, &begun, call, bytes_of(data))?)
}

/// In a child's function: the parent's [`crate::Children::scatter`] — rank
/// `root`'s `send` (`ranks × recv.len()` elements) is split in rank order
/// and this rank gets its part in `recv`; `send` is read on the root only.
pub fn scatter<T: Element>(send: &[T], recv: &mut [T], root: usize) -> Result<(), ProcessError> {
    let (ctx, begun) = loop {
        match star_route("scatter")? {
            Route::Mesh => {
                if let Some(r) = on_child_mesh(async |g| g.scatter(send, &mut *recv, root).await) {
                    return r;
                }
            }
            Route::Local => {
                if let Some(r) =
                    on_child_group(|g| super::local::block(g.scatter(send, recv, root)))
                {
                    return r;
                }
            }
            Route::Star(ctx, begun) => break (ctx, begun),
        }
    };
    let call = Call::new::<T>(StarKind::Scatter, begun.ranks(), root, recv.len(), 0);
    let up = if_root(begun.rank == root, send);
    let result = child_star(ctx, &begun, call, up)?;
    copy_into(recv, &result)
}

/// In a child's function: the parent's [`crate::Children::barrier`] —
/// returns once every rank has called it.
pub fn barrier() -> Result<(), ProcessError> {
    refuse_in_async("collective::barrier")?;
    let ctx = link()?;
    loop {
        return match path(ctx)? {
            Path::Mesh => match on_child_mesh(async |g| g.barrier().await) {
                Some(r) => r,
                None => continue,
            },
            Path::Local => match on_child_group(|g| super::local::block(g.barrier_call())) {
                Some(r) => r,
                None => continue,
            },
            Path::Schedule(start) => child_all_reduce::<i32>(ctx, start, &mut [], ReduceOp::Sum),
            Path::Star(begun) => Err(called_instead(ctx, &begun, "barrier")),
        };
    }
}

/// This process's rank in its tree's current group: 0 in the parent (the
/// top process); in a child, the rank its parent announced when it formed
/// the group the child takes part in (parent first, then the children in
/// group order) — blocking until the parent forms one, with its first
/// collective or [`crate::Children::communicator`]. Not the same as
/// [`crate::id()`] once children were added or removed.
pub fn rank() -> Result<usize, ProcessError> {
    if !crate::process::is_child() {
        return Ok(0);
    }
    refuse_in_async("collective::rank")?;
    Ok(link()?.ranks()?.0)
}

/// How many ranks the child's current group has (the parent and its
/// children), as [`rank`] learns it. In the parent, ask the group's
/// [`super::Communicator::size`].
pub fn size() -> Result<usize, ProcessError> {
    if !crate::process::is_child() {
        return Err(ProcessError::Misuse(
            "a parent's groups are its communicators: ask `children.communicator().await?.size()`"
                .into(),
        ));
    }
    refuse_in_async("collective::size")?;
    Ok(link()?.ranks()?.1)
}
