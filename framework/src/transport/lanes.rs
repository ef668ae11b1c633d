//! Data lanes. Each side opens one long-lived unidirectional stream (the
//! small lane) and a fresh one per large payload (bulk). The first byte of a
//! stream names its lane. The writer numbers frames (`seq`) in queue order;
//! the receiver puts them back in that order before handing them out. A
//! request or a reply sent while nothing is queued before it may skip the
//! queue and the writer's hop: its sender writes it into the lane itself,
//! numbered the same way ([`super::direct`]).
//!
//! Replies (`Reply`, `ReplyError`) travel apart, on a long-lived lane of
//! their own with its own send queue: the receiver reads it whatever becomes
//! of the data lanes, so a reply never waits behind data frames that the
//! layer above cannot take yet (deliveries into a full inbox), and the
//! layer above may stop taking data frames (and so, through QUIC flow
//! control, stop the sender) without stopping the answers to its own
//! requests. Replies carry a correlation id, so they need no order with
//! the data frames; among themselves they keep the order they were queued
//! in. A large reply is written on the reply lane as it is (no bulk stream):
//! a small reply after it waits, as it would behind a bulk frame in `seq`
//! order, but no data frame does.
//!
//! The reply lane can always move while the small lane is stopped because
//! a stopped stream holds at most `stream_window` bytes of the
//! connection's `connection_window` (the default is half), and bulk
//! streams are read to their end as they arrive.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::wire::{Buffer, FrameHeader, HEADER_LEN, LaneDecoder, Payload, aligned_copy};

use super::config::TransportConfig;
use super::direct::{OpenLane, take_gathered};
use super::error::DownReason;
use super::framing::{
    ReadFrameError, is_data_kind, is_reply_kind, read_error, read_only_frame, write_error,
};
use super::handoff::Giver;
use super::peer::{Outgoing, PeerShared};
use super::spares::Spares;

/// First byte of the small lane.
pub(crate) const LANE_SMALL: u8 = 0;
/// First byte of a bulk stream.
pub(crate) const LANE_BULK: u8 = 1;
/// First byte of the reply lane.
pub(crate) const LANE_REPLY: u8 = 2;
/// Long-lived unidirectional lanes per direction (small and reply): the
/// rest of `max_uni_streams` is for bulk streams.
const LONG_LIVED_LANES: u32 = 2;
/// The writer gathers queued small frames up to this many bytes per write.
pub(super) const COALESCE_BYTES: usize = 256 << 10;
/// Most queued entries the writer takes per wakeup.
const WRITE_BATCH: usize = 128;
/// The small lane is not read while the reorder buffer holds more frames...
const REORDER_FRAMES: usize = 1024;
/// ...or more bytes than this.
const REORDER_BYTES: usize = 32 << 20;
/// A peer whose frames overflow the reorder buffer this far is broken.
const REORDER_HARD_LIMIT: usize = 8 * REORDER_FRAMES;
/// Frames handed to the layer above but not yet taken.
pub(crate) const INBOUND_QUEUE: usize = 256;

type Frame = (FrameHeader, Buffer);

/// The long-lived lane a [`writer`] feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The small lane, with bulk streams for large payloads.
    Small,
    /// The reply lane: every payload on it, whatever its size.
    Replies,
}

impl Lane {
    /// The QUIC send priority of the lane's stream: replies first (they
    /// complete waiting requests), then the small lane, then bulk streams
    /// (priority 0), which the connection sends one after the other, each
    /// to its end (`send_fairness` off, see `tls::quic_transport`). The
    /// control stream (`i32::MAX`) goes before all of them.
    pub(crate) fn priority(self) -> i32 {
        match self {
            Self::Small => 1,
            Self::Replies => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Replies => "reply",
        }
    }
}

/// Bulk streams a writer may have open at once.
fn bulk_streams(config: &TransportConfig) -> u32 {
    config
        .max_uni_streams
        .saturating_sub(LONG_LIVED_LANES)
        .max(1)
}

