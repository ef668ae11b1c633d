//! Large payload buffers on transparent huge pages. A 64 MiB payload in a
//! fresh buffer is 16,384 first touches of 4 KiB pages, each a page fault
//! (measured with `bench_remote`: advising the receiver's buffer took a
//! 64 MiB `ask` from 0.47 to 0.50–0.53 of raw quinn bulk, advising the
//! sender's too to 0.60–0.66). Where the kernel allows
//! it (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise` or
//! `always`), a buffer of at least [`HUGE_FROM`] bytes is advised to use
//! 2 MiB pages before it is written: 32 faults for the same 64 MiB. The
//! advice changes nothing else; where huge pages are off it is ignored.
//!
//! Two places take large buffers: the encoding of an outgoing message
//! ([`encode`], which grows its buffer at once to fit a large write — a
//! long `Vec<u8>` field — and advises it; a large tensor's elements are not
//! written into it at all but kept as a part of the payload, see
//! [`crate::wire::WriteShared`]) and the reading of an incoming frame
//! (`framing::read_frame` and `read_only_frame`, which know the length
//! from the header).

use bytes::Bytes;
use rkyv::rancor::Source;
use rkyv::ser::{Positional, Writer};

use crate::wire::{Buffer, EncodeError, Payload, SHARE_FROM, WireType, WriteShared};

/// Buffers of at least this many bytes are put on huge pages.
pub const HUGE_FROM: usize = 4 << 20;

/// The size of a transparent huge page on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Room kept after a large write, for what an archive writes after its
/// data (the root), so that needs no second allocation; also the first
/// room of the buffer after a shared part.
const TAIL: usize = 4096;

/// Advises the kernel to back `buf`'s capacity with huge pages when it is
/// at least [`HUGE_FROM`] bytes (before its pages are touched, or it has no
/// effect on them). Only the 2 MiB-aligned part inside the allocation is
/// advised.
pub fn advise_huge(buf: &mut Buffer) {
    if buf.capacity() < HUGE_FROM {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let lo = start.next_multiple_of(HUGE_PAGE);
    let hi = (start + buf.capacity()) / HUGE_PAGE * HUGE_PAGE;
    if hi <= lo {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `lo..hi` lies inside `buf`'s allocation, which this
        // process owns and keeps mapped while `buf` lives; MADV_HUGEPAGE
        // only marks how the kernel backs the range (it moves, frees and
        // changes nothing). A refusal (huge pages off) is harmless.
        let _ = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    }
}

/// Archives `value` like [`crate::wire::encode`] (the same bytes), into a
/// buffer of `capacity` bytes at first that, when one write would not fit
/// and the archive would reach [`HUGE_FROM`] bytes, grows at once to fit it
/// and is advised onto huge pages ([`advise_huge`]) before it is written.
/// A run of at least [`SHARE_FROM`] bytes that the value hands over shared
/// ([`WriteShared`]: a tensor's elements) is not copied: it becomes a part
/// of the payload, kept alive by the payload until it is sent.
pub fn encode<T: WireType>(value: &T, capacity: usize) -> Result<Payload, EncodeError> {
    encode_in(value, Buffer::with_capacity(capacity))
}

/// [`encode`] into `buf` (emptied first): a buffer used before, whose
/// memory the payload takes over.
pub fn encode_in<T: WireType>(value: &T, mut buf: Buffer) -> Result<Payload, EncodeError> {
    buf.clear();
    let mut writer = Growing {
        buf,
        parts: Vec::new(),
        before: 0,
    };
    advise_huge(&mut writer.buf);
    crate::wire::encode_to(value, &mut writer)?;
    Ok(writer.finish())
}

/// A buffer that grows to fit a large write in one step, on huge pages, and
/// keeps large shared runs as parts of their own.
struct Growing {
    /// The bytes written since the last part.
    buf: Buffer,
    /// The parts before `buf`, in order.
    parts: Vec<Bytes>,
    /// Bytes in `parts`.
    before: usize,
}

impl Growing {
    fn finish(mut self) -> Payload {
        if self.parts.is_empty() {
            return Payload::Whole(self.buf);
        }
        if !self.buf.is_empty() {
            self.parts.push(Bytes::from_owner(self.buf));
        }
        Payload::Parts(self.parts)
    }
}

impl Positional for Growing {
    fn pos(&self) -> usize {
        self.before + self.buf.len()
    }
}

impl<E: Source> Writer<E> for Growing {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        let buf = &mut self.buf;
        if bytes.len() > buf.capacity() - buf.len() && buf.len() + bytes.len() >= HUGE_FROM {
            buf.reserve_exact(bytes.len() + TAIL);
            advise_huge(buf);
        }
        buf.extend_from_slice(bytes);
        Ok(())
    }
}

