//! A connected, authenticated peer: the handle the layer above sends with,
//! and the stream of frames it receives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc, watch};

use crate::id::NodeId;
use crate::wire::{Buffer, FrameHeader, Payload};

use super::direct::{GivenBack, LaneSlot, Refused};
use super::error::{DownReason, PeerGone, TryReserveError};
use super::fence::{FENCED, Fences};
use super::framing::{close_code, is_reply_kind};
use super::handoff::Taker;
use super::join_line::JoinLine;
use super::lanes::Lane;

/// Something the layer above learns about a peer: it came up (once) and went
/// down (once), for connections this node accepted and ones it made.
#[derive(Debug)]
pub enum PeerEvent {
    /// A peer joined; its data frames arrive on `inbound`.
    Up {
        /// The new peer.
        peer: Peer,
        /// Its data frames, in the order it sent them.
        inbound: Inbound,
    },
    /// A peer is down and will send nothing more.
    Down {
        /// Which node.
        node: NodeId,
        /// Which connection to it ([`Peer::connection`]): a pair of nodes
        /// that joined each other at once keeps one of two connections, and
        /// the other going down says nothing about the node.
        connection: usize,
        /// Why.
        reason: DownReason,
    },
}

/// One entry of a peer's send queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A data frame; the writer sets `seq` and `len`, and answers the
    /// sender, if any, once the frame's bytes were handed to QUIC (see
    /// [`Peer::send_tracked`]).
    Frame(
        FrameHeader,
        Payload,
        Option<tokio::sync::oneshot::Sender<()>>,
    ),
    /// Nothing to send: wakes the writer to write what a direct write left
    /// ([`super::direct`]).
    Wake,
    /// Raw bytes for the small lane (test hook for malformed input).
    Raw(Vec<u8>),
    /// Ends the small lane after what is queued (test hook for truncated input).
    FinishLane,
    /// Sends what is queued, ends the lanes and answers once the peer has
    /// acknowledged every byte (an orderly shutdown loses no post).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// State shared by a peer's handles and its tasks.
#[derive(Debug)]
pub(crate) struct PeerShared {
    pub node: NodeId,
    /// The peer's incarnation, from the handshake.
    pub incarnation: u64,
    pub join_line: Option<JoinLine>,
    pub remote_addr: SocketAddr,
    pub conn: quinn::Connection,
    /// True when this node opened the connection.
    pub initiated_by_us: bool,
    down: watch::Sender<Option<DownReason>>,
    /// Set with `down` (a look without a lock, for the liveness task).
    is_down: AtomicBool,
    /// Sending half of the control lane (heartbeats, goodbye).
    pub control: Mutex<quinn::SendStream>,
    /// Test hook: heartbeats and this side's verdict stop while set.
    pub heartbeats_paused: AtomicBool,
    /// The transport's fences, where a heartbeat timeout records this peer.
    pub fences: Arc<Fences>,
    /// Frames the writers handed to QUIC (data and replies).
    pub frames_sent: AtomicU64,
    /// Starts the peer's tasks (bulk streams) where the transport's run.
    pub tasks: super::tasks::Spawner,
    /// Where replies go once the layer above named it ([`Peer::take_replies`]).
    pub(crate) replies_to: std::sync::Mutex<Option<ReplyHook>>,
    /// The largest frame payload this node takes (its `max_frame`), and so
    /// the largest it sends: the nodes of a cluster share one configuration.
    pub max_frame: u64,
    /// Small payload buffers the writers are done with, for the next messages.
    pub(crate) spares: super::spares::Spares,
    /// Small payload buffers for the frames read from the peer, handed back
    /// by the actors that decoded them.
    pub(crate) received: Arc<super::spares::Spares>,
    /// Payloads this large go on bulk streams (the small lane) or as they
    /// are (the reply lane), never by the direct path.
    pub bulk_threshold: usize,
    /// The small lane's writing state.
    pub(crate) small_lane: LaneSlot,
    /// The reply lane's writing state.
    pub(crate) reply_lane: LaneSlot,
}

