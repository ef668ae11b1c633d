//! `Child` and `Children`: the parent's handles on its child processes, with
//! the seed's operations on one child or a whole group. A child is reached
//! through its process actor ([`Child::actor`]); what it sends back is filed
//! by the tree's parent actor into the child's inbox, which these handles
//! read.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::actor::Received;
use crate::id::ActorId;
use crate::remote::value::{Payload, Value};
use crate::remote::{ActorRef, RemoteCallable, RemoteNode, SpawnError, remote_fn};
use crate::transport::shm::ShmRef;
use crate::wire::{WireType, decode_owned, encode, type_tag};

use super::error::ProcessError;
use super::message::SEND_WINDOW;
use super::message::{
    Calibrate, CollectiveDown, CollectiveMsg, Credit, Exec, Joined, Outcome, Stop, ToChild,
};
use super::parent_actor::{Inbox, InboxState};
use super::process_actor::ProcessActor;
use super::spawn::{Exit, Owned};

pub(crate) struct ChildInner {
    pub number: u32,
    pub pid: u32,
    pub host: String,
    pub ip: String,
    /// Shared memory with the child: present exactly when it runs on this
    /// machine.
    pub segments: Option<crate::transport::segments::PeerSegments>,
    pub remote: RemoteNode,
    pub actor: ActorRef<ProcessActor>,
    pub inbox: Arc<Inbox>,
    pub process: Owned,
    /// Values this parent may still send before the child reads some.
    pub credits: Arc<tokio::sync::Semaphore>,
    /// Values read from the child since credit was last returned.
    pub read: AtomicU32,
    pub shm_threshold: usize,
    pub speed: Mutex<f64>,
    /// Held by a collective for its whole call, so no other call takes its posts.
    pub collective: tokio::sync::Mutex<()>,
    /// What its tree shares with it (settings, node, per-tree state).
    pub shared: Arc<super::shared::TreeShared>,
}

/// One child process, as its parent sees it.
#[derive(Clone)]
pub struct Child(pub(crate) Arc<ChildInner>);

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Child #{} (pid {} on {}, actor {})",
            self.0.number,
            self.0.pid,
            self.0.host,
            self.0.actor.id()
        )
    }
}

impl PartialEq for Child {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A function running in a child (from [`Child::exec`]): its return value,
/// once it returns.
#[derive(Debug)]
pub struct Execution<R> {
    child: Child,
    _result: PhantomData<fn() -> R>,
}

impl<R: WireType> Execution<R> {
    /// The child it runs in.
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// Waits until the function returns and gives its value; fails with the
    /// panic message if it panicked, or if the child died first.
    pub async fn result(self) -> Result<R, ProcessError> {
        let id = self.child.0.number;
        let outcome = self
            .child
            .0
            .inbox
            .wait_for(|s| match (&s.outcome, &s.gone) {
                (Some(Outcome::Returned(bytes)), _) => Some(Ok(decode_owned::<R>(bytes))),
                (Some(Outcome::Failed(message)), _) => Some(Err(ProcessError::Failed {
                    id,
                    message: message.clone(),
                })),
                (None, Some(reason)) => Some(Err(ProcessError::Gone {
                    id,
                    reason: reason.clone(),
                })),
                (None, None) => None,
            })
            .await?;
        Ok(outcome?)
    }
}

/// Functions running in a group of children (from [`Children::exec`]).
#[derive(Debug)]
pub struct Executions<R>(Vec<Execution<R>>);

impl<R: WireType> Executions<R> {
    /// Every child's return value, in child order, once all returned; the
    /// first failure otherwise.
    pub async fn results(self) -> Result<Vec<R>, ProcessError> {
        let pending: Vec<_> = self.0.into_iter().map(Execution::result).collect();
        let mut out = Vec::with_capacity(pending.len());
        for r in join_all_futures(pending).await {
            out.push(r?);
        }
        Ok(out)
    }
}

impl Child {
    /// Its number among this process's children (1, 2, …; the seed's
    /// `child.id`, stable while it lives). Its address is [`Child::actor`].
    pub fn id(&self) -> u32 {
        self.0.number
    }

    /// Its process actor: every message of the parent goes there; `watch()`
    /// on it delivers a `Down` when the process ends.
    pub fn actor(&self) -> &ActorRef<ProcessActor> {
        &self.0.actor
    }

    /// The id of its process actor.
    pub fn actor_id(&self) -> ActorId {
        self.0.actor.id()
    }

    /// Its node, joined to the parent's (to spawn actors there, or call functions).
    pub fn node(&self) -> &RemoteNode {
        &self.0.remote
    }

    /// Spawns the actor `init` inside the child (any `#[actor(spawn)]` type:
    /// a child trusts its parent) and returns its reference.
    pub async fn spawn<A>(&self, init: A) -> Result<ActorRef<A>, SpawnError>
    where
        A: crate::actor::RemoteActor + WireType,
    {
        self.0.remote.spawn(init).await
    }

