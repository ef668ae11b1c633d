//! The direct path onto a lane: a small frame put into the lane by its
//! sender, when nothing is queued before it, instead of through the lane's
//! send queue and writer task.
//!
//! - A request or a reply is written straight into the lane's QUIC stream
//!   ([`LaneSlot::try_write`]). Someone waits for its answer, or for it, so
//!   its latency matters more than gathering it with other frames: the hop
//!   through the writer (a queue, a wakeup, a task poll) is about a tenth
//!   of a round trip's work on one CPU.
//! - A tell is gathered into the lane's batch ([`LaneSlot::try_gather_encoding`]),
//!   which the writer hands to QUIC with the next ones, woken once for the
//!   whole run by one wake-up entry in the queue: a run of tells is written
//!   in large writes as before, without a queue entry for each. A batch as
//!   long as the writer's writes takes no more: its sender waits for the
//!   writer's round (as it would wait for room in a full queue), so the
//!   batch is bounded, and tells from that sender keep gathering after it
//!   (a sender sent to the queue instead would find it busy from then on).
//!
//! The lane's state (its stream, header encoder, next `seq` and batch)
//! sits behind a lock, and the writer takes it out for each round of
//! frames it writes. A sender takes the direct path only if
//!
//! - it runs on the thread of the writer's single-threaded runtime: the
//!   writer takes the lane out in the same poll in which it takes frames
//!   from the queue, so a sender on that thread never finds the lane in
//!   place while the writer holds frames it has not written;
//! - the lane's queue holds nothing but this path's own wake-up (no frame,
//!   no unsent permit), so no earlier frame of the same sender is overtaken;
//! - no earlier direct write left bytes unwritten (see below), and the
//!   batch is not full (a tell then waits for the writer's round, a request
//!   or reply is queued);
//! - the payload is small (a large one goes on a bulk stream).
//!
//! Otherwise the frame goes into the queue as before. QUIC takes the bytes
//! of a direct write without waiting when its flow-control window has room;
//! when it has too little, what it did not take stays in the lane state for
//! the writer, which the wake-up entry sends on to write it first. Nothing
//! is lost and order holds.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

use bytes::{Bytes, BytesMut};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, mpsc};

use crate::wire::{Buffer, FrameHeader, LaneEncoder, Payload};

use super::error::DownReason;
use super::framing::write_error;
use super::lanes::COALESCE_BYTES;
use super::peer::{Outgoing, PeerShared};

/// One long-lived lane's writing state, shared by its writer task and the
/// senders that take the direct path.
#[derive(Debug, Default)]
pub(crate) struct LaneSlot {
    /// Held only for a moment: the writer takes the lane out for a round.
    state: Mutex<LaneState>,
    /// The thread of the writer's runtime, if that runtime is
    /// single-threaded: the only thread that may take the direct path.
    home: std::sync::OnceLock<ThreadId>,
    /// Frames written by the direct path.
    direct: AtomicU64,
    /// Signalled by the writer after each round: a sender that was told to
    /// wait ([`Refused::Wait`]) tries again.
    room: Notify,
}

/// Where a lane is.
#[derive(Debug, Default)]
enum LaneState {
    /// Not opened yet, or ended.
    #[default]
    Closed,
    /// Open, and in place for the direct path.
    Open(OpenLane),
    /// Taken out by the writer for a round.
    Writing,
}

/// An open lane: what the writer and the direct path write with.
#[derive(Debug)]
pub(crate) struct OpenLane {
    /// The lane's stream (its first byte, the lane's, already written).
    pub stream: quinn::SendStream,
    /// Headers on this lane: short when they repeat the one before.
    pub headers: LaneEncoder,
    /// The `seq` of the next frame.
    pub seq: u64,
    /// Frames are gathered here and handed to QUIC as they are (split off,
    /// not copied): the rest of the block gathers the next ones.
    pub batch: BytesMut,
    /// Bytes of a direct write QUIC did not take yet: the writer writes
    /// them before anything else.
    pub leftover: Option<Bytes>,
    /// True while a wake-up this path queued waits in the queue: the writer
    /// clears it as it takes that entry (with the lane taken out).
    pub wake_queued: bool,
    /// The buffer tells gathered by [`LaneSlot::try_gather_encoding`] are
    /// encoded into, kept for the next one.
    scratch: Option<Buffer>,
}

impl OpenLane {
    /// A lane whose stream is `stream`.
    pub fn new(stream: quinn::SendStream) -> Self {
        Self {
            stream,
            headers: LaneEncoder::new(),
            seq: 0,
            batch: BytesMut::with_capacity(BLOCK),
            leftover: None,
            wake_queued: false,
            scratch: None,
        }
    }

