//! [`DirectView`]: some engines, chosen when the view is made; apply,
//! push / pull, scatter / gather, clear.

use crate::actor::Received;
use crate::cluster::engine::{Carried, Clear, Pull, Pulled, Push, Pushed};
use crate::remote::RemoteCallable;
use crate::remote::value::tag_of;
use crate::wire::WireType;

use super::result::{AsyncResult, joined};
use super::{Client, ClientError};

/// Which engines a view targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// One engine by its place among the engines (negative: from the end,
    /// `-1` is the last), as `rc[i]` in IPython.
    One(i64),
    /// These engine numbers, in this order.
    Many(Vec<u32>),
    /// Every `step`-th engine from the `start`-th (`rc[start::step]`).
    Stepped {
        /// The first place.
        start: usize,
        /// The step (at least 1).
        step: usize,
    },
    /// Every engine.
    All,
}

impl From<i64> for Targets {
    fn from(i: i64) -> Self {
        Targets::One(i)
    }
}

impl From<i32> for Targets {
    fn from(i: i32) -> Self {
        Targets::One(i64::from(i))
    }
}

impl From<Vec<u32>> for Targets {
    fn from(ids: Vec<u32>) -> Self {
        Targets::Many(ids)
    }
}

impl<const N: usize> From<[u32; N]> for Targets {
    fn from(ids: [u32; N]) -> Self {
        Targets::Many(ids.to_vec())
    }
}

impl Targets {
    /// The engine numbers these targets name among `have` (ascending).
    pub(super) fn resolve(&self, have: &[u32]) -> Result<Vec<u32>, ClientError> {
        let missing = |asked: i64| ClientError::NoSuchEngine {
            asked,
            have: have.to_vec(),
        };
        match self {
            Targets::One(i) => {
                let place = if *i < 0 { have.len() as i64 + i } else { *i };
                usize::try_from(place)
                    .ok()
                    .and_then(|p| have.get(p))
                    .map(|id| vec![*id])
                    .ok_or_else(|| missing(*i))
            }
            Targets::Many(ids) => {
                if let Some(bad) = ids.iter().find(|id| !have.contains(id)) {
                    return Err(missing(i64::from(*bad)));
                }
                Ok(ids.clone())
            }
            Targets::Stepped { start, step } => Ok(have
                .iter()
                .skip(*start)
                .step_by((*step).max(1))
                .copied()
                .collect()),
            Targets::All => Ok(have.to_vec()),
        }
    }
}

/// Some engines of a [`Client`], fixed when the view was made. A view is
/// its client and its targets and nothing else: two views of one client
/// on the same engines are equal and behave the same (the seed's
/// "asking twice gives the same view").
pub struct DirectView<'c> {
    client: &'c Client,
    targets: Vec<u32>,
}

impl PartialEq for DirectView<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.client, other.client) && self.targets == other.targets
    }
}

impl Eq for DirectView<'_> {}

impl std::fmt::Debug for DirectView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectView")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

fn encode<T: WireType>(value: &T, what: &'static str) -> Result<Vec<u8>, ClientError> {
    crate::wire::encode(value)
        .map(|b| b.to_vec())
        .map_err(|e| ClientError::Codec {
            what,
            reason: e.to_string(),
        })
}

impl<'c> DirectView<'c> {
    pub(super) fn new(client: &'c Client, targets: Vec<u32>) -> Self {
        Self { client, targets }
    }

    /// The engines this view targets, in order.
    pub fn targets(&self) -> &[u32] {
        &self.targets
    }

    /// Runs `f(args)` on every target at once; the results in target order.
    /// Await the [`AsyncResult`] for the values (the seed's `block=True`),
    /// or keep it and ask it later (`block=False`).
    pub fn apply<F, Args>(&self, f: F, args: Args) -> AsyncResult<Vec<F::Output>>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Clone + Send + 'static,
        F::Output: Send + 'static,
    {
        self.on_each(move |remote, _| {
            let args = args.clone();
            async move { remote.call(f, args).await }
        })
    }

