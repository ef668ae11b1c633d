//! The posts of the collectives that travel through the parent (the relay
//! and the star): numbering a call, holding the children's posts for it,
//! sending to one child or all, waiting for what the children post — and
//! noticing, meanwhile, a child that died or whose function ended.

use crate::actor::Element;
use crate::process::message::CollectiveMsg;
use crate::process::{Child, ProcessError};

/// A new collective's number in the tree of `children` (never 0: round 0
/// is a refusal before a call begins).
pub(super) fn next_round(children: &[Child]) -> u64 {
    super::state::TreeGroups::of(children)
        .rounds
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The children's collective posts, held for the whole call so no other
/// call of this process takes them.
pub(super) async fn lock_inboxes(children: &[Child]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
    let mut held = Vec::with_capacity(children.len());
    for c in children {
        held.push(c.lock_collective().await);
    }
    held
}

/// Posts a collective message to `child`.
pub(super) async fn post_to(child: &Child, msg: &CollectiveMsg) -> Result<(), ProcessError> {
    child.post_collective(msg.clone()).await
}

/// Posts `msg` to every child, best effort: a child that is gone is skipped.
pub(super) async fn post_all(children: &[Child], msg: &CollectiveMsg) {
    for c in children {
        let _ = c.post_collective(msg.clone()).await;
    }
}

/// Tells every child that collective `round` failed with `e`: a
/// [`ProcessError::Misuse`] (the ranks made different calls) as a
/// `Refused`, so every rank returns that same error, anything else as an
/// `Abort`.
pub(super) async fn fail_all(children: &[Child], round: u64, e: &ProcessError) {
    let msg = match e {
        ProcessError::Misuse(reason) => CollectiveMsg::Refused {
            round,
            reason: reason.clone(),
        },
        other => CollectiveMsg::Abort {
            round,
            reason: other.to_string(),
        },
    };
    post_all(children, &msg).await;
}

/// Tells every child that collective `round` failed, and why (best effort:
/// a child that is gone is skipped).
pub(super) async fn abort_all(children: &[Child], round: u64, reason: String) {
    post_all(children, &CollectiveMsg::Abort { round, reason }).await;
}

/// The error a child returns for `msg` when it ends collective `round`
/// (the parent's `Abort` or `Refused` of it); `None` for anything else.
pub(super) fn failure(msg: CollectiveMsg, round: u64) -> Option<ProcessError> {
    match msg {
        CollectiveMsg::Abort { round: r, reason } if r == round => {
            Some(ProcessError::Aborted(reason))
        }
        CollectiveMsg::Refused { round: r, reason } if r == round => {
            Some(ProcessError::Misuse(reason))
        }
        _ => None,
    }
}

/// Waits until children have posted collective messages and returns them
/// as (rank, post), in child order; fails when a child for which
/// `owes(rank)` holds is gone or its function ended.
pub(super) async fn next_posts(
    children: &[Child],
    _held: &mut [tokio::sync::MutexGuard<'_, ()>],
    owes: impl Fn(usize) -> bool,
) -> Result<Vec<(usize, CollectiveMsg)>, ProcessError> {
    loop {
        // Registered before looking, so a post filed in between wakes us.
        let mut changed: Vec<_> = children.iter().map(Child::changed).collect();
        let mut posts = Vec::new();
        let mut failure = None;
        for (i, child) in children.iter().enumerate() {
            match child.take_collective() {
                Ok(msgs) => posts.extend(msgs.into_iter().map(|m| (i + 1, m))),
                Err(ended) if owes(i + 1) && failure.is_none() => {
                    if let Some(reason) = child.exited_reason() {
                        failure = Some(ProcessError::Gone {
                            id: child.id(),
                            reason,
                        });
                    } else if let Some(e) = ended {
                        failure = Some(ProcessError::Aborted(format!(
                            "rank {} left the collective: {e}",
                            i + 1
                        )));
                    }
                }
                Err(_) => {}
            }
        }
        if !posts.is_empty() {
            return Ok(posts);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !(1..=children.len()).any(&owes) {
            return Err(ProcessError::Aborted(
                "waiting for a post no rank owes (a protocol error)".into(),
            ));
        }
        std::future::poll_fn(|cx| {
            for f in changed.iter_mut() {
                if f.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        })
        .await;
    }
}

/// The bytes of `data`: each element's native bytes, in order.
pub(super) fn bytes_of<T: Element>(data: &[T]) -> Vec<u8> {
    crate::actor::element_bytes(data).to_vec()
}