/// What takes a peer's replies as they are read: see [`Peer::take_replies`].
pub(crate) struct ReplyHook(Box<dyn Fn(FrameHeader, Buffer) + Send + Sync>);

impl std::fmt::Debug for ReplyHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyHook")
    }
}

impl PeerShared {
    pub fn new(
        joined: super::handshake::Joined,
        conn: quinn::Connection,
        initiated_by_us: bool,
        control: quinn::SendStream,
        fences: Arc<Fences>,
        tasks: super::tasks::Spawner,
        config: &super::TransportConfig,
    ) -> Self {
        Self {
            node: joined.node,
            incarnation: joined.incarnation,
            join_line: joined.join_line,
            remote_addr: conn.remote_address(),
            conn,
            initiated_by_us,
            down: watch::Sender::new(None),
            is_down: AtomicBool::new(false),
            control: Mutex::new(control),
            heartbeats_paused: AtomicBool::new(false),
            fences,
            frames_sent: AtomicU64::new(0),
            tasks,
            replies_to: std::sync::Mutex::new(None),
            max_frame: config.max_frame,
            spares: super::spares::Spares::new(config.send_queue),
            received: Arc::new(super::spares::Spares::new(config.send_queue)),
            bulk_threshold: config.bulk_threshold,
            small_lane: LaneSlot::default(),
            reply_lane: LaneSlot::default(),
        }
    }

    /// The writing state of one of the long-lived lanes.
    pub(crate) fn lane(&self, lane: Lane) -> &LaneSlot {
        match lane {
            Lane::Small => &self.small_lane,
            Lane::Replies => &self.reply_lane,
        }
    }

    /// Hands `frame` to the reply hook; gives it back when there is none.
    pub(crate) fn reply_to_hook(
        &self,
        frame: (FrameHeader, Buffer),
    ) -> Option<(FrameHeader, Buffer)> {
        let hook = self.replies_to.lock().unwrap_or_else(|e| e.into_inner());
        match &*hook {
            Some(ReplyHook(take)) => {
                take(frame.0, frame.1);
                None
            }
            None => Some(frame),
        }
    }

    /// Marks the peer down (first reason wins) and closes its connection.
    /// Returns true if this call took it down.
    pub fn set_down(&self, reason: DownReason) -> bool {
        self.set_down_with(reason, None)
    }

    /// Like [`PeerShared::set_down`], closing with the given close code
    /// instead of the one that matches `reason`.
    pub fn set_down_with(&self, reason: DownReason, code: Option<u32>) -> bool {
        let code = code.unwrap_or(match &reason {
            DownReason::Goodbye => close_code::GOODBYE,
            DownReason::HeartbeatTimeout(_) => close_code::HEARTBEAT,
            DownReason::ProtocolError(_) => close_code::PROTOCOL,
            DownReason::ConnectionLost(_) | DownReason::Closed(_) => close_code::CLOSED,
        });
        if self.down.borrow().is_none() {
            self.note_fenced_by_peer();
        }
        let text = reason.to_string();
        let changed = self.down.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(reason);
                self.is_down.store(true, Ordering::Release);
                true
            } else {
                false
            }
        });
        if changed {
            self.conn
                .close(quinn::VarInt::from_u32(code), text.as_bytes());
        }
        changed
    }

    /// If the peer closed the connection because it declared this node
    /// dead, remembers that (before anyone sees the peer down), so this
    /// incarnation never dials it again.
    fn note_fenced_by_peer(&self) {
        let Some(quinn::ConnectionError::ApplicationClosed(close)) = self.conn.close_reason()
        else {
            return;
        };
        if close.error_code != quinn::VarInt::from_u32(close_code::HEARTBEAT) {
            return;
        }
        let why = format!(
            "{FENCED}: node {} declared this node dead after hearing nothing from it for too long; restart this process (a new incarnation) to rejoin",
            self.node
        );
        tracing::warn!(peer = %self.node, "{why}");
        self.fences
            .fenced_by(self.join_line.as_ref(), self.remote_addr, why);
    }

    /// True once the peer is down (as `down_reason().is_some()`, cheaper).
    pub fn is_down(&self) -> bool {
        self.is_down.load(Ordering::Acquire)
    }

    /// Why the peer is down, if it is.
    pub fn down_reason(&self) -> Option<DownReason> {
        self.down.borrow().clone()
    }

    /// Resolves once the peer is down.
    pub async fn wait_down(&self) -> DownReason {
        let mut rx = self.down.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_else(gone_unknown),
            Err(_) => gone_unknown(),
        }
    }

    fn gone(&self) -> DownReason {
        self.down_reason().unwrap_or_else(gone_unknown)
    }
}