impl<E: Source> WriteShared<E> for Growing {
    fn write_shared(&mut self, bytes: Bytes) -> Result<(), E> {
        if bytes.len() < SHARE_FROM {
            return self.write(&bytes);
        }
        if !self.buf.is_empty() {
            let written = std::mem::replace(&mut self.buf, Buffer::with_capacity(TAIL));
            self.before += written.len();
            self.parts.push(Bytes::from_owner(written));
        }
        self.before += bytes.len();
        self.parts.push(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Tensor;

    /// Whether the kernel's huge pages may back advised memory, from
    /// `/sys/kernel/mm/transparent_hugepage/enabled`: `Some(true)` for
    /// `madvise` (only advised memory: the advice is what decides),
    /// `Some(false)` for `always` (every large mapping: the advice changes
    /// nothing to check), `None` when off or unknown, or when this process
    /// may not use them (`THP_enabled: 0` in `/proc/self/status`, as
    /// `prctl(PR_SET_THP_DISABLE)` leaves it).
    fn only_advised() -> Option<bool> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        if status
            .lines()
            .any(|l| l.starts_with("THP_enabled:") && l.trim_end().ends_with('0'))
        {
            return None;
        }
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
        if mode.contains("[madvise]") {
            Some(true)
        } else if mode.contains("[always]") {
            Some(false)
        } else {
            None
        }
    }

    /// Checks that the mapping holding `addr` may get huge pages
    /// (`THPeligible` in `/proc/self/smaps`, where the kernel says it).
    fn assert_eligible(addr: usize, what: &str) {
        match eligible(addr) {
            Some(yes) => assert!(yes, "{what} was not advised onto huge pages"),
            None => eprintln!("no THPeligible in /proc/self/smaps here: nothing to check"),
        }
    }

    /// Whether the mapping holding `addr` may get huge pages, if the kernel
    /// says (`THPeligible` in `/proc/self/smaps`).
    fn eligible(addr: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = (a..b).contains(&addr);
            } else if inside && let Some(v) = line.strip_prefix("THPeligible:") {
                return Some(v.trim() == "1");
            }
        }
        None
    }

    /// The payload's bytes in one buffer, and that buffer when it was one.
    fn whole(payload: Payload) -> Buffer {
        match payload {
            Payload::Whole(buf) => buf,
            Payload::Parts(_) => panic!("a payload in parts where one buffer was expected"),
        }
    }

    #[test]
    fn a_large_message_is_encoded_as_encode_does_on_advised_pages_and_a_small_one_is_not() {
        // A large run that is copied (bytes in a plain `Vec`, not shared).
        let big: Vec<u8> = vec![7u8; 8 << 20];
        let mut ours = whole(encode(&big, 64).unwrap());
        assert_eq!(&ours[..], &crate::wire::encode(&big).unwrap()[..]);
        // Grown once, to fit (not to the next power of two: 16 MiB here).
        assert!(
            ours.capacity() < ours.len() + 2 * TAIL,
            "capacity {} for {} bytes",
            ours.capacity(),
            ours.len()
        );
        let small = whole(encode(&7u64, 64).unwrap());
        assert_eq!(&small[..], &crate::wire::encode(&7u64).unwrap()[..]);
        match only_advised() {
            Some(true) => {
                let inside = ours.as_mut_ptr() as usize + ours.len() / 2;
                assert_eligible(inside, "the 8 MiB buffer");
            }
            Some(false) => eprintln!("huge pages back every large mapping here: nothing to check"),
            None => eprintln!("transparent huge pages are off here: nothing to check"),
        }
    }

    #[test]
    fn a_large_tensors_elements_are_a_part_of_the_payload_not_a_copy() {
        let big = Tensor::new(&[2, (4 << 20) / 8], vec![1.5f32; (4 << 20) / 4]).unwrap();
        let payload = encode(&(3u64, big.clone()), 64).unwrap();
        assert_eq!(
            &payload.clone().into_buffer()[..],
            &crate::wire::encode(&(3u64, big.clone())).unwrap()[..],
            "the parts are not the bytes encode gives"
        );
        let Payload::Parts(parts) = &payload else {
            panic!("the tensor's elements were copied into one buffer");
        };
        let elements = crate::actor::element_bytes(big.as_slice());
        let (at, len) = (elements.as_ptr(), elements.len());
        assert!(
            parts.iter().any(|p| p.as_ptr() == at && p.len() == len),
            "no part is the tensor's own memory"
        );
        // The part keeps the elements alive and unchanged: a write into the
        // tensor now copies them first.
        let mut written = big;
        written.as_mut_slice()[0] = 9.0;
        assert_ne!(written.as_slice().as_ptr().cast::<u8>(), at);
        assert!(
            payload
                .runs()
                .any(|r| r.as_ptr() == at && r[..4] == 1.5f32.to_le_bytes())
        );
        // Below `SHARE_FROM`, elements are copied: one buffer.
        let small = Tensor::from_vec(vec![2u8; SHARE_FROM - 1]);
        let one = whole(encode(&small, 64).unwrap());
        assert_eq!(&one[..], &crate::wire::encode(&small).unwrap()[..]);
    }

    #[test]
    fn a_read_buffer_of_a_large_frame_is_advised() {
        let mut buf = Buffer::with_capacity(HUGE_FROM * 2);
        advise_huge(&mut buf);
        let inside = buf.as_mut_ptr() as usize + HUGE_FROM;
        if only_advised() == Some(true) {
            assert_eligible(inside, "the read buffer");
        }
    }
}
