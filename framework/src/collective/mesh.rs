//! Direct links for a process tree that spans machines: the parent and its
//! children form one [`Group`] (the parent is rank 0, the children follow
//! in group order), so collectives run over direct QUIC links between the
//! children — and, where several children share a machine, through that
//! machine's shared memory, with AllReduce reduced per machine first — not
//! through the parent.
//!
//! On the first collective of a group of children that are not all on the
//! parent's machine, the parent posts `Mesh` (the group's name, every
//! child's join line, the rank order) to each child, and forms the group;
//! each child joins its siblings and forms it too, then says whether that
//! worked (`MeshJoined`). Only when every member formed it does the parent
//! post `MeshVerdict { ready: true }` and use it; otherwise every member
//! drops it and the collectives go through the parent as before (children
//! that cannot reach each other, a child that does not listen) — for these
//! children from then on. Later calls of the same children reuse the group
//! while it is usable.
//!
//! `PARALLEL_COLLECTIVE_TRANSPORT=relay` keeps every collective on the path
//! through the parent; `quic` forms the group over QUIC even on one machine.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::id::{ActorId, NodeId};
use crate::remote::RemoteNode;
use crate::transport::ConnectError;

use super::group::{CollectiveError, Group, GroupOptions, Transport};
use super::posts::{lock_inboxes, next_posts, post_to};
use super::state::{TreeGroups, lock};
use crate::config::CollectiveTransport;
use crate::process::Child;
use crate::process::ProcessError;
use crate::process::link::ChildLink;
use crate::process::message::CollectiveMsg;

/// How long forming a tree's group may take before the collectives go
/// through the parent instead.
pub const MESH_TIMEOUT: Duration = Duration::from_secs(30);
/// The round of the `Abort` that fails, on every child, a call whose tree
/// group could not form because a rank died.
pub(super) const MESH_ABORT: u64 = u64::MAX;
/// How often a child tries to join one sibling before it gives up.
const JOIN_TRIES: u32 = 3;
/// How long a child may take to join one sibling.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

impl From<CollectiveError> for ProcessError {
    fn from(e: CollectiveError) -> Self {
        match e {
            CollectiveError::Mismatch(_) => ProcessError::Misuse(e.to_string()),
            _ => ProcessError::Aborted(e.to_string()),
        }
    }
}

/// The group of direct links of this process and `children`, formed on
/// every member when there is none for exactly these children; `None` when
/// it cannot be formed (the collectives then go through the parent).
pub(super) async fn parent_mesh(
    children: &[Child],
) -> Result<Option<Arc<tokio::sync::Mutex<Group>>>, ProcessError> {
    if children.is_empty() {
        return Ok(None);
    }
    let groups = TreeGroups::of(children);
    // Dropping the kept group tells its members (they then wait for the next).
    if groups.transport == CollectiveTransport::Relay {
        drop(groups.mesh.take());
        return Ok(None);
    }
    let members: Vec<(ActorId, NodeId)> = children
        .iter()
        .map(|c| (c.actor_id(), c.node().id()))
        .collect();
    if let Some(group) = groups.mesh.get(&members, Group::is_usable) {
        return Ok(Some(group));
    }
    drop(groups.mesh.take());
    if lock(&groups.failed).as_ref() == Some(&members) {
        return Ok(None);
    }
    let Some(lines) = children
        .iter()
        .map(|c| c.node().join_line().map(|l| l.to_string()))
        .collect::<Option<Vec<String>>>()
    else {
        return Ok(None);
    };
    let node = children[0].home_node()?;
    let name = format!(
        "para||el tree {}.{}",
        std::process::id(),
        groups.names.fetch_add(1, Ordering::Relaxed)
    );
    let mut order = vec![node.id()];
    order.extend(members.iter().map(|&(_, n)| n));
    let quic = groups.transport == CollectiveTransport::Quic;
    let mesh = CollectiveMsg::Mesh {
        name: name.clone(),
        lines,
        order: order.clone(),
        quic,
    };
    for c in children {
        post_to(c, &mesh).await?;
    }
    let peers: Vec<RemoteNode> = children.iter().map(|c| c.node().clone()).collect();
    let formed = Group::form_with(&node, &name, &peers, options(quic, order)).await;
    let mut why: Vec<String> = Vec::new();
    if let Err(e) = &formed {
        why.push(format!("rank 0: {e}"));
    }
    // Every child says whether it formed the group.
    let mut answered = vec![false; children.len() + 1];
    answered[0] = true;
    let mut died = None;
    let mut inboxes = lock_inboxes(children).await;
    while answered.iter().any(|a| !a) {
        let posts = match next_posts(children, &mut inboxes, |r| !answered[r]).await {
            Ok(posts) => posts,
            Err(e) => {
                why.push(e.to_string());
                died = Some(e);
                break;
            }
        };
        for (rank, msg) in posts {
            if let CollectiveMsg::MeshJoined { name: n, error } = msg
                && n == name
            {
                answered[rank] = true;
                if let Some(e) = error {
                    why.push(format!("rank {rank}: {e}"));
                }
            }
        }
    }
    drop(inboxes);
    let ready = why.is_empty();
    let verdict = CollectiveMsg::MeshVerdict {
        name: name.clone(),
        ready,
    };
    for c in children {
        let _ = post_to(c, &verdict).await;
    }
    if let Some(e) = died {
        // A rank died during this call: it fails on every rank.
        let abort = CollectiveMsg::Abort {
            round: MESH_ABORT,
            reason: e.to_string(),
        };
        for c in children {
            let _ = post_to(c, &abort).await;
        }
        return Err(e);
    }
    match formed {
        Ok(group) if ready => Ok(Some(groups.mesh.keep(members, group))),
        _ => {
            tracing::warn!(
                "the children could not link directly ({}); their collectives go through this process",
                why.join("; ")
            );
            *lock(&groups.failed) = Some(members);
            Ok(None)
        }
    }
}