fn gone_unknown() -> DownReason {
    DownReason::ConnectionLost("the peer's sender stopped".to_owned())
}

/// What went over one connection: [`Peer::traffic`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Traffic {
    /// Frames (messages, replies, spawns) sent.
    pub frames_sent: u64,
    /// Of those, the frames their senders put into an idle lane
    /// themselves, skipping the send queue: requests and replies written
    /// straight into it, tells gathered into its batch.
    pub frames_direct: u64,
    /// UDP payload bytes sent (QUIC headers and retransmissions included).
    pub bytes_sent: u64,
    /// UDP payload bytes received.
    pub bytes_received: u64,
    /// The current round-trip estimate.
    pub rtt: std::time::Duration,
    /// Packets QUIC declared lost (and sent again).
    pub lost_packets: u64,
}

/// A handle on one connected peer; cheap to clone.
#[derive(Clone, Debug)]
pub struct Peer {
    pub(crate) shared: Arc<PeerShared>,
    /// The data lanes' send queue.
    pub(crate) tx: mpsc::Sender<Outgoing>,
    /// The reply lane's send queue: replies never wait behind data frames.
    pub(crate) replies: mpsc::Sender<Outgoing>,
}

/// The receiving ends of a peer's two send queues, for its writers.
pub(crate) struct Queues {
    /// Data frames: the small lane and bulk streams.
    pub data: mpsc::Receiver<Outgoing>,
    /// `Reply` and `ReplyError` frames: the reply lane.
    pub replies: mpsc::Receiver<Outgoing>,
}

impl Peer {
    /// The largest frame payload to send this peer, in bytes
    /// ([`super::TransportConfig::max_frame`]): a larger one would be
    /// refused by the peer, which closes the connection on it.
    pub fn max_frame(&self) -> u64 {
        self.shared.max_frame
    }

    /// An empty buffer that an earlier small message to this peer was sent
    /// from, to encode the next one into instead of allocating one; `None`
    /// when none is spare ([`super::spares`]).
    pub(crate) fn spare(&self) -> Option<Buffer> {
        self.shared.spares.take()
    }

    /// Where the buffer of a small payload read from this peer goes back
    /// once it was decoded, for the next payload read to be copied into.
    pub(crate) fn received_spares(&self) -> &Arc<super::spares::Spares> {
        &self.shared.received
    }

    /// Spare buffers kept now, for tests.
    #[doc(hidden)]
    pub fn spares(&self) -> usize {
        self.shared.spares.len()
    }

    /// A handle on `shared` whose send queues hold `queue` frames each.
    pub(crate) fn new(shared: PeerShared, queue: usize) -> (Self, Queues) {
        let (tx, data) = mpsc::channel(queue.max(1));
        let (replies, replies_rx) = mpsc::channel(queue.max(1));
        let peer = Self {
            shared: Arc::new(shared),
            tx,
            replies,
        };
        (
            peer,
            Queues {
                data,
                replies: replies_rx,
            },
        )
    }