/// Drains one of the peer's send queues onto its lane: the small lane
/// (coalescing small frames into one write) and bulk streams, or the reply
/// lane.
pub(crate) async fn writer(
    shared: Arc<PeerShared>,
    mut rx: mpsc::Receiver<Outgoing>,
    config: Arc<TransportConfig>,
    kind: Lane,
) {
    if let Err(reason) = write_loop(&shared, &mut rx, &config, kind).await {
        shared.set_down(reason);
    }
    // Senders waiting to gather find the lane gone and queue, which fails.
    shared.lane(kind).close();
    shared.lane(kind).made_room();
    // Dropping `rx` here makes every waiting sender see the peer gone.
}

async fn write_loop(
    shared: &Arc<PeerShared>,
    rx: &mut mpsc::Receiver<Outgoing>,
    config: &TransportConfig,
    kind: Lane,
) -> Result<(), DownReason> {
    let mut stream = shared
        .conn
        .open_uni()
        .await
        .map_err(|e| super::framing::down_reason(&e))?;
    let first = match kind {
        Lane::Small => LANE_SMALL,
        Lane::Replies => LANE_REPLY,
    };
    // Refused only once the stream is gone, which the write below reports.
    let _ = stream.set_priority(kind.priority());
    stream.write_all(&[first]).await.map_err(write_error)?;
    let slot = shared.lane(kind);
    slot.open(OpenLane::new(stream));
    slot.set_home();
    let bulk_slots = Arc::new(Semaphore::new(bulk_streams(config) as usize));
    let mut queued = Vec::with_capacity(WRITE_BATCH);
    // Senders of tracked frames in the batch being written.
    let mut written = Vec::new();
    // Small payloads' buffers once their bytes are in the batch: spares.
    let mut spent = Vec::with_capacity(WRITE_BATCH);
    let down = shared.wait_down();
    tokio::pin!(down);
    loop {
        // One wakeup takes every queued entry (up to `WRITE_BATCH`).
        let n = tokio::select! {
            n = rx.recv_many(&mut queued, WRITE_BATCH) => n,
            _ = &mut down => 0,
        };
        if n == 0 {
            return Ok(());
        }
        // Taken out in the same poll as the entries, so a direct write on
        // this thread never overtakes them.
        let Some(mut open) = slot.take_for_round() else {
            return Ok(());
        };
        let ended = write_round(
            shared,
            config,
            kind,
            &mut open,
            &bulk_slots,
            &mut queued,
            &mut written,
            &mut spent,
        )
        .await?;
        if ended {
            return Ok(());
        }
        slot.end_round(open);
        slot.made_room();
        shared.spares.give_back(&mut spent);
        for sent in written.drain(..) {
            let _ = sent.send(());
        }
    }
}