    /// Gives `header` the next `seq` and the payload's length, and gathers
    /// the frame into the batch.
    pub fn gather(&mut self, header: &mut FrameHeader, payload: &Payload) {
        header.seq = self.seq;
        self.seq += 1;
        header.len = payload.len() as u64;
        self.headers.encode(header, &mut self.batch);
        for run in payload.runs() {
            self.batch.extend_from_slice(run);
        }
    }
}

/// A lane keeps its scratch buffer only while it holds at most this many
/// bytes (one that grew for a large message goes).
const SCRATCH_MAX: usize = 64 << 10;

/// A batch starts in a block of this many bytes.
const BLOCK: usize = 4 * COALESCE_BYTES;

/// The gathered bytes, to hand to QUIC as they are. The batch goes on in
/// the rest of its block while that can hold a whole batch, else in a
/// fresh block: growing a block that QUIC still holds a part of would copy
/// everything gathered into the new one.
pub(super) fn take_gathered(batch: &mut BytesMut) -> Bytes {
    let gathered = batch.split().freeze();
    if batch.capacity() < COALESCE_BYTES + COALESCE_BYTES / 4 {
        // Empty: nothing is copied.
        batch.reserve(BLOCK);
    }
    gathered
}

/// A frame the direct path gave back, to be queued.
pub(crate) type GivenBack = (FrameHeader, Payload);

/// Why the direct path did not take a tell.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Queue it: something is queued before it, or it is large, or its
    /// sender runs on another thread than the lane's writer.
    Queue(FrameHeader, Payload),
    /// Wait for [`LaneSlot::room`], then try again: the batch is full, or
    /// the writer is writing it (QUIC's flow control may be holding it).
    /// Nothing was encoded.
    Wait,
}

/// Why the direct path is closed to a frame now: see [`Refused`].
enum Closed {
    Queue,
    Wait,
}

impl LaneSlot {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts the lane the writer opened in place.
    pub(super) fn open(&self, lane: OpenLane) {
        *self.lock() = LaneState::Open(lane);
    }

