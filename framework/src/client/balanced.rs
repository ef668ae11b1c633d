//! [`LoadBalancedView`]: tasks through the head, which hands each one to an
//! engine with room (the pool scheduler: engines that finish sooner get
//! more), records it in its ledger, and runs it again elsewhere when its
//! engine dies before answering. Results come back through the client's
//! router ([`Router`]), which hands each to the [`AsyncResult`] waiting for
//! its task number.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::cluster::engine::Task;
use crate::cluster::head::HeadActor;
use crate::cluster::message::{
    Abort, AbortedJobs, Finished, Outcome, Results, ResultsRead, Submit, Submitted, TaskFlags,
};
use crate::cluster::session::Batches;
use crate::remote::{ActorRef, RemoteCallable};
use crate::wire::{WireType, type_tag};

use super::meta::{Metadata, Metas, metas};
use super::result::AsyncResult;
use super::{Client, ClientError};

/// Tasks waiting for their result, by number.
pub(super) type Waiting = Arc<DashMap<u64, oneshot::Sender<Finished>>>;

/// Hands each result the head sends to the task waiting for it, and tells
/// the head it arrived.
pub(super) struct Router;

impl Router {
    /// Routes `results` until the client's node stops.
    pub(super) async fn run(
        mut results: mpsc::UnboundedReceiver<Results>,
        heads: watch::Receiver<ActorRef<HeadActor>>,
        pool: Uuid,
        waiting: Waiting,
        arrived: watch::Sender<u64>,
    ) {
        while let Some(batch) = results.recv().await {
            if batch.pool != pool {
                continue;
            }
            let mut read = Vec::with_capacity(batch.results.len());
            for (index, outcome) in batch.results {
                read.push(index);
                if let Some((_, waiter)) = waiting.remove(&index) {
                    let _ = waiter.send(outcome);
                }
            }
            arrived.send_modify(|n| *n = n.wrapping_add(1));
            let head = heads.borrow().clone();
            let _ = head.try_tell(ResultsRead {
                pool,
                indices: read,
            });
        }
    }
}

/// A task's result as its function's output or the error.
pub(super) fn outcome_into<R: WireType>(finished: Finished) -> Result<R, ClientError> {
    match finished.output {
        Outcome::Output(bytes) => {
            crate::wire::decode_owned::<R>(&bytes).map_err(|e| ClientError::Codec {
                what: "decode a task's result",
                reason: e.to_string(),
            })
        }
        Outcome::Panicked(panic) => Err(ClientError::RemoteError(super::RemoteError {
            engine: finished.meta.engine,
            message: panic.message,
            location: panic.location,
        })),
        Outcome::Invalid(message) => Err(ClientError::Task(message)),
        Outcome::Died(message) => Err(ClientError::EngineDied(message)),
        Outcome::Aborted => Err(ClientError::Aborted),
        Outcome::DependencyTimeout => Err(ClientError::DependencyTimeout),
        Outcome::Impossible(why) => Err(ClientError::ImpossibleDependency(why)),
        // The head gives an unmet task to another engine; it never sends one.
        Outcome::Unmet => Err(ClientError::Head(
            "it sent an unmet task as a result: run the same para||el version on the head and here"
                .into(),
        )),
    }
}

/// Awaits each task's result in order, noting its metadata in `metas`;
/// one result per argument tuple (a chunk's in order).
async fn results<R: WireType>(
    waits: Vec<Wait>,
    metas: Metas,
    submitted: SystemTime,
) -> Vec<Result<R, ClientError>> {
    let mut out = Vec::with_capacity(waits.len());
    for (place, wait) in waits.into_iter().enumerate() {
        match wait.rx.await {
            Ok(finished) => {
                let _ = metas[place].set(Metadata::of_task(finished.meta.clone(), submitted));
                out.extend(expand::<R>(finished, wait.items));
            }
            Err(_) => out.push(Err(ClientError::Task("the client stopped".into()))),
        }
    }
    out
}

/// A task's results: one, or a chunk's `items` in order (when the whole
/// chunk failed, its error first and the others saying so).
fn expand<R: WireType>(finished: Finished, items: usize) -> Vec<Result<R, ClientError>> {
    if items == 0 {
        return vec![outcome_into::<R>(finished)];
    }
    let meta = finished.meta.clone();
    let outcomes = match outcome_into::<Vec<Outcome>>(finished) {
        Ok(outcomes) if outcomes.len() == items => outcomes,
        Ok(outcomes) => {
            let e = ClientError::Codec {
                what: "read a chunk's results",
                reason: format!("{} results for {items} tasks", outcomes.len()),
            };
            return failed_chunk(e, items);
        }
        Err(e) => return failed_chunk(e, items),
    };
    outcomes
        .into_iter()
        .map(|output| {
            outcome_into::<R>(Finished {
                output,
                meta: meta.clone(),
            })
        })
        .collect()
}