fn options(quic: bool, order: Vec<NodeId>) -> GroupOptions {
    GroupOptions {
        timeout: MESH_TIMEOUT,
        transport: if quic {
            Transport::Quic
        } else {
            Transport::Auto
        },
        host: None,
        order: Some(order),
    }
}

/// Whether the child has a usable tree group.
pub(super) fn child_has_mesh() -> bool {
    lock(&TreeGroups::own().mine_mesh)
        .as_ref()
        .is_some_and(Group::is_usable)
}

/// Forget the child's tree group.
pub(super) fn child_drop_mesh() {
    lock(&TreeGroups::own().mine_mesh).take();
}

/// A child's answer to `Mesh`: joins the siblings, forms the group, tells
/// the parent, and waits for its verdict. True when the group is in use.
pub(super) fn child_join_mesh(
    ctx: &ChildLink,
    name: String,
    lines: Vec<String>,
    order: Vec<NodeId>,
    quic: bool,
) -> Result<bool, ProcessError> {
    let link = crate::process::child::link()?;
    let (parent, runtime) = (link.parent_node().clone(), link.runtime().clone());
    let node = link.node().clone();
    let formed: Result<Group, String> = runtime.block_on(async {
        let mut peers = vec![parent];
        for (i, line) in lines.iter().enumerate() {
            let join_line = line.parse().map_err(|e| format!("{e}"))?;
            // Siblings join each other at once: each pair keeps one of its
            // two connections, and a join whose connection lost that
            // tie-break fails while the other one stands. Then the link to
            // that sibling (its node is `order[i + 1]`) is the one to use.
            let sibling = order.get(i + 1).copied();
            let mut tries = 0;
            loop {
                match tokio::time::timeout(JOIN_TIMEOUT, node.join(&join_line)).await {
                    Ok(Ok(remote)) => peers.push(remote),
                    Ok(Err(ConnectError::SelfConnect)) => {}
                    Ok(Err(e)) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if let Some(remote) = sibling.and_then(|id| node.remote(id))
                            && remote.is_alive()
                        {
                            peers.push(remote);
                        } else if tries < JOIN_TRIES {
                            continue;
                        } else {
                            return Err(format!("joining {line}: {e}"));
                        }
                    }
                    Err(_) => {
                        return Err(format!("joining {line}: no answer within {JOIN_TIMEOUT:?}"));
                    }
                }
                break;
            }
        }
        Group::form_with(&node, &name, &peers, options(quic, order))
            .await
            .map_err(|e| e.to_string())
    });
    let joined = CollectiveMsg::MeshJoined {
        name: name.clone(),
        error: formed.as_ref().err().cloned(),
    };
    ctx.post_collective(joined)?;
    loop {
        if let CollectiveMsg::MeshVerdict { name: n, ready } = ctx.next_collective()?
            && n == name
        {
            return Ok(match formed {
                Ok(group) if ready => {
                    *lock(&TreeGroups::own().mine_mesh) = Some(group);
                    true
                }
                _ => false,
            });
        }
    }
}

/// Runs `call` on the child's tree group. `None` when the parent had
/// dropped that group (for a newer one): the call must find its path again.
pub(super) fn on_child_mesh<R>(
    call: impl AsyncFnOnce(&mut Group) -> Result<R, CollectiveError>,
) -> Option<Result<R, ProcessError>> {
    let runtime = match crate::process::child::link() {
        Ok(link) => link.runtime().clone(),
        Err(e) => return Some(Err(e)),
    };
    let groups = TreeGroups::own();
    let mut mine = lock(&groups.mine_mesh);
    let group = mine.as_mut()?;
    let result = runtime.block_on(call(group));
    if !group.is_usable() {
        *mine = None;
    }
    match result {
        Err(e) if e.dropped_by(0) => None,
        other => Some(other.map_err(ProcessError::from)),
    }
}
