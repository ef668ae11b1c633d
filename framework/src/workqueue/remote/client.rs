//! A child's side: the handle that asks its parent's queue actor. Its
//! `read` and `write` block the calling thread (the child's function runs
//! on a thread of its own) on the process's runtime; a read asks for its
//! next batch while it hands out the current one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::actor::{Failure as AskFailure, Message, code};
use crate::id::{ActorId, NodeId};
use crate::remote::value::{Body, Incoming, Value, ValueError, tag_of};
use crate::remote::{ActorRef, AskError, Node, RemoteNode, RequestError};
use crate::wire::{WireType, encode};

use super::super::{ReadError, SERVE_WAIT, WriteError};
use super::message::{Ack, Close, Read, ReadReply, Write, WriteReply};
use super::{
    ASK_TIMEOUT, ATTACH_PAUSE, DEFAULT_PREFETCH, MAX_ADAPTIVE_PREFETCH, MAX_BATCH, QueueActor,
    queue_id,
};

/// A worker handle on another process's queue, as `WorkQueue` uses it.
pub(in crate::workqueue) trait Remote<T>: Send + Sync {
    fn name(&self) -> &str;
    fn set_prefetch(&self, items: usize);
    /// How many items the handle's next read asks for.
    #[cfg(test)]
    fn batch(&self) -> usize;
    fn read(&self) -> Result<Option<T>, ReadError>;
    fn write(&self, item: T) -> Result<(), WriteError<T>>;
    fn close(&self);
}

/// Why an exchange with the queue's actor failed.
#[derive(Debug)]
enum Failure {
    ParentGone(String),
    NotServed(Duration),
    /// The actor served this handle before and is gone now: the queue is
    /// closed and drained.
    ServiceGone,
    Refused(String),
    Value(ValueError),
    /// Called on a thread that runs an async runtime.
    Misuse(String),
}

/// The read ahead, asked and not answered yet: its number, how many items
/// it asked for, and its answer.
type Pending = (u64, usize, JoinHandle<Result<ReadReply, Failure>>);

/// How a handle sizes the batches it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// As many items as the handle was told ([`Remote::set_prefetch`]).
    Fixed(usize),
    /// Adapting to the work; this many now.
    Adaptive(usize),
}

impl Batch {
    fn size(self) -> usize {
        match self {
            Batch::Fixed(n) | Batch::Adaptive(n) => n,
        }
    }

    /// The batch to ask for once a batch was handed out: `full` — it came
    /// with as many items as asked; `starved` — the reader ran out of items
    /// before the batch asked ahead arrived; `early` — that batch arrived
    /// while half of this one was still to hand out. (See
    /// [`MAX_ADAPTIVE_PREFETCH`].)
    fn after(self, full: bool, starved: bool, early: bool) -> Batch {
        match self {
            Batch::Fixed(_) => self,
            Batch::Adaptive(n) if starved && full => {
                Batch::Adaptive((n * 2).min(MAX_ADAPTIVE_PREFETCH))
            }
            Batch::Adaptive(n) if early => Batch::Adaptive((n / 2).max(DEFAULT_PREFETCH)),
            Batch::Adaptive(_) => self,
        }
    }
}

struct ReadLane<T> {
    /// The number of the last read asked.
    seq: u64,
    /// How many items the next read asks for.
    batch: Batch,
    /// Items of batch `holding` not handed out yet.
    buffered: VecDeque<T>,
    /// How many items batch `holding` came with.
    held: usize,
    /// Batch `holding` came with as many items as asked.
    full: bool,
    /// The batch asked ahead arrived while half of `holding` was still to
    /// hand out.
    early: bool,
    /// The batch whose items are being handed out (0: none yet).
    holding: u64,
    /// The read asked ahead.
    pending: Option<Pending>,
    /// The last batch acknowledged to the actor.
    acked: u64,
    /// The queue is closed and drained.
    closed: bool,
}

