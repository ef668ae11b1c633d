//! The route table of one node: actor id → the local actor that answers it.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use actix::Addr;
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::id::ActorId;

use super::exit::ExitReason;
use super::inbound::Inbound;
use super::inbox::{Drain, Inbox, Queued};
use super::local::LocalBox;
use super::message::RemoteActor;

/// Messages an actor may hold in flight (queued or being handled) by default;
/// senders wait for a slot beyond that.
pub const DEFAULT_MAILBOX: usize = 1024;

/// The bounded mailbox of one actor: how many messages it may hold in
/// flight. Taking and giving back a slot are a few atomic operations; a
/// sender that finds no slot waits in line for one.
pub struct Slots {
    capacity: usize,
    free: AtomicUsize,
    /// How many slots must be free again before a waiting sender is woken:
    /// a sender that waits then sends a batch, instead of one message per
    /// wake-up while the actor drains its mailbox.
    wake_at: usize,
    waiting: AtomicUsize,
    returned: Notify,
    /// The message of a handler panic that stopped the actor.
    panic: std::sync::Mutex<Option<String>>,
}

/// One message's place in an actor's mailbox, given back when dropped.
pub struct Slot(Arc<Slots>);

impl Slots {
    fn new(capacity: usize) -> Arc<Self> {
        let capacity = capacity.max(1);
        Arc::new(Self {
            capacity,
            free: AtomicUsize::new(capacity),
            wake_at: (capacity / 4).max(1),
            waiting: AtomicUsize::new(0),
            returned: Notify::new(),
            panic: std::sync::Mutex::new(None),
        })
    }

    #[inline]
    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut free = self.free.load(Ordering::SeqCst);
        while free > 0 {
            match self.free.compare_exchange_weak(
                free,
                free - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => free = now,
            }
        }
        None
    }

    async fn take(self: &Arc<Self>) -> Slot {
        if let Some(slot) = self.try_take() {
            return slot;
        }
        let _waiting = Waiting::enter(self);
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            // Registered before looking again, so a slot given back in
            // between still wakes this sender.
            returned.as_mut().enable();
            if let Some(slot) = self.try_take() {
                // Slots are left and others may wait: pass the wake-up on
                // (a slot given back wakes only once per `wake_at`).
                if self.free.load(Ordering::SeqCst) > 0 && self.waiting.load(Ordering::SeqCst) > 1 {
                    self.returned.notify_one();
                }
                return slot;
            }
            returned.await;
        }
    }
}

impl Slot {
    /// Notes that the actor's handler panicked with `text` (the actor stops).
    pub fn record_panic(&self, text: String) {
        *self.0.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let free = self.0.free.fetch_add(1, Ordering::SeqCst) + 1;
        // Waiters hear once `wake_at` slots are free again; they look for
        // themselves once registered, so one that came later finds the slots.
        if free == self.0.wake_at && self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.returned.notify_one();
        }
    }
}

/// Counts a sender waiting for a slot, also when its wait is cancelled.
struct Waiting<'a>(&'a Slots);