    /// The peer's node id (proved in the handshake).
    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// The peer's incarnation, from the handshake: fixed when its process
    /// bound its transport. Once this node declares the peer dead, that
    /// incarnation may never connect again.
    pub fn incarnation(&self) -> u64 {
        self.shared.incarnation
    }

    /// Hands every reply (`Reply`, `ReplyError`) read from now on to `hook`,
    /// on the task that reads the reply lane, instead of queueing it for the
    /// [`Inbound`]: a reply completes its request without waking another
    /// task. Replies read before stay in the `Inbound`. `hook` must not
    /// wait; a later call replaces it.
    pub fn take_replies(&self, hook: impl Fn(FrameHeader, Buffer) + Send + Sync + 'static) {
        *self
            .shared
            .replies_to
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(ReplyHook(Box::new(hook)));
    }

    /// Waits until everything queued for this peer (data and replies) has
    /// been sent and acknowledged; nothing can be sent after. For an
    /// orderly shutdown.
    pub(crate) async fn flush(&self) {
        async fn flush(queue: &mpsc::Sender<Outgoing>) {
            let (done, acked) = tokio::sync::oneshot::channel();
            if queue.send(Outgoing::Flush(done)).await.is_ok() {
                let _ = acked.await;
            }
        }
        tokio::join!(flush(&self.tx), flush(&self.replies));
    }

    /// This connection's identity, unique among the transport's
    /// connections.
    pub fn connection(&self) -> usize {
        self.shared.conn.stable_id()
    }

    /// The peer's own join line, from the handshake; `None` if it sent none.
    pub fn join_line(&self) -> Option<JoinLine> {
        self.shared.join_line.clone()
    }

    /// What went over this connection so far.
    pub fn traffic(&self) -> Traffic {
        let stats = self.shared.conn.stats();
        Traffic {
            frames_sent: self.shared.frames_sent.load(Ordering::Relaxed),
            frames_direct: self.shared.small_lane.direct_frames()
                + self.shared.reply_lane.direct_frames(),
            bytes_sent: stats.udp_tx.bytes,
            bytes_received: stats.udp_rx.bytes,
            rtt: stats.path.rtt,
            lost_packets: stats.path.lost_packets,
        }
    }

