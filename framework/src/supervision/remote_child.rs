//! Children that live in another process: an actor spawned on a joined
//! node, or an actor in a process the supervisor forks for it. Each start
//! runs as one task: place the actor (fork first, for a process child),
//! spawn it under its stable id, record its home in the node's directory,
//! then wait for its `Down` — from `ActorRef::watch`, sharpened by the
//! process's exit status where the supervisor owns the process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::actor::{DeviceChoice, ExitReason, RemoteActor};
use crate::id::{ActorId, NodeId};
use crate::process::Child;
use crate::remote::{ActorRef, Home, Node, RemoteNode, SpawnError};
use crate::wire::WireType;

use super::running::{Exited, Pids, Running, StartCtx, Starter};

/// Where a remote child runs.
#[derive(Clone)]
pub enum RemotePlacement {
    /// Always on this node; if it is gone, the restart fails (and the
    /// supervisor's intensity decides when to give up).
    On(RemoteNode),
    /// On any node joined to the supervisor's node that allows the actor's
    /// type: the node of the previous incarnation first while it is
    /// connected, then the others; a node that refuses is skipped. An
    /// `#[actor(gpu)]` actor restarts on its device while its node lives,
    /// and otherwise only on a node with a device (the least loaded one
    /// there): a node without one refuses it.
    Any,
}

/// How long a lost connection waits for the process's exit status, to
/// tell a killed process from a network failure.
const STATUS_GRACE: Duration = Duration::from_millis(500);

/// The node of an incarnation, and its device for a GPU actor.
type Previous = (NodeId, Option<u32>);

enum Kind {
    Remote {
        placement: RemotePlacement,
        /// The node of the previous incarnation, and its device for a GPU actor.
        last: Arc<Mutex<Option<Previous>>>,
    },
    Process(crate::process::Placement),
}

/// Where a start function places its child: on a joined node, or in a
/// process of its own.
pub(super) enum Where {
    Node(RemotePlacement),
    Process(crate::process::Placement),
}

/// A start function for a remote child (on a joined node, or forked).
pub(super) fn starter<A: RemoteActor + WireType>(
    make: impl Fn() -> A + 'static,
    place: Where,
) -> Starter {
    let last = Arc::new(Mutex::new(None));
    Box::new(move |ctx: &StartCtx| {
        let kind = match &place {
            Where::Node(placement) => Kind::Remote {
                placement: placement.clone(),
                last: last.clone(),
            },
            Where::Process(placement) => Kind::Process(placement.clone()),
        };
        let (exit_tx, exit) = watch::channel(None);
        let (control, control_rx) = mpsc::unbounded_channel();
        // On the supervisor's arbiter: the initial state need not be `Send`.
        actix_rt::spawn(lifecycle::<A>(
            ctx.node.clone(),
            ctx.id,
            ctx.pids.clone(),
            kind,
            make(),
            exit_tx,
            control_rx,
        ));
        Box::new(RemoteChild { exit, control }) as Box<dyn Running>
    })
}

/// A stop request: in order, or a kill.
#[derive(Clone, Copy)]
struct Stop {
    kill: bool,
}

struct RemoteChild {
    exit: watch::Receiver<Option<ExitReason>>,
    control: mpsc::UnboundedSender<Stop>,
}

impl Running for RemoteChild {
    fn exited(&self) -> Exited {
        let mut exit = self.exit.clone();
        Box::pin(async move {
            loop {
                if let Some(reason) = exit.borrow_and_update().clone() {
                    return reason;
                }
                if exit.changed().await.is_err() {
                    return ExitReason::Killed;
                }
            }
        })
    }
    fn stop(&self) {
        let _ = self.control.send(Stop { kill: false });
    }
    fn kill(&self) {
        let _ = self.control.send(Stop { kill: true });
    }
}

