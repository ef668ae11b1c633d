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
    let Some((header, len)) = read_header(recv, max_frame).await? else {
        return Ok(None);
    };
    // Chunks are copied straight into the payload: no zero-filling first.
    let mut payload = payload_buffer(len);
    while payload.len() < len {
        match recv.read_chunk(len - payload.len(), true).await {
            Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
            Ok(None) => return Err(truncated(&header, payload.len(), len)),
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(Some((header, payload)))
}

/// Chunks taken from a bulk stream at once.
const BULK_CHUNKS: usize = 32;

/// Reads the one frame a stream carries, to the stream's end: its chunks
/// are taken [`BULK_CHUNKS`] at a time (one look at the connection for
/// many packets' worth). Bytes after the frame are a protocol error, as is
/// a stream that ends inside it or before it.
pub(crate) async fn read_only_frame(
    recv: &mut RecvStream,
    max_frame: u64,
) -> Result<(FrameHeader, Buffer), ReadFrameError> {
    let Some((header, len)) = read_header(recv, max_frame).await? else {
        return Err(ReadFrameError::Protocol(
            "a bulk stream carried no frame".to_owned(),
        ));
    };
    let mut payload = payload_buffer(len);
    let mut chunks: [bytes::Bytes; BULK_CHUNKS] = Default::default();
    loop {
        match recv.read_chunks(&mut chunks).await {
            Ok(Some(n)) => {
                for chunk in &mut chunks[..n] {
                    if chunk.len() > len - payload.len() {
                        return Err(ReadFrameError::Protocol(
                            "a bulk stream carried more than one frame".to_owned(),
                        ));
                    }
                    payload.extend_from_slice(chunk);
                    // Give the chunk's memory back now, not at the next read.
                    *chunk = bytes::Bytes::new();
                }
            }
            Ok(None) if payload.len() == len => return Ok((header, payload)),
            Ok(None) => return Err(truncated(&header, payload.len(), len)),
            Err(e) => return Err(read_error(e)),
        }
    }
}

/// Reads and checks a frame header; `Ok(None)` when the stream ended
/// cleanly before it. Returns the payload's length.
async fn read_header(
    recv: &mut RecvStream,
    max_frame: u64,
) -> Result<Option<(FrameHeader, usize)>, ReadFrameError> {
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
    Ok(Some((header, len)))
}

/// An empty buffer with room for a payload of `len` bytes, on huge pages
/// when it is large.
fn payload_buffer(len: usize) -> Buffer {
    let mut payload = Buffer::with_capacity(len);
    super::pages::advise_huge(&mut payload);
    payload
}

/// The error for a stream that ended after `have` of a frame's `len`
/// payload bytes.
fn truncated(header: &FrameHeader, have: usize, len: usize) -> ReadFrameError {
    ReadFrameError::Protocol(format!(
        "truncated frame: the stream ended after {have} of {len} payload bytes of a {:?} frame",
        header.kind
    ))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::baseline::{raw_client, raw_server};

    /// Writes `bytes` on a fresh stream of a raw connection and reads it
    /// back on the other side with [`read_only_frame`].
    async fn read_back(bytes: Vec<u8>) -> Result<(FrameHeader, Buffer), ReadFrameError> {
        let (server, fingerprint) = raw_server("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = raw_client(fingerprint).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = async {
            let conn = server.accept().await.unwrap().await.unwrap();
            let mut recv = conn.accept_uni().await.unwrap();
            let read = read_only_frame(&mut recv, 1 << 30).await;
            (conn, read)
        };
        let send = async {
            let conn = client.connect(addr, "parallel").unwrap().await.unwrap();
            let mut stream = conn.open_uni().await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            stream.finish().unwrap();
            conn
        };
        let ((_server_conn, read), _client_conn) =
            tokio::time::timeout(Duration::from_secs(10), async {
                tokio::join!(accept, send)
            })
            .await
            .expect("read back in time");
        read
    }

    fn frame(payload: &[u8], declared: usize) -> Vec<u8> {
        let mut header = FrameHeader::new(FrameKind::Tell);
        header.len = declared as u64;
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[tokio::test]
    async fn a_bulk_streams_one_frame_is_read_whole_and_anything_else_is_refused() {
        // Large enough to come in many packets, taken in batches.
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (header, read) = read_back(frame(&payload, payload.len())).await.unwrap();
        assert_eq!(header.kind, FrameKind::Tell);
        assert_eq!(&read[..], &payload[..]);
        assert!(read.as_ptr().cast::<u8>().align_offset(crate::wire::ALIGN) == 0);
        let (_, empty) = read_back(frame(&[], 0)).await.unwrap();
        assert!(empty.is_empty());
        let why = |r: Result<(FrameHeader, Buffer), ReadFrameError>| match r {
            Err(ReadFrameError::Protocol(why)) => why,
            Err(other) => panic!("not a protocol error: {other:?}"),
            Ok(_) => panic!("a malformed bulk stream was read"),
        };
        let more = why(read_back(frame(&payload, payload.len() - 1)).await);
        assert!(more.contains("more than one frame"), "{more}");
        let short = why(read_back(frame(&payload[..1000], 1001)).await);
        assert!(
            short.contains("after 1000 of 1001 payload bytes"),
            "{short}"
        );
        let none = why(read_back(Vec::new()).await);
        assert!(none.contains("carried no frame"), "{none}");
    }
}