    /// The address the peer's packets come from.
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.remote_addr
    }

    /// Queues a data frame. Waits while the peer's send queue is full
    /// (backpressure); `header.len` and `header.seq` are set by the transport.
    /// A `Reply` or `ReplyError` frame goes on the reply lane, with a queue
    /// of its own: it never waits behind data frames.
    pub async fn send(
        &self,
        header: FrameHeader,
        payload: impl Into<Payload>,
    ) -> Result<(), PeerGone> {
        let queue = if is_reply_kind(header.kind) {
            &self.replies
        } else {
            &self.tx
        };
        queue
            .send(Outgoing::Frame(header, payload.into(), None))
            .await
            .map_err(|_| PeerGone(self.shared.gone()))
    }

    /// [`Peer::send`] for a frame someone waits on (a request, or a
    /// reply): its sender writes it straight into its lane when nothing is
    /// queued there and the lane's writer runs on this thread (saving the
    /// hop through the writer task), else it is queued as [`Peer::send`]
    /// queues it. Order with the frames queued before is kept either way;
    /// [`Traffic::frames_direct`] counts the frames that went straight.
    pub async fn send_now(
        &self,
        header: FrameHeader,
        payload: impl Into<Payload>,
    ) -> Result<(), PeerGone> {
        match self.try_write(header, payload.into()) {
            Ok(()) => Ok(()),
            Err((header, payload)) => self.send(header, payload).await,
        }
    }

    /// The direct path for a frame: see [`super::direct`]. A `Reply` or
    /// `ReplyError` frame goes on the reply lane. Gives the frame back when
    /// it is to be queued.
    pub(crate) fn try_write(&self, header: FrameHeader, payload: Payload) -> Result<(), GivenBack> {
        let (lane, queue) = if is_reply_kind(header.kind) {
            (&self.shared.reply_lane, &self.replies)
        } else {
            (&self.shared.small_lane, &self.tx)
        };
        if self.shared.is_down() {
            return Err((header, payload));
        }
        lane.try_write(
            &self.shared,
            queue,
            header,
            payload,
            self.shared.bulk_threshold,
        )
    }

    /// Gathers a small data frame (a tell), encoded by `encode` into the
    /// buffer it is given (`None`: one of its own), into the small lane's
    /// batch when nothing is queued before it and the lane's writer runs on
    /// this thread, for the writer to hand to QUIC with the ones after it
    /// ([`super::direct::LaneSlot::try_gather_encoding`]); otherwise gives
    /// it back encoded, to be queued, or says to try again once
    /// [`Peer::gather_room`] resolves.
    #[inline(always)]
    pub(crate) fn try_gather_encoding<E>(
        &self,
        header: FrameHeader,
        encode: impl FnOnce(Option<Buffer>) -> Result<Payload, E>,
    ) -> Result<Result<(), Refused>, E> {
        if self.shared.is_down() {
            let payload = encode(self.shared.spares.take())?;
            return Ok(Err(Refused::Queue(header, payload)));
        }
        self.shared.small_lane.try_gather_encoding(
            &self.shared,
            &self.tx,
            header,
            self.shared.bulk_threshold,
            encode,
        )
    }

    /// Resolves after the small lane's writer ends its next round (or
    /// stops): a tell [`Peer::try_gather_encoding`] told to wait tries again then.
    /// Enable it before that try, so that a round in between is not missed.
    pub(crate) fn gather_room(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.small_lane.room()
    }

    /// Gives a payload that will not be sent back to the spares, for the
    /// next message to this peer to be encoded into.
    pub(crate) fn unsent(&self, payload: Payload) {
        if let Payload::Whole(buf) = payload {
            self.shared.spares.give_back_one(buf);
        }
    }

    /// [`Peer::send`] for a data frame, and `sent` is answered once the
    /// frame's bytes were written into the connection's QUIC stream: they
    /// left this program's queues (QUIC may still be sending them). It is
    /// dropped unanswered when the connection goes first.
    pub async fn send_tracked(
        &self,
        header: FrameHeader,
        payload: impl Into<Payload>,
        sent: tokio::sync::oneshot::Sender<()>,
    ) -> Result<(), PeerGone> {
        self.tx
            .send(Outgoing::Frame(header, payload.into(), Some(sent)))
            .await
            .map_err(|_| PeerGone(self.shared.gone()))
    }

    /// Waits for room in the send queue; the permit then sends without
    /// waiting or failing, so a caller can serialize only once room exists.
    /// The permit owns its queue handle: it may outlive this `Peer` handle.
    pub async fn reserve(&self) -> Result<SendPermit, PeerGone> {
        let permit = self
            .tx
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| PeerGone(self.shared.gone()))?;
        Ok(SendPermit { permit })
    }

    /// Like [`Peer::reserve`], for a caller that sends before this handle
    /// goes away: the slot borrows the queue handle instead of cloning it.
    pub async fn reserve_slot(&self) -> Result<SendSlot<'_>, PeerGone> {
        let permit = self
            .tx
            .reserve()
            .await
            .map_err(|_| PeerGone(self.shared.gone()))?;
        Ok(SendSlot { permit })
    }

    /// Takes room in the send queue if there is some right now.
    pub fn try_reserve(&self) -> Result<SendPermit, TryReserveError> {
        self.try_reserve_on(&self.tx)
    }

    /// Like [`Peer::try_reserve`], for a caller that sends before this
    /// handle goes away: the slot borrows the queue handle instead of
    /// cloning it.
    pub fn try_reserve_slot(&self) -> Result<SendSlot<'_>, TryReserveError> {
        self.tx
            .try_reserve()
            .map(|permit| SendSlot { permit })
            .map_err(|e| self.no_room(e))
    }

    /// Takes room in the reply lane's queue if there is some right now: the
    /// permit is for a `Reply` or `ReplyError` frame, which then never
    /// waits behind data frames.
    pub fn try_reserve_reply(&self) -> Result<SendPermit, TryReserveError> {
        self.try_reserve_on(&self.replies)
    }

    fn try_reserve_on(
        &self,
        queue: &mpsc::Sender<Outgoing>,
    ) -> Result<SendPermit, TryReserveError> {
        queue
            .clone()
            .try_reserve_owned()
            .map(|permit| SendPermit { permit })
            .map_err(|e| self.no_room(e))
    }

    /// Why a queue had no room: full, or its peer gone.
    fn no_room<T>(&self, e: mpsc::error::TrySendError<T>) -> TryReserveError {
        match e {
            mpsc::error::TrySendError::Full(_) if self.is_alive() => TryReserveError::Full,
            _ => TryReserveError::Gone(self.shared.gone()),
        }
    }

    /// True until the peer goes down.
    pub fn is_alive(&self) -> bool {
        !self.shared.is_down()
    }

    /// Resolves when the peer is down, for whatever reason; any number of
    /// tasks may wait on it.
    pub async fn closed(&self) -> DownReason {
        self.shared.wait_down().await
    }

    /// Closes this peer because its process is known to be gone (its
    /// parent saw it exit): an expected end, logged at debug level.
    pub fn close_gone(&self, reason: &str) {
        tracing::debug!(peer = %self.shared.node, addr = %self.shared.remote_addr, "closing peer: {reason}");
        self.shared.set_down(DownReason::Closed(reason.to_owned()));
    }

    /// Closes this peer only (for instance after it sent a malformed
    /// payload), logging why.
    pub fn close(&self, reason: &str) {
        tracing::warn!(peer = %self.shared.node, addr = %self.shared.remote_addr, "closing peer: {reason}");
        self.shared.set_down(DownReason::Closed(reason.to_owned()));
    }

    /// Test hook for malformed-input tests: writes `bytes` as they are on the
    /// small lane, bypassing framing. Never use it for real traffic.
    #[doc(hidden)]
    pub async fn send_raw_data(&self, bytes: &[u8]) -> Result<(), PeerGone> {
        self.tx
            .send(Outgoing::Raw(bytes.to_vec()))
            .await
            .map_err(|_| PeerGone(self.shared.gone()))
    }

    /// Test hook for truncated-input tests: ends this node's small lane to
    /// the peer after what is already queued, so a partly written frame
    /// stays truncated. Never use it for real traffic.
    #[doc(hidden)]
    pub async fn finish_raw_lane(&self) -> Result<(), PeerGone> {
        self.tx
            .send(Outgoing::FinishLane)
            .await
            .map_err(|_| PeerGone(self.shared.gone()))
    }

    /// Test hook: stops (or resumes) this node's heartbeats to the peer and
    /// its own verdict on the peer, so the peer sees a node that hangs (only
    /// the side that accepted the connection sends heartbeats: pause that
    /// side). Never use it for real traffic.
    #[doc(hidden)]
    pub fn pause_heartbeats(&self, paused: bool) {
        self.shared
            .heartbeats_paused
            .store(paused, Ordering::Relaxed);
    }
}