    /// Its OS process id (on its own host).
    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// The host it runs on.
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// Its IP address as seen from the parent's side (what the child's
    /// [`super::ip`] returns).
    pub fn ip(&self) -> &str {
        &self.0.ip
    }

    /// Its speed in ]0, 1] relative to the fastest host, as `calibrate` or
    /// `sfork` measured it (1 before any measurement).
    pub fn speed(&self) -> f64 {
        *self.0.speed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_speed(&self, speed: f64) {
        *self.0.speed.lock().unwrap_or_else(|e| e.into_inner()) = speed;
    }

    /// True when it runs on this machine (large values then go through
    /// shared memory).
    pub fn same_host(&self) -> bool {
        self.0.segments.is_some()
    }

    /// Runs the `#[parallel::remote]` function `f` with `args` in the child
    /// (the Rust form of the seed's `exec(code)`). Returns once the request
    /// is sent, with a handle on the function's return value
    /// ([`Execution::result`]); the seed's style, which ignores it, works
    /// too. The child exits when the function returns.
    pub async fn exec<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<Execution<F::Output>, ProcessError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let request = exec_request(&f, &args)?;
        self.send_exec(request).await?;
        Ok(Execution {
            child: self.clone(),
            _result: PhantomData,
        })
    }

    async fn send_exec(&self, request: Exec) -> Result<(), ProcessError> {
        self.check_alive()?;
        self.0
            .actor
            .tell(request)
            .await
            .map_err(|e| ProcessError::from_send(e, |why| self.gone(why)))
    }

    fn gone(&self, reason: String) -> ProcessError {
        ProcessError::Gone {
            id: self.0.number,
            reason,
        }
    }

    /// A typed error when the child's process is known to be gone.
    fn check_alive(&self) -> Result<(), ProcessError> {
        if let Some(exit) = self.0.process.try_exit() {
            return Err(self.gone(format!("its process has exited ({})", exit.status)));
        }
        if !self.0.remote.is_alive() {
            return Err(self.gone("its connection is closed".into()));
        }
        Ok(())
    }

    /// The error for a child that cannot yield or send any more.
    fn ended(&self, state: &InboxState) -> Option<ProcessError> {
        let id = self.0.number;
        if let Some(outcome) = &state.outcome {
            return Some(match outcome {
                Outcome::Failed(message) => ProcessError::Failed {
                    id,
                    message: message.clone(),
                },
                Outcome::Returned(_) => ProcessError::Finished { id },
            });
        }
        state.gone.as_ref().map(|reason| ProcessError::Gone {
            id,
            reason: reason.clone(),
        })
    }

    /// Waits until the child yields, then hands it `value` (what its
    /// `yield_value` returns). Fails with the panic message if the child's
    /// function panicked, or with [`ProcessError::Finished`] if it returned.
    pub async fn join(&self, value: impl Payload) -> Result<(), ProcessError> {
        self.0
            .inbox
            .wait_for(|s| {
                if s.yields > 0 {
                    s.yields -= 1;
                    return Some(Ok(()));
                }
                self.ended(s).map(Err)
            })
            .await?;
        // The yield is taken: a value that cannot be packed or sent gives
        // it back, so the child still waits for a join.
        let sent = async {
            self.check_alive()?;
            let value = self.pack(&value)?;
            let file = value.shm_file();
            self.tell_value(Joined { value }, file).await
        }
        .await;
        if let Err(e) = &sent
            && refused_for_its_value(e)
        {
            self.0.inbox.update(|s| s.yields += 1);
        }
        sent
    }

    fn pack(&self, value: &impl Payload) -> Result<Value, ProcessError> {
        Value::pack(
            value,
            self.0.segments.as_ref().map(|s| &s.lent),
            self.0.shm_threshold,
        )
        .map_err(|e| ProcessError::from_value(e, self.0.number))
    }

    /// Sends `value` to the child (it reads it with `parent().receive()`).
    /// Large values to a child on this machine go through shared memory.
    /// Waits while the child has [`super::SEND_WINDOW`] of the parent's values unread.
    pub async fn send(&self, value: impl Payload) -> Result<(), ProcessError> {
        self.check_alive()?;
        let value = self.pack(&value)?;
        let credits = self.0.credits.clone();
        let permit = tokio::select! {
            permit = credits.acquire_owned() => permit.ok(),
            reason = self.0.remote.closed() => {
                value.discard();
                return Err(self.gone(reason.to_string()));
            }
        };
        let Some(permit) = permit else {
            value.discard();
            return Err(self.gone("its link is closed".into()));
        };
        let file = value.shm_file();
        self.tell_value(ToChild { value }, file).await?;
        // Sent: its place in the child's window is taken until the child
        // reads it (a value not sent gives the place back with the permit).
        permit.forget();
        Ok(())
    }