    /// [`DirectView::apply`] with its sends tracked (the seed's
    /// `track=True`): [`AsyncResult::sent`] says whether the arguments'
    /// bytes were handed to QUIC for every target, and
    /// [`AsyncResult::wait_on_send`] waits for it — for large arguments,
    /// when the upload has left this program. (The seed tracks sends so
    /// that you do not change a buffer still being sent; here `args` is
    /// moved into the call, so that cannot happen.)
    pub fn apply_tracked<F, Args>(&self, f: F, args: Args) -> AsyncResult<Vec<F::Output>>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Clone + Send + 'static,
        F::Output: Send + 'static,
    {
        let (count, sending) = super::result::Sending::new(self.targets.len());
        let count = std::rc::Rc::new(count);
        self.on_each(move |remote, _| {
            let args = args.clone();
            let (sent, heard) = tokio::sync::oneshot::channel();
            let count = count.clone();
            actix_rt::spawn(async move {
                if heard.await.is_ok() {
                    count.send_modify(|n| *n += 1);
                }
            });
            async move { remote.call_tracked(f, args, sent).await }
        })
        .tracking(sending)
    }

    /// [`DirectView::apply`], with each result as a read-only view of the
    /// reply's bytes: validated in place, nothing deserialized or copied
    /// (the seed's zero-copy results, read-only as there);
    /// [`Received::to_owned`] gives an owned value (a copy).
    pub fn apply_received<F, Args>(&self, f: F, args: Args) -> AsyncResult<Vec<Received<F::Output>>>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Clone + Send + 'static,
    {
        self.on_each(move |remote, _| {
            let args = args.clone();
            async move { remote.call_received(f, args).await }
        })
    }

    /// [`DirectView::apply`] and wait for it (the seed's `apply_sync`):
    /// the results in target order, or the error of the first target (in
    /// that order) that failed. Nothing is spawned: the calls run in this
    /// future.
    pub async fn apply_sync<F, Args>(&self, f: F, args: Args) -> Result<Vec<F::Output>, ClientError>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Clone + Send + 'static,
        F::Output: Send + 'static,
    {
        // Awaited here: no task to spawn, nothing kept for later. Every call
        // ends; the first error in target order wins, as with `apply`.
        let calls = self.calls(|remote, _| {
            let args = args.clone();
            async move { remote.call(f, args).await }
        });
        futures_util::future::join_all(calls.into_iter().map(|(_, call)| call))
            .await
            .into_iter()
            .collect()
    }

