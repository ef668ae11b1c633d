//! The parent actor of a process tree: one per tree, on the tree's node,
//! addressed by its [`ActorId`] like any actor. Every message a child's
//! process actor sends up ([`super::message`]) arrives here, is decoded
//! once by the actor's `#[actor(..)]` list, and is filed into that child's
//! [`Inbox`], where the parent's `Child` handle reads it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::Handler;
use tokio::sync::{Notify, oneshot};

use crate::actor::Received;
use crate::id::ActorId;
use crate::remote::value::Incoming;

use super::message::{
    CollectiveMsg, CollectiveUp, Credit, Finished, Hello, Outcome, ToParent, Yielded,
};

/// What the parent has heard from one child and not yet handed out, and
/// a wake-up for whoever waits on it.
#[derive(Default)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    changed: Notify,
    /// Credits the child returned for values the parent sent it.
    pub(crate) credits: Option<Arc<tokio::sync::Semaphore>>,
}

/// The filed messages of one child.
#[derive(Default)]
pub(crate) struct InboxState {
    /// `yield_value` calls not answered yet.
    pub yields: u64,
    /// Values from the child's `send`.
    pub data: VecDeque<Incoming>,
    /// Collective posts.
    pub collective: VecDeque<CollectiveMsg>,
    /// How the child's function ended.
    pub outcome: Option<Outcome>,
    /// Why the child is gone (process exited, connection closed).
    pub gone: Option<String>,
}

impl Inbox {
    pub(crate) fn new(credits: Arc<tokio::sync::Semaphore>) -> Self {
        Self {
            credits: Some(credits),
            ..Self::default()
        }
    }

    /// The filed messages, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the filed messages and wakes whoever waits on them.
    pub(crate) fn update(&self, f: impl FnOnce(&mut InboxState)) {
        f(&mut self.lock());
        self.changed.notify_waiters();
    }

    /// Waits until `take` finds what it looks for in the filed messages.
    pub(crate) async fn wait_for<R>(
        &self,
        mut take: impl FnMut(&mut InboxState) -> Option<R>,
    ) -> R {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between still wakes us.
            changed.as_mut().enable();
            if let Some(r) = take(&mut self.lock()) {
                return r;
            }
            changed.await;
        }
    }

    /// A future that completes at the next change (for waiting on several
    /// inboxes at once). Enabled at once, so a change after this call wakes it.
    pub(crate) fn changed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut changed = Box::pin(self.changed.notified());
        changed.as_mut().enable();
        changed
    }
}

/// A local message: the child numbered `number` is being started; its
/// `Hello` goes to `reply` together with its new inbox.
pub(crate) struct Expect {
    pub number: u32,
    pub inbox: Arc<Inbox>,
    pub reply: oneshot::Sender<Hello>,
}

impl actix::Message for Expect {
    type Result = ();
}

/// A local message: the child with this process actor is no longer the
/// tree's (what it sends from now on is dropped).
pub(crate) struct Forget(pub ActorId);

impl actix::Message for Forget {
    type Result = ();
}

/// The parent actor of one process tree.
#[derive(crate::Actor)]
#[actor(
    messages(Hello, Yielded, Finished, CollectiveUp, Credit),
    view(ToParent),
    name = "parallel::process::ParentActor"
)]
pub struct ParentActor {
    /// Children being started, by number.
    expected: HashMap<u32, (Arc<Inbox>, oneshot::Sender<Hello>)>,
    /// Children that said hello, by process actor.
    children: HashMap<ActorId, Arc<Inbox>>,
}

impl ParentActor {
    pub(crate) fn new() -> Self {
        Self {
            expected: HashMap::new(),
            children: HashMap::new(),
        }
    }

    fn inbox(&self, from: ActorId, what: &str) -> Option<&Arc<Inbox>> {
        let inbox = self.children.get(&from);
        if inbox.is_none() {
            tracing::debug!(child = %from, "{what} from a child that is not this tree's was dropped");
        }
        inbox
    }

    fn file_value(&mut self, from: ActorId, value: Incoming) {
        match self.inbox(from, "a value") {
            Some(inbox) => inbox.update(|s| s.data.push_back(value)),
            None => value.discard(),
        }
    }
}

impl Handler<Expect> for ParentActor {
    type Result = ();
    fn handle(&mut self, msg: Expect, _: &mut actix::Context<Self>) {
        self.expected.insert(msg.number, (msg.inbox, msg.reply));
    }
}

impl Handler<Forget> for ParentActor {
    type Result = ();
    fn handle(&mut self, Forget(id): Forget, _: &mut actix::Context<Self>) {
        self.children.remove(&id);
    }
}

impl Handler<Hello> for ParentActor {
    type Result = ();
    fn handle(&mut self, hello: Hello, _: &mut actix::Context<Self>) {
        let Some((inbox, reply)) = self.expected.remove(&hello.number) else {
            tracing::warn!(
                number = hello.number,
                "a hello from a child this tree is not starting was ignored"
            );
            return;
        };
        self.children.insert(hello.actor, inbox);
        let _ = reply.send(hello);
    }
}

impl Handler<Yielded> for ParentActor {
    type Result = ();
    fn handle(&mut self, msg: Yielded, _: &mut actix::Context<Self>) {
        if let Some(inbox) = self.inbox(msg.from, "a yield") {
            inbox.update(|s| s.yields += 1);
        }
    }
}

impl Handler<ToParent> for ParentActor {
    type Result = ();
    fn handle(&mut self, msg: ToParent, _: &mut actix::Context<Self>) {
        self.file_value(msg.from, Incoming::owned(msg.value));
    }
}

impl Handler<Received<ToParent>> for ParentActor {
    type Result = ();
    fn handle(&mut self, msg: Received<ToParent>, _: &mut actix::Context<Self>) {
        let from = ActorId::from(&msg.from);
        self.file_value(from, Incoming::received(msg, |m| &m.value));
    }
}

impl Handler<Finished> for ParentActor {
    type Result = ();
    fn handle(&mut self, msg: Finished, _: &mut actix::Context<Self>) {
        if let Some(inbox) = self.inbox(msg.from, "an outcome") {
            inbox.update(|s| s.outcome = Some(msg.outcome));
        }
    }
}

impl Handler<CollectiveUp> for ParentActor {
    type Result = ();
    fn handle(&mut self, msg: CollectiveUp, _: &mut actix::Context<Self>) {
        if let Some(inbox) = self.inbox(msg.from, "a collective post") {
            inbox.update(|s| s.collective.push_back(msg.msg));
        }
    }
}

impl Handler<Credit> for ParentActor {
    type Result = ();
    fn handle(&mut self, msg: Credit, _: &mut actix::Context<Self>) {
        if let Some(credits) = self
            .inbox(msg.from, "a credit")
            .and_then(|i| i.credits.clone())
        {
            credits.add_permits(msg.n as usize);
        }
    }
}