    /// Tells `msg` (which carries a value) to the child's actor; frees the
    /// value's shared-memory `file` if it could not be sent.
    async fn tell_value<M>(&self, msg: M, file: Option<ShmRef>) -> Result<(), ProcessError>
    where
        M: crate::Message,
        ProcessActor: crate::actor::Accepts<M>,
    {
        match self.0.actor.tell(msg).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(file) = &file {
                    crate::transport::shm::discard(file);
                }
                Err(ProcessError::from_send(e, |why| self.gone(why)))
            }
        }
    }

    /// The next value the child sent, as a read-only view (`to_owned()` for
    /// an owned copy). Waits for it.
    pub async fn receive<T: WireType>(&self) -> Result<Received<T>, ProcessError> {
        let incoming = self
            .0
            .inbox
            .wait_for(|s| match s.data.pop_front() {
                Some(v) => Some(Ok(v)),
                None => self.ended(s).map(Err),
            })
            .await?;
        let read = self.0.read.fetch_add(1, Ordering::Relaxed) + 1;
        if read as usize >= SEND_WINDOW / 2 {
            self.0.read.fetch_sub(read, Ordering::Relaxed);
            let credit = Credit {
                from: self.0.actor.id(),
                n: read,
            };
            // A child that is gone needs no credit.
            let _ = self.0.actor.tell(credit).await;
        }
        incoming
            .open_in::<T>(self.0.segments.as_ref().map(|s| &s.mapped))
            .map_err(|e| ProcessError::from_value(e, self.0.number))
    }

    /// Runs the calibration kernel in the child and returns the seconds it took.
    pub(crate) async fn calibration_seconds(&self) -> Result<f64, ProcessError> {
        self.check_alive()?;
        self.0
            .actor
            .ask(Calibrate)
            .await
            .map_err(|e| self.gone(e.to_string()))
    }

    /// Posts a collective message to the child.
    pub(crate) async fn post_collective(&self, msg: CollectiveMsg) -> Result<(), ProcessError> {
        self.0
            .actor
            .tell(CollectiveDown(msg))
            .await
            .map_err(|e| ProcessError::from_send(e, |why| self.gone(why)))
    }

    /// Holds the child's collective posts for one call.
    pub(crate) async fn lock_collective(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.collective.lock().await
    }

    /// The collective posts the child sent, taken out; or, when there are
    /// none, why it will send no more (its function ended, or it is gone).
    pub(crate) fn take_collective(&self) -> Result<Vec<CollectiveMsg>, Option<ProcessError>> {
        let mut state = self.0.inbox.lock();
        if !state.collective.is_empty() {
            return Ok(state.collective.drain(..).collect());
        }
        Err(self.ended(&state))
    }

    /// A future that completes when something new is filed for this child.
    pub(crate) fn changed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        self.0.inbox.changed()
    }

    /// Why the child's process is gone, if it is.
    pub(crate) fn exited_reason(&self) -> Option<String> {
        if let Some(exit) = self.0.process.try_exit() {
            return Some(format!("its process exited ({})", exit.status));
        }
        if !self.0.remote.is_alive() {
            return Some("its connection is closed".into());
        }
        None
    }

    /// What the child's tree shares with it: its settings and the
    /// per-tree state of the layers above (collective groups).
    pub(crate) fn shared(&self) -> &Arc<super::shared::TreeShared> {
        &self.0.shared
    }

    /// The node of the tree this child belongs to (the parent's).
    pub(crate) fn home_node(&self) -> Result<crate::remote::Node, ProcessError> {
        self.0
            .shared
            .node()
            .ok_or_else(|| ProcessError::Misuse("the child's tree has no node".into()))
    }

    /// Waits until the child's OS process has ended and says how.
    pub fn exited(&self) -> impl std::future::Future<Output = Exit> + Send + 'static {
        self.0.process.exited()
    }

    /// How the child's OS process ended, if it has.
    pub fn try_exit(&self) -> Option<Exit> {
        self.0.process.try_exit()
    }

    /// Waits until the child process is gone from the OS (it is then no
    /// longer among its tree's children).
    pub async fn sync(&self) -> Result<(), ProcessError> {
        self.exited().await;
        self.release_segments();
        Ok(())
    }

    /// Removes the shared-memory segments lent to the child and lets go
    /// of the child's, once its process has ended.
    pub(crate) fn release_segments(&self) {
        if let Some(segments) = &self.0.segments {
            segments.clear();
        }
    }

    /// Stops the child in order: a [`Stop`] message to its process actor
    /// (its node says goodbye, then the process exits; when the message
    /// cannot be sent, its standard input closes instead), waits up to
    /// `timeout` for its process to end, then kills it.
    pub async fn stop(&self, timeout: std::time::Duration) {
        self.request_stop();
        if tokio::time::timeout(timeout, self.exited()).await.is_err() {
            self.kill().await;
        }
    }

    /// Kills the child at once (SIGKILL locally; the ssh session for a child
    /// on another host) and waits for its end (at most 3 s).
    pub async fn kill(&self) {
        self.0.process.kill();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), self.exited()).await;
    }

    /// Asks the child to end in order, without waiting: a [`Stop`] to its
    /// process actor (its node says goodbye, then it exits); when that
    /// cannot be sent, its stdin closes, which ends it at once.
    pub(crate) fn request_stop(&self) {
        let child = self.clone();
        tokio::spawn(async move {
            if child.0.actor.tell(Stop).await.is_err() {
                child.0.process.close_stdin();
            }
        });
    }

    /// Kills the child without waiting (for code that cannot await).
    pub(crate) fn kill_now(&self) {
        self.0.process.kill();
    }
}