    /// `run(engine, place)` for every target (`place` is its place in the
    /// view), in target order, each with its engine's number: the calls made
    /// (a target's link looked up now), to be awaited or spawned.
    fn calls<T, Fut, Run>(
        &self,
        mut run: Run,
    ) -> Vec<(
        u32,
        impl std::future::Future<Output = Result<T, ClientError>> + 'static,
    )>
    where
        T: 'static,
        Run: FnMut(crate::remote::RemoteNode, usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::remote::CallError>> + 'static,
    {
        let mut calls = Vec::with_capacity(self.targets.len());
        for (place, &id) in self.targets.iter().enumerate() {
            let call = self.client.link(id).map(|l| run(l.remote.clone(), place));
            calls.push((id, async move {
                call?.await.map_err(|error| ClientError::of_call(id, error))
            }));
        }
        calls
    }

    /// Runs `run(engine, place)` for every target at once (`place` is its
    /// place in the view), noting each one's metadata; the outputs in target
    /// order, or the first error.
    fn on_each<T, Fut, Run>(&self, run: Run) -> AsyncResult<Vec<T>>
    where
        T: 'static,
        Run: FnMut(crate::remote::RemoteNode, usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::remote::CallError>> + 'static,
    {
        let metas = super::meta::metas(self.targets.len());
        let submitted = std::time::SystemTime::now();
        let calls: Vec<_> = self
            .calls(run)
            .into_iter()
            .enumerate()
            .map(|(place, (id, call))| {
                let metas = metas.clone();
                actix_rt::spawn(async move {
                    let out = call.await;
                    let _ = metas[place].set(super::Metadata::of_apply(id, submitted));
                    out
                })
            })
            .collect();
        let all = actix_rt::spawn(async move {
            let mut out = Vec::with_capacity(calls.len());
            for call in calls {
                out.push(joined(call.await)?);
            }
            Ok(out)
        });
        AsyncResult::spawned(all, Vec::new(), metas)
    }

    async fn push_to<T: WireType>(
        &self,
        id: u32,
        name: &str,
        value: &T,
    ) -> Result<(), ClientError> {
        let segments = self.client.link(id)?.segments.clone();
        let shared = segments.as_ref().filter(|_| {
            crate::transport::shm::archived_len(value)
                .is_ok_and(|len| len >= crate::config::DEFAULT_SHM_THRESHOLD)
        });
        // A large value for an engine on this machine goes through shared
        // memory (archived once, straight into a segment lent to the engine,
        // and kept there while the engine holds it).
        let body = match shared.map(|s| s.lent.write(value)) {
            Some(Ok(file)) => Carried::Shm(file),
            Some(Err(e)) => {
                tracing::debug!("a pushed value goes in the message ({e})");
                Carried::Bytes(encode(value, "encode the value")?)
            }
            None => Carried::Bytes(encode(value, "encode the value")?),
        };
        let file = match &body {
            Carried::Shm(file) => Some(file.clone()),
            Carried::Bytes(_) => None,
        };
        let msg = Push {
            name: name.to_owned(),
            tag: tag_of::<T>(),
            type_name: std::any::type_name::<T>().to_owned(),
            body,
        };
        let pushed = self.ask(id, msg).await;
        if let (Err(_), Some(file)) = (&pushed, &file) {
            // It never got there: nobody else removes it.
            crate::transport::shm::discard(file);
        }
        match pushed? {
            Pushed::Stored => Ok(()),
            Pushed::Refused(reason) => Err(ClientError::Engine { engine: id, reason }),
        }
    }

    /// Asks engine `id`'s actor.
    async fn ask<M>(&self, id: u32, msg: M) -> Result<M::Result, ClientError>
    where
        M: crate::actor::Message,
        crate::cluster::engine::EngineActor: crate::actor::Accepts<M>,
    {
        self.client
            .link(id)?
            .actor
            .ask(msg)
            .await
            .map_err(|e| ClientError::Engine {
                engine: id,
                reason: e.to_string(),
            })
    }

    async fn pull_from<T: WireType>(&self, id: u32, name: &str) -> Result<T, ClientError> {
        self.received_from::<T>(id, name)
            .await?
            .to_owned()
            .map_err(|e| ClientError::Codec {
                what: "decode the pulled value",
                reason: e.to_string(),
            })
    }

    /// Engine `id`'s value under `name` as a read-only view, in the
    /// message's buffer or the shared memory the engine wrote it to.
    async fn received_from<T: WireType>(
        &self,
        id: u32,
        name: &str,
    ) -> Result<Received<T>, ClientError> {
        let asked = std::any::type_name::<T>();
        let msg = Pull {
            name: name.to_owned(),
            tag: tag_of::<T>(),
            type_name: asked.to_owned(),
            same_host: self.client.link(id)?.segments.is_some(),
        };
        let pulled = self.ask(id, msg).await?;
        let codec = |e: &dyn std::fmt::Display| ClientError::Codec {
            what: "read the pulled value",
            reason: e.to_string(),
        };
        match pulled {
            Pulled::Value(Carried::Bytes(bytes)) => {
                Received::new(crate::wire::aligned_copy(&bytes)).map_err(|e| codec(&e))
            }
            Pulled::Value(Carried::Shm(file)) => {
                let segments = &self.client.link(id)?.segments;
                let cache = segments.as_ref().map(|s| &s.mapped);
                let mapping =
                    crate::transport::segments::SegmentCache::open_in(cache, &file, u64::MAX)
                        .map_err(|e| codec(&e))?;
                Received::from_mapping(mapping).map_err(|e| codec(&e))
            }
            Pulled::Missing => Err(ClientError::Missing {
                engine: id,
                name: name.to_owned(),
            }),
            Pulled::WrongType(stored) => Err(ClientError::WrongType {
                engine: id,
                name: name.to_owned(),
                stored,
                asked: asked.to_owned(),
            }),
        }
    }

    /// Stores `value` under `name` on every target.
    pub async fn push<T: WireType>(&self, name: &str, value: &T) -> Result<(), ClientError> {
        for id in &self.targets {
            self.push_to(*id, name, value).await?;
        }
        Ok(())
    }

    /// The value under `name` on every target, in target order; asking for
    /// another type than the stored one is an error naming both.
    pub async fn pull<T: WireType>(&self, name: &str) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::with_capacity(self.targets.len());
        for id in &self.targets {
            out.push(self.pull_from(*id, name).await?);
        }
        Ok(out)
    }

    /// Reads the value under `name` from every target, in target order, as
    /// read-only views that copy nothing more: of the message it came in,
    /// or, from an engine on this machine, of the shared memory the engine
    /// wrote it to (the seed's zero-copy arrays, read-only as there).
    /// [`Received::to_owned`] gives an owned value (a copy).
    pub async fn pull_received<T: WireType>(
        &self,
        name: &str,
    ) -> Result<Vec<Received<T>>, ClientError> {
        let mut out = Vec::with_capacity(self.targets.len());
        for id in &self.targets {
            out.push(self.received_from(*id, name).await?);
        }
        Ok(out)
    }

    /// Splits `items` in order into one contiguous part per target (the
    /// first `len % targets` parts one longer) and stores each part under
    /// `name` on its engine.
    pub async fn scatter<T: WireType>(&self, name: &str, items: Vec<T>) -> Result<(), ClientError> {
        let parts = partition(items, self.targets.len());
        for (id, part) in self.targets.iter().zip(parts) {
            self.push_to(*id, name, &part).await?;
        }
        Ok(())
    }

    /// The parts under `name` on every target, concatenated in target order.
    pub async fn gather<T: WireType>(&self, name: &str) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::new();
        for id in &self.targets {
            out.extend(self.pull_from::<Vec<T>>(*id, name).await?);
        }
        Ok(out)
    }

