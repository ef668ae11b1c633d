//! Frames on QUIC streams: read one frame (header checked before the payload
//! is allocated), write one, and turn quinn's errors into down reasons.

use quinn::{ConnectionError, ReadExactError, RecvStream, SendStream};

use crate::wire::{
    self, Buffer, FrameError, FrameHeader, FrameKind, HEADER_LEN, Payload, WireType,
};

use super::error::DownReason;

/// Largest payload accepted on the control lane (handshake messages).
pub(crate) const CONTROL_MAX_FRAME: u64 = 64 << 10;

/// Application close codes on the QUIC connection.
pub(crate) mod close_code {
    /// The peer closed after saying goodbye.
    pub const GOODBYE: u32 = 1;
    /// This node closed the connection (see the reason text).
    pub const CLOSED: u32 = 2;
    /// The other side broke the protocol.
    pub const PROTOCOL: u32 = 3;
    /// No heartbeat arrived in time.
    pub const HEARTBEAT: u32 = 4;
    /// The join was refused.
    pub const REFUSED: u32 = 5;
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum ReadFrameError {
    /// The header is not acceptable (magic, version, format, kind, size).
    Header(FrameError),
    /// The bytes break the protocol (truncated frame, wrong lane...).
    Protocol(String),
    /// The connection or stream failed underneath.
    Lost(DownReason),
}

/// What a failed connection means for the peer.
pub(crate) fn down_reason(err: &ConnectionError) -> DownReason {
    match err {
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            match u32::try_from(close.error_code.into_inner()) {
                Ok(close_code::GOODBYE) => DownReason::Goodbye,
                Ok(close_code::HEARTBEAT) => DownReason::ConnectionLost(format!(
                    "the peer declared this node dead (it heard nothing from us for too long: {reason}); this process must restart (a new incarnation) to rejoin it"
                )),
                Ok(close_code::PROTOCOL) => DownReason::ConnectionLost(format!(
                    "the peer found a protocol error in what we sent: {reason}"
                )),
                _ if reason.is_empty() => {
                    DownReason::ConnectionLost("the peer closed the connection".to_owned())
                }
                _ => {
                    DownReason::ConnectionLost(format!("the peer closed the connection: {reason}"))
                }
            }
        }
        ConnectionError::LocallyClosed => {
            DownReason::Closed("connection closed locally".to_owned())
        }
        ConnectionError::TimedOut => {
            DownReason::ConnectionLost("QUIC idle timeout: the peer stopped answering".to_owned())
        }
        other => DownReason::ConnectionLost(other.to_string()),
    }
}

/// What a failed read means for the peer.
pub(crate) fn read_error(err: quinn::ReadError) -> ReadFrameError {
    match err {
        quinn::ReadError::ConnectionLost(e) => ReadFrameError::Lost(down_reason(&e)),
        quinn::ReadError::Reset(code) => {
            ReadFrameError::Protocol(format!("the peer reset a stream (code {code})"))
        }
        other => ReadFrameError::Lost(DownReason::ConnectionLost(other.to_string())),
    }
}

/// What a failed write means for the peer.
pub(crate) fn write_error(err: quinn::WriteError) -> DownReason {
    match err {
        quinn::WriteError::ConnectionLost(e) => down_reason(&e),
        other => DownReason::ConnectionLost(format!("cannot write to the peer: {other}")),
    }
}

/// Reads one frame. `Ok(None)` means the stream ended cleanly between frames;
/// a stream that ends inside a frame is a protocol error.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    max_frame: u64,
) -> Result<Option<(FrameHeader, Buffer)>, ReadFrameError> {
    let mut head = [0u8; HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(n)) => {
            return Err(ReadFrameError::Protocol(format!(
                "truncated frame: the stream ended after {n} of {HEADER_LEN} header bytes"
            )));
        }
        Err(ReadExactError::ReadError(e)) => return Err(read_error(e)),
    }
    let header = FrameHeader::decode(&head, max_frame).map_err(ReadFrameError::Header)?;
    let len = usize::try_from(header.len).map_err(|_| {
        ReadFrameError::Protocol(format!(
            "frame of {} bytes does not fit in memory",
            header.len
        ))
    })?;
    // Chunks are copied straight into the payload: no zero-filling first.
    let mut payload = Buffer::with_capacity(len);
    super::pages::advise_huge(&mut payload);
    while payload.len() < len {
        match recv.read_chunk(len - payload.len(), true).await {
            Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(ReadFrameError::Protocol(format!(
                    "truncated frame: the stream ended after {} of {len} payload bytes of a {:?} frame",
                    payload.len(),
                    header.kind
                )));
            }
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(Some((header, payload)))
}

/// Header and payload of one frame as contiguous bytes; `header.len` is set
/// from the payload.
pub(crate) fn frame_bytes(mut header: FrameHeader, payload: &Payload, out: &mut Vec<u8>) {
    header.len = payload.len() as u64;
    out.extend_from_slice(&header.encode());
    for run in payload.runs() {
        out.extend_from_slice(run);
    }
}

/// Writes one control frame carrying `msg`.
pub(crate) async fn write_msg<T: WireType>(
    send: &mut SendStream,
    kind: FrameKind,
    msg: &T,
) -> Result<(), String> {
    let payload = wire::encode(msg).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    frame_bytes(FrameHeader::new(kind), &payload.into(), &mut bytes);
    send.write_all(&bytes)
        .await
        .map_err(|e| write_error(e).to_string())
}

/// Writes one control frame with an empty payload (heartbeat, goodbye).
pub(crate) async fn write_empty(send: &mut SendStream, kind: FrameKind) -> Result<(), DownReason> {
    send.write_all(&FrameHeader::new(kind).encode())
        .await
        .map_err(write_error)
}

/// True for the kinds that may travel on the reply lane.
pub(crate) fn is_reply_kind(kind: FrameKind) -> bool {
    matches!(kind, FrameKind::Reply | FrameKind::ReplyError)
}

/// True for the kinds that may travel on a data lane (replies too: a reply
/// sent through a data-lane permit still arrives, in data order).
pub(crate) fn is_data_kind(kind: FrameKind) -> bool {
    matches!(
        kind,
        FrameKind::Tell
            | FrameKind::Ask
            | FrameKind::Reply
            | FrameKind::ReplyError
            | FrameKind::Spawn
            | FrameKind::Call
            | FrameKind::Post
    )
}