/// `items` results of a chunk that failed with `e`.
fn failed_chunk<R>(e: ClientError, items: usize) -> Vec<Result<R, ClientError>> {
    let rest = format!("its chunk failed: {e}");
    let mut out = vec![Err(e)];
    out.extend((1..items).map(|_| Err(ClientError::Task(rest.clone()))));
    out
}

/// Aborts a client's load-balanced tasks on its head (the current one,
/// after restarts too).
#[derive(Clone)]
pub(super) struct Aborter {
    pub(super) heads: watch::Receiver<ActorRef<HeadActor>>,
    pub(super) pool: Uuid,
}

impl Aborter {
    /// Drops those of `indices` that have not started; the ones dropped.
    pub(super) async fn abort(&self, indices: Vec<u64>) -> Result<Vec<u64>, ClientError> {
        let head = self.heads.borrow().clone();
        let msg = Abort {
            pool: self.pool,
            indices,
        };
        match head.ask(msg).await {
            Ok(AbortedJobs(dropped)) => Ok(dropped),
            Err(e) => Err(ClientError::Head(e.to_string())),
        }
    }
}

fn codec(what: &'static str) -> impl Fn(crate::wire::EncodeError) -> ClientError {
    move |e| ClientError::Codec {
        what,
        reason: e.to_string(),
    }
}

/// Tasks on whichever engines have room (see the module docs); made by
/// [`Client::load_balanced_view`].
pub struct LoadBalancedView<'c> {
    client: &'c mut Client,
    flags: TaskFlags,
    /// A `depend` function (by tag) and its encoded arguments.
    predicate: Option<(u64, Vec<u8>)>,
    /// Argument tuples per task in `map` and `imap` (1: one task each).
    chunksize: usize,
}

/// A submitted task: its number, where its result comes, and how many
/// argument tuples it carries (0: one, not as a chunk).
pub(super) struct Wait {
    index: u64,
    rx: oneshot::Receiver<Finished>,
    items: usize,
}

impl<'c> LoadBalancedView<'c> {
    pub(super) fn new(client: &'c mut Client) -> Self {
        Self {
            client,
            flags: TaskFlags {
                success_only: true,
                ..TaskFlags::default()
            },
            predicate: None,
            chunksize: 1,
        }
    }