/// Starts the actor, then reports its exit once.
async fn lifecycle<A: RemoteActor + WireType>(
    node: Node,
    id: ActorId,
    pids: Pids,
    kind: Kind,
    init: A,
    exit: watch::Sender<Option<ExitReason>>,
    mut control: mpsc::UnboundedReceiver<Stop>,
) {
    let placed = tokio::select! {
        placed = place(&node, id, &kind, init) => placed,
        _ = control.recv() => Err(ExitReason::Shutdown),
    };
    let (remote, child) = match placed {
        Ok(placed) => placed,
        Err(reason) => {
            let _ = exit.send(Some(reason));
            return;
        }
    };
    // The pid first: once the home says it runs, `pid_of` knows it.
    if let Some(child) = &child {
        lock(&pids).insert(id, child.pid());
    }
    node.set_home(id, Home::At(remote.id()));
    tracing::info!(%id, node = %remote.id(), pid = ?child.as_ref().map(Child::pid), "supervised child running");
    let actor = ActorRef::<A>::remote(id, remote.link().clone());
    let down = actor.watch();
    tokio::pin!(down);
    let ended = child.as_ref().map(Child::exited);
    let process_ended = async move {
        match ended {
            Some(ended) => exit_reason(&ended.await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(process_ended);
    let reason = loop {
        tokio::select! {
            down = &mut down => break sharpen(down.reason, child.as_ref()).await,
            Some(stop) = control.recv() => match &child {
                // The process is the child: ending it ends the actor.
                Some(child) => {
                    let child = child.clone();
                    tokio::spawn(async move { child.kill().await });
                }
                None => {
                    let remote = remote.clone();
                    tokio::spawn(async move { remote.stop_actor(id, stop.kill).await });
                }
            },
            reason = &mut process_ended => break reason,
        }
    };
    if child.is_some() && remote.is_alive() {
        // The process is gone: drop its connection now rather than after
        // the heartbeat timeout, so requests waiting on it fail (and
        // callers with retry move on to the new incarnation) at once.
        remote
            .link()
            .peer()
            .close(&format!("its process is gone ({reason})"));
    }
    if let Some(child) = child {
        // Reaps the process (if it still runs, ends it) and forgets it.
        child.kill().await;
        lock(&pids).remove(&id);
    }
    let _ = exit.send(Some(reason));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the actor starts: a joined node, or a process forked for it.
async fn place<A: RemoteActor + WireType>(
    node: &Node,
    id: ActorId,
    kind: &Kind,
    init: A,
) -> Result<(RemoteNode, Option<Child>), ExitReason> {
    match kind {
        Kind::Process(placement) => {
            // The supervisor owns the process: it is not one of the tree's
            // forked children (`parallel::children()`, `close()`).
            let child = crate::process::Tree::global()
                .spawn_unlisted(placement.clone())
                .await
                .map(|c| c.0.into_iter().next())
                .map_err(|e| {
                    ExitReason::Error(format!(
                        "could not start a process for {} on {}: {e}",
                        A::NAME,
                        placement.host()
                    ))
                })?
                .ok_or_else(|| ExitReason::Error("no process was started".into()))?;
            let remote = child.node().clone();
            match remote.spawn_as(id, init).await {
                Ok(_) => Ok((remote, Some(child))),
                Err(e) => {
                    child.kill().await;
                    Err(ExitReason::Error(format!(
                        "the forked process did not start {}: {e}",
                        A::NAME
                    )))
                }
            }
        }
        Kind::Remote { placement, last } => {
            let candidates = match placement {
                RemotePlacement::On(remote) => vec![remote.clone()],
                RemotePlacement::Any => {
                    let previous = lock(last).map(|(node, _)| node);
                    let mut all: Vec<RemoteNode> = node
                        .remotes()
                        .into_iter()
                        .filter(|r| r.is_alive())
                        .collect();
                    all.sort_by_key(|r| (Some(r.id()) != previous, r.id()));
                    all
                }
            };
            let wire = crate::wire::encode(&init).map_err(|e| ExitReason::Error(e.to_string()))?;
            let mut refusals = Vec::new();
            for remote in candidates {
                let init = crate::wire::decode_owned::<A>(&wire)
                    .map_err(|e| ExitReason::Error(e.to_string()))?;
                // A GPU actor restarts on its device while its node lives.
                let choice = match *lock(last) {
                    Some((node, Some(ordinal))) if node == remote.id() => {
                        DeviceChoice::Gpu(ordinal)
                    }
                    _ => DeviceChoice::AnyGpu,
                };
                match remote.spawn_placed(id, choice, init).await {
                    Ok((_, device)) => {
                        *lock(last) = Some((remote.id(), device));
                        return Ok((remote, None));
                    }
                    Err(e @ (SpawnError::NotAllowed(_) | SpawnError::NotRegistered(_))) => {
                        refusals.push(format!("{}: {e}", remote.id()))
                    }
                    Err(e) => refusals.push(format!("{}: {e}", remote.id())),
                }
            }
            Err(ExitReason::Error(if refusals.is_empty() {
                format!(
                    "no connected node to start {} on; join a node that allows it (Node::builder().allow::<{}>())",
                    A::NAME,
                    A::NAME.rsplit("::").next().unwrap_or(A::NAME)
                )
            } else {
                format!(
                    "no connected node started {}: {}",
                    A::NAME,
                    refusals.join("; ")
                )
            }))
        }
    }
}

/// A forked child, owned by a supervisor (the process tree's root): it
/// stops when its stdin closes, and its exit is its process's.
impl Running for Child {
    fn exited(&self) -> Exited {
        let exited = Child::exited(self);
        Box::pin(async move {
            let exit = exited.await;
            if exit.success {
                ExitReason::Normal
            } else {
                exit_reason(&exit)
            }
        })
    }
    fn stop(&self) {
        self.request_stop();
    }
    fn kill(&self) {
        self.kill_now();
    }
}

/// A process child's exit as a supervisor reads it: `Killed` for a signal.
fn exit_reason(exit: &crate::process::Exit) -> ExitReason {
    if exit.signaled {
        ExitReason::Killed
    } else {
        ExitReason::Error(format!("its process exited ({})", exit.status))
    }
}

/// A lost connection to a process child's node is the process's death
/// when its exit status follows shortly.
async fn sharpen(reason: ExitReason, child: Option<&Child>) -> ExitReason {
    let Some(child) = child else { return reason };
    if reason != ExitReason::NoConnection {
        return reason;
    }
    match tokio::time::timeout(STATUS_GRACE, child.exited()).await {
        Ok(exit) => exit_reason(&exit),
        Err(_) => reason,
    }
}