/// Writes the entries taken from the queue onto the open lane (the bytes a
/// direct write left first). True once the lane was ended.
#[allow(clippy::too_many_arguments)]
async fn write_round(
    shared: &Arc<PeerShared>,
    config: &TransportConfig,
    kind: Lane,
    open: &mut OpenLane,
    bulk_slots: &Arc<Semaphore>,
    queued: &mut Vec<Outgoing>,
    written: &mut Vec<oneshot::Sender<()>>,
    spent: &mut Vec<Buffer>,
) -> Result<bool, DownReason> {
    if let Some(rest) = open.leftover.take() {
        open.stream.write_chunk(rest).await.map_err(write_error)?;
    }
    let mut frames = 0u64;
    for next in queued.drain(..) {
        match next {
            // A direct path's wake-up: it is out of the queue now.
            Outgoing::Wake => open.wake_queued = false,
            Outgoing::Raw(bytes) => {
                open.batch.extend_from_slice(&bytes);
                open.headers.forget();
            }
            Outgoing::FinishLane => {
                write_batch(&mut open.stream, &mut open.batch).await?;
                let _ = open.stream.finish();
                return Ok(true);
            }
            Outgoing::Flush(done) => {
                write_batch(&mut open.stream, &mut open.batch).await?;
                // Bulk streams still being written hold slots.
                let _ = bulk_slots.acquire_many(bulk_streams(config)).await;
                let _ = open.stream.finish();
                let _ = open.stream.stopped().await;
                let _ = done.send(());
                return Ok(true);
            }
            // A tracked frame's sender hears once its bytes were
            // written: with the batch, or once its bulk stream was.
            Outgoing::Frame(mut header, payload, mut sent) => {
                frames += 1;
                if payload.len() >= config.bulk_threshold && kind == Lane::Replies {
                    // Its payload is written as it is, not copied into the batch.
                    header.seq = open.seq;
                    open.seq += 1;
                    header.len = payload.len() as u64;
                    open.headers.encode(&header, &mut open.batch);
                    write_batch(&mut open.stream, &mut open.batch).await?;
                    for chunk in payload.into_chunks() {
                        open.stream.write_chunk(chunk).await.map_err(write_error)?;
                    }
                } else if payload.len() >= config.bulk_threshold {
                    header.seq = open.seq;
                    open.seq += 1;
                    let slot = match bulk_slots.clone().try_acquire_owned() {
                        Ok(slot) => slot,
                        Err(_) => {
                            // Let the small frames go first while bulk streams drain.
                            write_batch(&mut open.stream, &mut open.batch).await?;
                            bulk_slots.clone().acquire_owned().await.map_err(|_| {
                                DownReason::Closed("bulk stream slots closed".to_owned())
                            })?
                        }
                    };
                    let shared = shared.clone();
                    let sent = sent.take();
                    shared.tasks.clone().spawn(async move {
                        match send_bulk(&shared, header, payload).await {
                            Ok(()) => {
                                if let Some(sent) = sent {
                                    let _ = sent.send(());
                                }
                            }
                            Err(reason) => {
                                shared.set_down(reason);
                            }
                        }
                        drop(slot);
                    });
                } else {
                    open.gather(&mut header, &payload);
                    if let Payload::Whole(buf) = payload {
                        spent.push(buf);
                    }
                }
                written.extend(sent);
            }
        }
        if open.batch.len() >= COALESCE_BYTES {
            write_batch(&mut open.stream, &mut open.batch).await?;
        }
    }
    write_batch(&mut open.stream, &mut open.batch).await?;
    shared
        .frames_sent
        .fetch_add(frames, std::sync::atomic::Ordering::Relaxed);
    Ok(false)
}

/// Hands what `batch` gathered to the lane without a copy (QUIC keeps it
/// until it is acknowledged); `batch` goes on gathering ([`take_gathered`]).
async fn write_batch(lane: &mut quinn::SendStream, batch: &mut BytesMut) -> Result<(), DownReason> {
    if batch.is_empty() {
        return Ok(());
    }
    lane.write_chunk(take_gathered(batch))
        .await
        .map_err(write_error)
}

/// Writes one frame on a bulk stream of its own. The payload's runs are
/// handed to QUIC as they are (no copy into the stream's buffer, nor into
/// one run): each is freed, or handed back to the value it came from, once
/// sent.
async fn send_bulk(
    shared: &PeerShared,
    mut header: FrameHeader,
    payload: Payload,
) -> Result<(), DownReason> {
    let mut stream = shared
        .conn
        .open_uni()
        .await
        .map_err(|e| super::framing::down_reason(&e))?;
    header.len = payload.len() as u64;
    let mut head = [0u8; 1 + HEADER_LEN];
    head[0] = LANE_BULK;
    head[1..].copy_from_slice(&header.encode());
    stream.write_all(&head).await.map_err(write_error)?;
    for chunk in payload.into_chunks() {
        stream.write_chunk(chunk).await.map_err(write_error)?;
    }
    stream.finish().map_err(|_| {
        DownReason::ConnectionLost("a bulk stream closed before it was finished".to_owned())
    })
}

