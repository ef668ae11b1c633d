//! Messages from one peer that wait for room in a full inbox, so that the
//! peer's messages for other actors, and its replies, go on.
//!
//! A message for an actor (or raw mailbox) with no free slot is *parked*:
//! it starts a queue for that target, and one small task waits for a slot
//! of that target and hands it back to the dispatcher, which then delivers
//! the queue's head with it, and as many after it as find free slots. Every
//! later message for a target with a queue joins the end of it, so the
//! messages of one peer to one target go in in the order sent. Targets
//! whose inbox has room are not held up.
//!
//! A confirmed post's receipt says that everything the peer sent before it
//! is in, whatever the target: it is held back while an earlier message
//! of that peer is parked, and goes out once those are in.
//!
//! The queues of one peer share one budget (`parked_frames`,
//! `parked_bytes` of [`crate::transport::TransportConfig`]); while it is
//! spent the dispatcher takes no data frames from that peer (its replies
//! still), and QUIC flow control makes the peer's sends wait: backpressure
//! stays end to end, and the memory held is bounded by configuration.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::actor::{ByteSink, Inbound, LocalEntry};
use crate::id::ActorId;
use crate::transport::TransportConfig;
use crate::wire::{Buffer, FrameHeader};

use super::super::mailbox::Delivery;

/// What a message that found its target's inbox full waits for.
pub(crate) enum Wait {
    /// A slot in this actor's mailbox.
    Slot(Arc<LocalEntry>),
    /// Room in this raw mailbox.
    Mailbox(mpsc::Sender<Delivery>),
}

/// A slot taken in an actor's mailbox, as the one thing it is for: making
/// the [`Inbound`] that holds it (the slot goes back when that is handled,
/// or when this is dropped unused).
pub(crate) type Held = Box<dyn FnOnce(&FrameHeader, Buffer, Option<ByteSink>) -> Inbound + Send>;

/// Room that a wait ended with, taken for the message at the head of its
/// target's queue.
pub(crate) enum Room {
    /// A slot in this actor's mailbox (if the target is still this actor).
    Slot(Arc<LocalEntry>, Held),
    /// Room in this raw mailbox (if the target is still this mailbox).
    Mailbox(mpsc::Sender<Delivery>, mpsc::OwnedPermit<Delivery>),
    /// The mailbox closed while the message waited: look the target up again.
    Retry,
}

/// The `Reply` (or `ReplyError`) frame that confirms a post.
pub(crate) type Receipt = (FrameHeader, Buffer);

/// A message given back because its target's inbox is full.
pub(crate) struct Blocked {
    /// Its frame header.
    pub header: FrameHeader,
    /// Its payload, as it arrived.
    pub payload: Buffer,
    /// What it waits for.
    pub wait: Wait,
}

/// One target's messages, in arrival order (each with its place in the
/// peer's order), and the task that waits for room for the first of them.
struct Queue {
    frames: VecDeque<(u64, FrameHeader, Buffer)>,
    waiter: Waiter,
}

/// A task waiting for room; aborted if the dispatcher goes away first.
struct Waiter(tokio::task::JoinHandle<()>);

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The parked messages of one peer and their budget.
pub(super) struct Parked {
    queues: HashMap<ActorId, Queue>,
    /// Receipts held back by their place in the peer's order.
    receipts: BTreeMap<u64, Receipt>,
    /// The place of the last message that arrived.
    arrived: u64,
    /// Messages and receipts held.
    frames: usize,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    /// Waiters report here. Unbounded, yet it holds at most one entry per
    /// queue: a queue has one waiter at a time.
    room_tx: mpsc::UnboundedSender<(ActorId, Room)>,
    room_rx: mpsc::UnboundedReceiver<(ActorId, Room)>,
}

impl Parked {
    /// No messages held; the budget from `config`.
    pub fn new(config: &TransportConfig) -> Self {
        let (room_tx, room_rx) = mpsc::unbounded_channel();
        Self {
            queues: HashMap::new(),
            receipts: BTreeMap::new(),
            arrived: 0,
            frames: 0,
            bytes: 0,
            max_frames: config.parked_frames.max(1),
            max_bytes: config.parked_bytes.max(1),
            room_tx,
            room_rx,
        }
    }

    /// True when no message is held.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The place in the peer's order of a message that just arrived.
    pub fn arrive(&mut self) -> u64 {
        self.arrived += 1;
        self.arrived
    }

    /// How many data frames the dispatcher may take now: 0 while the
    /// budget is spent.
    pub fn room(&self) -> usize {
        if self.bytes >= self.max_bytes {
            0
        } else {
            self.max_frames.saturating_sub(self.frames)
        }
    }

