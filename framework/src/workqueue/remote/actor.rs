//! The owner's side: the queue's actor, on the node of the owner's
//! process, serving other processes' handles from the same [`Shared`] the
//! owner and its local workers use.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::{ActorContext, ActorFutureExt, AsyncContext, Handler, Response, WrapFuture};
use tokio::sync::oneshot;

use crate::id::{ActorId, NodeId};
use crate::remote::Node;
use crate::remote::value::{Body, Incoming, Value, tag_of};
use crate::wire::{WireType, encode};

use super::super::Shared;
use super::message::{Ack, Close, Read, ReadReply, Write, WriteReply};
use super::{GRACE, MAX_BATCH, POLL, TICK};

/// A read waiting for items.
struct WaitingRead {
    reader: ActorId,
    node: NodeId,
    seq: u64,
    max: usize,
    since: Instant,
    reply: oneshot::Sender<ReadReply>,
}

/// A write waiting for room.
struct WaitingWrite<T> {
    writer: ActorId,
    node: NodeId,
    seq: u64,
    item: T,
    since: Instant,
    reply: oneshot::Sender<WriteReply>,
}

/// The batches one reader holds and has not acknowledged yet, oldest first.
struct Holder<T> {
    node: NodeId,
    batches: VecDeque<(u64, Vec<T>)>,
}

/// The actor of one work queue, registered on its owner's node under the
/// id of the queue's name ([`super::queue_id`]): it answers the
/// [`super::message`]s of handles in other processes (a forked child's
/// `WorkQueue::named`) from the queue the owner's process reads and writes
/// in place. A read that finds no item waits — as an asynchronous answer,
/// so the actor goes on serving — until one is written, the queue closes,
/// or [`super::POLL`] passed (then the reader asks again). The actor keeps
/// every batch it handed to a reader until the reader acknowledges it, and
/// puts it back at the front of the queue when the reader's node goes
/// down. It stops once the owner is gone and the queue is drained.
#[derive(crate::Actor)]
#[actor(
    messages(Read, Write, Ack, Close),
    name = "parallel::workqueue::QueueActor",
    lifecycle
)]
pub struct QueueActor<T: WireType + Send + 'static> {
    shared: Arc<Shared<T>>,
    node: Node,
    reads: VecDeque<WaitingRead>,
    /// (Boxed, as what holds items: an actor must be `Unpin`, an item
    /// need not be.)
    writes: VecDeque<Box<WaitingWrite<T>>>,
    /// Batches handed to readers and not acknowledged yet, by reader.
    holders: HashMap<ActorId, Box<Holder<T>>>,
    /// The last write taken from each writer (its node, its number).
    written: HashMap<ActorId, (NodeId, u64)>,
    /// Since when the queue is done (owner gone, drained, nobody waiting).
    done_since: Option<Instant>,
}

