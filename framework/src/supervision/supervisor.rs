//! The supervisor at run time: starts its children in order, watches them,
//! applies its [`Plan`]'s decisions (terminate, restart, give up), and shuts
//! them down in reverse order — each asked to stop, then killed after its
//! shutdown timeout. Children keep their [`ActorId`] across restarts, so
//! `ActorRef`s held anywhere keep working. Supervisors nest. A child is a
//! local actor, an actor on another node ([`ChildSpec::remote`]) or an actor
//! in a process forked for it ([`ChildSpec::process`]); the supervisor's
//! node keeps a directory of where each one lives now ([`Home`]), which
//! `ActorRef`s of this process follow across restarts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::actor::{DeviceChoice, ExitReason, LocalEntry, RemoteActor};
use crate::id::{ActorId, NodeId};
use crate::remote::{ActorAddress, ActorRef, Home, Node};
use crate::wire::WireType;

use super::events::{EventStream, Journal, StampedEvent, SupervisorEvent};
use super::plan::{Decision, Intensity, Plan, Restart, Strategy};
use super::remote_child::{RemotePlacement, Where, starter};
use super::running::{Exited, Pids, Running, StartCtx, Starter};

/// How long a child may take to stop before it is killed, unless its spec says otherwise.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);

impl Running for Arc<LocalEntry> {
    fn exited(&self) -> Exited {
        Box::pin(LocalEntry::exited(self))
    }
    fn stop(&self) {
        LocalEntry::stop(self)
    }
    fn kill(&self) {
        LocalEntry::kill(self)
    }
}

impl Running for SupervisorRef {
    fn exited(&self) -> Exited {
        let this = self.clone();
        Box::pin(async move { this.exited().await })
    }
    fn stop(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
    fn kill(&self) {
        let _ = self.commands.send(Command::Kill);
    }
}

/// One child of a supervisor: how to start it, when to restart it, how long
/// it may take to stop.
pub struct ChildSpec {
    name: String,
    restart: Restart,
    shutdown: Duration,
    start: Starter,
}

impl ChildSpec {
    /// A local actor made by `make` (called again for each restart).
    /// An `#[actor(gpu)]` actor is refused here (its exit says to use
    /// [`ChildSpec::pinned`]).
    pub fn actor<A: RemoteActor>(name: impl Into<String>, make: impl Fn() -> A + 'static) -> Self {
        Self::local(name, move |node, id| {
            let registry = &node.0.registry;
            if A::GPU {
                let reason = ExitReason::Error(format!(
                    "{} runs on a GPU: supervise it with ChildSpec::pinned",
                    A::NAME
                ));
                registry.start_refused(id, make(), node.0.mailbox, reason).1
            } else {
                registry.start_as(id, make(), node.0.mailbox).1
            }
        })
    }

    /// A local `#[actor(gpu)]` actor made by `make`, on a thread pinned to
    /// the device `choice` names; each restart keeps the device of the
    /// first start. A node without such a device fails the start (the exit
    /// names what the node has), and the supervisor's intensity decides
    /// when to give up.
    pub fn pinned<A: RemoteActor + Send>(
        name: impl Into<String>,
        make: impl Fn() -> A + 'static,
        choice: DeviceChoice,
    ) -> Self {
        let device = std::cell::Cell::new(None);
        Self::local(name, move |node, id| {
            let choice = device.get().map_or(choice, DeviceChoice::Gpu);
            match node.0.start_pinned(id, make(), choice) {
                Ok((_, entry, ordinal)) => {
                    device.set(Some(ordinal));
                    entry
                }
                Err(e) => {
                    let reason = ExitReason::Error(e.to_string());
                    let registry = &node.0.registry;
                    registry.start_refused(id, make(), node.0.mailbox, reason).1
                }
            }
        })
    }