impl<'a> Waiting<'a> {
    fn enter(slots: &'a Slots) -> Self {
        slots.waiting.fetch_add(1, Ordering::SeqCst);
        Self(slots)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One actor living on this node, type-erased.
pub struct LocalEntry {
    name: &'static str,
    accepts: &'static [&'static str],
    mailbox: Arc<Slots>,
    addr: Box<dyn Any + Send + Sync>,
    /// The framework's messages waiting for the actor.
    inbox: Arc<Inbox>,
    wake: fn(&(dyn Any + Send + Sync), Drain),
    connected: fn(&(dyn Any + Send + Sync)) -> bool,
    exit: tokio::sync::watch::Sender<Option<ExitReason>>,
    /// Set with the exit reason, before its watchers learn of it: the actor
    /// takes no more messages, though its mailbox may still be open for a
    /// moment on its own thread.
    gone: std::sync::atomic::AtomicBool,
    task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// When it started, among the actors of its registry (0 for an entry
    /// made outside one): the stop order of a node's shutdown.
    started: u64,
    /// The device it is pinned to, if any.
    device: Option<u32>,
}

/// Puts `drain` into the mailbox of the actor at `addr`. When the mailbox
/// is closed (the actor stopped), the drain is dropped, which answers what
/// waits as stopped.
fn wake_erased<A: RemoteActor>(addr: &(dyn Any + Send + Sync), drain: Drain) {
    if let Some(addr) = addr.downcast_ref::<Addr<A>>() {
        addr.do_send(drain);
    }
}

fn connected_erased<A: RemoteActor>(addr: &(dyn Any + Send + Sync)) -> bool {
    addr.downcast_ref::<Addr<A>>().is_some_and(Addr::connected)
}

impl LocalEntry {
    /// An entry for a running actor whose mailbox holds `mailbox` messages.
    pub fn new<A: RemoteActor>(addr: Addr<A>, mailbox: usize) -> Self {
        Self {
            name: A::NAME,
            accepts: A::ACCEPTS,
            mailbox: Slots::new(mailbox),
            addr: Box::new(addr),
            inbox: Arc::new(Inbox::default()),
            wake: wake_erased::<A>,
            connected: connected_erased::<A>,
            exit: tokio::sync::watch::Sender::new(None),
            gone: std::sync::atomic::AtomicBool::new(false),
            task: std::sync::Mutex::new(None),
            stop: std::sync::Mutex::new(None),
            started: 0,
            device: None,
        }
    }

    fn set_task(&self, task: tokio::task::AbortHandle) {
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// The device the actor is pinned to (`#[actor(gpu)]`), if any.
    pub fn device(&self) -> Option<u32> {
        self.device
    }

    /// Waits until the actor has stopped and says why. Any number of
    /// watchers may wait; each gets the reason once.
    pub fn exited(&self) -> impl std::future::Future<Output = ExitReason> + Send + 'static {
        let mut rx = self.exit.subscribe();
        async move {
            loop {
                if let Some(reason) = rx.borrow_and_update().clone() {
                    return reason;
                }
                if rx.changed().await.is_err() {
                    return ExitReason::Killed;
                }
            }
        }
    }

    /// The reason it stopped, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.exit.borrow().clone()
    }

    fn finished(&self, stopped: bool) {
        let panic = self
            .mailbox
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let reason = match panic {
            Some(text) => ExitReason::Panic(text),
            None if stopped => ExitReason::Shutdown,
            None => ExitReason::Normal,
        };
        self.set_exit(reason);
    }

