//! A queue across processes. The parent's queue is served by a
//! [`Service`]: a mailbox at the queue's id ([`queue_id`]) on the parent's
//! node, read on a thread of its own. A child's handle is a [`Client`]: two
//! mailboxes on the child's node (one for the replies to its reads, one
//! for the replies to its writes) and the parent's node to post requests to.
//!
//! One request, one reply: a read asks for up to `max` items and is answered
//! once at least one is there (or the queue is closed); a write carries its
//! item and is answered once the item is in the owner's lane (backpressure:
//! not before there is room). Replies carrying items are posted with a
//! delivery receipt; without one, the items go back to the queue.
//!
//! Acknowledgements: the service keeps every batch it handed to a reader
//! until the reader acknowledges it. A read request carries `ack`, the
//! number of the last reply whose items the reader is done with (it asks
//! on past them); a reader that read `None` sends a last `ACK`. Batches of a
//! reader whose node goes down before acknowledging go back to the front of
//! the queue. A reader asks for its next batch as soon as it starts handing
//! out the current one (one request ahead), so the round trip overlaps the
//! work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rkyv::{Archive, Deserialize, Serialize};

use crate::id::{ActorId, NodeId};
use crate::remote::value::tag_of;
use crate::remote::{Delivery, Mailbox, Node, RemoteNode, RequestError};
use crate::wire::{Buffer, DecodeError, EncodeError, WireType, aligned_copy, decode_owned, encode};

use super::{ReadError, SERVE_WAIT, Shared, WriteError};

/// Operation codes of the posts between a queue's service and its handles.
mod op {
    /// A [`super::Request`] to the service.
    pub const REQUEST: u8 = 1;
    /// "Are you still there?" — the delivery receipt is the answer.
    pub const PROBE: u8 = 2;
    /// A [`super::Reply`] to a handle.
    pub const REPLY: u8 = 3;
}

/// What a request asks for.
mod kind {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const CLOSE: u8 = 3;
    /// Acknowledges `ack`; no reply.
    pub const ACK: u8 = 4;
}

/// How a reply answers.
mod status {
    pub const OK: u8 = 0;
    pub const CLOSED: u8 = 1;
    pub const REFUSED: u8 = 2;
}

/// Requests the service's mailbox holds before the children's posts wait.
const MAILBOX_CAPACITY: usize = 256;
/// The most items one read takes.
const MAX_BATCH: usize = 4096;
/// How many items a child's read asks its parent for per round trip unless
/// the handle says otherwise ([`super::WorkQueue::with_prefetch`]); the
/// parent shares what is queued among the readers waiting, so a reader gets
/// fewer when others wait too.
pub const DEFAULT_PREFETCH: usize = 32;
/// How often the service looks for readers whose node went down while they
/// held unacknowledged items.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// How often a handle waiting for a reply checks the service is still there.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The longest pause between two looks for the parent's node.
const ATTACH_PAUSE: Duration = Duration::from_millis(100);

/// A handle's request.
#[derive(Archive, Serialize, Deserialize, Debug)]
struct Request {
    kind: u8,
    /// The handle's mailbox for the reply.
    reply_to: ActorId,
    /// Matches the reply to the request.
    seq: u64,
    /// For a read: the most items to take.
    max: u32,
    /// For a read or an ack: the reader is done with the items of every
    /// reply up to this number.
    ack: u64,
    /// For a write: the archived item.
    item: Vec<u8>,
}

/// The service's answer to one request.
#[derive(Archive, Serialize, Deserialize, Debug)]
struct Reply {
    seq: u64,
    status: u8,
    /// For a read: the archived items, in queue order.
    items: Vec<Vec<u8>>,
    /// Why, for a refusal.
    message: String,
}

/// The id of the queue named `name`: the same in every process (a
/// name-based UUID, version 8, from SHA-256 of the name).
pub fn queue_id(name: &str) -> ActorId {
    ActorId::named("para||el work queue", name)
}

/// True in a process whose queues its children may reach: a
/// `#[parallel::main]` program that is not itself a child.
pub(super) fn serves_children() -> bool {
    crate::process::parent::MAIN_RAN.load(Ordering::Relaxed) && !crate::process::is_child()
}