/// Room for one frame in a peer's send queue, taken by [`Peer::reserve`]
/// or [`Peer::try_reserve`]. Dropping it unused gives the room back.
#[derive(Debug)]
pub struct SendPermit {
    permit: mpsc::OwnedPermit<Outgoing>,
}

impl SendPermit {
    /// Queues the frame; cannot fail or wait.
    pub fn send(self, header: FrameHeader, payload: impl Into<Payload>) {
        self.permit
            .send(Outgoing::Frame(header, payload.into(), None));
    }
}

/// Room for one frame in a peer's send queue, borrowed from a [`Peer`]
/// handle by [`Peer::reserve_slot`]. Dropping it unused gives the room back.
#[derive(Debug)]
pub struct SendSlot<'a> {
    permit: mpsc::Permit<'a, Outgoing>,
}

impl SendSlot<'_> {
    /// Queues the frame; cannot fail or wait.
    pub fn send(self, header: FrameHeader, payload: impl Into<Payload>) {
        self.permit
            .send(Outgoing::Frame(header, payload.into(), None));
    }
}

/// The frames one peer sends: data frames (kinds `Tell`, `Ask`, `Post`,
/// `Spawn`, `Call`) in the order it sent them, and replies (`Reply`,
/// `ReplyError`) from their own lane, in the order it sent those. A reply
/// is handed out before any data frame that is ready with it.
#[derive(Debug)]
pub struct Inbound {
    data: Taker<(FrameHeader, Buffer)>,
    replies: Taker<(FrameHeader, Buffer)>,
    data_open: bool,
    replies_open: bool,
}