    /// A child on the supervisor's node, started by `start` under its id.
    fn local(
        name: impl Into<String>,
        start: impl Fn(&Node, ActorId) -> Arc<LocalEntry> + 'static,
    ) -> Self {
        let start: Starter = Box::new(move |ctx: &StartCtx| {
            let entry = start(ctx.node, ctx.id);
            ctx.node.set_home(ctx.id, Home::At(ctx.node.id()));
            Box::new(entry) as Box<dyn Running>
        });
        ChildSpec {
            name: name.into(),
            restart: Restart::Permanent,
            shutdown: DEFAULT_SHUTDOWN,
            start,
        }
    }

    /// An actor on another node, made by `make` (called again for each
    /// restart) and spawned by name under the child's stable id where
    /// `placement` says. `A` must be `#[actor(spawn)]` and allowed there.
    /// With [`RemotePlacement::Any`], a child whose node is gone restarts
    /// on another connected node that allows `A`.
    pub fn remote<A: RemoteActor + WireType>(
        name: impl Into<String>,
        make: impl Fn() -> A + 'static,
        placement: RemotePlacement,
    ) -> Self {
        ChildSpec {
            name: name.into(),
            restart: Restart::Permanent,
            shutdown: DEFAULT_SHUTDOWN,
            start: starter(make, Where::Node(placement)),
        }
    }

    /// An actor in a child process of its own on this machine: each start
    /// starts a new process (this same program, so it needs
    /// `#[parallel::main]`) and spawns the actor made by `make` there under
    /// the child's stable id. The supervisor alone owns that process (it is
    /// not among `parallel::children()`, and `close()` leaves it to its
    /// supervisor). Its exit is `Killed` when the process dies by a signal,
    /// `NoConnection` when only the connection is lost; stopping the child
    /// ends its process. `A` must be `#[actor(spawn)]`.
    pub fn process<A: RemoteActor + WireType>(
        name: impl Into<String>,
        make: impl Fn() -> A + 'static,
    ) -> Self {
        Self::process_on(name, make, crate::process::Placement::Local)
    }

    /// Like [`ChildSpec::process`], with each incarnation's process started
    /// where `placement` says: on another host through ssh
    /// (`Remote::ssh("host").into()`), so a crashed child is restarted
    /// there.
    pub fn process_on<A: RemoteActor + WireType>(
        name: impl Into<String>,
        make: impl Fn() -> A + 'static,
        placement: crate::process::Placement,
    ) -> Self {
        ChildSpec {
            name: name.into(),
            restart: Restart::Permanent,
            shutdown: DEFAULT_SHUTDOWN,
            start: starter(make, Where::Process(placement)),
        }
    }

    /// A nested supervisor (made again by `make` for each restart); it runs
    /// on its parent's node.
    pub fn supervisor(name: impl Into<String>, make: impl Fn() -> Supervisor + 'static) -> Self {
        let start: Starter = Box::new(move |ctx: &StartCtx| {
            let nested = make().start(ctx.node);
            ctx.node.set_home(ctx.id, Home::At(ctx.node.id()));
            Box::new(nested) as Box<dyn Running>
        });
        ChildSpec {
            name: name.into(),
            restart: Restart::Permanent,
            shutdown: DEFAULT_SHUTDOWN,
            start,
        }
    }

    /// When to restart it (default: [`Restart::Permanent`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// How long it may take to stop before it is killed (default 5 s).
    pub fn shutdown(mut self, timeout: Duration) -> Self {
        self.shutdown = timeout;
        self
    }
}

/// Why [`SupervisorRef::running`] gave up waiting for a child.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotRunning {
    /// The supervisor has no child of that name.
    #[error("the supervisor has no child named {0:?}; use the name given to its ChildSpec")]
    NoSuchChild(String),
    /// The child is down for good: its supervisor stopped, gave up after too
    /// many restarts, or does not restart it.
    #[error(
        "child {name:?} is down for good ({reason}): its supervisor stopped, gave up or does not restart it; read `SupervisorRef::history()` for what happened"
    )]
    Down {
        /// The child's name.
        name: String,
        /// Why it went down (or why its supervisor stopped).
        reason: ExitReason,
    },
}

/// A supervisor before it starts: its strategy, intensity and children.
pub struct Supervisor {
    strategy: Strategy,
    intensity: Intensity,
    children: Vec<ChildSpec>,
}