/// Accepts the peer's unidirectional streams and delivers their data frames
/// to `inbound` in `seq` order, and its replies to `replies`. The small lane
/// is read by the task that restores the order, so frames that arrive in
/// order (the common case) go straight from the stream to `inbound`; each
/// bulk stream, and the reply lane, has a task of its own.
pub(crate) async fn reader(
    shared: Arc<PeerShared>,
    inbound: Giver<Frame>,
    replies: Giver<Frame>,
    max_frame: u64,
) {
    let (lane_tx, lane_rx) = oneshot::channel::<quinn::RecvStream>();
    let (bulk_tx, bulk_rx) = mpsc::channel::<Frame>(16);
    let ordered = shared.tasks.spawn(in_order(
        shared.clone(),
        lane_rx,
        bulk_rx,
        inbound,
        max_frame,
    ));
    // The first stream that names itself the small lane takes the sender;
    // the first that names itself the reply lane, the replies' sender.
    let lane_tx = Arc::new(std::sync::Mutex::new(Some(lane_tx)));
    let replies = Arc::new(std::sync::Mutex::new(Some(replies)));
    loop {
        let accepted = tokio::select! {
            s = shared.conn.accept_uni() => s,
            _ = shared.wait_down() => break,
        };
        let mut recv = match accepted {
            Ok(recv) => recv,
            Err(e) => {
                shared.set_down(super::framing::down_reason(&e));
                break;
            }
        };
        let shared = shared.clone();
        let lane_tx = lane_tx.clone();
        let bulk_tx = bulk_tx.clone();
        let replies = replies.clone();
        shared.tasks.clone().spawn(async move {
            let mut lane = [0u8; 1];
            let result = match recv.read_exact(&mut lane).await {
                Err(quinn::ReadExactError::FinishedEarly(_)) => Err(ReadFrameError::Protocol(
                    "a data stream ended before its lane byte".to_owned(),
                )),
                Err(quinn::ReadExactError::ReadError(e)) => Err(ReadFrameError::Lost(
                    DownReason::ConnectionLost(e.to_string()),
                )),
                Ok(()) => match lane[0] {
                    LANE_SMALL => match lane_tx.lock().ok().and_then(|mut slot| slot.take()) {
                        Some(tx) => {
                            // The ordering task is gone only when the peer is down.
                            let _ = tx.send(recv);
                            Ok(())
                        }
                        None => Err(ReadFrameError::Protocol(
                            "the peer opened a second small lane".to_owned(),
                        )),
                    },
                    LANE_BULK => read_bulk(&mut recv, max_frame, bulk_tx).await,
                    LANE_REPLY => match replies.lock().ok().and_then(|mut slot| slot.take()) {
                        Some(tx) => read_replies(&shared, recv, max_frame, tx).await,
                        None => Err(ReadFrameError::Protocol(
                            "the peer opened a second reply lane".to_owned(),
                        )),
                    },
                    other => Err(ReadFrameError::Protocol(format!(
                        "unknown data lane {other}"
                    ))),
                },
            };
            fail(&shared, result);
        });
    }
    drop(bulk_tx);
    drop(lane_tx);
    drop(replies);
    let _ = ordered.await;
}

fn fail(shared: &PeerShared, result: Result<(), ReadFrameError>) {
    match result {
        Ok(()) => {}
        Err(ReadFrameError::Header(e)) => {
            fail(shared, Err(ReadFrameError::Protocol(e.to_string())))
        }
        Err(ReadFrameError::Protocol(why)) => {
            tracing::warn!(peer = %shared.node, addr = %shared.remote_addr, "dropping peer: {why}");
            shared.set_down(DownReason::ProtocolError(why));
        }
        Err(ReadFrameError::Lost(reason)) => {
            shared.set_down(reason);
        }
    }
}

fn check_data(header: &FrameHeader) -> Result<(), ReadFrameError> {
    if is_data_kind(header.kind) {
        Ok(())
    } else {
        Err(ReadFrameError::Protocol(format!(
            "a {:?} frame arrived on a data lane",
            header.kind
        )))
    }
}

