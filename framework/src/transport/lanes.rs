//! Data lanes. Each side opens one long-lived unidirectional stream (the
//! small lane) and a fresh one per large payload (bulk). The first byte of a
//! stream names its lane. The writer numbers frames (`seq`) in queue order;
//! the receiver puts them back in that order before handing them out.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use crate::wire::{Buffer, FrameHeader, HEADER_LEN};

use super::config::TransportConfig;
use super::error::DownReason;
use super::framing::{ReadFrameError, frame_bytes, is_data_kind, read_frame, write_error};
use super::peer::{Outgoing, PeerShared};

/// First byte of the small lane.
pub(crate) const LANE_SMALL: u8 = 0;
/// First byte of a bulk stream.
pub(crate) const LANE_BULK: u8 = 1;
/// The writer gathers queued small frames up to this many bytes per write.
const COALESCE_BYTES: usize = 256 << 10;
/// The small lane is not read while the reorder buffer holds more frames...
const REORDER_FRAMES: usize = 1024;
/// ...or more bytes than this.
const REORDER_BYTES: usize = 32 << 20;
/// A peer whose frames overflow the reorder buffer this far is broken.
const REORDER_HARD_LIMIT: usize = 8 * REORDER_FRAMES;
/// Frames handed to the layer above but not yet taken.
pub(crate) const INBOUND_QUEUE: usize = 256;

type Frame = (FrameHeader, Buffer);

/// Drains the peer's send queue onto the small lane (coalescing small
/// frames into one write) and onto bulk streams.
pub(crate) async fn writer(
    shared: Arc<PeerShared>,
    mut rx: mpsc::Receiver<Outgoing>,
    config: Arc<TransportConfig>,
) {
    if let Err(reason) = write_loop(&shared, &mut rx, &config).await {
        shared.set_down(reason);
    }
    // Dropping `rx` here makes every waiting sender see the peer gone.
}

async fn write_loop(
    shared: &Arc<PeerShared>,
    rx: &mut mpsc::Receiver<Outgoing>,
    config: &TransportConfig,
) -> Result<(), DownReason> {
    let mut lane = shared
        .conn
        .open_uni()
        .await
        .map_err(|e| super::framing::down_reason(&e))?;
    lane.write_all(&[LANE_SMALL]).await.map_err(write_error)?;
    let bulk_slots = Arc::new(Semaphore::new(
        config.max_uni_streams.saturating_sub(1).max(1) as usize,
    ));
    let mut seq = 0u64;
    let mut batch = Vec::with_capacity(COALESCE_BYTES + HEADER_LEN);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = shared.wait_down() => None,
        };
        let Some(mut next) = first else { return Ok(()) };
        batch.clear();
        loop {
            match next {
                Outgoing::Raw(bytes) => batch.extend_from_slice(&bytes),
                Outgoing::FinishLane => {
                    lane.write_all(&batch).await.map_err(write_error)?;
                    let _ = lane.finish();
                    return Ok(());
                }
                Outgoing::Frame(mut header, payload) => {
                    header.seq = seq;
                    seq += 1;
                    if payload.len() >= config.bulk_threshold {
                        let slot = match bulk_slots.clone().try_acquire_owned() {
                            Ok(slot) => slot,
                            Err(_) => {
                                // Let the small frames go first while bulk streams drain.
                                if !batch.is_empty() {
                                    lane.write_all(&batch).await.map_err(write_error)?;
                                    batch.clear();
                                }
                                bulk_slots.clone().acquire_owned().await.map_err(|_| {
                                    DownReason::Closed("bulk stream slots closed".to_owned())
                                })?
                            }
                        };
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            if let Err(reason) = send_bulk(&shared, header, &payload).await {
                                shared.set_down(reason);
                            }
                            drop(slot);
                        });
                    } else {
                        frame_bytes(header, &payload, &mut batch);
                    }
                }
            }
            if batch.len() >= COALESCE_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(m) => next = m,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            lane.write_all(&batch).await.map_err(write_error)?;
        }
    }
}

async fn send_bulk(
    shared: &PeerShared,
    mut header: FrameHeader,
    payload: &[u8],
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
    stream.write_all(payload).await.map_err(write_error)?;
    stream.finish().map_err(|_| {
        DownReason::ConnectionLost("a bulk stream closed before it was finished".to_owned())
    })
}