enum Command {
    Shutdown,
    Kill,
    /// Owns `child`, started by the caller, from now on (never restarted).
    Adopt {
        name: String,
        id: ActorId,
        child: Box<dyn Running>,
        shutdown: Duration,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Stops every child in reverse start order and keeps supervising.
    TerminateChildren(tokio::sync::oneshot::Sender<()>),
    /// Stops one child for good (never restarted); answers whether there
    /// was such a running child.
    TerminateChild(String, tokio::sync::oneshot::Sender<bool>),
}

/// Names and ids of a supervisor's children, by key (start order).
type Ids = Arc<std::sync::RwLock<Vec<(String, ActorId)>>>;

/// A running supervisor. Cheap to clone.
#[derive(Clone)]
pub struct SupervisorRef {
    node: Node,
    ids: Ids,
    pids: Pids,
    journal: Arc<Journal>,
    commands: mpsc::UnboundedSender<Command>,
    done: watch::Receiver<Option<ExitReason>>,
}

impl Supervisor {
    /// A supervisor with `strategy` and OTP's default intensity (1 restart in 5 s).
    pub fn new(strategy: Strategy) -> Self {
        Supervisor {
            strategy,
            intensity: Intensity::default(),
            children: Vec::new(),
        }
    }

    /// At most `max_restarts` restarts within `within`; one more and it gives up.
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            within,
        };
        self
    }

    /// Adds a child, started after the ones before it.
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.children.push(spec);
        self
    }

    /// Starts the children in order on `node` and supervises them.
    pub fn start(self, node: &Node) -> SupervisorRef {
        let ids: Vec<(String, ActorId)> = self
            .children
            .iter()
            .map(|c| (c.name.clone(), ActorId::new()))
            .collect();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(None);
        let handle = SupervisorRef {
            node: node.clone(),
            ids: Arc::new(std::sync::RwLock::new(ids)),
            pids: Pids::default(),
            journal: Arc::new(Journal::new()),
            commands,
            done,
        };
        let mut run = Run {
            node: node.clone(),
            plan: Plan::new(self.strategy, self.intensity),
            specs: self
                .children
                .into_iter()
                .enumerate()
                .map(|(k, s)| (k as u64, s))
                .collect(),
            ids: handle.ids.clone(),
            pids: handle.pids.clone(),
            running: HashMap::new(),
            adopted: HashMap::new(),
            incarnations: HashMap::new(),
            starts: 0,
            journal: handle.journal.clone(),
            exits: mpsc::unbounded_channel(),
        };
        for key in 0..run.specs.len() as u64 {
            let restart = run.specs[&key].restart;
            run.plan.add(key, restart);
            run.start_child(key);
        }
        actix_rt::spawn(async move {
            let reason = run.serve(command_rx).await;
            run.journal.close();
            let _ = done_tx.send(Some(reason));
        });
        handle
    }
}

impl SupervisorRef {
    /// The id of the child named `name` (the same across its restarts).
    pub fn id_of(&self, name: &str) -> Option<ActorId> {
        self.ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }

    /// Makes the supervisor the owner of `child`, which the caller started:
    /// a temporary child (never restarted), stopped with the others, in
    /// reverse start order, and given `shutdown` to stop before it is
    /// killed. How a dynamic supervisor (the process tree's root) takes
    /// children that start while it runs. Returns once it owns the child;
    /// a supervisor that stopped stops the child at once.
    pub(crate) async fn adopt(
        &self,
        name: String,
        id: ActorId,
        child: Box<dyn Running>,
        shutdown: Duration,
    ) {
        let (done, adopted) = tokio::sync::oneshot::channel();
        let command = Command::Adopt {
            name,
            id,
            child,
            shutdown,
            done,
        };
        if let Err(mpsc::error::SendError(Command::Adopt { child, .. })) =
            self.commands.send(command)
        {
            child.kill();
            return;
        }
        let _ = adopted.await;
    }

