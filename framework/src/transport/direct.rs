//! The direct path onto a lane: a request or a reply written by its sender
//! straight into the lane's QUIC stream, when nothing is queued before it,
//! instead of through the lane's writer task.
//!
//! Someone waits for a request's reply, and for a reply, so their latency
//! matters more than gathering them with other frames; the hop through the
//! writer (a queue, a wakeup, a task poll) is about a tenth of a round
//! trip's work on one CPU. Tells keep going through the writer, which
//! gathers them into large writes.
//!
//! The lane's state (its stream, header encoder, next `seq` and batch
//! block) sits behind a lock that the writer holds for each round of
//! frames it writes. A sender takes the direct path only if
//!
//! - it runs on the thread of the writer's single-threaded runtime: the
//!   writer takes the lock in the same poll in which it takes frames from
//!   the queue, so a sender on that thread never finds the lock free while
//!   the writer holds frames it has not written;
//! - the lane's queue holds nothing (no frame, no unsent permit), so no
//!   earlier frame of the same sender is overtaken;
//! - no earlier direct write left bytes unwritten (see below);
//! - the payload is small (a large one goes on a bulk stream).
//!
//! Otherwise the frame goes into the queue as before. QUIC takes the bytes
//! without waiting when its flow-control window has room; when it has too
//! little, what it did not take stays in the lane state for the writer,
//! which a wake-up entry in the queue sends on to write it first. Nothing
//! is lost and order holds.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, mpsc};

use crate::wire::{FrameHeader, LaneEncoder, Payload};

use super::framing::write_error;
use super::peer::{Outgoing, PeerShared};

/// One long-lived lane's writing state, shared by its writer task and the
/// senders that take the direct path.
#[derive(Debug, Default)]
pub(crate) struct LaneSlot {
    /// `None` until the writer opened the lane, and again once it ended it.
    pub(super) state: Mutex<Option<OpenLane>>,
    /// The thread of the writer's runtime, if that runtime is
    /// single-threaded: the only thread that may take the direct path.
    home: std::sync::OnceLock<ThreadId>,
    /// Frames written by the direct path.
    direct: AtomicU64,
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
}

impl OpenLane {
    /// A lane whose stream is `stream`, gathering in blocks of `block` bytes.
    pub fn new(stream: quinn::SendStream, block: usize) -> Self {
        Self {
            stream,
            headers: LaneEncoder::new(),
            seq: 0,
            batch: BytesMut::with_capacity(block),
            leftover: None,
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

/// A frame the direct path gave back, to be queued.
pub(crate) type GivenBack = (FrameHeader, Payload);

impl LaneSlot {
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

    /// Writes a small frame straight into the lane if nothing is queued
    /// before it (see the module docs); gives it back to be queued
    /// otherwise. `queue` is the lane's send queue, where a wake-up goes
    /// when QUIC took only part of the bytes. A failed write takes the
    /// peer down (and gives the frame back, for the queue to refuse).
    pub fn try_write(
        &self,
        shared: &PeerShared,
        queue: &mpsc::Sender<Outgoing>,
        mut header: FrameHeader,
        payload: Payload,
        small: usize,
    ) -> Result<(), GivenBack> {
        let open_to_us = payload.len() < small
            && queue.capacity() == queue.max_capacity()
            && self.home.get() == Some(&std::thread::current().id());
        if !open_to_us {
            return Err((header, payload));
        }
        let Ok(mut state) = self.state.try_lock() else {
            return Err((header, payload));
        };
        let Some(lane) = state.as_mut().filter(|lane| lane.leftover.is_none()) else {
            return Err((header, payload));
        };
        lane.gather(&mut header, &payload);
        // From here the frame has its `seq`: it goes out, now or through the writer.
        let mut chunk = [lane.batch.split().freeze()];
        let polled = std::pin::pin!(lane.stream.write_chunks(&mut chunk))
            .poll(&mut Context::from_waker(Waker::noop()));
        let wake = match polled {
            Poll::Ready(Ok(_)) => !chunk[0].is_empty(),
            Poll::Ready(Err(e)) => {
                drop(state);
                shared.set_down(write_error(e));
                return Err((header, payload));
            }
            // Nothing taken (the flow-control window is shut).
            Poll::Pending => true,
        };
        if wake {
            lane.leftover = Some(std::mem::take(&mut chunk[0]));
        }
        drop(state);
        if wake {
            // A full queue wakes the writer anyway; a closed one means the
            // peer is gone.
            let _ = queue.try_send(Outgoing::Wake);
        }
        if let Payload::Whole(buf) = payload {
            shared.spares.give_back_one(buf);
        }
        self.direct.fetch_add(1, Ordering::Relaxed);
        shared.frames_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