    /// Asks the actor to stop in order: it finishes the message at hand, its
    /// `stopping`/`stopped` hooks run, and watchers get [`ExitReason::Shutdown`].
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
    }

    /// Kills the actor at once (its `stopped` hook does not run); watchers
    /// get [`ExitReason::Killed`].
    pub fn kill(&self) {
        self.kill_with(ExitReason::Killed);
    }

    /// Kills the actor at once with `reason` (what its watchers get): how an
    /// exit signal travels along a link.
    pub fn kill_with(&self, reason: ExitReason) {
        self.set_exit(reason);
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    /// Messages from other nodes in its mailbox now (taken slots).
    pub fn queued(&self) -> usize {
        self.mailbox
            .capacity
            .saturating_sub(self.mailbox.free.load(Ordering::Relaxed))
    }

    /// The actor type's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Names of the message types the actor accepts.
    pub fn accepts(&self) -> &'static [&'static str] {
        self.accepts
    }

    /// A slot in the actor's mailbox, if one is free now.
    #[inline]
    pub fn try_slot(&self) -> Option<Slot> {
        self.mailbox.try_take()
    }

    /// A slot in the actor's mailbox; waits in line while it is full.
    pub async fn slot(&self) -> Slot {
        self.mailbox.take().await
    }

    /// The actor's address, if it is an `A`.
    pub fn addr<A: RemoteActor>(&self) -> Option<Addr<A>> {
        self.addr.downcast_ref::<Addr<A>>().cloned()
    }

    /// Hands a message from another node to the actor: into its
    /// [`Inbox`], with a [`Drain`] into its mailbox when none is on its way.
    /// If the mailbox is closed (the actor stopped), what waited is
    /// answered as stopped.
    pub fn deliver(&self, inbound: Inbound) {
        self.queue(|| Queued::Remote(inbound));
    }

    /// Hands a message from this process to the actor, as
    /// [`LocalEntry::deliver`] does one from another node; `call` builds
    /// it where it waits.
    #[inline(always)]
    pub(crate) fn post(&self, call: impl FnOnce() -> LocalBox) {
        self.queue(|| Queued::Local(call()));
    }

    #[inline(always)]
    fn queue(&self, make: impl FnOnce() -> Queued) {
        if self.inbox.push_with(make) {
            (self.wake)(self.addr.as_ref(), Drain::new(self.inbox.clone()));
        }
    }

    /// The actor's inbox of the framework's messages.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// False once the actor has stopped: from the moment its exit reason
    /// is set (a supervisor that restarts it learns of the exit only after
    /// that), even if its mailbox on another thread is not closed yet.
    pub fn is_alive(&self) -> bool {
        !self.gone.load(std::sync::atomic::Ordering::Acquire)
            && (self.connected)(self.addr.as_ref())
    }

    /// True once the actor's exit reason is set. Cheaper than
    /// [`LocalEntry::is_alive`] (one load, no look at the mailbox): what a
    /// sender asks before every message to learn whether a supervisor may
    /// have started a new actor in its place, which happens only after this.
    #[inline]
    pub fn has_exited(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sets the exit reason once (the first one wins) and tells watchers.
    fn set_exit(&self, reason: ExitReason) {
        self.exit.send_if_modified(|r| {
            if r.is_none() {
                self.gone.store(true, std::sync::atomic::Ordering::Release);
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Actor id → local actor, shared by every task of a node.
#[derive(Default)]
pub struct Registry {
    actors: DashMap<ActorId, Arc<LocalEntry>>,
    /// Bumped whenever an entry is removed, so cached lookups know to look again.
    removals: AtomicU64,
    /// Actors started so far: numbers each start.
    starts: AtomicU64,
}

/// Runs an actor until it stops on its own or is asked to, then tells its
/// watchers why.
async fn run<A: RemoteActor>(
    ctx: actix::Context<A>,
    actor: A,
    watcher: Arc<LocalEntry>,
    stop_rx: tokio::sync::oneshot::Receiver<()>,
) {
    let mut running = ctx.into_future(actor);
    let stopped = tokio::select! {
        _ = &mut running => false,
        Ok(()) = stop_rx => {
            actix::ActorContext::stop(running.ctx());
            (&mut running).await;
            true
        }
    };
    watcher.finished(stopped);
}

impl Registry {
    /// Starts `actor` on the current actix arbiter, registers it under a fresh
    /// id, and returns the id, its address and its entry (for mailbox slots).
    pub fn start<A: RemoteActor>(
        &self,
        actor: A,
        mailbox: usize,
    ) -> (ActorId, Addr<A>, Arc<LocalEntry>) {
        let id = ActorId::new();
        let (addr, entry) = self.start_as(id, actor, mailbox);
        (id, addr, entry)
    }

    /// Starts `actor` under a given id: a new incarnation of an actor that
    /// keeps its address (a supervisor's restart). Any earlier entry under
    /// that id is replaced; references to it find the new one.
    pub fn start_as<A: RemoteActor>(
        &self,
        id: ActorId,
        actor: A,
        mailbox: usize,
    ) -> (Addr<A>, Arc<LocalEntry>) {
        self.start_in_as(id, actor, actix::Context::<A>::new(), mailbox)
    }

    /// Like [`Registry::start_as`], in a context made beforehand (whose
    /// address others already hold).
    pub fn start_in_as<A: RemoteActor>(
        &self,
        id: ActorId,
        actor: A,
        mut ctx: actix::Context<A>,
        mailbox: usize,
    ) -> (Addr<A>, Arc<LocalEntry>) {
        // The framework's slots bound the mailbox (with waiting senders); the
        // actix capacity only parks senders, so lift it (0 means unbounded there).
        ctx.set_mailbox_capacity(0);
        let addr = actix::AsyncContext::address(&ctx);
        let (entry, stop_rx) = self.new_entry(addr.clone(), mailbox, None);
        let task = actix_rt::spawn(run(ctx, actor, entry.clone(), stop_rx));
        entry.set_task(task.abort_handle());
        self.insert(id, entry.clone());
        (addr, entry)
    }

    /// Starts `actor` under `id` on `arbiter`, the thread a device host
    /// keeps bound to device `device`, for the actor's whole life (see
    /// [`super::DeviceHost`]). Like [`Registry::start_as`] otherwise; the
    /// entry says which device it holds ([`LocalEntry::device`]).
    pub fn start_pinned_as<A: RemoteActor + Send>(
        &self,
        id: ActorId,
        actor: A,
        mailbox: usize,
        device: u32,
        arbiter: &actix::ArbiterHandle,
    ) -> (Addr<A>, Arc<LocalEntry>) {
        let (tx, rx) = actix::dev::channel::channel::<A>(0);
        let addr = Addr::new(tx);
        let (entry, stop_rx) = self.new_entry(addr.clone(), mailbox, Some(device));
        let on_thread = entry.clone();
        let started = arbiter.spawn_fn(move || {
            let mut ctx = actix::Context::<A>::with_receiver(rx);
            ctx.set_mailbox_capacity(0);
            let task = actix_rt::spawn(run(ctx, actor, on_thread.clone(), stop_rx));
            on_thread.set_task(task.abort_handle());
            // Killed before its task existed: kill it now.
            if on_thread.exit_reason().is_some() {
                on_thread.kill();
            }
        });
        if !started {
            entry.kill_with(ExitReason::Error(format!(
                "the thread of GPU {device} has stopped; restart the node"
            )));
        }
        self.insert(id, entry.clone());
        (addr, entry)
    }

    /// Registers `actor` under `id` as already stopped with `reason`: it
    /// never runs (its task is aborted before its first poll), and its
    /// watchers get `reason` — how a start that must not happen (a GPU
    /// actor without a device) is reported like any other exit.
    pub fn start_refused<A: RemoteActor>(
        &self,
        id: ActorId,
        actor: A,
        mailbox: usize,
        reason: ExitReason,
    ) -> (Addr<A>, Arc<LocalEntry>) {
        let (addr, entry) = self.start_as(id, actor, mailbox);
        entry.kill_with(reason);
        (addr, entry)
    }

    /// How many living actors are pinned to `device` here.
    pub fn pinned_to(&self, device: u32) -> usize {
        self.actors
            .iter()
            .filter(|e| e.device == Some(device) && e.exit_reason().is_none())
            .count()
    }

    fn new_entry<A: RemoteActor>(
        &self,
        addr: Addr<A>,
        mailbox: usize,
        device: Option<u32>,
    ) -> (Arc<LocalEntry>, tokio::sync::oneshot::Receiver<()>) {
        let mut entry = LocalEntry::new(addr, mailbox);
        entry.started = self.starts.fetch_add(1, Ordering::Relaxed) + 1;
        entry.device = device;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        *entry.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop_tx);
        (Arc::new(entry), stop_rx)
    }

    fn insert(&self, id: ActorId, entry: Arc<LocalEntry>) {
        if self.actors.insert(id, entry).is_some() {
            self.removals.fetch_add(1, Ordering::Release);
        }
    }

    /// The entry under `id`, living or not (for watchers).
    pub fn entry(&self, id: ActorId) -> Option<Arc<LocalEntry>> {
        self.actors.get(&id).map(|e| e.clone())
    }

    /// The actor registered under `id`, if it is still alive (a stopped
    /// actor's entry is removed on the way).
    pub fn get(&self, id: ActorId) -> Option<Arc<LocalEntry>> {
        let entry = self.actors.get(&id)?.clone();
        if entry.is_alive() {
            Some(entry)
        } else {
            self.remove(id);
            None
        }
    }

    /// How many entries were removed so far: a lookup cached under one
    /// count is still good while the count is the same and the actor lives.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Forgets an actor.
    pub fn remove(&self, id: ActorId) {
        self.actors.remove(&id);
        self.removals.fetch_add(1, Ordering::Release);
    }

    /// The actors that are alive, the one started last first: the order a
    /// node's shutdown stops them in.
    pub fn living(&self) -> Vec<Arc<LocalEntry>> {
        let mut living: Vec<Arc<LocalEntry>> = self
            .actors
            .iter()
            .filter(|e| e.is_alive())
            .map(|e| e.value().clone())
            .collect();
        living.sort_by_key(|e| std::cmp::Reverse(e.started));
        living
    }

    /// The `limit` living actors with the most messages waiting in their
    /// mailboxes: (id, type name, messages), deepest first.
    pub fn deepest(&self, limit: usize) -> Vec<(ActorId, &'static str, usize)> {
        let mut all: Vec<_> = self
            .actors
            .iter()
            .filter(|e| e.is_alive())
            .map(|e| (*e.key(), e.name, e.queued()))
            .collect();
        all.sort_by_key(|(_, _, queued)| std::cmp::Reverse(*queued));
        all.truncate(limit);
        all
    }

    /// Number of registered actors (living or not yet found stopped).
    pub fn len(&self) -> usize {
        self.actors.len()
    }

    /// True when no actor is registered.
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Slots;

    #[tokio::test]
    async fn a_returned_slot_wakes_a_waiting_sender() {
        let slots = Slots::new(1);
        let held = slots.try_take().expect("one free slot");
        assert!(slots.try_take().is_none(), "the mailbox is full");
        // A wait that is given up leaves no waiter behind.
        let gave_up = tokio::time::timeout(Duration::from_millis(20), slots.take()).await;
        assert!(gave_up.is_err());
        assert_eq!(slots.waiting.load(std::sync::atomic::Ordering::SeqCst), 0);
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        let taken = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter got the returned slot")
            .expect("the waiter did not panic");
        drop(taken);
        assert!(slots.try_take().is_some(), "the slot came back again");
    }

    fn poll<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_waiting_sender_wakes_once_a_quarter_of_the_mailbox_is_free() {
        let slots = Slots::new(8);
        let mut held: Vec<_> = (0..8).map(|_| slots.try_take().unwrap()).collect();
        let mut waiter = Box::pin(slots.take());
        assert!(poll(waiter.as_mut()).is_pending());
        drop(held.pop());
        // Not woken for each slot given back (that costs a task switch per message).
        assert!(
            poll(waiter.as_mut()).is_pending(),
            "woken by the first slot"
        );
        drop(held.pop());
        assert!(poll(waiter.as_mut()).is_ready(), "not woken at 2 of 8 free");
    }

    #[test]
    fn a_woken_sender_passes_the_wake_up_on_while_slots_are_left() {
        let slots = Slots::new(4);
        let held: Vec<_> = (0..4).map(|_| slots.try_take().unwrap()).collect();
        let (mut first, mut second) = (Box::pin(slots.take()), Box::pin(slots.take()));
        assert!(poll(first.as_mut()).is_pending() && poll(second.as_mut()).is_pending());
        drop(held);
        // One wake-up for the drain; the first sender hands it on.
        assert!(poll(first.as_mut()).is_ready());
        assert!(
            poll(second.as_mut()).is_ready(),
            "the second sender was left waiting"
        );
    }
}
