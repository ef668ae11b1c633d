//! Bytes on the wire: frame headers, rkyv encode and validated decode.
//!
//! Everything here is a pure function over bytes: no sockets, no runtime. The
//! transport reads a [`FrameHeader`], checks its declared length against the
//! frame limit *before* allocating, reads the payload into a 16-byte aligned
//! [`Buffer`], and only ever reads it through [`decode`] (rkyv validation).

mod aligned;
mod check;
mod codec;
mod control;
mod error;
mod frame;
mod lane;
mod payload;

pub use aligned::AlignedBytes;
pub use check::{fuzz_frame, fuzz_lane};
pub use codec::{
    ALIGN, Buffer, WireType, aligned_copy, decode, decode_owned, encode, encode_into, encode_to,
    to_owned, type_tag,
};
pub use control::{Challenge, Hello, Proof, Refuse, RemoteFailure, Welcome};
pub use error::{DecodeError, EncodeError, FrameError};
pub use frame::{
    DEFAULT_MAX_FRAME, FrameHeader, FrameKind, HEADER_LEN, MAGIC, WIRE_VERSION, check_len,
    format_fingerprint,
};
pub use lane::{
    LaneDecoder, LaneEncoder, SHORT, SHORT_CORRELATED, SHORT_CORRELATED_LEN, SHORT_LEN,
};
pub use payload::{Payload, SHARE_FROM, WriteShared};

/// Checks a complete frame (header followed by payload) the way a receiving
/// node does, without any I/O: header checks, length limit, then the payload
/// must be exactly the declared length. Returns the header and the payload
/// copied into an aligned buffer. Used by the transport and by the fuzzer.
pub fn split_frame(bytes: &[u8], max_frame: u64) -> Result<(FrameHeader, Buffer), FrameError> {
    let header = FrameHeader::decode(bytes, max_frame)?;
    let body = &bytes[HEADER_LEN..];
    if (body.len() as u64) < header.len {
        return Err(FrameError::Truncated {
            have: bytes.len(),
            need: HEADER_LEN + header.len as usize,
        });
    }
    Ok((header, aligned_copy(&body[..header.len as usize])))
}