impl<T: WireType + Send + 'static> actix::Actor for QueueActor<T> {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.watch(ctx);
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl<T: WireType + Send + 'static> QueueActor<T> {
    pub(super) fn new(shared: Arc<Shared<T>>, node: Node) -> Self {
        Self {
            shared,
            node,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
            holders: HashMap::new(),
            written: HashMap::new(),
            done_since: None,
        }
    }

    /// Answers what can be answered each time the owner's side changes
    /// the queue (a write, a read that made room, close, the owner's drop).
    fn watch(&self, ctx: &mut actix::Context<Self>) {
        let shared = self.shared.clone();
        let changed = async move { shared.service.notified().await };
        ctx.spawn(changed.into_actor(self).map(|(), act, ctx| {
            act.answer();
            act.watch(ctx);
        }));
    }

    /// True while the node `node` is connected (this node counts too).
    fn alive(&self, node: NodeId) -> bool {
        node == self.node.id() || self.node.remote(node).is_some_and(|r| r.is_alive())
    }

    /// Gives back what readers whose node went down held, drops what such
    /// readers and writers wait for, answers long waits with "again", and
    /// stops the actor once it is done.
    fn tick(&mut self, ctx: &mut actix::Context<Self>) {
        let gone: Vec<ActorId> = self
            .holders
            .iter()
            .filter(|(_, h)| !self.alive(h.node))
            .map(|(id, _)| *id)
            .collect();
        for reader in gone {
            self.give_back(reader, |_| true, "its node went down before it was done");
        }
        let now = Instant::now();
        let nodes: Vec<NodeId> = self
            .reads
            .iter()
            .map(|w| w.node)
            .chain(self.writes.iter().map(|w| w.node))
            .chain(self.written.values().map(|(node, _)| *node))
            .collect();
        let dead: Vec<NodeId> = nodes.into_iter().filter(|n| !self.alive(*n)).collect();
        // What a waiting reader or writer of a dead node gets goes nowhere.
        let (reads, writes) = (
            std::mem::take(&mut self.reads),
            std::mem::take(&mut self.writes),
        );
        for w in reads {
            if dead.contains(&w.node) {
                continue;
            }
            if now.duration_since(w.since) >= POLL {
                let _ = w.reply.send(ReadReply::Again);
            } else {
                self.reads.push_back(w);
            }
        }
        for w in writes {
            if dead.contains(&w.node) {
                continue;
            }
            if now.duration_since(w.since) >= POLL {
                let _ = w.reply.send(WriteReply::Again);
            } else {
                self.writes.push_back(w);
            }
        }
        self.written.retain(|_, (node, _)| !dead.contains(node));
        self.answer();
        let done = {
            let state = self.shared.lock();
            state.owner_gone
                && state.to_workers.is_empty()
                && self.reads.is_empty()
                && self.writes.is_empty()
        };
        match (done, self.done_since) {
            (false, _) => self.done_since = None,
            (true, None) => self.done_since = Some(now),
            // Stopped a while after the last wait was answered: the answers
            // the actor forwards for it have left.
            (true, Some(since)) if now.duration_since(since) >= GRACE => ctx.stop(),
            (true, Some(_)) => {}
        }
    }

    /// Answers every waiting request that can be answered now: reads in
    /// the order they came, each with a fair share of what is queued;
    /// writes while there is room.
    fn answer(&mut self) {
        if self.reads.is_empty() && self.writes.is_empty() {
            return;
        }
        let mut batches = Vec::new();
        {
            let mut state = self.shared.lock();
            let mut changed = false;
            while !self.reads.is_empty() {
                let queued = state.to_workers.len();
                let Some(w) = self.reads.pop_front() else {
                    break;
                };
                if w.reply.is_closed() || !self.alive(w.node) {
                    // Its asker gave up or is gone: it gets nothing.
                    continue;
                }
                if queued > 0 {
                    changed = true;
                    // A fair share for each reader waiting.
                    let n = w.max.min(queued.div_ceil(self.reads.len() + 1));
                    batches.push((w, state.to_workers.drain(..n).collect::<Vec<T>>()));
                } else if state.closed {
                    let _ = w.reply.send(ReadReply::Closed);
                } else {
                    self.reads.push_front(w);
                    break;
                }
            }
            while let Some(w) = self.writes.pop_front() {
                if state.closed {
                    // The writer still holds its item and gets it back.
                    let _ = w.reply.send(WriteReply::Closed);
                } else if state.to_owner.len() < self.shared.capacity {
                    state.to_owner.push_back(w.item);
                    self.written.insert(w.writer, (w.node, w.seq));
                    changed = true;
                    let _ = w.reply.send(WriteReply::Written);
                } else {
                    self.writes.push_front(w);
                    break;
                }
            }
            if changed {
                self.shared.changed.notify_all();
            }
        }
        for (w, items) in batches {
            let reply = self.hand_out(w.reader, w.node, w.seq, items);
            if let Err(ReadReply::Items(_)) = w.reply.send(reply) {
                // Its asker gave up just now: the batch goes back.
                self.give_back(w.reader, |s| s == w.seq, "its reader stopped asking");
            }
        }
    }

    /// Packs a batch for `reader` and keeps it until the reader is done.
    fn hand_out(&mut self, reader: ActorId, node: NodeId, seq: u64, items: Vec<T>) -> ReadReply {
        let tag = tag_of::<T>();
        let mut values = Vec::with_capacity(items.len());
        let mut kept = Vec::with_capacity(items.len());
        for item in items {
            match encode(&item) {
                Ok(bytes) => {
                    values.push(Value {
                        tag,
                        body: Body::Inline(bytes),
                    });
                    kept.push(item);
                }
                Err(e) => {
                    tracing::error!(queue = %self.shared.name, "an item that cannot be serialized was dropped: {e}")
                }
            }
        }
        if !kept.is_empty() {
            self.holders
                .entry(reader)
                .or_insert_with(|| {
                    Box::new(Holder {
                        node,
                        batches: VecDeque::new(),
                    })
                })
                .batches
                .push_back((seq, kept));
        }
        ReadReply::Items(values)
    }

    /// Puts the batches of `reader` that `which` picks back in the queue.
    fn give_back(&mut self, reader: ActorId, which: impl Fn(u64) -> bool, why: &str) {
        let Some(holder) = self.holders.get_mut(&reader) else {
            return;
        };
        let mut items = Vec::new();
        holder.batches.retain_mut(|(seq, batch)| {
            if which(*seq) {
                items.append(batch);
                false
            } else {
                true
            }
        });
        if holder.batches.is_empty() {
            self.holders.remove(&reader);
        }
        requeue(&self.shared, items, why);
    }

    /// The reader `reader` is done with every batch up to `ack`.
    fn acknowledge(&mut self, reader: ActorId, ack: u64) {
        let Some(holder) = self.holders.get_mut(&reader) else {
            return;
        };
        while holder.batches.front().is_some_and(|(seq, _)| *seq <= ack) {
            holder.batches.pop_front();
        }
        if holder.batches.is_empty() {
            self.holders.remove(&reader);
        }
    }

    /// Why a message about items of another type is refused.
    fn wrong_type(&self) -> String {
        format!(
            "work queue {:?} holds items of type {}; open it with that type",
            self.shared.name,
            std::any::type_name::<T>()
        )
    }
}