fn check_reply(header: &FrameHeader) -> Result<(), ReadFrameError> {
    if is_reply_kind(header.kind) {
        Ok(())
    } else {
        Err(ReadFrameError::Protocol(format!(
            "a {:?} frame arrived on the reply lane",
            header.kind
        )))
    }
}

/// Reads the reply lane to its end, handing each reply to the peer's reply
/// hook ([`super::Peer::take_replies`]), or to `tx` while there is none, as
/// soon as it is complete. Nothing above ever holds replies back for long (they
/// only complete waiting requests), so this lane keeps moving while the
/// data lanes are stopped.
async fn read_replies(
    shared: &PeerShared,
    recv: quinn::RecvStream,
    max_frame: u64,
    tx: Giver<Frame>,
) -> Result<(), ReadFrameError> {
    let mut lane = SmallLane::new(recv, max_frame, Lane::Replies, None);
    let mut ready = Vec::new();
    loop {
        let read = lane.read().await;
        if matches!(shared.down_reason(), Some(DownReason::HeartbeatTimeout(_))) {
            // Declared dead (and fenced): nothing more from it goes up.
            return Ok(());
        }
        match read.map_err(read_error)? {
            Some(n) => lane.advance(n),
            None => return lane.ended(),
        }
        while let Some(frame) = lane.next_frame()? {
            if let Some(frame) = shared.reply_to_hook(frame) {
                ready.push(frame);
            }
        }
        // Most replies went to the hook. Once nobody holds the `Inbound`
        // any more, replies just drop.
        if !tx.give_all_until(&mut ready, shared.wait_down()).await {
            return Ok(());
        }
    }
}

async fn read_bulk(
    recv: &mut quinn::RecvStream,
    max_frame: u64,
    tx: mpsc::Sender<Frame>,
) -> Result<(), ReadFrameError> {
    let (header, payload) = read_only_frame(recv, max_frame).await?;
    check_data(&header)?;
    let _ = tx.send((header, payload)).await;
    Ok(())
}

/// Bytes the small lane is read in at once.
const SMALL_READ: usize = 64 << 10;

/// The small lane as it is read: large reads into one buffer, parsed into
/// many frames each. A payload that is not all in the buffer is read
/// straight into its own aligned buffer.
struct SmallLane {
    recv: quinn::RecvStream,
    buf: Box<[u8]>,
    /// Unparsed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// A frame whose payload is still arriving, and how much of it has.
    partial: Option<(FrameHeader, Buffer, usize)>,
    /// The last `seq` seen on this lane.
    last: Option<u64>,
    /// Reads each header, full or short (after the one it repeats).
    headers: LaneDecoder,
    /// The frames this lane may carry: data frames, or replies.
    kind: Lane,
    /// Where small payloads are copied: spares the actors hand back (data
    /// frames), or fresh buffers (replies, decoded where no spare goes back).
    spares: Option<Arc<Spares>>,
    /// Spares taken from `spares` at once, used one per payload.
    stash: Vec<Buffer>,
}

impl SmallLane {
    fn new(
        recv: quinn::RecvStream,
        max_frame: u64,
        kind: Lane,
        spares: Option<Arc<Spares>>,
    ) -> Self {
        Self {
            recv,
            buf: vec![0u8; SMALL_READ].into_boxed_slice(),
            start: 0,
            end: 0,
            partial: None,
            last: None,
            headers: LaneDecoder::new(max_frame),
            kind,
            spares,
            stash: Vec::new(),
        }
    }