    /// `dview['name'] = value`: [`DirectView::push`] by another name.
    pub async fn set<T: WireType>(&self, name: &str, value: &T) -> Result<(), ClientError> {
        self.push(name, value).await
    }

    /// `dview['name']`: [`DirectView::pull`] by another name.
    pub async fn get<T: WireType>(&self, name: &str) -> Result<Vec<T>, ClientError> {
        self.pull(name).await
    }

    /// `dview.update({..})`: pushes every (name, value) pair.
    pub async fn update<T: WireType>(
        &self,
        values: impl IntoIterator<Item = (String, T)>,
    ) -> Result<(), ClientError> {
        for (name, value) in values {
            self.push(&name, &value).await?;
        }
        Ok(())
    }

    /// Runs `f` on every element of `items`: the items are partitioned over
    /// the targets like [`DirectView::scatter`], each engine runs its part in
    /// order, and the results come back concatenated in input order (await
    /// the [`AsyncResult`], or keep it: the seed's `map_async`).
    pub fn map<F, Args>(&self, f: F, items: Vec<Args>) -> AsyncResult<Vec<F::Output>>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut parts = partition(items, self.targets.len());
        let runs = self.on_each(move |remote, place| {
            let part = std::mem::take(&mut parts[place]);
            async move {
                let mut out = Vec::with_capacity(part.len());
                for args in part {
                    out.push(remote.call(f, args).await?);
                }
                Ok(out)
            }
        });
        runs.then(|parts| parts.into_iter().flatten().collect())
    }

    /// Runs `f` on every element of `items`, split over the targets like
    /// [`DirectView::map`], and gives the results one by one in input order
    /// as they come (the seed's `imap`; see [`DirectImap`]). Each item has
    /// its own result: an error fails that item only.
    pub fn imap<F, Args>(&self, f: F, items: Vec<Args>) -> DirectImap<F::Output>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Send + 'static,
        F::Output: Send + 'static,
    {
        let (senders, results): (Vec<_>, std::collections::VecDeque<_>) = items
            .iter()
            .map(|_| tokio::sync::oneshot::channel())
            .unzip();
        let mut senders = senders.into_iter();
        for (id, part) in self
            .targets
            .iter()
            .zip(partition(items, self.targets.len()))
        {
            let (id, txs) = (*id, senders.by_ref().take(part.len()).collect::<Vec<_>>());
            let remote = self
                .client
                .link(id)
                .map(|l| l.remote.clone())
                .map_err(|e| e.to_string());
            actix_rt::spawn(async move {
                for (args, tx) in part.into_iter().zip(txs) {
                    let result = match &remote {
                        Ok(remote) => remote
                            .call(f, args)
                            .await
                            .map_err(|error| ClientError::of_call(id, error)),
                        Err(reason) => Err(ClientError::Engine {
                            engine: id,
                            reason: reason.clone(),
                        }),
                    };
                    if tx.send(result).is_err() {
                        return; // nobody reads them any more
                    }
                }
            });
        }
        DirectImap { results }
    }

    /// [`DirectView::map`] and wait for it.
    pub async fn map_sync<F, Args>(
        &self,
        f: F,
        items: Vec<Args>,
    ) -> Result<Vec<F::Output>, ClientError>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Send + 'static,
        F::Output: Send + 'static,
    {
        self.map(f, items).await
    }

    /// The seed's `@view.remote`: `f` bound to this view, to call with its
    /// arguments ([`RemoteFunction::call`]).
    pub fn remote<F, Args>(&self, f: F) -> RemoteFunction<'_, 'c, F>
    where
        F: RemoteCallable<Args>,
    {
        RemoteFunction { view: self, f }
    }

    /// The seed's `@view.parallel`: `f` bound to this view, called with a
    /// sequence that is split across the engines ([`ParallelFunction::call`]).
    pub fn parallel<F, Args>(&self, f: F) -> ParallelFunction<'_, 'c, F>
    where
        F: RemoteCallable<Args>,
    {
        ParallelFunction { view: self, f }
    }

    /// Empties the namespace of every target.
    pub async fn clear(&self) -> Result<(), ClientError> {
        for id in &self.targets {
            self.ask(*id, Clear).await?;
        }
        Ok(())
    }
}