    /// `map` and `imap` through this view send `n` argument tuples per
    /// task (the seed's `chunksize`): fewer round trips for short tasks.
    /// The results still come one per tuple, in order; a panic fails the
    /// rest of its chunk, and `msg_ids` name the chunks.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = n.max(1);
        self
    }

    /// Tasks submitted through this view run only on an engine where
    /// `predicate(args)` returns true (the seed's `@depend`), run there
    /// just before each task: an engine that says no never gets that task
    /// again. When every engine it may run on said no, the task fails with
    /// [`ClientError::ImpossibleDependency`].
    pub fn depend<P, PArgs>(mut self, predicate: P, args: PArgs) -> Result<Self, ClientError>
    where
        P: RemoteCallable<PArgs, Output = bool>,
        PArgs: WireType,
    {
        let args = crate::wire::encode(&args)
            .map(|b| b.to_vec())
            .map_err(codec("encode the depend function's arguments"))?;
        self.predicate = Some((type_tag(predicate.remote_name()), args));
        Ok(self)
    }

    /// Tasks submitted through this view start only once the tasks `ids`
    /// are done (a time dependency: the seed's `after`), on any engine.
    /// When one of them failed, they fail with
    /// [`ClientError::ImpossibleDependency`] (see [`Self::success_only`]).
    pub fn after(mut self, ids: &[u64]) -> Self {
        self.flags.after.extend_from_slice(ids);
        self
    }

    /// Tasks submitted through this view run on the engine that ran the
    /// tasks `ids`, once they are done (a location dependency: the seed's
    /// `follow`), e.g. to use what they left in its namespace. When those
    /// ran on different engines, or that engine is gone, they fail with
    /// [`ClientError::ImpossibleDependency`].
    pub fn follow(mut self, ids: &[u64]) -> Self {
        self.flags.follow.extend_from_slice(ids);
        self
    }

    /// Whether a dependency that failed makes the tasks impossible (`true`,
    /// the default, as the seed's `success=True, failure=False`) or they
    /// run once their dependencies are done, whatever those gave (`false`).
    pub fn success_only(mut self, yes: bool) -> Self {
        self.flags.success_only = yes;
        self
    }

    /// How long the tasks wait for their dependencies before they fail
    /// with [`ClientError::DependencyTimeout`] (default: no limit).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.flags.timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self
    }

    /// Tasks submitted through this view run only on these engines (the
    /// seed's `load_balanced_view(targets)`), evaluated now against the
    /// engines known since the last [`Client::ids`]. When all of them are
    /// gone, the tasks fail with [`ClientError::ImpossibleDependency`].
    pub fn targets(mut self, targets: impl Into<super::Targets>) -> Result<Self, ClientError> {
        let have: Vec<u32> = self.client.engines.keys().copied().collect();
        self.flags.targets = targets.into().resolve(&have)?;
        Ok(self)
    }

    /// Tasks submitted through this view run only on engines whose node
    /// offers all of `resources` (the seed's `@require`): names given to
    /// `parallel node --resource`, and `gpu` on a node that sees a GPU.
    /// When no engine offers them, the tasks fail with
    /// [`ClientError::ImpossibleDependency`].
    pub fn require(mut self, resources: &[&str]) -> Self {
        self.flags
            .require
            .extend(resources.iter().map(|r| (*r).to_owned()));
        self
    }

    /// How many times a task runs again when its engine dies while running
    /// it, before it fails (default 4: five tries; `0` runs it once, as the
    /// seed's default).
    pub fn retries(mut self, retries: u32) -> Self {
        self.flags.retries = Some(retries);
        self
    }

    /// Numbers and submits one task per argument tuple, or per chunk of
    /// `chunk` tuples (answered once the head has them in its ledger).
    async fn submit<F, Args, I>(
        &mut self,
        f: F,
        args: I,
        chunk: usize,
    ) -> Result<Vec<Wait>, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
        I: IntoIterator<Item = Args>,
    {
        if !self.client.session.owns_pool() {
            return Err(ClientError::NotOwner(self.client.session.pool()));
        }
        let function = type_tag(f.remote_name());
        let mut tasks = Vec::new();
        let mut waits = Vec::new();
        let mut args = args.into_iter().peekable();
        while args.peek().is_some() {
            let mut encoded = Vec::with_capacity(chunk);
            for a in args.by_ref().take(chunk) {
                encoded.push(
                    crate::wire::encode(&a)
                        .map(|b| b.to_vec())
                        .map_err(codec("encode the arguments"))?,
                );
            }
            let items = if chunk > 1 { encoded.len() } else { 0 };
            let (args, chunk) = match items {
                0 => (encoded.pop().unwrap_or_default(), Vec::new()),
                _ => (Vec::new(), encoded),
            };
            let task = crate::wire::encode(&Task {
                function,
                args,
                chunk,
                predicate: self.predicate.clone(),
            })
            .map(|b| b.to_vec())
            .map_err(codec("encode the task"))?;
            let index = self.client.next_task;
            self.client.next_task += 1;
            // Waiting before it is submitted: its result may come at once.
            let (tx, rx) = oneshot::channel();
            self.client.waiting.insert(index, tx);
            tasks.push((index, task));
            waits.push(Wait { index, rx, items });
        }
        let pool = self.client.session.pool();
        let (mut tasks, mut batches) = (tasks.into_iter(), Batches::default());
        loop {
            let batch = batches.fill(&mut tasks);
            if batch.is_empty() {
                break;
            }
            let submit = Submit {
                pool,
                jobs: batch,
                flags: Some(self.flags.clone()),
            };
            if let Submitted::Refused(why) = self.client.session.ask(submit).await? {
                for wait in &waits {
                    self.client.waiting.remove(&wait.index);
                }
                return Err(ClientError::Refused(why));
            }
        }
        Ok(waits)
    }

    /// Submits `f(args)`; its result comes later (with its task number in
    /// [`AsyncResult::msg_ids`]).
    pub async fn apply<F, Args>(
        &mut self,
        f: F,
        args: Args,
    ) -> Result<AsyncResult<F::Output>, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
        F::Output: Send + 'static,
    {
        let submitted = SystemTime::now();
        let waits = self.submit(f, [args], 1).await?;
        let ids = waits.iter().map(|w| w.index).collect();
        let metas = metas(1);
        let handle = actix_rt::spawn(results::<F::Output>(waits, metas.clone(), submitted));
        let one = actix_rt::spawn(async move {
            let mut all = handle.await.map_err(|e| ClientError::Task(e.to_string()))?;
            all.pop().unwrap_or_else(|| {
                Err(ClientError::Codec {
                    what: "submit the task",
                    reason: "no task was made".into(),
                })
            })
        });
        Ok(AsyncResult::spawned(one, ids, metas).abortable(self.client.aborter()))
    }

    /// Runs `f(args)` on one engine and waits for its result.
    pub async fn apply_sync<F, Args>(&mut self, f: F, args: Args) -> Result<F::Output, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
        F::Output: Send + 'static,
    {
        let mut out = self.map_sync(f, [args]).await?;
        out.pop().unwrap_or_else(|| {
            Err(ClientError::Codec {
                what: "read the result",
                reason: "no result came".into(),
            })
        })
    }

    /// Submits `f` on every argument tuple; each task's result (or error),
    /// in input order, comes later.
    pub async fn map<F, Args, I>(
        &mut self,
        f: F,
        args: I,
    ) -> Result<AsyncResult<Vec<Result<F::Output, ClientError>>>, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
        I: IntoIterator<Item = Args>,
        F::Output: Send + 'static,
    {
        let submitted = SystemTime::now();
        let waits = self.submit(f, args, self.chunksize).await?;
        let ids: Vec<u64> = waits.iter().map(|w| w.index).collect();
        let metas = metas(ids.len());
        let all = results::<F::Output>(waits, metas.clone(), submitted);
        let handle = actix_rt::spawn(async move { Ok(all.await) });
        Ok(AsyncResult::spawned(handle, ids, metas).abortable(self.client.aborter()))
    }

    /// Submits `f` on every argument tuple and gives the results one by
    /// one in input order as they come (the seed's `imap`); see [`Imap`].
    pub async fn imap<F, Args, I>(self, f: F, args: I) -> Result<Imap<'c, F::Output>, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
        I: IntoIterator<Item = Args>,
    {
        let mut view = self;
        let waits = view.submit(f, args, view.chunksize).await?;
        Ok(Imap {
            client: view.client,
            waits: waits.into(),
            ready: std::collections::VecDeque::new(),
        })
    }

    /// Runs `f` on every argument tuple, spread over the engines, and waits:
    /// each task's result (or error) in input order. A head that restarts
    /// meanwhile is joined again; its ledger still has the tasks.
    pub async fn map_sync<F, Args, I>(
        &mut self,
        f: F,
        args: I,
    ) -> Result<Vec<Result<F::Output, ClientError>>, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
        I: IntoIterator<Item = Args>,
        F::Output: Send + 'static,
    {
        let all = self.map(f, args).await?;
        self.client.session.alongside(all.get()).await?
    }
}