/// Accepts the peer's unidirectional streams, reads them, and delivers
/// their frames to `inbound` in `seq` order.
pub(crate) async fn reader(shared: Arc<PeerShared>, inbound: mpsc::Sender<Frame>, max_frame: u64) {
    let (small_tx, small_rx) = mpsc::channel::<Frame>(64);
    let (bulk_tx, bulk_rx) = mpsc::channel::<Frame>(16);
    let reorder = tokio::spawn(reorder(shared.clone(), small_rx, bulk_rx, inbound));
    // The first stream that names itself the small lane takes the sender.
    let small_tx = Arc::new(std::sync::Mutex::new(Some(small_tx)));
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
        let small_tx = small_tx.clone();
        let bulk_tx = bulk_tx.clone();
        tokio::spawn(async move {
            let mut lane = [0u8; 1];
            let result = match recv.read_exact(&mut lane).await {
                Err(quinn::ReadExactError::FinishedEarly(_)) => Err(ReadFrameError::Protocol(
                    "a data stream ended before its lane byte".to_owned(),
                )),
                Err(quinn::ReadExactError::ReadError(e)) => Err(ReadFrameError::Lost(
                    DownReason::ConnectionLost(e.to_string()),
                )),
                Ok(()) => match lane[0] {
                    LANE_SMALL => match small_tx.lock().ok().and_then(|mut slot| slot.take()) {
                        Some(tx) => read_small(&mut recv, max_frame, tx).await,
                        None => Err(ReadFrameError::Protocol(
                            "the peer opened a second small lane".to_owned(),
                        )),
                    },
                    LANE_BULK => read_bulk(&mut recv, max_frame, bulk_tx).await,
                    other => Err(ReadFrameError::Protocol(format!(
                        "unknown data lane {other}"
                    ))),
                },
            };
            fail(&shared, result);
        });
    }
    drop(bulk_tx);
    drop(small_tx);
    let _ = reorder.await;
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

async fn read_small(
    recv: &mut quinn::RecvStream,
    max_frame: u64,
    tx: mpsc::Sender<Frame>,
) -> Result<(), ReadFrameError> {
    let mut last: Option<u64> = None;
    while let Some((header, payload)) = read_frame(recv, max_frame).await? {
        check_data(&header)?;
        if last.is_some_and(|l| header.seq <= l) {
            return Err(ReadFrameError::Protocol(format!(
                "small-lane frame seq {} after {}; sequence numbers must grow",
                header.seq,
                last.unwrap_or_default()
            )));
        }
        last = Some(header.seq);
        if tx.send((header, payload)).await.is_err() {
            break;
        }
    }
    Ok(())
}

async fn read_bulk(
    recv: &mut quinn::RecvStream,
    max_frame: u64,
    tx: mpsc::Sender<Frame>,
) -> Result<(), ReadFrameError> {
    let Some((header, payload)) = read_frame(recv, max_frame).await? else {
        return Err(ReadFrameError::Protocol(
            "a bulk stream carried no frame".to_owned(),
        ));
    };
    check_data(&header)?;
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(ReadFrameError::Protocol(
                "a bulk stream carried more than one frame".to_owned(),
            ));
        }
        Err(e) => {
            return Err(ReadFrameError::Lost(DownReason::ConnectionLost(
                e.to_string(),
            )));
        }
    }
    let _ = tx.send((header, payload)).await;
    Ok(())
}

/// Restores `seq` order. Stops taking small-lane frames while the buffer is
/// full, unless the frame it waits for may itself be on the small lane.
async fn reorder(
    shared: Arc<PeerShared>,
    mut small_rx: mpsc::Receiver<Frame>,
    mut bulk_rx: mpsc::Receiver<Frame>,
    inbound: mpsc::Sender<Frame>,
) {
    let mut pending: BTreeMap<u64, Frame> = BTreeMap::new();
    let mut bytes = 0usize;
    let mut next = 0u64;
    let mut last_small: Option<u64> = None;
    let (mut small_open, mut bulk_open) = (true, true);
    while small_open || bulk_open {
        let roomy = pending.len() < REORDER_FRAMES && bytes < REORDER_BYTES;
        let maybe_small = last_small.is_none_or(|l| l < next);
        let take_small = small_open && (roomy || maybe_small);
        let (frame, from_small) = tokio::select! {
            biased;
            _ = shared.wait_down() => return,
            f = bulk_rx.recv(), if bulk_open => match f {
                Some(f) => (f, false),
                None => { bulk_open = false; continue }
            },
            f = small_rx.recv(), if take_small => match f {
                Some(f) => (f, true),
                None => { small_open = false; continue }
            },
        };
        let seq = frame.0.seq;
        if from_small {
            last_small = Some(seq);
        }
        if seq < next || pending.contains_key(&seq) {
            fail(
                &shared,
                Err(ReadFrameError::Protocol(format!(
                    "frame seq {seq} arrived twice"
                ))),
            );
            return;
        }
        if pending.len() >= REORDER_HARD_LIMIT {
            fail(
                &shared,
                Err(ReadFrameError::Protocol(
                    "too many frames out of order".to_owned(),
                )),
            );
            return;
        }
        bytes += frame.1.len();
        pending.insert(seq, frame);
        while let Some(frame) = pending.remove(&next) {
            bytes -= frame.1.len();
            next += 1;
            tokio::select! {
                biased;
                _ = shared.wait_down() => return,
                // An `Inbound` nobody holds any more just drops its frames.
                _ = inbound.send(frame) => {}
            }
        }
    }
}