/// What a handle talks through: the actor's reference on the parent's
/// node, this process's node and its runtime.
struct Link<T: WireType + Send + 'static> {
    queue: ActorRef<QueueActor<T>>,
    node: NodeId,
    runtime: tokio::runtime::Handle,
}

/// What every ask of one handle shares (also its reads asked ahead, which
/// run as tasks of the runtime).
struct Common<T: WireType + Send + 'static> {
    link: Link<T>,
    /// The actor answered this handle once.
    connected: AtomicBool,
    /// How long to ask while the parent does not serve the queue (yet).
    serve_wait: Duration,
}

/// A child's handle on its parent's queue.
pub(in crate::workqueue) struct Client<T: WireType + Send + 'static> {
    name: String,
    /// This handle's id, for the actor's books.
    me: ActorId,
    common: Result<Arc<Common<T>>, String>,
    reads: Mutex<ReadLane<T>>,
    /// The number of the last write.
    writes: Mutex<u64>,
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Refuses a blocking call on a thread that runs an async runtime: it
/// would stall that runtime (the same rule as the process calls').
fn refuse_in_async(what: &str) -> Result<(), Failure> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Failure::Misuse(format!(
            "{what} on a queue of the parent process blocks its thread, and this thread runs an async runtime: call it from the child's function (which runs on a thread of its own) or inside `tokio::task::spawn_blocking`"
        )));
    }
    Ok(())
}

impl<T: WireType + Send + 'static> Client<T> {
    /// A handle on the queue `name` of this child process's parent.
    pub(in crate::workqueue) fn for_parent(name: &str) -> Self {
        let link = crate::process::child::link()
            .map_err(|e| e.to_string())
            .map(|link| {
                Link::to(
                    name,
                    link.node(),
                    link.parent_node(),
                    link.runtime().clone(),
                )
            });
        Self::new(name, link, SERVE_WAIT)
    }

    /// A handle on the queue `name` served on `parent`, asking from `node`.
    #[cfg(test)]
    pub(in crate::workqueue) fn on(
        name: &str,
        node: &Node,
        parent: &RemoteNode,
        runtime: tokio::runtime::Handle,
        serve_wait: Duration,
    ) -> Self {
        Self::new(name, Ok(Link::to(name, node, parent, runtime)), serve_wait)
    }

    fn new(name: &str, link: Result<Link<T>, String>, serve_wait: Duration) -> Self {
        Self {
            name: name.to_string(),
            me: ActorId::new(),
            common: link.map(|link| {
                Arc::new(Common {
                    link,
                    connected: AtomicBool::new(false),
                    serve_wait,
                })
            }),
            reads: Mutex::new(ReadLane {
                seq: 0,
                batch: Batch::Adaptive(DEFAULT_PREFETCH),
                buffered: VecDeque::new(),
                held: 0,
                full: false,
                early: false,
                holding: 0,
                pending: None,
                acked: 0,
                closed: false,
            }),
            writes: Mutex::new(0),
        }
    }

    fn common(&self) -> Result<&Arc<Common<T>>, Failure> {
        self.common
            .as_ref()
            .map_err(|reason| Failure::ParentGone(reason.clone()))
    }

    /// A read of up to `max` items numbered `seq`, done with the batches up
    /// to `ack`, handing out the batch `keep`.
    fn read_request(&self, common: &Common<T>, seq: u64, max: usize, ack: u64, keep: u64) -> Read {
        Read {
            reader: self.me,
            node: common.link.node,
            tag: tag_of::<T>(),
            seq,
            max: max as u32,
            ack,
            keep,
        }
    }

    fn read_error(&self, failure: Failure) -> ReadError {
        let name = self.name.clone();
        match failure {
            Failure::ParentGone(reason) => ReadError::ParentGone { name, reason },
            Failure::NotServed(waited) => ReadError::NotServed { name, waited },
            Failure::ServiceGone => ReadError::ParentGone {
                name,
                reason: "the queue is no longer served".into(),
            },
            Failure::Refused(message) => ReadError::Refused { name, message },
            Failure::Value(ValueError::Decode(error)) => ReadError::Decode { name, error },
            Failure::Value(e) => ReadError::Refused {
                name,
                message: e.to_string(),
            },
            Failure::Misuse(message) => ReadError::Misuse { name, message },
        }
    }

    fn write_error(&self, failure: Failure, item: T) -> WriteError<T> {
        match failure {
            Failure::ParentGone(reason) => WriteError::ParentGone { item, reason },
            Failure::NotServed(waited) => WriteError::NotServed {
                item,
                name: self.name.clone(),
                waited,
            },
            Failure::ServiceGone => WriteError::Closed(item),
            Failure::Refused(message) => WriteError::Refused { item, message },
            Failure::Value(ValueError::Encode(error)) => WriteError::Encode { item, error },
            Failure::Value(e) => WriteError::Refused {
                item,
                message: format!("the parent's answer failed validation: {e}"),
            },
            Failure::Misuse(message) => WriteError::Misuse { item, message },
        }
    }

    /// Takes the answer to a read of up to `max` items: its items into the lane.
    fn take(
        &self,
        lane: &mut ReadLane<T>,
        seq: u64,
        max: usize,
        reply: ReadReply,
    ) -> Result<(), ReadError> {
        match reply {
            ReadReply::Items(values) => {
                lane.holding = seq;
                (lane.held, lane.full, lane.early) = (values.len(), values.len() >= max, false);
                let mut bad = None;
                for value in values {
                    match unpack::<T>(value) {
                        Ok(item) => lane.buffered.push_back(item),
                        Err(e) => bad = Some(e),
                    }
                }
                match bad {
                    Some(e) => Err(self.read_error(Failure::Value(e))),
                    None => Ok(()),
                }
            }
            ReadReply::Closed => {
                lane.closed = true;
                Ok(())
            }
            ReadReply::Again => Ok(()),
            ReadReply::Refused(message) => Err(self.read_error(Failure::Refused(message))),
        }
    }
}

