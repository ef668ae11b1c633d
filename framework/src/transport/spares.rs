//! Small payload buffers handed back by a peer's writer once their bytes
//! are in a batch, for the next messages to that peer to be encoded into:
//! a stream of small messages allocates no buffer for each.
//!
//! Without them, each small message's buffer is allocated by its sender and
//! freed by the writer a moment later, by the hundred in a burst — past
//! glibc's per-thread cache, so both take the allocator's slow paths.
//! A peer keeps at most as many buffers as its send queue holds frames
//! (`TransportConfig::send_queue`, 1024: a sender that fills the queue
//! finds a spare for each message of its next burst), each of at most
//! [`SPARE_MAX`] bytes — at most 512 KiB with the default queue, and only
//! as many as its bursts needed, memory its fullest burst held anyway;
//! larger buffers are freed as before.
//!
//! The receiving side keeps spares of its own, the same way: a small
//! payload read from the peer is copied into a spare ([`Spares::copy_of`]),
//! and the actor that decoded it hands the buffer back
//! (`actor::Inbound::recycling`).

use std::sync::{Mutex, MutexGuard};

use crate::wire::Buffer;

/// Buffers with more capacity than this are not kept.
pub(crate) const SPARE_MAX: usize = 512;
/// A peer's spare payload buffers; see the module docs.
#[derive(Debug)]
pub(crate) struct Spares {
    free: Mutex<Vec<Buffer>>,
    /// Buffers kept at most.
    keep: usize,
}

impl Spares {
    /// Keeps at most `keep` buffers.
    pub fn new(keep: usize) -> Self {
        Self {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Buffer>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer a payload used before, if one is kept.
    pub fn take(&self) -> Option<Buffer> {
        self.lock().pop()
    }

    /// Keeps the buffers of `spent` that are small enough, up to its
    /// `keep` in all, emptied; frees the others. Leaves `spent` empty.
    pub fn give_back(&self, spent: &mut Vec<Buffer>) {
        if spent.is_empty() {
            return;
        }
        let mut free = self.lock();
        for buf in spent.drain(..) {
            self.keep_in(&mut free, buf);
        }
    }

    /// [`Spares::give_back`] for one buffer.
    pub fn give_back_one(&self, buf: Buffer) {
        self.keep_in(&mut self.lock(), buf);
    }

    /// Keeps `buf` in `free`, emptied, if it is small enough and there is room.
    fn keep_in(&self, free: &mut Vec<Buffer>, mut buf: Buffer) {
        if free.len() < self.keep && buf.capacity() <= SPARE_MAX {
            buf.clear();
            free.push(buf);
        }
    }

    /// `bytes` in an aligned buffer: a spare when they are small (one that
    /// held a shorter payload grows), else a buffer of their own. The
    /// spare comes from `stash`, the reader's own; an empty stash takes
    /// every buffer kept here at once (one lock for a run of payloads, not
    /// one each: 70 instructions a payload were this lock).
    pub fn copy_of(&self, stash: &mut Vec<Buffer>, bytes: &[u8]) -> Buffer {
        if bytes.len() > SPARE_MAX {
            return crate::wire::aligned_copy(bytes);
        }
        if stash.is_empty() {
            std::mem::swap(&mut *self.lock(), stash);
        }
        let mut buf = stash
            .pop()
            .unwrap_or_else(|| Buffer::with_capacity(bytes.len().next_multiple_of(64)));
        buf.extend_from_slice(bytes);
        buf
    }

    /// Buffers kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(capacity: usize) -> Buffer {
        let mut b = Buffer::with_capacity(capacity);
        b.extend_from_slice(&[1, 2, 3]);
        b
    }

    #[test]
    fn small_buffers_come_back_empty_and_large_ones_go() {
        let spares = Spares::new(8);
        assert!(spares.take().is_none());
        let small = buffer(64);
        let at = small.as_ptr();
        let mut spent = vec![small, buffer(SPARE_MAX + 1)];
        spares.give_back(&mut spent);
        assert!(spent.is_empty());
        assert_eq!(spares.len(), 1);
        let again = spares.take().expect("the small buffer is kept");
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        assert!(spares.take().is_none());
    }

    #[test]
    fn a_small_received_payload_is_copied_into_a_spare_and_comes_back() {
        let (spares, mut stash) = (Spares::new(8), Vec::new());
        let first = spares.copy_of(&mut stash, &[7; 100]);
        assert_eq!(&first[..], &[7; 100][..]);
        let at = first.as_ptr();
        spares.give_back_one(first);
        let again = spares.copy_of(&mut stash, &[9; 90]);
        assert_eq!(again.as_ptr(), at, "the spare was not reused");
        assert_eq!(&again[..], &[9; 90][..]);
        spares.give_back_one(again);
        // One that held a shorter payload grows to a longer one.
        let longer = spares.copy_of(&mut stash, &[3; 300]);
        assert_eq!(&longer[..], &[3; 300][..]);
        // A large one gets a buffer of its own, and is not kept.
        let large = spares.copy_of(&mut stash, &[1; SPARE_MAX + 1]);
        assert_eq!(large.len(), SPARE_MAX + 1);
        spares.give_back_one(large);
        assert_eq!(spares.len(), 0);
        // An empty stash takes every buffer kept at once: the rest are
        // taken from the stash, with no look at the shared list.
        let given: Vec<Buffer> = (0..3)
            .map(|_| spares.copy_of(&mut stash, &[1; 64]))
            .collect();
        let mut given = given;
        spares.give_back(&mut given);
        assert_eq!((spares.len(), stash.len()), (3, 0));
        let one = spares.copy_of(&mut stash, &[2; 64]);
        assert_eq!((spares.len(), stash.len()), (0, 2));
        spares.give_back_one(one);
        let _two = spares.copy_of(&mut stash, &[2; 64]);
        assert_eq!((spares.len(), stash.len()), (1, 1));
    }

    #[test]
    fn no_more_than_keep_are_kept() {
        const KEEP: usize = 8;
        let spares = Spares::new(KEEP);
        let mut spent: Vec<_> = (0..KEEP + 10).map(|_| buffer(64)).collect();
        spares.give_back(&mut spent);
        assert_eq!(spares.len(), KEEP);
    }
}