    /// Reads what the stream has; `None` once it is finished. Cancel-safe:
    /// nothing is consumed unless it completes, and [`SmallLane::advance`]
    /// must follow with the count.
    async fn read(&mut self) -> Result<Option<usize>, quinn::ReadError> {
        if let Some((_, payload, filled)) = &mut self.partial {
            return self.recv.read(&mut payload[*filled..]).await;
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 {
            // Only a piece of a header is left: keep it at the front.
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        self.recv.read(&mut self.buf[self.end..]).await
    }

    /// Takes in `n` bytes that [`SmallLane::read`] put in place.
    fn advance(&mut self, n: usize) {
        match &mut self.partial {
            Some((_, _, filled)) => *filled += n,
            None => self.end += n,
        }
    }

    /// The next complete frame, checked (header, data kind, growing `seq`).
    fn next_frame(&mut self) -> Result<Option<Frame>, ReadFrameError> {
        let frame = match self.partial.take() {
            Some((header, payload, filled)) if filled == payload.len() => (header, payload),
            Some(partial) => {
                self.partial = Some(partial);
                return Ok(None);
            }
            None => {
                let have = &self.buf[self.start..self.end];
                let Some((header, used)) =
                    self.headers.decode(have).map_err(ReadFrameError::Header)?
                else {
                    return Ok(None);
                };
                let len = usize::try_from(header.len).map_err(|_| {
                    ReadFrameError::Protocol(format!(
                        "frame of {} bytes does not fit in memory",
                        header.len
                    ))
                })?;
                let body = &have[used..];
                if body.len() >= len {
                    let payload = match &self.spares {
                        Some(spares) => spares.copy_of(&mut self.stash, &body[..len]),
                        None => aligned_copy(&body[..len]),
                    };
                    let frame = (header, payload);
                    self.start += used + len;
                    frame
                } else {
                    // Read the rest of the payload straight into place.
                    let mut payload = Buffer::with_capacity(len);
                    payload.extend_from_slice(body);
                    let filled = payload.len();
                    payload.resize(len, 0);
                    (self.start, self.end) = (0, 0);
                    self.partial = Some((header, payload, filled));
                    return Ok(None);
                }
            }
        };
        match self.kind {
            Lane::Small => check_data(&frame.0)?,
            Lane::Replies => check_reply(&frame.0)?,
        }
        let seq = frame.0.seq;
        if let Some(last) = self.last
            && seq <= last
        {
            return Err(ReadFrameError::Protocol(format!(
                "{}-lane frame seq {seq} after {last}; sequence numbers must grow",
                self.kind.name()
            )));
        }
        self.last = Some(seq);
        Ok(Some(frame))
    }

    /// The error for a stream that ended where it did, if that is mid-frame.
    fn ended(&self) -> Result<(), ReadFrameError> {
        if let Some((header, payload, filled)) = &self.partial {
            return Err(ReadFrameError::Protocol(format!(
                "truncated frame: the stream ended after {filled} of {} payload bytes of a {:?} frame",
                payload.len(),
                header.kind
            )));
        }
        match self.end - self.start {
            0 => Ok(()),
            n => Err(ReadFrameError::Protocol(format!(
                "truncated frame: the stream ended after {n} bytes of a frame header"
            ))),
        }
    }
}

/// Reads the small lane once it is there; never resolves while it is not.
async fn read_lane(lane: &mut Option<SmallLane>) -> Result<Option<usize>, quinn::ReadError> {
    match lane {
        Some(lane) => lane.read().await,
        None => std::future::pending().await,
    }
}

/// Frames waiting for an earlier `seq`, and the `seq` due next.
#[derive(Default)]
struct Order {
    pending: BTreeMap<u64, Frame>,
    bytes: usize,
    next: u64,
    /// The last `seq` seen on the small lane.
    last_small: Option<u64>,
}

impl Order {
    /// False while the buffer is full, unless the frame it waits for may
    /// itself be on the small lane.
    fn takes_small(&self) -> bool {
        let roomy = self.pending.len() < REORDER_FRAMES && self.bytes < REORDER_BYTES;
        roomy || self.last_small.is_none_or(|l| l < self.next)
    }

    /// Takes a frame in; pushes every frame now due onto `ready`.
    fn accept(
        &mut self,
        frame: Frame,
        from_small: bool,
        ready: &mut Vec<Frame>,
    ) -> Result<(), ReadFrameError> {
        let seq = frame.0.seq;
        if from_small {
            self.last_small = Some(seq);
        }
        if seq == self.next && self.pending.is_empty() {
            self.next += 1;
            ready.push(frame);
            return Ok(());
        }
        if seq < self.next || self.pending.contains_key(&seq) {
            return Err(ReadFrameError::Protocol(format!(
                "frame seq {seq} arrived twice"
            )));
        }
        if self.pending.len() >= REORDER_HARD_LIMIT {
            return Err(ReadFrameError::Protocol(
                "too many frames out of order".to_owned(),
            ));
        }
        self.bytes += frame.1.len();
        self.pending.insert(seq, frame);
        while let Some(frame) = self.pending.remove(&self.next) {
            self.bytes -= frame.1.len();
            self.next += 1;
            ready.push(frame);
        }
        Ok(())
    }
}

enum Event {
    Lane(Option<quinn::RecvStream>),
    Small(Result<Option<usize>, quinn::ReadError>),
    Bulk(Option<Frame>),
}

/// Reads the small lane, takes bulk frames, and hands every frame to
/// `inbound` in `seq` order. Stops reading the small lane while the reorder
/// buffer is full, unless the frame it waits for may itself be on it.
async fn in_order(
    shared: Arc<PeerShared>,
    mut lane_rx: oneshot::Receiver<quinn::RecvStream>,
    mut bulk_rx: mpsc::Receiver<Frame>,
    inbound: Giver<Frame>,
    max_frame: u64,
) {
    let down = shared.wait_down();
    tokio::pin!(down);
    let mut lane: Option<SmallLane> = None;
    let mut order = Order::default();
    let mut ready: Vec<Frame> = Vec::new();
    let (mut lane_waiting, mut small_open, mut bulk_open) = (true, true, true);
    while small_open || bulk_open {
        let take_small = lane.is_some() && order.takes_small();
        let event = tokio::select! {
            biased;
            _ = &mut down => return,
            f = bulk_rx.recv(), if bulk_open => Event::Bulk(f),
            s = &mut lane_rx, if lane_waiting => Event::Lane(s.ok()),
            r = read_lane(&mut lane), if take_small => Event::Small(r),
        };
        let result = match event {
            Event::Bulk(Some(frame)) => order.accept(frame, false, &mut ready),
            Event::Bulk(None) => {
                bulk_open = false;
                Ok(())
            }
            Event::Lane(recv) => {
                lane_waiting = false;
                match recv {
                    Some(recv) => {
                        let spares = Some(shared.received.clone());
                        lane = Some(SmallLane::new(recv, max_frame, Lane::Small, spares))
                    }
                    None => small_open = false,
                }
                Ok(())
            }
            Event::Small(Ok(Some(n))) => match lane.as_mut() {
                Some(small) => {
                    small.advance(n);
                    take_frames(small, &mut order, &mut ready)
                }
                None => Ok(()),
            },
            Event::Small(Ok(None)) => {
                let ended = lane.take().map_or(Ok(()), |small| small.ended());
                small_open = false;
                ended
            }
            Event::Small(Err(e)) => Err(read_error(e)),
        };
        if matches!(shared.down_reason(), Some(DownReason::HeartbeatTimeout(_))) {
            // Declared dead (and fenced): nothing more from it goes up.
            return;
        }
        // Frames that were complete before an error, or before the peer
        // went down, still go up as far as there is room; an `Inbound`
        // nobody holds any more just drops its frames.
        if !inbound.give_all_until(&mut ready, &mut down).await {
            return;
        }
        if let Err(e) = result {
            fail(&shared, Err(e));
            return;
        }
    }
}

/// Every complete frame in the small lane's buffer, in order.
fn take_frames(
    small: &mut SmallLane,
    order: &mut Order,
    ready: &mut Vec<Frame>,
) -> Result<(), ReadFrameError> {
    while let Some(frame) = small.next_frame()? {
        order.accept(frame, true, ready)?;
    }
    Ok(())
}
