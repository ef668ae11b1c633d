//! The owner's side: the service that answers the children's requests.

use super::*;

/// True in a process whose queues its children may reach: a
/// `#[parallel::main]` program that is not itself a child.
pub(in crate::workqueue) fn serves_children() -> bool {
    crate::process::context::MAIN_RAN.load(Ordering::Relaxed) && !crate::process::is_child()
}

/// Where a queue's service finds its node.
pub(in crate::workqueue) enum Host {
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
            Host::Parent => crate::process::Tree::global().node(),
            #[cfg(test)]
            Host::Node(node) => Some(node.clone()),
        }
    }
}

/// Serves `shared` to other processes' handles, on a thread of its own,
/// from when `host` has a node until the owner is gone and all is answered.
pub(in crate::workqueue) fn serve<T: WireType + Send + 'static>(
    shared: Arc<Shared<T>>,
    host: Host,
) {
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
pub(in crate::workqueue) async fn orphan_read<T>(
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