/// Results of [`DirectView::imap`] in input order: [`DirectImap::next`]
/// waits for the next one (later ones that finish first wait their turn).
/// Dropping it stops the engines' runs after their current item.
pub struct DirectImap<R> {
    results: std::collections::VecDeque<tokio::sync::oneshot::Receiver<Result<R, ClientError>>>,
}

impl<R> DirectImap<R> {
    /// The next item's result (or its error) in input order; `None` after
    /// the last.
    pub async fn next(&mut self) -> Option<Result<R, ClientError>> {
        let result = self.results.pop_front()?;
        Some(result.await.unwrap_or_else(|_| {
            Err(ClientError::Task(
                "its engine's run stopped before it (the client is closing)".into(),
            ))
        }))
    }

    /// Results not read yet.
    pub fn remaining(&self) -> usize {
        self.results.len()
    }
}

/// A function bound to a view (the seed's `RemoteFunction`): each call
/// applies it on every engine of the view.
pub struct RemoteFunction<'v, 'c, F> {
    view: &'v DirectView<'c>,
    f: F,
}

impl<F: Copy> RemoteFunction<'_, '_, F> {
    /// Applies the function with `args` on the view's engines: await the
    /// result for the values in target order (the seed's `block=True`), or
    /// keep the [`AsyncResult`] (`block=False`).
    pub fn call<Args>(&self, args: Args) -> AsyncResult<Vec<F::Output>>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Clone + Send + 'static,
        F::Output: Send + 'static,
    {
        self.view.apply(self.f, args)
    }
}

/// A function bound to a view (the seed's `ParallelFunction`): a call with
/// a sequence maps the function over it, split across the view's engines.
pub struct ParallelFunction<'v, 'c, F> {
    view: &'v DirectView<'c>,
    f: F,
}

impl<F: Copy> ParallelFunction<'_, '_, F> {
    /// Maps the function over `items` on the view's engines, split like
    /// [`DirectView::map`]: await the result for the values in input order,
    /// or keep the [`AsyncResult`].
    pub fn call<Args>(&self, items: Vec<Args>) -> AsyncResult<Vec<F::Output>>
    where
        F: RemoteCallable<Args> + Send,
        Args: WireType + Send + 'static,
        F::Output: Send + 'static,
    {
        self.view.map(self.f, items)
    }
}

/// `items` in `n` contiguous parts, in order, the first `len % n` one longer.
pub(super) fn partition<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let n = n.max(1);
    let (base, extra) = (items.len() / n, items.len() % n);
    let mut parts = Vec::with_capacity(n);
    let mut rest = items.into_iter();
    for i in 0..n {
        let take = base + usize::from(i < extra);
        parts.push(rest.by_ref().take(take).collect());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_items_split_like_ipython() {
        let parts = partition((0..16).collect::<Vec<u32>>(), 3);
        assert_eq!(
            parts,
            vec![
                (0..6).collect::<Vec<_>>(),
                (6..11).collect(),
                (11..16).collect()
            ]
        );
        let parts = partition((0..16).collect::<Vec<u32>>(), 4);
        assert_eq!(parts[1], vec![4, 5, 6, 7]);
        assert_eq!(
            partition((0..2).collect::<Vec<u32>>(), 4)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            vec![1, 1, 0, 0]
        );
    }

    #[test]
    fn targets_resolve_like_ipython_indexing() {
        let have = [0, 1, 2, 3];
        assert_eq!(Targets::One(-1).resolve(&have).unwrap(), vec![3]);
        assert_eq!(Targets::One(0).resolve(&have).unwrap(), vec![0]);
        assert_eq!(
            Targets::Stepped { start: 0, step: 2 }
                .resolve(&have)
                .unwrap(),
            vec![0, 2]
        );
        assert_eq!(
            Targets::Many(vec![2, 0]).resolve(&have).unwrap(),
            vec![2, 0]
        );
        let e = Targets::One(4).resolve(&have).unwrap_err();
        assert!(e.to_string().contains("there is no engine 4"), "{e}");
        assert!(Targets::Many(vec![9]).resolve(&have).is_err());
        assert!(Targets::One(-5).resolve(&have).is_err());
    }
}
