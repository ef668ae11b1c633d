//! The route table of one node: actor id → the local actor that answers it.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::Addr;
use dashmap::DashMap;
use tokio::sync::Semaphore;

use crate::id::ActorId;

use super::inbound::Inbound;
use super::message::RemoteActor;

/// Messages an actor may hold in flight (queued or being handled) by default;
/// senders wait for a slot beyond that.
pub const DEFAULT_MAILBOX: usize = 1024;

/// One actor living on this node, type-erased.
pub struct LocalEntry {
    name: &'static str,
    accepts: &'static [&'static str],
    mailbox: Arc<Semaphore>,
    addr: Box<dyn Any + Send + Sync>,
    dispatch: fn(&(dyn Any + Send + Sync), Inbound) -> Result<(), Inbound>,
    connected: fn(&(dyn Any + Send + Sync)) -> bool,
}

fn dispatch_erased<A: RemoteActor>(
    addr: &(dyn Any + Send + Sync),
    inbound: Inbound,
) -> Result<(), Inbound> {
    match addr.downcast_ref::<Addr<A>>() {
        Some(addr) => A::dispatch(addr, inbound),
        None => Err(inbound),
    }
}

fn connected_erased<A: RemoteActor>(addr: &(dyn Any + Send + Sync)) -> bool {
    addr.downcast_ref::<Addr<A>>().is_some_and(Addr::connected)
}

impl LocalEntry {
    /// An entry for a running actor and its mailbox slots.
    pub fn new<A: RemoteActor>(addr: Addr<A>, mailbox: Arc<Semaphore>) -> Self {
        Self {
            name: A::NAME,
            accepts: A::ACCEPTS,
            mailbox,
            addr: Box::new(addr),
            dispatch: dispatch_erased::<A>,
            connected: connected_erased::<A>,
        }
    }

    /// The actor type's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Names of the message types the actor accepts.
    pub fn accepts(&self) -> &'static [&'static str] {
        self.accepts
    }

    /// The actor's mailbox slots.
    pub fn mailbox(&self) -> &Arc<Semaphore> {
        &self.mailbox
    }

    /// The actor's address, if it is an `A`.
    pub fn addr<A: RemoteActor>(&self) -> Option<Addr<A>> {
        self.addr.downcast_ref::<Addr<A>>().cloned()
    }

    /// Hands a remote message to the actor; gives it back when the actor
    /// accepts no message of that type.
    pub fn dispatch(&self, inbound: Inbound) -> Result<(), Inbound> {
        (self.dispatch)(self.addr.as_ref(), inbound)
    }

    /// False once the actor has stopped.
    pub fn is_alive(&self) -> bool {
        (self.connected)(self.addr.as_ref())
    }
}

/// Actor id → local actor, shared by every task of a node.
#[derive(Default)]
pub struct Registry {
    actors: DashMap<ActorId, Arc<LocalEntry>>,
    /// Bumped whenever an entry is removed, so cached lookups know to look again.
    removals: AtomicU64,
}

impl Registry {
    /// Starts `actor` on the current actix arbiter, registers it under a fresh
    /// id, and returns the id, its address and its mailbox slots.
    pub fn start<A: RemoteActor>(
        &self,
        actor: A,
        mailbox: usize,
    ) -> (ActorId, Addr<A>, Arc<Semaphore>) {
        let mut ctx = actix::Context::<A>::new();
        // The framework's slots bound the mailbox (with waiting senders); the
        // actix capacity only parks senders, so lift it (0 means unbounded there).
        ctx.set_mailbox_capacity(0); // 0: unbounded in actix
        let addr = ctx.run(actor);
        let slots = Arc::new(Semaphore::new(mailbox.max(1)));
        let id = ActorId::new();
        self.actors
            .insert(id, Arc::new(LocalEntry::new(addr.clone(), slots.clone())));
        (id, addr, slots)
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

    /// Number of registered actors (living or not yet found stopped).
    pub fn len(&self) -> usize {
        self.actors.len()
    }

    /// True when no actor is registered.
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }
}
