//! The receive path of one frame as a single pure function, for the fuzzer
//! and the property tests: nothing it is given may make it panic.

use super::{
    Challenge, Hello, LaneDecoder, Proof, Refuse, RemoteFailure, Welcome, decode, split_frame,
};
use crate::id::ActorId;

/// Runs `bytes` through everything a node does with a received frame:
/// header decode, the size limit (1 MiB here), and validated decode of the
/// payload as each type the wire carries. Returns how many decodes accepted
/// the bytes.
pub fn fuzz_frame(bytes: &[u8]) -> usize {
    let Ok((_, payload)) = split_frame(bytes, 1 << 20) else {
        return 0;
    };
    [
        decode::<Hello>(&payload).is_ok(),
        decode::<Challenge>(&payload).is_ok(),
        decode::<Proof>(&payload).is_ok(),
        decode::<Welcome>(&payload).is_ok(),
        decode::<Refuse>(&payload).is_ok(),
        decode::<RemoteFailure>(&payload).is_ok(),
        decode::<ActorId>(&payload).is_ok(),
        decode::<(u64, String)>(&payload).is_ok(),
        decode::<Vec<f32>>(&payload).is_ok(),
        decode::<Option<Vec<String>>>(&payload).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

/// Reads `bytes` as a lane does (a node's small or reply lane): header after
/// header, full or short, each followed by its payload, until the bytes end
/// or a header is refused. Returns how many frames were read whole.
pub fn fuzz_lane(bytes: &[u8]) -> usize {
    let mut lane = LaneDecoder::new(1 << 20);
    let (mut at, mut frames) = (0usize, 0);
    while let Ok(Some((header, used))) = lane.decode(&bytes[at..]) {
        // The length was checked against the limit: it fits in memory.
        let end = at + used + header.len as usize;
        if end > bytes.len() {
            break;
        }
        at = end;
        frames += 1;
    }
    frames
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::id::NodeId;
    use crate::wire::{FrameHeader, FrameKind, HEADER_LEN, LaneEncoder, encode};

    fn valid_frame(payload_kind: u8, text: String) -> Vec<u8> {
        let payload = match payload_kind % 3 {
            0 => encode(&Hello {
                node: NodeId::new(),
                join_line: text,
                nonce: [3; 32],
                incarnation: 9,
            })
            .unwrap(),
            1 => encode(&RemoteFailure {
                location: None,
                code: 7,
                message: text,
            })
            .unwrap(),
            _ => encode(&(42u64, text)).unwrap(),
        };
        let mut header = FrameHeader::new(FrameKind::Ask);
        header.len = payload.len() as u64;
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    }

    #[test]
    fn a_valid_frame_is_accepted() {
        let bytes = valid_frame(1, "hello".into());
        assert!(fuzz_frame(&bytes) >= 1);
        assert_eq!(
            fuzz_frame(&bytes[..HEADER_LEN + 3]),
            0,
            "truncated payload refused"
        );
    }

    /// A lane of `n` tells to one actor, each with a payload of `i` bytes.
    fn valid_lane(n: u64) -> Vec<u8> {
        let (mut bytes, mut lane) = (Vec::new(), LaneEncoder::new());
        for i in 0..n {
            let mut header = FrameHeader::new(FrameKind::Tell);
            header.seq = i;
            header.len = i;
            lane.encode(&header, &mut bytes);
            bytes.resize(bytes.len() + i as usize, i as u8);
        }
        bytes
    }

    #[test]
    fn a_valid_lane_is_read_whole() {
        let bytes = valid_lane(20);
        assert_eq!(fuzz_lane(&bytes), 20);
        assert_eq!(
            fuzz_lane(&bytes[..bytes.len() - 1]),
            19,
            "a cut frame is not read"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 50_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            fuzz_frame(&bytes);
        }

        #[test]
        fn random_lanes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            fuzz_lane(&bytes);
        }

        #[test]
        fn mutated_lanes_never_panic(
            n in 0u64..20,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = valid_lane(n);
            if !bytes.is_empty() {
                for (at, value) in flips {
                    let i = at % bytes.len();
                    bytes[i] ^= value;
                }
            }
            fuzz_lane(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(
            kind in any::<u8>(),
            text in ".{0,40}",
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut bytes = valid_frame(kind, text);
            for (at, value) in flips {
                let i = at % bytes.len();
                bytes[i] ^= value;
            }
            let keep = cut % (bytes.len() + 1);
            bytes.truncate(keep.max(bytes.len() / 2));
            bytes.extend_from_slice(&tail);
            fuzz_frame(&bytes);
        }
    }
}