impl<T: WireType + Send + 'static> Link<T> {
    fn to(name: &str, node: &Node, parent: &RemoteNode, runtime: tokio::runtime::Handle) -> Self {
        Link {
            queue: ActorRef::remote(queue_id(name), parent.link()).with_timeout(ASK_TIMEOUT),
            node: node.id(),
            runtime,
        }
    }
}

impl<T: WireType + Send + 'static> Common<T> {
    /// Asks the actor the message `make` gives (made again for each
    /// attempt). Until the actor first answered, asks again while the
    /// parent does not serve the queue (yet), for at most `serve_wait`; an
    /// answer that did not come within the timeout is asked for again.
    async fn ask<M>(
        &self,
        mut make: impl FnMut() -> Result<M, Failure>,
    ) -> Result<M::Result, Failure>
    where
        M: Message,
        QueueActor<T>: crate::actor::Accepts<M>,
    {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.link.queue.ask(make()?).await {
                Ok(answer) => {
                    self.connected.store(true, Ordering::Release);
                    return Ok(answer);
                }
                Err(AskError::Failed(AskFailure::Remote(f))) if f.code == code::UNKNOWN_ACTOR => {
                    if self.connected.load(Ordering::Acquire) {
                        return Err(Failure::ServiceGone);
                    }
                    if start.elapsed() >= self.serve_wait {
                        return Err(Failure::NotServed(self.serve_wait));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(ATTACH_PAUSE);
                }
                Err(AskError::Timeout(after)) => {
                    tracing::debug!("no answer from the work queue within {after:?}; asking again");
                }
                Err(AskError::Failed(f)) => return Err(Failure::Refused(f.to_string())),
                Err(AskError::Encode(e)) => return Err(Failure::Value(ValueError::Encode(e))),
                Err(AskError::Decode(e)) => return Err(Failure::Value(ValueError::Decode(e))),
                Err(AskError::Request(RequestError::Remote(f))) => {
                    return Err(Failure::Refused(f.message));
                }
                Err(e) => return Err(Failure::ParentGone(e.to_string())),
            }
        }
    }

    /// Asks for a read on the runtime, as a task of its own: the read asked ahead.
    fn read_ahead(self: &Arc<Self>, read: Read) -> JoinHandle<Result<ReadReply, Failure>> {
        let common = self.clone();
        self.link
            .runtime
            .spawn(async move { common.ask(|| Ok(read)).await })
    }

    /// Waits for `f` from this thread.
    fn block_on<R>(&self, f: impl std::future::Future<Output = R>) -> R {
        self.link.runtime.block_on(f)
    }
}