    /// Takes the lane out for a round of the writer; `None` once it ended.
    pub(super) fn take_for_round(&self) -> Option<OpenLane> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, LaneState::Writing) {
            LaneState::Open(lane) => Some(lane),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Puts the lane back after the writer's round.
    pub(super) fn end_round(&self, lane: OpenLane) {
        self.open(lane);
    }

    /// The writer ended the lane (or stopped): nothing more goes into it.
    pub(super) fn close(&self) {
        *self.lock() = LaneState::Closed;
    }

    /// Notes the writer's thread, if its runtime is single-threaded.
    pub(super) fn set_home(&self) {
        let single = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if single {
            let _ = self.home.set(std::thread::current().id());
        }
    }

    /// Frames written by the direct path so far.
    pub fn direct_frames(&self) -> u64 {
        self.direct.load(Ordering::Relaxed)
    }

    /// The lane, locked, if the direct path is open to a frame of `len`
    /// bytes (see the module docs).
    fn open_to(
        &self,
        queue: &mpsc::Sender<Outgoing>,
        len: usize,
        small: usize,
    ) -> Result<MutexGuard<'_, LaneState>, Closed> {
        if len >= small || self.home.get() != Some(&std::thread::current().id()) {
            return Err(Closed::Queue);
        }
        let state = self.lock();
        let lane = match &*state {
            LaneState::Open(lane) => lane,
            LaneState::Writing => return Err(Closed::Wait),
            LaneState::Closed => return Err(Closed::Queue),
        };
        let queued = queue.max_capacity() - queue.capacity();
        if queued != usize::from(lane.wake_queued) {
            return Err(Closed::Queue);
        }
        if lane.leftover.is_some() || lane.batch.len() >= COALESCE_BYTES {
            return Err(Closed::Wait);
        }
        Ok(state)
    }

    /// Resolves after the writer's next round; enable it before trying the
    /// direct path, so that a round in between is not missed.
    pub fn room(&self) -> Notified<'_> {
        self.room.notified()
    }

    /// Lets the senders waiting for room try again: the writer ended a
    /// round, or stopped.
    pub(super) fn made_room(&self) {
        self.room.notify_waiters();
    }

    /// Queues the wake-up that sends the writer on, unless one waits already.
    fn wake_writer(lane: &mut OpenLane, queue: &mpsc::Sender<Outgoing>) {
        // A full queue wakes the writer anyway; a closed one means the peer
        // is gone.
        if !lane.wake_queued && queue.try_send(Outgoing::Wake).is_ok() {
            lane.wake_queued = true;
        }
    }

    /// Counts a frame that took the direct path.
    fn count(&self, shared: &PeerShared) {
        self.direct.fetch_add(1, Ordering::Relaxed);
        shared.frames_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes a small frame straight into the lane's stream (with the
    /// tells gathered before it) if nothing is queued before it (see the
    /// module docs); gives it back to be queued otherwise. `queue` is the
    /// lane's send queue, where a wake-up goes when QUIC took only part of
    /// the bytes. A failed write takes the peer down (and gives the frame
    /// back, for the queue to refuse).
    pub fn try_write(
        &self,
        shared: &PeerShared,
        queue: &mpsc::Sender<Outgoing>,
        mut header: FrameHeader,
        payload: Payload,
        small: usize,
    ) -> Result<(), GivenBack> {
        let Ok(mut state) = self.open_to(queue, payload.len(), small) else {
            return Err((header, payload));
        };
        let LaneState::Open(lane) = &mut *state else {
            return Err((header, payload));
        };
        lane.gather(&mut header, &payload);
        // From here the frame has its `seq`: it goes out, now or through the writer.
        let written = Self::write_out(lane, queue);
        drop(state);
        if let Err(reason) = written {
            shared.set_down(reason);
            return Err((header, payload));
        }
        if let Payload::Whole(buf) = payload {
            shared.spares.give_back_one(buf);
        }
        self.count(shared);
        Ok(())
    }

    /// Gathers a small tell into the lane's batch, for the writer to hand
    /// to QUIC with the frames after it, if nothing is queued before it
    /// (see the module docs). `encode` writes the tell into the buffer it
    /// is given (`None`: a buffer of its own): the lane's scratch buffer,
    /// with the lane held, so that the bytes are copied once, into the
    /// batch, and the buffer stays with the lane. When the tell is to wait,
    /// nothing is encoded; when it is to be queued (or turns out large), it
    /// comes back encoded into a spare. An encode error comes back as it is.
    // Inlined into the tell's fast path, as before the waiting path called it too.
    #[inline(always)]
    pub fn try_gather_encoding<E>(
        &self,
        shared: &PeerShared,
        queue: &mpsc::Sender<Outgoing>,
        mut header: FrameHeader,
        small: usize,
        encode: impl FnOnce(Option<Buffer>) -> Result<Payload, E>,
    ) -> Result<Result<(), Refused>, E> {
        let mut state = match self.open_to(queue, 0, small) {
            Ok(state) => state,
            Err(Closed::Wait) => return Ok(Err(Refused::Wait)),
            Err(Closed::Queue) => {
                return Ok(Err(Refused::Queue(header, encode(shared.spares.take())?)));
            }
        };
        let LaneState::Open(lane) = &mut *state else {
            drop(state);
            return Ok(Err(Refused::Queue(header, encode(shared.spares.take())?)));
        };
        let payload = match encode(lane.scratch.take())? {
            Payload::Whole(buf) if buf.len() < small => Payload::Whole(buf),
            // Large, or in parts: a bulk frame, for the queue.
            other => return Ok(Err(Refused::Queue(header, other))),
        };
        lane.gather(&mut header, &payload);
        Self::wake_writer(lane, queue);
        if let Payload::Whole(mut buf) = payload
            && buf.capacity() <= SCRATCH_MAX
        {
            buf.clear();
            lane.scratch = Some(buf);
        }
        drop(state);
        self.count(shared);
        Ok(Ok(()))
    }

    /// Hands the batch to QUIC; what it does not take now is left for the
    /// writer, which the wake-up sends on.
    fn write_out(lane: &mut OpenLane, queue: &mpsc::Sender<Outgoing>) -> Result<(), DownReason> {
        let mut chunk = [take_gathered(&mut lane.batch)];
        let polled = std::pin::pin!(lane.stream.write_chunks(&mut chunk))
            .poll(&mut Context::from_waker(Waker::noop()));
        match polled {
            Poll::Ready(Ok(_)) if chunk[0].is_empty() => Ok(()),
            Poll::Ready(Err(e)) => Err(write_error(e)),
            // Taken in part, or not at all (the flow-control window is shut).
            Poll::Ready(Ok(_)) | Poll::Pending => {
                lane.leftover = Some(std::mem::take(&mut chunk[0]));
                Self::wake_writer(lane, queue);
                Ok(())
            }
        }
    }
}