    /// True when messages for `target` are held: a later one must queue
    /// behind them.
    pub fn holds(&self, target: ActorId) -> bool {
        !self.queues.is_empty() && self.queues.contains_key(&target)
    }

    /// Puts the message at place `at` behind the ones held for its target
    /// (which [`Parked::holds`] said exist).
    pub fn push(&mut self, at: u64, header: FrameHeader, payload: Buffer) {
        if let Some(queue) = self.queues.get_mut(&header.target) {
            self.frames += 1;
            self.bytes += payload.len();
            queue.frames.push_back((at, header, payload));
        }
    }

    /// Sends the receipt of the post at place `at` through `send` now if
    /// no earlier message is held, else once the earlier ones are in.
    pub fn receipt(&mut self, at: u64, receipt: Receipt, send: impl FnMut(Receipt)) {
        self.frames += 1;
        self.receipts.insert(at, receipt);
        self.send_due(send);
    }

    /// Sends, in order, the receipts that no held message precedes.
    fn send_due(&mut self, mut send: impl FnMut(Receipt)) {
        if self.receipts.is_empty() {
            return;
        }
        let oldest = self
            .queues
            .values()
            .filter_map(|queue| queue.frames.front().map(|(at, ..)| *at))
            .min()
            .unwrap_or(u64::MAX);
        while let Some(entry) = self.receipts.first_entry()
            && *entry.key() < oldest
        {
            self.frames -= 1;
            send(entry.remove());
        }
    }

    /// Holds the message at place `at` whose target's inbox is full, the
    /// first for its target, and starts waiting for room there.
    pub fn park(&mut self, at: u64, blocked: Blocked) {
        let Blocked {
            header,
            payload,
            wait,
        } = blocked;
        let target = header.target;
        self.frames += 1;
        self.bytes += payload.len();
        let waiter = spawn_waiter(target, wait, self.room_tx.clone());
        let previous = self.queues.insert(
            target,
            Queue {
                frames: VecDeque::from([(at, header, payload)]),
                waiter,
            },
        );
        debug_assert!(previous.is_none(), "a second queue for one target");
        if self.room() == 0 {
            tracing::debug!(
                frames = self.frames,
                bytes = self.bytes,
                "inboxes full: no more messages are read from this peer until some go in"
            );
        }
    }

    /// The next target whose wait ended, with the room it found. Never
    /// resolves while nothing is held.
    pub async fn next_room(&mut self) -> (ActorId, Room) {
        match self.room_rx.recv().await {
            Some(ready) => ready,
            // `self` holds a sender: the channel never closes.
            None => std::future::pending().await,
        }
    }

    /// Delivers `target`'s held messages in order through `offer`, the
    /// first with `room`, until one is given back (then waits for room for
    /// it) or none is left; sends the receipts that are due then.
    pub fn resume(
        &mut self,
        target: ActorId,
        room: Room,
        mut offer: impl FnMut(FrameHeader, Buffer, Option<Room>) -> Result<Option<Receipt>, Blocked>,
        send: impl FnMut(Receipt),
    ) {
        let Some(queue) = self.queues.get_mut(&target) else {
            return;
        };
        let mut room = Some(room);
        let mut blocked = false;
        while let Some((at, header, payload)) = queue.frames.pop_front() {
            let len = payload.len();
            match offer(header, payload, room.take()) {
                Ok(receipt) => {
                    self.frames -= 1;
                    self.bytes -= len;
                    if let Some(receipt) = receipt {
                        self.frames += 1;
                        self.receipts.insert(at, receipt);
                    }
                }
                Err(Blocked {
                    header,
                    payload,
                    wait,
                }) => {
                    queue.frames.push_front((at, header, payload));
                    queue.waiter = spawn_waiter(target, wait, self.room_tx.clone());
                    blocked = true;
                    break;
                }
            }
        }
        if !blocked {
            self.queues.remove(&target);
        }
        self.send_due(send);
    }
}

/// Waits for room at `target` and reports it to the dispatcher. The slot
/// it takes waits in line with local senders, so a peer's messages get
/// their turn.
fn spawn_waiter(
    target: ActorId,
    wait: Wait,
    report: mpsc::UnboundedSender<(ActorId, Room)>,
) -> Waiter {
    Waiter(tokio::spawn(async move {
        let room = match wait {
            Wait::Slot(entry) => {
                let slot = entry.slot().await;
                let held: Held = Box::new(move |header, payload, reply| {
                    Inbound::new(header, payload, reply, Some(slot))
                });
                Room::Slot(entry, held)
            }
            Wait::Mailbox(mailbox) => match mailbox.clone().reserve_owned().await {
                Ok(permit) => Room::Mailbox(mailbox, permit),
                Err(_) => Room::Retry,
            },
        };
        // A dispatcher that is gone gets nothing; the room is given back.
        let _ = report.send((target, room));
    }))
}