/// The item a value carries, if it is a `T`.
fn unpack<T: WireType>(value: Value) -> Result<T, ValueError> {
    Ok(Incoming::owned(value).open::<T>()?.to_owned()?)
}

impl<T: WireType + Send + 'static> Remote<T> for Client<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn set_prefetch(&self, items: usize) {
        lock(&self.reads).batch = Batch::Fixed(items.clamp(1, MAX_BATCH));
    }

    #[cfg(test)]
    fn batch(&self) -> usize {
        lock(&self.reads).batch.size()
    }

    fn read(&self) -> Result<Option<T>, ReadError> {
        let common = self
            .common()
            .and_then(|c| refuse_in_async("WorkQueue::read").map(|()| c))
            .map_err(|f| self.read_error(f))?;
        let mut guard = lock(&self.reads);
        let lane = &mut *guard;
        loop {
            if let Some(item) = lane.buffered.pop_front() {
                // One read ahead, acknowledging the batches before
                // `holding` (this call asks on past their last item). A
                // failure shows again at the next read that waits.
                match &lane.pending {
                    None if !lane.closed => {
                        let ack = lane.holding.saturating_sub(1).max(lane.acked);
                        lane.seq += 1;
                        let max = lane.batch.size();
                        let read = self.read_request(common, lane.seq, max, ack, lane.holding);
                        lane.pending = Some((lane.seq, max, common.read_ahead(read)));
                        lane.acked = ack;
                    }
                    Some((_, _, ahead))
                        if !lane.early
                            && lane.buffered.len() * 2 >= lane.held
                            && ahead.is_finished() =>
                    {
                        lane.early = true;
                    }
                    _ => {}
                }
                return Ok(Some(item));
            }
            // This call asks on past the last item of `holding`: done.
            let done = lane.holding.max(lane.acked);
            if lane.closed {
                if done > lane.acked {
                    lane.acked = done;
                    let ack = Ack {
                        reader: self.me,
                        ack: done,
                        give_back: 0,
                    };
                    // Asked: at the owner before this process may end.
                    let sent = common.block_on(common.ask(|| Ok(ack)));
                    if let Err(failure) = sent {
                        tracing::debug!(queue = %self.name, "the last acknowledgement was not delivered: {}", self.read_error(failure));
                    }
                }
                return Ok(None);
            }
            let (seq, max, answer) = match lane.pending.take() {
                Some((seq, max, pending)) => {
                    let starved = !pending.is_finished();
                    lane.batch = lane.batch.after(lane.full, starved, lane.early);
                    let answer = common.block_on(pending).unwrap_or_else(|e| {
                        Err(Failure::ParentGone(format!(
                            "this process's runtime stopped ({e})"
                        )))
                    });
                    (seq, max, answer)
                }
                None => {
                    lane.seq += 1;
                    let max = lane.batch.size();
                    let read = self.read_request(common, lane.seq, max, done, 0);
                    lane.acked = done;
                    let answer = common.block_on(common.ask(|| Ok(read)));
                    (read.seq, max, answer)
                }
            };
            match answer {
                Ok(reply) => self.take(lane, seq, max, reply)?,
                Err(Failure::ServiceGone) => {
                    lane.closed = true;
                    return Ok(None);
                }
                Err(failure) => return Err(self.read_error(failure)),
            }
        }
    }

    fn write(&self, item: T) -> Result<(), WriteError<T>> {
        let common = match self
            .common()
            .and_then(|c| refuse_in_async("WorkQueue::write").map(|()| c))
        {
            Ok(common) => common,
            Err(failure) => return Err(self.write_error(failure, item)),
        };
        let bytes = match encode(&item) {
            Ok(bytes) => bytes,
            Err(error) => return Err(WriteError::Encode { item, error }),
        };
        let mut seq = lock(&self.writes);
        *seq += 1;
        let write = || {
            Ok(Write {
                writer: self.me,
                node: common.link.node,
                seq: *seq,
                item: Value {
                    tag: tag_of::<T>(),
                    body: Body::Inline(bytes.clone()),
                },
            })
        };
        loop {
            match common.block_on(common.ask(write)) {
                Ok(WriteReply::Written) => return Ok(()),
                // Waited for room past the poll: write it again.
                Ok(WriteReply::Again) => continue,
                Ok(WriteReply::Closed) => return Err(WriteError::Closed(item)),
                Ok(WriteReply::Refused(message)) => {
                    return Err(WriteError::Refused { item, message });
                }
                Err(failure) => return Err(self.write_error(failure, item)),
            }
        }
    }

    fn close(&self) {
        let common = match self
            .common()
            .and_then(|c| refuse_in_async("WorkQueue::close").map(|()| c))
        {
            Ok(common) => common,
            Err(Failure::Misuse(message)) => {
                tracing::error!(queue = %self.name, "the queue was not closed: {message}");
                return;
            }
            Err(_) => return,
        };
        let _guard = lock(&self.writes);
        if let Err(failure) = common.block_on(common.ask(|| Ok(Close))) {
            tracing::debug!(queue = %self.name, "closing a work queue whose parent is gone: {failure:?}");
        }
    }
}