fn exec_request<F: RemoteCallable<Args>, Args: WireType>(
    f: &F,
    args: &Args,
) -> Result<Exec, ProcessError> {
    let name = f.remote_name();
    if remote_fn(type_tag(name)).is_none() {
        return Err(ProcessError::Misuse(format!(
            "function {name} is not registered: mark it #[parallel::remote] so a child process can run it"
        )));
    }
    Ok(Exec {
        name: name.to_string(),
        args: encode(args)?.to_vec(),
    })
}

/// A group of children: every operation applies to each, in child order.
#[derive(Clone, Debug, Default)]
pub struct Children(pub(crate) Vec<Child>);

impl Deref for Children {
    type Target = [Child];
    fn deref(&self) -> &[Child] {
        &self.0
    }
}

impl IntoIterator for Children {
    type Item = Child;
    type IntoIter = std::vec::IntoIter<Child>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Children {
    type Item = &'a Child;
    type IntoIter = std::slice::Iter<'a, Child>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Child> for Children {
    fn from_iter<I: IntoIterator<Item = Child>>(iter: I) -> Self {
        Children(iter.into_iter().collect())
    }
}

impl Children {
    /// The child with this number, if it is in the group.
    pub fn by_id(&self, id: u32) -> Option<&Child> {
        self.0.iter().find(|c| c.id() == id)
    }

    /// Runs `f(args)` in every child; the handle gives every child's return
    /// value ([`Executions::results`]), and may be ignored (the seed's style).
    pub async fn exec<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<Executions<F::Output>, ProcessError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let request = exec_request(&f, &args)?;
        join_all(&self.0, |c| {
            c.send_exec(Exec {
                name: request.name.clone(),
                args: request.args.clone(),
            })
        })
        .await?;
        Ok(Executions(
            self.0
                .iter()
                .map(|c| Execution {
                    child: c.clone(),
                    _result: PhantomData,
                })
                .collect(),
        ))
    }

    /// Joins every child with the same value.
    pub async fn join<P: Payload + Copy>(&self, value: P) -> Result<(), ProcessError> {
        join_all(&self.0, |c| c.join(value)).await.map(|_| ())
    }

    /// Sends the same value to every child.
    pub async fn send<P: Payload + Copy>(&self, value: P) -> Result<(), ProcessError> {
        join_all(&self.0, |c| c.send(value)).await.map(|_| ())
    }

    /// One value from each child, in child order.
    pub async fn receive<T: WireType>(&self) -> Result<Vec<Received<T>>, ProcessError> {
        join_all(&self.0, |c| c.receive::<T>()).await
    }

    /// Waits until every child process is gone, then removes them from their tree.
    pub async fn sync(&self) -> Result<(), ProcessError> {
        join_all(&self.0, |c| c.sync()).await.map(|_| ())
    }
}

/// Runs `f` on every child concurrently (each child's waits overlap) and
/// returns the results in child order, or the first error.
pub(crate) async fn join_all<'a, R: 'a, Fut>(
    children: &'a [Child],
    f: impl Fn(&'a Child) -> Fut,
) -> Result<Vec<R>, ProcessError>
where
    Fut: std::future::Future<Output = Result<R, ProcessError>> + 'a,
{
    let mut out = Vec::with_capacity(children.len());
    for r in join_all_futures(children.iter().map(f).collect()).await {
        out.push(r?);
    }
    Ok(out)
}

/// Polls every future until all are done; their outputs in order.
async fn join_all_futures<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => {
                        *result = Some(r);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// True when a value was not sent for what it is (it could not be packed
/// or encoded), the child and the link being as they were.
fn refused_for_its_value(e: &ProcessError) -> bool {
    e.is_encode() || matches!(e, ProcessError::Shm(_))
}