impl<T: WireType + Send + 'static> Handler<Read> for QueueActor<T> {
    type Result = Response<ReadReply>;

    fn handle(&mut self, msg: Read, _: &mut actix::Context<Self>) -> Self::Result {
        if msg.tag != tag_of::<T>() {
            return Response::reply(ReadReply::Refused(self.wrong_type()));
        }
        self.acknowledge(msg.reader, msg.ack);
        // A batch after `ack` that the reader does not hold never reached
        // it: its answer was lost on the way (also the answer to an earlier
        // try of this very request, asked again after no answer came).
        let (ack, keep, seq) = (msg.ack, msg.keep, msg.seq);
        self.give_back(
            msg.reader,
            |s| s > ack && s != keep,
            "its answer never reached the reader",
        );
        // An earlier read of this reader still waiting was given up.
        self.reads.retain(|w| w.reader != msg.reader);
        let (tx, rx) = oneshot::channel();
        self.reads.push_back(WaitingRead {
            reader: msg.reader,
            node: msg.node,
            seq,
            max: (msg.max as usize).clamp(1, MAX_BATCH),
            since: Instant::now(),
            reply: tx,
        });
        self.answer();
        let mut rx = rx;
        match rx.try_recv() {
            Ok(reply) => Response::reply(reply),
            Err(_) => Response::fut(async move { rx.await.unwrap_or(ReadReply::Again) }),
        }
    }
}

impl<T: WireType + Send + 'static> Handler<Write> for QueueActor<T> {
    type Result = Response<WriteReply>;

    fn handle(&mut self, msg: Write, _: &mut actix::Context<Self>) -> Self::Result {
        if msg.item.tag != tag_of::<T>() {
            msg.item.discard();
            return Response::reply(WriteReply::Refused(self.wrong_type()));
        }
        if self
            .written
            .get(&msg.writer)
            .is_some_and(|(_, last)| *last >= msg.seq)
        {
            // Asked again after its answer was lost: it is written already.
            return Response::reply(WriteReply::Written);
        }
        let item = match Incoming::owned(msg.item)
            .open::<T>()
            .map_err(|e| e.to_string())
            .and_then(|view| view.to_owned().map_err(|e| e.to_string()))
        {
            Ok(item) => item,
            Err(e) => {
                return Response::reply(WriteReply::Refused(format!(
                    "the item failed validation ({e}); run the same program in the parent and its children"
                )));
            }
        };
        // The same write asked again while it still waits: one answer.
        self.writes
            .retain(|w| !(w.writer == msg.writer && w.seq == msg.seq));
        let (tx, rx) = oneshot::channel();
        self.writes.push_back(Box::new(WaitingWrite {
            writer: msg.writer,
            node: msg.node,
            seq: msg.seq,
            item,
            since: Instant::now(),
            reply: tx,
        }));
        self.answer();
        let mut rx = rx;
        match rx.try_recv() {
            Ok(reply) => Response::reply(reply),
            Err(_) => Response::fut(async move { rx.await.unwrap_or(WriteReply::Again) }),
        }
    }
}

impl<T: WireType + Send + 'static> Handler<Ack> for QueueActor<T> {
    type Result = ();

    fn handle(&mut self, msg: Ack, _: &mut actix::Context<Self>) {
        if msg.give_back != 0 {
            let give_back = msg.give_back;
            self.give_back(
                msg.reader,
                |s| s == give_back,
                "its reader left before handing it out",
            );
        }
        self.acknowledge(msg.reader, msg.ack);
    }
}

impl<T: WireType + Send + 'static> Handler<Close> for QueueActor<T> {
    type Result = ();

    fn handle(&mut self, _: Close, _: &mut actix::Context<Self>) {
        self.shared.close();
        self.answer();
    }
}

/// Puts items a reader could not take back at the front of the queue.
pub(in crate::workqueue) fn requeue<T>(shared: &Shared<T>, items: Vec<T>, why: &str) {
    if items.is_empty() {
        return;
    }
    tracing::warn!(queue = %shared.name, items = items.len(), "a reader could not take its items ({why}); they go back to the front of the queue");
    let mut state = shared.lock();
    for item in items.into_iter().rev() {
        state.to_workers.push_front(item);
    }
    drop(state);
    shared.wake();
}