impl<T: WireType + Send + 'static> Drop for Client<T> {
    /// Gives back the batch asked ahead, whose items this handle never
    /// handed out (what it handed out stays with the owner until this
    /// process ends).
    fn drop(&mut self) {
        let Ok(common) = &self.common else { return };
        let lane = self.reads.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some((seq, _, pending)) = lane.pending.take() else {
            return;
        };
        let (me, ack, common) = (self.me, lane.acked, common.clone());
        let runtime = common.link.runtime.clone();
        runtime.spawn(async move {
            if let Ok(Ok(ReadReply::Items(values))) = pending.await {
                for value in &values {
                    value.discard();
                }
                let give_back = Ack {
                    reader: me,
                    ack,
                    give_back: seq,
                };
                let given = common.ask(|| Ok(give_back)).await;
                if let Err(failure) = given {
                    tracing::debug!("a batch asked ahead was not given back: {failure:?}");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Batch, DEFAULT_PREFETCH, MAX_ADAPTIVE_PREFETCH};

    #[test]
    fn an_adaptive_batch_doubles_when_starved_on_full_batches_and_halves_when_early() {
        let start = Batch::Adaptive(DEFAULT_PREFETCH);
        // Ran out before the next batch came, and the last came full: double.
        assert_eq!(
            start.after(true, true, false),
            Batch::Adaptive(2 * DEFAULT_PREFETCH)
        );
        // Ran out, but the queue had fewer items than asked: the batch was
        // not what limited the reader.
        assert_eq!(start.after(false, true, false), start);
        // The next batch came in time, and not early: keep.
        assert_eq!(start.after(true, false, false), start);
        // Never past the largest, never below the first.
        let mut batch = start;
        for _ in 0..20 {
            batch = batch.after(true, true, false);
        }
        assert_eq!(batch, Batch::Adaptive(MAX_ADAPTIVE_PREFETCH));
        assert_eq!(
            batch.after(true, false, true),
            Batch::Adaptive(MAX_ADAPTIVE_PREFETCH / 2)
        );
        for _ in 0..20 {
            batch = batch.after(true, false, true);
        }
        assert_eq!(batch, start);
        // A batch the handle was told stays.
        for (full, starved, early) in [(true, true, false), (true, false, true)] {
            assert_eq!(Batch::Fixed(5).after(full, starved, early), Batch::Fixed(5));
        }
    }
}