    /// Stops every child in reverse start order (each asked to stop, killed
    /// after its shutdown timeout) and keeps supervising: children adopted
    /// later are owned as before. Returns once all have stopped.
    pub async fn terminate_children(&self) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::TerminateChildren(done)).is_ok() {
            let _ = finished.await;
        }
    }

    /// Stops the child named `name` in order (killed after its shutdown
    /// timeout) and forgets it: it is never restarted, whatever its restart
    /// (OTP's `terminate_child` and `delete_child`); its siblings go on.
    /// False when no such child runs.
    pub async fn terminate_child(&self, name: &str) -> bool {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(Command::TerminateChild(name.to_owned(), done))
            .is_err()
        {
            return false;
        }
        finished.await.unwrap_or(false)
    }

    /// A reference to the child actor named `name`; it follows the child's
    /// restarts, also to another node (through this node's directory).
    pub fn child<A: RemoteActor>(&self, name: &str) -> Option<ActorRef<A>> {
        let id = self.id_of(name)?;
        let node = match self.node.home(id) {
            Some(Home::At(node)) => node,
            _ => self.node.id(),
        };
        Some(ActorRef::from_address(ActorAddress {
            id,
            node,
            join_line: (node == self.node.id()).then(|| self.node.join_line()),
        }))
    }

    /// Where the child named `name` lives now, or whether it is restarting.
    pub fn home_of(&self, name: &str) -> Option<Home> {
        self.node.home(self.id_of(name)?)
    }

    /// The OS process id of the process child named `name`
    /// ([`ChildSpec::process`]) while its process runs.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        let id = self.id_of(name)?;
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    }

    /// Waits until the child named `name` runs and says on which node: at
    /// once when it runs now, else when its start (or restart) is done — a
    /// remote or process child is up only once spawned where it runs. For a
    /// process child, [`SupervisorRef::pid_of`] gives its process id from
    /// then on. Fails when there is no such child, or when the child is down
    /// for good (the supervisor stopped or gave up, or does not restart it).
    /// Add a timeout of your own: a child whose restarts keep failing is
    /// retried until the supervisor's intensity runs out.
    pub fn running(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<NodeId, NotRunning>> + Send + 'static {
        let id = self.id_of(name);
        let name = name.to_string();
        let node = self.node.clone();
        let mut homes = node.home_changes();
        let mut done = self.done.clone();
        async move {
            let Some(id) = id else {
                return Err(NotRunning::NoSuchChild(name));
            };
            loop {
                // Marked seen before looking, so a change in between wakes us.
                homes.borrow_and_update();
                let stopped = done.borrow_and_update().clone();
                match node.home(id) {
                    Some(Home::At(at)) => return Ok(at),
                    Some(Home::Down(reason)) => return Err(NotRunning::Down { name, reason }),
                    _ => {}
                }
                if let Some(reason) = stopped {
                    return Err(NotRunning::Down { name, reason });
                }
                tokio::select! {
                    changed = homes.changed() => if changed.is_err() {
                        return Err(NotRunning::Down { name, reason: ExitReason::Killed });
                    },
                    changed = done.changed() => if changed.is_err() {
                        let reason = done.borrow().clone().unwrap_or(ExitReason::Killed);
                        return Err(NotRunning::Down { name, reason });
                    },
                }
            }
        }
    }

    /// What the supervisor reports, each report stamped with when it
    /// happened: first the reports it kept from before this call (the last
    /// [`HISTORY`](super::HISTORY); so a reader that subscribes late misses nothing recent),
    /// then every new one. Skip the replayed ones by their `seq` or
    /// `since_start` if only new ones matter.
    pub fn events(&self) -> EventStream {
        self.journal.subscribe()
    }

    /// The reports the supervisor kept (the last [`HISTORY`](super::HISTORY)), oldest first.
    pub fn history(&self) -> Vec<StampedEvent> {
        self.journal.history()
    }

    /// Stops every child in reverse start order (each asked to stop, killed
    /// after its shutdown timeout), then the supervisor; waits for all that.
    pub async fn shutdown(&self) -> ExitReason {
        let _ = self.commands.send(Command::Shutdown);
        self.exited().await
    }

    /// Waits until the supervisor has stopped: `Shutdown` after
    /// [`SupervisorRef::shutdown`], an error after it gave up.
    pub async fn exited(&self) -> ExitReason {
        let mut done = self.done.clone();
        loop {
            if let Some(reason) = done.borrow_and_update().clone() {
                return reason;
            }
            if done.changed().await.is_err() {
                return ExitReason::Killed;
            }
        }
    }
}