impl Inbound {
    pub(crate) fn new(
        data: Taker<(FrameHeader, Buffer)>,
        replies: Taker<(FrameHeader, Buffer)>,
    ) -> Self {
        Self {
            data,
            replies,
            data_open: true,
            replies_open: true,
        }
    }

    /// The next frame; `None` once the peer is down and every frame that
    /// arrived before has been handed out.
    pub async fn recv(&mut self) -> Option<(FrameHeader, Buffer)> {
        let mut one = Vec::with_capacity(1);
        self.recv_many(&mut one, 1).await;
        one.pop()
    }

    /// Waits for at least one frame, then moves every frame that is ready,
    /// at most `limit`, onto the end of `frames`, in order. Returns how many
    /// it moved; 0 once the peer is down and every frame was handed out.
    pub async fn recv_many(
        &mut self,
        frames: &mut Vec<(FrameHeader, Buffer)>,
        limit: usize,
    ) -> usize {
        self.recv_gated(frames, limit, true).await
    }

    /// Like [`Inbound::recv_many`], but takes data frames only while
    /// `data` is true: replies keep coming while the caller holds data
    /// back, and holding it back stops the peer's data lanes (QUIC flow
    /// control then makes the peer's sends wait) but not its replies.
    /// Moves replies or data frames, never both at once; returns 0 only
    /// once both lanes are finished, and never resolves while only data
    /// is left and `data` is false. Cancel-safe: nothing is lost when the
    /// future is dropped before it resolves.
    pub async fn recv_gated(
        &mut self,
        frames: &mut Vec<(FrameHeader, Buffer)>,
        limit: usize,
        data: bool,
    ) -> usize {
        use std::task::Poll;
        // A limit of 0 would read as a finished lane.
        let limit = limit.max(1);
        std::future::poll_fn(|cx| {
            // Replies first; a glance is enough while data is flowing.
            if self.replies_open && (!self.replies.is_empty() || !data || !self.data_open) {
                match self.replies.poll_take(cx, frames, limit) {
                    Poll::Ready(0) => self.replies_open = false,
                    Poll::Ready(n) => return Poll::Ready(n),
                    Poll::Pending => {}
                }
            }
            if data && self.data_open {
                match self.data.poll_take(cx, frames, limit) {
                    Poll::Ready(0) => self.data_open = false,
                    Poll::Ready(n) => return Poll::Ready(n),
                    Poll::Pending => {}
                }
                // No data: now wait for replies too.
                if self.replies_open {
                    match self.replies.poll_take(cx, frames, limit) {
                        Poll::Ready(0) => self.replies_open = false,
                        Poll::Ready(n) => return Poll::Ready(n),
                        Poll::Pending => {}
                    }
                }
            }
            if self.data_open || self.replies_open {
                // With only held-back data left, the caller calls again
                // once it takes data.
                Poll::Pending
            } else {
                Poll::Ready(0)
            }
        })
        .await
    }
}
