//! Frame headers on a long-lived lane: pure functions over bytes, with the
//! one header each side remembers.
//!
//! A lane (one QUIC stream that carries many frames in order) opens with a
//! full [`HEADER_LEN`]-byte header ([`FrameHeader::encode`]). After it, a
//! frame whose header repeats the previous frame's on the same lane — same
//! kind, flags, target, source and type — and whose sequence number is
//! 1 to 255 above it, is sent with a short header instead:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | [`SHORT`], or [`SHORT_CORRELATED`] |
//! | 1 | 1 | sequence step (added to the previous frame's `seq`) |
//! | 2 | 4 | payload length (little endian) |
//! | 6 | 8 | correlation id, after [`SHORT_CORRELATED`] only |
//!
//! so a stream of tells to one actor costs [`SHORT_LEN`] bytes of header a
//! message, not [`HEADER_LEN`] (and a stream of asks [`SHORT_CORRELATED_LEN`]):
//! on a machine whose QUIC moves a fixed number of bytes a second, that is
//! as many more messages. A full header starts with the magic `P`, which
//! neither short form does, so the reader knows the form from the first byte.
//! The reader checks a short header as it checks a full one (the length
//! against `max_frame` before anything is allocated) and refuses one with
//! no header before it on its lane.
//!
//! ```
//! use parallel::wire::{FrameHeader, FrameKind, LaneDecoder, LaneEncoder, SHORT_LEN, HEADER_LEN};
//!
//! let (mut out, mut enc) = (Vec::new(), LaneEncoder::new());
//! let mut h = FrameHeader::new(FrameKind::Tell);
//! h.len = 0;
//! enc.encode(&h, &mut out);
//! h.seq = 1;
//! enc.encode(&h, &mut out);
//! assert_eq!(out.len(), HEADER_LEN + SHORT_LEN);
//!
//! let mut dec = LaneDecoder::new(1 << 20);
//! let (first, used) = dec.decode(&out)?.expect("a whole header");
//! let (second, _) = dec.decode(&out[used..])?.expect("a whole header");
//! assert_eq!((first.seq, second.seq), (0, 1));
//! # Ok::<(), parallel::wire::FrameError>(())
//! ```

use bytes::BufMut;

use super::error::FrameError;
use super::frame::{FrameHeader, HEADER_LEN, MAGIC, check_len};

/// First byte of a short header that repeats the previous header but for
/// its length and sequence number.
pub const SHORT: u8 = 0x01;
/// First byte of a short header that also carries a correlation id of its own.
pub const SHORT_CORRELATED: u8 = 0x02;
/// Bytes of a [`SHORT`] header.
pub const SHORT_LEN: usize = 6;
/// Bytes of a [`SHORT_CORRELATED`] header.
pub const SHORT_CORRELATED_LEN: usize = SHORT_LEN + 8;

/// The writing side of a lane: encodes each header in the shortest form the
/// previous one allows.
#[derive(Debug, Default)]
pub struct LaneEncoder {
    last: Option<FrameHeader>,
}

impl LaneEncoder {
    /// An encoder for a lane that carries nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `header` (its `len` already set) to `out`, short when it
    /// repeats the previous header, whole otherwise.
    pub fn encode(&mut self, header: &FrameHeader, out: &mut impl BufMut) {
        match self.last.as_ref().and_then(|last| short_form(last, header)) {
            Some((step, len, correlated)) => {
                // One write of the whole short header.
                let mut short = [0u8; SHORT_CORRELATED_LEN];
                short[0] = if correlated { SHORT_CORRELATED } else { SHORT };
                short[1] = step;
                short[2..6].copy_from_slice(&len.to_le_bytes());
                short[6..].copy_from_slice(&header.correlation.to_le_bytes());
                let used = if correlated {
                    SHORT_CORRELATED_LEN
                } else {
                    SHORT_LEN
                };
                out.put_slice(&short[..used]);
            }
            None => out.put_slice(&header.encode()),
        }
        self.last = Some(*header);
    }

    /// Forgets the previous header, so that the next one is written whole:
    /// for a lane on which bytes not written by this encoder went in between.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

/// The step, length and whether the correlation id changed, of `header` in
/// a short form after `last`, if it has one.
fn short_form(last: &FrameHeader, header: &FrameHeader) -> Option<(u8, u32, bool)> {
    let same = last.kind == header.kind
        && last.flags == header.flags
        && last.target == header.target
        && last.source == header.source
        && last.type_tag == header.type_tag;
    if !same {
        return None;
    }
    let step = u8::try_from(header.seq.checked_sub(last.seq)?).ok()?;
    let len = u32::try_from(header.len).ok()?;
    (step > 0).then_some((step, len, last.correlation != header.correlation))
}

/// The reading side of a lane: decodes full and short headers, remembering
/// the previous one.
#[derive(Debug)]
pub struct LaneDecoder {
    last: Option<FrameHeader>,
    max_frame: u64,
}

impl LaneDecoder {
    /// A decoder for a lane that carried nothing yet, refusing payloads over
    /// `max_frame` bytes.
    pub fn new(max_frame: u64) -> Self {
        Self {
            last: None,
            max_frame,
        }
    }