/// A child's exit as the supervisor hears it: key, start number, reason.
type ChildExit = (u64, u64, ExitReason);

/// A child the supervisor started and has not terminated: its start number
/// (unique within the supervisor) and its handle.
struct Started {
    start: u64,
    child: Box<dyn Running>,
}

struct Run {
    node: Node,
    plan: Plan,
    specs: HashMap<u64, ChildSpec>,
    ids: Ids,
    pids: Pids,
    /// Shutdown timeouts of adopted children, which have no spec.
    adopted: HashMap<u64, Duration>,
    /// The children that run, by key. An exit counts only while its start
    /// is the one here: one the supervisor terminated itself was removed.
    running: HashMap<u64, Started>,
    /// How many times each child was started.
    incarnations: HashMap<u64, u64>,
    /// Starts so far, of all children: numbers each start.
    starts: u64,
    journal: Arc<Journal>,
    exits: (
        mpsc::UnboundedSender<ChildExit>,
        mpsc::UnboundedReceiver<ChildExit>,
    ),
}

impl Run {
    fn name_and_id(&self, key: u64) -> (String, ActorId) {
        self.ids.read().unwrap_or_else(|e| e.into_inner())[key as usize].clone()
    }

    /// Owns a child the caller started: a temporary one, at the end of the
    /// start order.
    fn adopt(&mut self, name: String, id: ActorId, child: Box<dyn Running>, shutdown: Duration) {
        let key = {
            let mut ids = self.ids.write().unwrap_or_else(|e| e.into_inner());
            ids.push((name, id));
            ids.len() as u64 - 1
        };
        self.plan.add(key, Restart::Temporary);
        self.adopted.insert(key, shutdown);
        self.starts += 1;
        let start = self.starts;
        *self.incarnations.entry(key).or_insert(0) += 1;
        self.watch(key, start, child.exited());
        self.running.insert(key, Started { start, child });
    }

    /// Reports `exited` as the exit of start `start` of child `key`.
    fn watch(&self, key: u64, start: u64, exited: Exited) {
        let tx = self.exits.0.clone();
        tokio::spawn(async move {
            let reason = exited.await;
            let _ = tx.send((key, start, reason));
        });
    }

    fn start_child(&mut self, key: u64) -> u64 {
        let (_, id) = self.name_and_id(key);
        self.node.set_home(id, Home::Restarting);
        let ctx = StartCtx {
            node: &self.node,
            id,
            pids: &self.pids,
        };
        let child = (self.specs[&key].start)(&ctx);
        let incarnation = self.incarnations.entry(key).or_insert(0);
        *incarnation += 1;
        let incarnation = *incarnation;
        self.starts += 1;
        let start = self.starts;
        self.watch(key, start, child.exited());
        self.running.insert(key, Started { start, child });
        incarnation
    }

    /// Stops a child in order, killing it after its shutdown timeout. Its
    /// exit is not reported as a failure: it is no longer in `running`.
    async fn terminate(&mut self, key: u64) {
        let Some(Started { child, .. }) = self.running.remove(&key) else {
            return;
        };
        let timeout = self
            .specs
            .get(&key)
            .map(|s| s.shutdown)
            .or_else(|| self.adopted.get(&key).copied())
            .unwrap_or(DEFAULT_SHUTDOWN);
        let exited = child.exited();
        child.stop();
        if tokio::time::timeout(timeout, exited).await.is_err() {
            child.kill();
        }
    }

    async fn terminate_all(&mut self, order: Vec<u64>) {
        for key in order {
            self.terminate(key).await;
        }
    }

    /// Stops every child in reverse start order; each is down for good.
    async fn shut_down(&mut self) -> ExitReason {
        let order = self.plan.shutdown_order();
        self.terminate_all(order.clone()).await;
        for key in order {
            self.node
                .set_home(self.name_and_id(key).1, Home::Down(ExitReason::Shutdown));
        }
        ExitReason::Shutdown
    }