/// Results of [`LoadBalancedView::imap`] in input order: [`Imap::next`]
/// waits for the next one (later ones that finish first wait their turn);
/// a head that restarts meanwhile is joined again.
pub struct Imap<'c, R> {
    client: &'c mut Client,
    waits: std::collections::VecDeque<Wait>,
    /// Results of a chunk not given yet.
    ready: std::collections::VecDeque<Result<R, ClientError>>,
}

impl<R: WireType> Imap<'_, R> {
    /// The next task's result (or its error) in input order; `None` after
    /// the last. A head that stayed away is [`ClientError::Session`] (that
    /// task stays next: calling again waits for it again).
    pub async fn next(&mut self) -> Option<Result<R, ClientError>> {
        if let Some(ready) = self.ready.pop_front() {
            return Some(ready);
        }
        let wait = self.waits.front_mut()?;
        let outcome = match self.client.session.alongside(&mut wait.rx).await {
            Ok(outcome) => outcome,
            Err(e) => return Some(Err(e.into())),
        };
        let items = wait.items;
        self.waits.pop_front();
        self.ready.extend(match outcome {
            Ok(finished) => expand::<R>(finished, items),
            Err(_) => vec![Err(ClientError::Task("the client stopped".into()))],
        });
        self.ready.pop_front()
    }

    /// Results not read yet (counting a chunk's still to come as one).
    pub fn remaining(&self) -> usize {
        self.ready.len() + self.waits.len()
    }
}