    /// The header at the start of `bytes`, checked, and how many bytes it
    /// takes; `Ok(None)` while `bytes` holds only a part of it. A header
    /// returned is taken: the next call reads the one after its payload.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let (header, used) = match first {
            SHORT | SHORT_CORRELATED => {
                let used = if first == SHORT {
                    SHORT_LEN
                } else {
                    SHORT_CORRELATED_LEN
                };
                let Some(short) = bytes.get(..used) else {
                    return Ok(None);
                };
                let mut header = self.last.ok_or(FrameError::NothingToRepeat)?;
                let mut len = [0u8; 4];
                len.copy_from_slice(&short[2..6]);
                header.len = u64::from(u32::from_le_bytes(len));
                check_len(header.len, self.max_frame)?;
                // A step of zero, or past the end of the numbers, makes a
                // `seq` that does not grow: the lane refuses that.
                header.seq = header.seq.wrapping_add(u64::from(short[1]));
                if first == SHORT_CORRELATED {
                    let mut correlation = [0u8; 8];
                    correlation.copy_from_slice(&short[6..14]);
                    header.correlation = u64::from_le_bytes(correlation);
                }
                (header, used)
            }
            b if b == MAGIC[0] => {
                let Some(full) = bytes.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                (FrameHeader::decode(full, self.max_frame)?, HEADER_LEN)
            }
            other => return Err(FrameError::UnknownHeader(other)),
        };
        self.last = Some(header);
        Ok(Some((header, used)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::id::ActorId;
    use crate::wire::FrameKind;

    fn tell(target: ActorId, seq: u64, len: u64) -> FrameHeader {
        let mut h = FrameHeader::new(FrameKind::Tell);
        h.target = target;
        h.type_tag = 7;
        h.seq = seq;
        h.len = len;
        h
    }

    /// Every header of `headers` through one encoder, then one decoder.
    fn round_trip(headers: &[FrameHeader]) -> (Vec<u8>, Vec<FrameHeader>) {
        let (mut out, mut enc) = (Vec::new(), LaneEncoder::new());
        for h in headers {
            enc.encode(h, &mut out);
        }
        let (mut dec, mut at, mut back) = (LaneDecoder::new(u64::MAX), 0, Vec::new());
        while let Some((h, used)) = dec.decode(&out[at..]).expect("our own bytes decode") {
            back.push(h);
            at += used;
        }
        assert_eq!(at, out.len(), "every byte read");
        (out, back)
    }

    #[test]
    fn a_run_of_tells_to_one_actor_takes_short_headers() {
        let target = ActorId::new();
        let headers: Vec<_> = (0..100).map(|i| tell(target, i, 100 + i)).collect();
        let (bytes, back) = round_trip(&headers);
        assert_eq!(back, headers);
        assert_eq!(bytes.len(), HEADER_LEN + 99 * SHORT_LEN);
    }

    #[test]
    fn asks_carry_their_correlation_and_other_changes_go_whole() {
        let target = ActorId::new();
        let mut ask = tell(target, 0, 8);
        ask.kind = FrameKind::Ask;
        let mut next = ask;
        next.seq = 3;
        next.correlation = 99;
        let other_actor = tell(ActorId::new(), 4, 8);
        let far = tell(other_actor.target, 4 + 256, 8);
        let huge = tell(other_actor.target, 4 + 257, u64::from(u32::MAX) + 1);
        let headers = [ask, next, other_actor, far, huge];
        let (bytes, back) = round_trip(&headers);
        assert_eq!(back, headers);
        assert_eq!(bytes.len(), 4 * HEADER_LEN + SHORT_CORRELATED_LEN);
    }

    #[test]
    fn a_forgetful_encoder_writes_the_next_header_whole() {
        let target = ActorId::new();
        let (mut out, mut enc) = (Vec::new(), LaneEncoder::new());
        enc.encode(&tell(target, 0, 1), &mut out);
        enc.forget();
        enc.encode(&tell(target, 1, 1), &mut out);
        assert_eq!(out.len(), 2 * HEADER_LEN);
    }

    #[test]
    fn bad_short_headers_are_refused_with_typed_errors() {
        let mut dec = LaneDecoder::new(1000);
        assert_eq!(
            dec.decode(&[SHORT, 1, 0, 0, 0, 0]),
            Err(FrameError::NothingToRepeat)
        );
        assert_eq!(dec.decode(&[0x7f, 0]), Err(FrameError::UnknownHeader(0x7f)));
        let target = ActorId::new();
        let full = tell(target, 5, 10).encode();
        assert_eq!(dec.decode(&full[..40]), Ok(None), "a part waits for more");
        assert!(dec.decode(&full).unwrap().is_some());
        assert_eq!(
            dec.decode(&[SHORT, 1, 0xe8]),
            Ok(None),
            "a part waits for more"
        );
        let err = dec.decode(&[SHORT, 1, 0xe9, 3, 0, 0]).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                declared: 1001,
                limit: 1000
            }
        ));
        let (h, used) = dec.decode(&[SHORT, 2, 0xe8, 3, 0, 0]).unwrap().unwrap();
        assert_eq!((h.seq, h.len, h.target, used), (7, 1000, target, SHORT_LEN));
    }

    fn any_header() -> impl Strategy<Value = FrameHeader> {
        (
            0u8..3,
            0u8..2,
            0u8..3,
            0u64..3,
            0u64..400,
            0u64..5_000_000_000,
        )
            .prop_map(|(kind, flags, target, correlation, step, len)| {
                let ids = [
                    ActorId::nil(),
                    ActorId::from_bytes([1; 16]),
                    ActorId::from_bytes([2; 16]),
                ];
                let mut h = FrameHeader::new(
                    [FrameKind::Tell, FrameKind::Ask, FrameKind::Post][kind as usize],
                );
                h.flags = flags;
                h.target = ids[target as usize];
                h.correlation = correlation;
                h.seq = step;
                h.len = len;
                h
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_run_of_headers_round_trips(mut headers in proptest::collection::vec(any_header(), 0..40)) {
            // `seq` grows on a lane: each header's `seq` is a step from the last.
            let mut seq = 0;
            for h in &mut headers {
                seq += h.seq + 1;
                h.seq = seq;
            }
            let (_, back) = round_trip(&headers);
            prop_assert_eq!(back, headers);
        }
    }
}