/// Where a queue's service finds its node.
pub(super) enum Host {
    /// The node this process's children join (there once it forked).
    Parent,
    /// A node given by a test.
    #[cfg(test)]
    Node(Node),
}

impl Host {
    async fn node(&self) -> Option<Node> {
        match self {
            // Fails without side effects until the first fork started the
            // node: a thread of its own has no actix System to start one.
            Host::Parent => crate::process::parent::state()
                .await
                .ok()
                .map(|s| s.node.clone()),
            #[cfg(test)]
            Host::Node(node) => Some(node.clone()),
        }
    }
}

/// Serves `shared` to other processes' handles, on a thread of its own,
/// from when `host` has a node until the owner is gone and all is answered.
pub(super) fn serve<T: WireType + Send + 'static>(shared: Arc<Shared<T>>, host: Host) {
    let spawned = std::thread::Builder::new()
        .name("para||el wq".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(queue = %shared.name, "work queue not served to other processes: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                if let Some((node, mailbox)) = attach(&shared, host).await {
                    Service::new(shared, node, mailbox).run().await;
                }
            });
        });
    if let Err(e) = spawned {
        tracing::error!("work queue not served to other processes: no thread ({e})");
    }
}

/// Opens the queue's mailbox on the host's node once there is one.
async fn attach<T>(shared: &Shared<T>, host: Host) -> Option<(Node, Mailbox)> {
    let id = queue_id(&shared.name);
    let mut pause = Duration::from_millis(1);
    loop {
        if shared.lock().owner_gone {
            return None;
        }
        if let Some(node) = host.node().await {
            match node.open_mailbox_at(id, MAILBOX_CAPACITY) {
                Ok(mailbox) => return Some((node, mailbox)),
                // An earlier queue of that name is still draining.
                Err(e) => tracing::debug!(queue = %shared.name, "{e}; waiting"),
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(ATTACH_PAUSE);
    }
}

/// A request waiting for its answer.
struct Waiting {
    from: NodeId,
    reply_to: ActorId,
    seq: u64,
    max: usize,
}

enum Answer<T> {
    Items(Vec<T>),
    Status(u8, String),
}

/// The batches one reader (one reply mailbox) holds and has not
/// acknowledged yet, oldest first.
struct Holder<T> {
    from: NodeId,
    batches: VecDeque<(u64, Vec<T>)>,
}

/// A reply with items that could not be delivered: (reader, seq, why).
type Undelivered = (ActorId, u64, String);

/// The owner's side of a queue for other processes.
struct Service<T> {
    shared: Arc<Shared<T>>,
    node: Node,
    mailbox: Mailbox,
    reads: VecDeque<Waiting>,
    writes: VecDeque<(Waiting, T)>,
    /// Replies posted and not yet confirmed.
    in_flight: Arc<AtomicUsize>,
    /// Items handed to readers and not acknowledged yet, by reply mailbox.
    holders: std::collections::HashMap<ActorId, Holder<T>>,
    undelivered_tx: tokio::sync::mpsc::UnboundedSender<Undelivered>,
    undelivered: tokio::sync::mpsc::UnboundedReceiver<Undelivered>,
}

impl<T: WireType + Send + 'static> Service<T> {
    fn new(shared: Arc<Shared<T>>, node: Node, mailbox: Mailbox) -> Self {
        let (undelivered_tx, undelivered) = tokio::sync::mpsc::unbounded_channel();
        Self {
            shared,
            node,
            mailbox,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            holders: std::collections::HashMap::new(),
            undelivered_tx,
            undelivered,
        }
    }

    async fn run(mut self) {
        loop {
            if self.answer() {
                // Nobody will serve the queue any more: answer what already
                // arrived, then close the mailbox (later posts are refused,
                // which a waiting handle's probe reads as "closed").
                match self.mailbox.try_recv() {
                    Some(d) => self.take(d),
                    None => return,
                }
                continue;
            }
            self.sweep();
            let watching = !self.holders.is_empty();
            tokio::select! {
                d = self.mailbox.recv() => match d {
                    Some(d) => self.take(d),
                    None => return,
                },
                Some((reader, seq, why)) = self.undelivered.recv() => {
                    self.give_back(reader, |s| s == seq, &why);
                }
                _ = self.shared.service.notified() => {}
                _ = tokio::time::sleep(SWEEP_EVERY), if watching => {}
            }
        }
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

    /// Gives back what readers whose node went down held unacknowledged.
    fn sweep(&mut self) {
        let node = self.node.clone();
        let alive = |from: NodeId| node.remote(from).is_some_and(|r| r.is_alive());
        if self.holders.values().all(|h| alive(h.from)) {
            return;
        }
        // Take their last posts first: a reader that read `None` sent its
        // last acknowledgement before its process ended.
        while let Some(d) = self.mailbox.try_recv() {
            self.take(d);
        }
        let gone: Vec<ActorId> = self
            .holders
            .iter()
            .filter(|(_, h)| !alive(h.from))
            .map(|(id, _)| *id)
            .collect();
        for reader in gone {
            self.give_back(reader, |_| true, "its node went down before it was done");
        }
    }

    /// Answers every waiting request that can be answered now. True when
    /// the service is done: the owner is gone and nothing is left to hand
    /// out, wait for or confirm.
    fn answer(&mut self) -> bool {
        let mut replies = Vec::new();
        let done;
        {
            let mut state = self.shared.lock();
            let mut changed = false;
            let node = &self.node;
            // A reader whose node is gone reads nothing more.
            self.reads
                .retain(|w| node.remote(w.from).is_some_and(|r| r.is_alive()));
            while let Some(max) = self.reads.front().map(|w| w.max) {
                let answer = if !state.to_workers.is_empty() {
                    changed = true;
                    // A fair share for each reader waiting.
                    let share = state.to_workers.len().div_ceil(self.reads.len());
                    let n = max.min(share);
                    Answer::Items(state.to_workers.drain(..n).collect())
                } else if state.closed {
                    Answer::Status(status::CLOSED, String::new())
                } else {
                    break;
                };
                if let Some(w) = self.reads.pop_front() {
                    replies.push((w, answer));
                }
            }
            while !self.writes.is_empty() {
                let answer = if state.closed {
                    // The writer still holds its item and gets it back.
                    Answer::Status(status::CLOSED, String::new())
                } else if state.to_owner.len() < self.shared.capacity {
                    Answer::Status(status::OK, String::new())
                } else {
                    break;
                };
                if let Some((w, item)) = self.writes.pop_front() {
                    if matches!(answer, Answer::Status(status::OK, _)) {
                        state.to_owner.push_back(item);
                        changed = true;
                    }
                    replies.push((w, answer));
                }
            }
            if changed {
                self.shared.changed.notify_all();
            }
            done = state.owner_gone
                && state.to_workers.is_empty()
                && self.reads.is_empty()
                && self.writes.is_empty()
                && self.in_flight.load(Ordering::Acquire) == 0;
        }
        let answered = !replies.is_empty();
        for (w, answer) in replies {
            self.reply(w, answer);
        }
        done && !answered
    }

    /// Files one delivery: a request waits for its answer, or is refused.
    fn take(&mut self, d: Delivery) {
        match d.op {
            op::PROBE => {}
            op::REQUEST => self.request(d),
            other => {
                tracing::warn!(queue = %self.shared.name, op = other, from = %d.from, "unexpected post to a work queue ignored")
            }
        }
    }

    fn request(&mut self, d: Delivery) {
        let request = match decode_owned::<Request>(&d.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(queue = %self.shared.name, from = %d.from, "unreadable work queue request dropped: {e}");
                return;
            }
        };
        let w = Waiting {
            from: d.from,
            reply_to: request.reply_to,
            seq: request.seq,
            max: (request.max as usize).clamp(1, MAX_BATCH),
        };
        if d.type_tag != tag_of::<T>() {
            let message = format!(
                "the queue holds items of type {}; open it with that type",
                std::any::type_name::<T>()
            );
            self.reply(w, Answer::Status(status::REFUSED, message));
            return;
        }
        match request.kind {
            kind::READ => {
                self.acknowledge(w.reply_to, request.ack);
                self.reads.push_back(w);
            }
            kind::ACK => self.acknowledge(w.reply_to, request.ack),
            kind::WRITE => match decode_owned::<T>(&aligned_copy(&request.item)) {
                Ok(item) => self.writes.push_back((w, item)),
                Err(e) => {
                    let message = format!("the item failed validation: {e}");
                    self.reply(w, Answer::Status(status::REFUSED, message));
                }
            },
            kind::CLOSE => {
                self.shared.close();
                self.reply(w, Answer::Status(status::OK, String::new()));
            }
            other => {
                let message = format!(
                    "unknown request {other}; run the same program in the parent and its children"
                );
                self.reply(w, Answer::Status(status::REFUSED, message));
            }
        }
    }

    /// Posts an answer. Items are kept until the reader acknowledges them;
    /// they go back if the reply is not delivered or the reader's node goes
    /// down first.
    fn reply(&mut self, w: Waiting, answer: Answer<T>) {
        let Some(remote) = self.node.remote(w.from) else {
            if let Answer::Items(items) = answer {
                requeue(&self.shared, items, "its node is gone");
            }
            return;
        };
        let (status, items, message) = match answer {
            Answer::Items(items) => (status::OK, items, String::new()),
            Answer::Status(status, message) => (status, Vec::new(), message),
        };
        let mut archived = Vec::with_capacity(items.len());
        let mut kept = Vec::with_capacity(items.len());
        for item in items {
            match encode(&item) {
                Ok(bytes) => {
                    archived.push(bytes.to_vec());
                    kept.push(item);
                }
                Err(e) => {
                    tracing::error!(queue = %self.shared.name, "an item that cannot be serialized was dropped: {e}")
                }
            }
        }
        let reply = Reply {
            seq: w.seq,
            status,
            items: archived,
            message,
        };
        let bytes = match encode(&reply) {
            Ok(bytes) => bytes,
            Err(e) => {
                requeue(&self.shared, kept, &format!("the reply failed: {e}"));
                return;
            }
        };
        let holds = !kept.is_empty();
        if holds {
            self.holders
                .entry(w.reply_to)
                .or_insert_with(|| Holder {
                    from: w.from,
                    batches: VecDeque::new(),
                })
                .batches
                .push_back((w.seq, kept));
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = self.in_flight.clone();
        let shared = self.shared.clone();
        let undelivered = self.undelivered_tx.clone();
        tokio::spawn(async move {
            let sent = remote.post_confirmed(w.reply_to, op::REPLY, 0, bytes).await;
            if let Err(e) = sent
                && holds
            {
                let _ = undelivered.send((w.reply_to, w.seq, e.to_string()));
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
            shared.service.notify_one();
        });
    }
}

/// Puts items a reader could not take back at the front of the queue.
fn requeue<T>(shared: &Shared<T>, items: Vec<T>, why: &str) {
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

/// Test hook: posts a read of up to `max` items whose reply mailbox does
/// not exist, as from a reader that died while it waited.
#[cfg(test)]
pub(super) async fn orphan_read<T>(
    parent: &RemoteNode,
    name: &str,
    max: u32,
) -> Result<(), RequestError> {
    let request = Request {
        kind: kind::READ,
        reply_to: ActorId::new(),
        seq: 1,
        max,
        ack: 0,
        item: Vec::new(),
    };
    let bytes = encode(&request).map_err(|e| {
        RequestError::Remote(crate::wire::RemoteFailure {
            code: 0,
            message: e.to_string(),
        })
    })?;
    parent
        .post_confirmed(queue_id(name), op::REQUEST, tag_of::<T>(), bytes)
        .await
}

/// A worker handle on another process's queue, as `WorkQueue` uses it.
pub(super) trait Remote<T>: Send + Sync {
    fn name(&self) -> &str;
    fn set_prefetch(&self, items: usize);
    fn read(&self) -> Result<Option<T>, ReadError>;
    fn write(&self, item: T) -> Result<(), WriteError<T>>;
    fn close(&self);
}

/// One mailbox of a handle and the number of its last request.
struct Channel {
    mailbox: Mailbox,
    seq: u64,
}

struct ReadLane<T> {
    channel: Channel,
    /// Items of reply `holding` not handed out yet.
    buffered: VecDeque<T>,
    /// The reply whose items are being handed out (0: none yet).
    holding: u64,
    /// The request asked ahead and not answered yet.
    pending: Option<u64>,
    /// The last reply acknowledged to the service.
    acked: u64,
    /// The queue is closed and drained.
    closed: bool,
}

struct Link<T> {
    parent: RemoteNode,
    runtime: tokio::runtime::Handle,
    reads: Mutex<ReadLane<T>>,
    writes: Mutex<Channel>,
}

/// Why an exchange with the service failed.
enum Failure {
    ParentGone(String),
    NotServed(Duration),
    /// The service served this handle before and is gone now: the queue is
    /// closed and drained.
    ServiceGone,
    Decode(DecodeError),
    Encode(EncodeError),
}

/// A child's handle on its parent's queue.
pub(super) struct Client<T> {
    name: String,
    queue: ActorId,
    link: Result<Link<T>, String>,
    prefetch: AtomicUsize,
    /// The service answered this handle once.
    connected: AtomicBool,
    serve_wait: Duration,
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: WireType + Send + 'static> Client<T> {
    /// A handle on the queue `name` of this child process's parent.
    pub(super) fn for_parent(name: &str) -> Self {
        let link = crate::process::child::parent_link()
            .map_err(|e| e.to_string())
            .and_then(|(parent, runtime)| {
                let node = Node::current()
                    .ok_or_else(|| "this process runs no node any more".to_string())?;
                Ok(Link::open(&node, parent, runtime))
            });
        Self::new(name, link, SERVE_WAIT)
    }

    /// A handle on the queue `name` served on `parent`, with replies to `node`.
    #[cfg(test)]
    pub(super) fn on(
        name: &str,
        node: &Node,
        parent: RemoteNode,
        runtime: tokio::runtime::Handle,
        serve_wait: Duration,
    ) -> Self {
        Self::new(name, Ok(Link::open(node, parent, runtime)), serve_wait)
    }

    fn new(name: &str, link: Result<Link<T>, String>, serve_wait: Duration) -> Self {
        Self {
            name: name.to_string(),
            queue: queue_id(name),
            link,
            prefetch: AtomicUsize::new(DEFAULT_PREFETCH),
            connected: AtomicBool::new(false),
            serve_wait,
        }
    }

    /// Sends a request and waits for its reply.
    fn exchange(
        &self,
        link: &Link<T>,
        channel: &mut Channel,
        kind: u8,
        max: u32,
        item: Vec<u8>,
    ) -> Result<Reply, Failure> {
        let seq = self.send(link, channel, kind, max, 0, item)?;
        self.wait(link, channel, seq)
    }

    /// Sends a request; returns its number.
    fn send(
        &self,
        link: &Link<T>,
        channel: &mut Channel,
        kind: u8,
        max: u32,
        ack: u64,
        item: Vec<u8>,
    ) -> Result<u64, Failure> {
        channel.seq += 1;
        let seq = channel.seq;
        let request = Request {
            kind,
            reply_to: channel.mailbox.id(),
            seq,
            max,
            ack,
            item,
        };
        let bytes = encode(&request).map_err(Failure::Encode)?;
        if kind == kind::ACK {
            // Confirmed: in the service's mailbox before this process may end.
            return link
                .runtime
                .block_on(
                    link.parent
                        .post_confirmed(self.queue, op::REQUEST, tag_of::<T>(), bytes),
                )
                .map(|()| seq)
                .map_err(|e| Failure::ParentGone(e.to_string()));
        }
        self.post(link, bytes)?;
        Ok(seq)
    }

    /// Waits for the reply to request `seq`.
    fn wait(&self, link: &Link<T>, channel: &mut Channel, seq: u64) -> Result<Reply, Failure> {
        if let Some(d) = channel.mailbox.try_recv()
            && let Some(reply) = accept(d, seq)?
        {
            return Ok(reply);
        }
        let parent = &link.parent;
        let queue = self.queue;
        let mailbox = &mut channel.mailbox;
        link.runtime.block_on(async move {
            loop {
                tokio::select! {
                    d = mailbox.recv() => {
                        let Some(d) = d else {
                            return Err(Failure::ParentGone("this process's node stopped".into()));
                        };
                        if let Some(reply) = accept(d, seq)? {
                            return Ok(reply);
                        }
                    }
                    _ = tokio::time::sleep(PROBE_EVERY) => probe(parent, queue).await?,
                }
            }
        })
    }

    /// Posts a request to the service. Until the service first took one,
    /// with a receipt, asking again while the parent does not serve the
    /// queue (yet), for at most `serve_wait`.
    fn post(&self, link: &Link<T>, bytes: Buffer) -> Result<(), Failure> {
        let tag = tag_of::<T>();
        if self.connected.load(Ordering::Acquire) {
            return link
                .runtime
                .block_on(link.parent.post(self.queue, op::REQUEST, tag, bytes))
                .map_err(|e| Failure::ParentGone(e.to_string()));
        }
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let sent = link.runtime.block_on(link.parent.post_confirmed(
                self.queue,
                op::REQUEST,
                tag,
                bytes.clone(),
            ));
            match sent {
                Ok(()) => {
                    self.connected.store(true, Ordering::Release);
                    return Ok(());
                }
                Err(RequestError::Remote(_)) if start.elapsed() < self.serve_wait => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(ATTACH_PAUSE);
                }
                Err(RequestError::Remote(_)) => return Err(Failure::NotServed(self.serve_wait)),
                Err(e) => return Err(Failure::ParentGone(e.to_string())),
            }
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
            Failure::Decode(error) => ReadError::Decode { name, error },
            Failure::Encode(e) => ReadError::Refused {
                name,
                message: format!("the request could not be serialized: {e}"),
            },
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
            Failure::Decode(e) => WriteError::Refused {
                item,
                message: format!("the parent's answer failed validation: {e}"),
            },
            Failure::Encode(error) => WriteError::Encode { item, error },
        }
    }
}

impl<T> Link<T> {
    fn open(node: &Node, parent: RemoteNode, runtime: tokio::runtime::Handle) -> Self {
        let channel = || Channel {
            mailbox: node.open_mailbox(4),
            seq: 0,
        };
        Link {
            parent,
            runtime,
            reads: Mutex::new(ReadLane {
                channel: channel(),
                buffered: VecDeque::new(),
                holding: 0,
                pending: None,
                acked: 0,
                closed: false,
            }),
            writes: Mutex::new(channel()),
        }
    }
}

/// The reply to request `seq`, if `d` is it; stale replies are skipped.
fn accept(d: Delivery, seq: u64) -> Result<Option<Reply>, Failure> {
    if d.op != op::REPLY {
        tracing::warn!(op = d.op, from = %d.from, "unexpected post to a work queue handle ignored");
        return Ok(None);
    }
    let reply = decode_owned::<Reply>(&d.payload).map_err(Failure::Decode)?;
    if reply.seq != seq {
        tracing::debug!(
            got = reply.seq,
            want = seq,
            "stale work queue reply skipped"
        );
        return Ok(None);
    }
    Ok(Some(reply))
}

/// Checks the service still takes posts.
async fn probe(parent: &RemoteNode, queue: ActorId) -> Result<(), Failure> {
    match parent
        .post_confirmed(queue, op::PROBE, 0, Buffer::new())
        .await
    {
        Ok(()) => Ok(()),
        Err(RequestError::Remote(_)) => Err(Failure::ServiceGone),
        Err(e) => Err(Failure::ParentGone(e.to_string())),
    }
}

impl<T: WireType + Send + 'static> Remote<T> for Client<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn set_prefetch(&self, items: usize) {
        self.prefetch
            .store(items.clamp(1, MAX_BATCH), Ordering::Relaxed);
    }

    fn read(&self) -> Result<Option<T>, ReadError> {
        let link = self.link.as_ref().map_err(|reason| ReadError::ParentGone {
            name: self.name.clone(),
            reason: reason.clone(),
        })?;
        let mut guard = lock(&link.reads);
        let lane = &mut *guard;
        let max = self.prefetch.load(Ordering::Relaxed) as u32;
        loop {
            if lane.buffered.is_empty() {
                // This call asks on past the last item of `holding`: done.
                let done = lane.holding;
                if lane.closed {
                    if done > lane.acked {
                        lane.acked = done;
                        if let Err(failure) =
                            self.send(link, &mut lane.channel, kind::ACK, 0, done, Vec::new())
                        {
                            tracing::debug!(queue = %self.name, "the last acknowledgement was not delivered: {}", self.read_error(failure));
                        }
                    }
                    return Ok(None);
                }
            } else {
                let item = lane.buffered.pop_front();
                // One request ahead, acknowledging the replies before
                // `holding` (this call asks on past their last item). A
                // failure shows again at the next read that waits.
                if lane.pending.is_none() {
                    let ack = lane.holding.saturating_sub(1).max(lane.acked);
                    if let Ok(seq) =
                        self.send(link, &mut lane.channel, kind::READ, max, ack, Vec::new())
                    {
                        lane.acked = ack;
                        lane.pending = Some(seq);
                    }
                }
                return Ok(item);
            }
            let seq = match lane.pending.take() {
                Some(seq) => seq,
                None => {
                    let ack = lane.holding;
                    let sent = self.send(link, &mut lane.channel, kind::READ, max, ack, Vec::new());
                    match sent {
                        Ok(seq) => {
                            lane.acked = ack;
                            seq
                        }
                        Err(failure) => return Err(self.read_error(failure)),
                    }
                }
            };
            let reply = match self.wait(link, &mut lane.channel, seq) {
                Ok(reply) => reply,
                Err(Failure::ServiceGone) => {
                    lane.closed = true;
                    return Ok(None);
                }
                Err(failure) => return Err(self.read_error(failure)),
            };
            match reply.status {
                status::OK => {
                    lane.holding = reply.seq;
                    let mut bad = None;
                    for bytes in &reply.items {
                        match decode_owned::<T>(&aligned_copy(bytes)) {
                            Ok(item) => lane.buffered.push_back(item),
                            Err(e) => bad = Some(e),
                        }
                    }
                    if let Some(error) = bad {
                        return Err(ReadError::Decode {
                            name: self.name.clone(),
                            error,
                        });
                    }
                }
                status::CLOSED => lane.closed = true,
                _ => {
                    return Err(ReadError::Refused {
                        name: self.name.clone(),
                        message: reply.message,
                    });
                }
            }
        }
    }

    fn write(&self, item: T) -> Result<(), WriteError<T>> {
        let link = match &self.link {
            Ok(link) => link,
            Err(reason) => {
                return Err(WriteError::ParentGone {
                    item,
                    reason: reason.clone(),
                });
            }
        };
        let bytes = match encode(&item) {
            Ok(bytes) => bytes.to_vec(),
            Err(error) => return Err(WriteError::Encode { item, error }),
        };
        let mut channel = lock(&link.writes);
        match self.exchange(link, &mut channel, kind::WRITE, 1, bytes) {
            Ok(reply) => match reply.status {
                status::OK => Ok(()),
                status::CLOSED => Err(WriteError::Closed(item)),
                _ => Err(WriteError::Refused {
                    item,
                    message: reply.message,
                }),
            },
            Err(failure) => Err(self.write_error(failure, item)),
        }
    }

    fn close(&self) {
        let Ok(link) = &self.link else { return };
        let mut channel = lock(&link.writes);
        if let Err(Failure::ParentGone(reason)) =
            self.exchange(link, &mut channel, kind::CLOSE, 0, Vec::new())
        {
            tracing::debug!(queue = %self.name, "closing a work queue whose parent is gone: {reason}");
        }
    }
}