    async fn serve(&mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> ExitReason {
        // The node's shutdown stops its supervisors, as `shutdown` does.
        let closing = self.node.closing();
        tokio::pin!(closing);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Kill) => {
                        for key in self.plan.shutdown_order() {
                            if let Some(Started { child, .. }) = self.running.remove(&key) {
                                self.node.set_home(self.name_and_id(key).1, Home::Down(ExitReason::Killed));
                                child.kill();
                            }
                        }
                        return ExitReason::Killed;
                    }
                    Some(Command::Shutdown) | None => return self.shut_down().await,
                    Some(Command::Adopt { name, id, child, shutdown, done }) => {
                        self.adopt(name, id, child, shutdown);
                        let _ = done.send(());
                    }
                    Some(Command::TerminateChild(name, done)) => {
                        let key = self
                            .ids
                            .read()
                            .unwrap_or_else(|e| e.into_inner())
                            .iter()
                            .position(|(n, _)| *n == name)
                            .map(|k| k as u64)
                            .filter(|k| self.running.contains_key(k));
                        if let Some(key) = key {
                            self.terminate(key).await;
                            let (name, id) = self.name_and_id(key);
                            self.plan.remove(key);
                            self.specs.remove(&key);
                            self.adopted.remove(&key);
                            self.node.set_home(id, Home::Down(ExitReason::Shutdown));
                            self.journal.record(SupervisorEvent::Down { name, id, reason: ExitReason::Shutdown });
                        }
                        let _ = done.send(key.is_some());
                    }
                    Some(Command::TerminateChildren(done)) => {
                        let order = self.plan.shutdown_order();
                        self.terminate_all(order.clone()).await;
                        for key in order {
                            self.node.set_home(self.name_and_id(key).1, Home::Down(ExitReason::Shutdown));
                            if self.plan.remove_temporary(key) {
                                self.adopted.remove(&key);
                            }
                        }
                        let _ = done.send(());
                    }
                },
                () = &mut closing => return self.shut_down().await,
                Some((key, start, reason)) = self.exits.1.recv() => {
                    if self.running.get(&key).map(|s| s.start) != Some(start) {
                        continue; // an incarnation we terminated ourselves
                    }
                    if self.node.is_shut_down() {
                        // Stopped by its node's shutdown: not restarted.
                        return self.shut_down().await;
                    }
                    self.running.remove(&key);
                    let (name, id) = self.name_and_id(key);
                    self.node.set_home(id, Home::Restarting);
                    self.journal.record(SupervisorEvent::Down { name, id, reason: reason.clone() });
                    match self.plan.exited(key, &reason, Instant::now()) {
                        Decision::Nothing => {
                            self.adopted.remove(&key);
                            self.node.set_home(id, Home::Down(reason));
                        }
                        Decision::Restart { terminate, start, forget } => {
                            for &key in &terminate {
                                self.node.set_home(self.name_and_id(key).1, Home::Restarting);
                            }
                            self.terminate_all(terminate).await;
                            for key in forget {
                                self.node.set_home(self.name_and_id(key).1, Home::Down(ExitReason::Shutdown));
                                self.specs.remove(&key);
                            }
                            for key in start {
                                let incarnation = self.start_child(key);
                                let (name, id) = self.name_and_id(key);
                                tracing::info!(child = %name, %id, incarnation, "restarted");
                                self.journal.record(SupervisorEvent::Restarted { name, id, incarnation });
                            }
                        }
                        Decision::Escalate { terminate } => {
                            self.terminate_all(terminate.clone()).await;
                            self.node.set_home(id, Home::Down(reason.clone()));
                            for key in terminate {
                                self.node.set_home(self.name_and_id(key).1, Home::Down(reason.clone()));
                            }
                            self.journal.record(SupervisorEvent::GaveUp);
                            return ExitReason::Error("too many restarts within the intensity window; gave up".into());
                        }
                    }
                }
            }
        }
    }
}
