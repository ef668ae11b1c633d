//! A child's side: the handle that posts requests to the parent's queue.

use super::*;

/// A worker handle on another process's queue, as `WorkQueue` uses it.
pub(in crate::workqueue) trait Remote<T>: Send + Sync {
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
pub(in crate::workqueue) struct Client<T> {
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
    pub(in crate::workqueue) fn for_parent(name: &str) -> Self {
        let link = crate::process::child::link()
            .map_err(|e| e.to_string())
            .map(|link| {
                Link::open(
                    link.node(),
                    link.parent_node().clone(),
                    link.runtime().clone(),
                )
            });
        Self::new(name, link, SERVE_WAIT)
    }

    /// A handle on the queue `name` served on `parent`, with replies to `node`.
    #[cfg(test)]
    pub(in crate::workqueue) fn on(
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
