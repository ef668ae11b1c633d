//! A sender's pool of shared-memory segments: big payloads to one receiver
//! on this machine go into pages that are already there, instead of a fresh
//! file whose every page the kernel must allocate and zero first.
//!
//! [`shm::write`](super::shm::write) makes a fresh file for every payload;
//! writing 64 MiB into one costs about twice a `memcpy`, and the receiver
//! then faults every page in. A [`SegmentPool`] keeps a few files
//! (`/dev/shm/parallel-<pid>-<uuid>`, mode 0600), each mapped read-write by
//! the sender with every page touched once. A segment starts with one page
//! of header — a magic word and the **lease** it is lent under — and the
//! archive follows at the next page boundary, so the receiver views it in
//! place.
//!
//! Lending and handing back:
//! - [`SegmentPool::write`] takes a free segment big enough (or makes one),
//!   stamps it with a fresh lease, archives the value into it and returns a
//!   [`ShmRef`] carrying the lease.
//! - The receiver's [`shm::open`](super::shm::open) maps the payload
//!   read-only (every page mapped at once) and the header read-write, and
//!   checks the lease. When the [`Mapping`] drops, the lease is cleared: the
//!   segment is free again, and the sender's next payload reuses its pages.
//! - A reference that will not be opened is handed back by
//!   [`shm::discard`](super::shm::discard), on either side.
//!
//! The sender never writes a segment while it is lent, so the receiver's
//! validated view stays what it validated. When every segment is lent (or a
//! payload is bigger than the pool keeps, or `/dev/shm` has no room for
//! another segment), `write` falls back to a fresh file. A receiver that crashes holding a lease leaves that segment lent
//! until the pool drops. Dropping the pool removes its files; a receiver
//! still holding a mapping keeps those pages until it lets go.
//!
//! ```
//! use parallel::transport::segments::SegmentPool;
//! use parallel::transport::shm;
//! use parallel::{Tensor, wire};
//!
//! let pool = SegmentPool::new();
//! let t = Tensor::full(&[256, 256], 1.0f32);
//! let first = pool.write(&t)?; // sender: send `first` in a message
//! let m = shm::open(&first, 1 << 30)?; // receiver
//! assert_eq!(wire::decode::<Tensor<f32>>(&m)?.len(), 256 * 256);
//! drop(m); // the receiver is done: the segment is free
//! let second = pool.write(&t)?;
//! assert_eq!(second.path, first.path); // the same pages again
//! # shm::discard(&second);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rkyv::ser::Positional;

use super::arena::Arena;
use super::shm::{Mapping, Region, ShmError, ShmRef, ShmWire, archived_len, open_own, page_size};

/// Segments one pool keeps at most.
pub const MAX_SEGMENTS: usize = 8;

/// Bytes of payload room one pool keeps at most, all segments together;
/// bigger payloads go through a fresh file each.
pub const MAX_POOL_BYTES: usize = 1 << 30;

/// A segment's room is its payload rounded up to this.
const ROOM_STEP: usize = 1 << 20;

/// The first word of every segment's header.
const MAGIC: u64 = u64::from_le_bytes(*b"prlSEG01");

/// Byte offset of the lease word in the header.
const LEASE_AT: usize = 8;

/// The lease of a segment that nobody holds.
const FREE: u64 = 0;

/// Set in a lease once its receiver opened it: a reference opens once.
const OPENED: u64 = 1 << 63;

/// The lease of a segment being removed from its pool.
const RETIRED: u64 = u64::MAX;

/// A sender's segments for one receiver; see the module docs.
pub struct SegmentPool {
    segments: Mutex<Vec<Arc<Segment>>>,
    /// The last lease handed out.
    leases: AtomicU64,
    header: usize,
}

impl Default for SegmentPool {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SegmentPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("SegmentPool")
            .field("segments", &segments.len())
            .field("room", &segments.iter().map(|s| s.room).sum::<usize>())
            .finish()
    }
}

impl SegmentPool {
    /// An empty pool: segments are made as payloads need them.
    pub fn new() -> Self {
        Self {
            segments: Mutex::new(Vec::new()),
            // Leases of different pools never meet (each names its own
            // files); starting at a random point keeps a stale reference
            // from an earlier run from matching by chance.
            leases: AtomicU64::new(u64::from(uuid::Uuid::new_v4().as_u128() as u32)),
            header: page_size(),
        }
    }

    /// Archives `value` into a free segment of this pool and lends it: the
    /// returned reference carries the lease the receiver hands back. Falls
    /// back to a fresh file ([`shm::write`](super::shm::write)) when every
    /// segment is lent, the value is bigger than the pool keeps, or
    /// `/dev/shm` has no room for another segment.
    pub fn write<T: ShmWire>(&self, value: &T) -> Result<ShmRef, ShmError> {
        let len = archived_len(value)?;
        let Some((segment, lease)) = self.lend(len)? else {
            return super::shm::write(value);
        };
        // SAFETY: the lease makes this process the only writer of the
        // payload area, and no receiver maps it before the reference goes
        // out; the mapping lives as long as `segment`.
        let area = unsafe { segment.payload_mut(self.header) };
        // rkyv's writer into a slice: an archive longer than the area fails.
        let mut writer = rkyv::ser::writer::Buffer::from(area);
        let done = crate::wire::encode_to(value, &mut writer);
        let written = writer.pos();
        if let Err(e) = done.map_err(ShmError::from).and_then(|()| {
            (written == len).then_some(()).ok_or(ShmError::Write {
                path: segment.path().to_owned(),
                source: std::io::Error::other(format!(
                    "the value archived to {written} bytes, not the {len} counted; is its Serialize deterministic?"
                )),
            })
        }) {
            segment.lease().store(FREE, Ordering::Release);
            return Err(e);
        }
        Ok(ShmRef {
            path: segment.path().to_owned(),
            len: len as u64,
            lease,
        })
    }

    /// Copies `bytes` (an archive made already) into a free segment and
    /// lends it, as [`write`](Self::write) would have archived the value;
    /// falls back to [`shm::write_bytes`](super::shm::write_bytes) alike.
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<ShmRef, ShmError> {
        let Some((segment, lease)) = self.lend(bytes.len())? else {
            return super::shm::write_bytes(bytes);
        };
        // SAFETY: as in `write`: the lease makes this the only writer, and
        // the reference has not gone out yet.
        let area = unsafe { segment.payload_mut(self.header) };
        area[..bytes.len()].copy_from_slice(bytes);
        Ok(ShmRef {
            path: segment.path().to_owned(),
            len: bytes.len() as u64,
            lease,
        })
    }

    /// Removes every segment (their receiver is gone): the files go now,
    /// and a later [`write`](Self::write) starts over.
    pub fn clear(&self) {
        let gone = std::mem::take(&mut *self.segments.lock().unwrap_or_else(|e| e.into_inner()));
        drop(gone);
    }

    /// Segments this pool keeps now, and how many of them are lent.
    pub fn stats(&self) -> PoolStats {
        let segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        PoolStats {
            segments: segments.len(),
            lent: segments
                .iter()
                .filter(|s| s.lease().load(Ordering::Acquire) != FREE)
                .count(),
            room: segments.iter().map(|s| s.room).sum(),
        }
    }

    /// A free segment of at least `len` bytes, lent under a fresh lease;
    /// `None` when the pool has none and may not make one.
    fn lend(&self, len: usize) -> Result<Option<(Arc<Segment>, u64)>, ShmError> {
        if len > MAX_POOL_BYTES {
            return Ok(None);
        }
        // In 1..OPENED - 1: never free, opened or retired.
        let lease = self.leases.fetch_add(1, Ordering::Relaxed) % (OPENED - 2) + 1;
        let mut segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest free one that fits.
        let mut fits: Vec<&Arc<Segment>> = segments.iter().filter(|s| s.room >= len).collect();
        fits.sort_by_key(|s| s.room);
        for s in fits {
            if s.take(FREE, lease) {
                return Ok(Some((s.clone(), lease)));
            }
        }
        let room = len.div_ceil(ROOM_STEP).max(1) * ROOM_STEP;
        let mut kept: usize = segments.iter().map(|s| s.room).sum();
        // Make room by retiring free segments too small for this payload,
        // smallest first.
        while segments.len() >= MAX_SEGMENTS || kept + room > MAX_POOL_BYTES {
            let free_small = segments
                .iter()
                .enumerate()
                .filter(|(_, s)| s.room < len)
                .min_by_key(|(_, s)| s.room)
                .map(|(i, _)| i);
            match free_small {
                Some(i) if segments[i].take(FREE, RETIRED) => {
                    kept -= segments[i].room;
                    segments.swap_remove(i);
                }
                _ => return Ok(None),
            }
        }
        let segment = match Segment::create(self.header, room) {
            Ok(segment) => Arc::new(segment),
            // /dev/shm cannot hold one more segment: a fresh file of the
            // payload's exact size may still fit.
            Err(ShmError::Full { source }) => {
                tracing::debug!(room, error = %source, "shm: no room for another pool segment");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        segment.lease().store(lease, Ordering::Release);
        segments.push(segment.clone());
        Ok(Some((segment, lease)))
    }
}

/// Shared memory with one peer on this machine: the segments lent to it,
/// and its segments as this side maps them.
#[derive(Debug, Default)]
pub struct PeerSegments {
    /// Lent to the peer: what this side sends it.
    pub lent: SegmentPool,
    /// The peer's, mapped: what it sends this side.
    pub mapped: SegmentCache,
}

impl PeerSegments {
    /// Removes the segments lent to the peer and lets go of its own (the
    /// peer is gone).
    pub fn clear(&self) {
        self.lent.clear();
        self.mapped.clear();
    }
}

/// What a [`SegmentPool`] holds, from [`SegmentPool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Segments kept.
    pub segments: usize,
    /// Of those, lent to a receiver now.
    pub lent: usize,
    /// Payload bytes they hold room for, all together.
    pub room: usize,
}

/// One file of a pool: an [`Arena`] (mapped read-write, every page
/// present, removed when dropped) whose first page is the header.
struct Segment {
    arena: Arena,
    room: usize,
}

impl Segment {
    fn create(header: usize, room: usize) -> Result<Self, ShmError> {
        let arena = Arena::create(header + room)?;
        arena.word64(0).store(MAGIC, Ordering::Release);
        Ok(Self { arena, room })
    }

    fn path(&self) -> &str {
        self.arena.path()
    }

    fn lease(&self) -> &AtomicU64 {
        self.arena.word64(LEASE_AT)
    }

    /// Swaps the lease `from` for `to`; false when it is not `from`.
    fn take(&self, from: u64, to: u64) -> bool {
        self.lease()
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The payload area, to write into.
    ///
    /// # Safety
    /// The caller holds this segment's lease and has not sent its reference
    /// yet: nobody else reads or writes the area meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn payload_mut(&self, header: usize) -> &mut [u8] {
        // SAFETY: `header..header + room` lies inside the arena; the
        // caller guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.arena.as_ptr().add(header), self.room) }
    }
}

/// A lent segment as a receiver maps it: the header read-write (to hand
/// leases back), the payload area read-only with every page present.
struct Attached {
    header: Region,
    payload: Region,
}

// SAFETY: the header is reached only through atomics, the payload only
// read; both mappings stay put until dropped.
unsafe impl Send for Attached {}
// SAFETY: see `Send`.
unsafe impl Sync for Attached {}

impl Attached {
    /// Maps the segment at `path`: its payload area up to `len` bytes, or
    /// all of it when `len` is `None`.
    fn map(path: &str, len: Option<u64>) -> Result<Self, ShmError> {
        let (file, meta) = open_own(path, true, || {})?;
        let header = page_size();
        let room = meta.len().saturating_sub(header as u64);
        let len = len.unwrap_or(room);
        if meta.len() < header as u64 || len > room {
            return Err(ShmError::LengthMismatch {
                path: path.to_owned(),
                declared: header as u64 + len,
                actual: meta.len(),
            });
        }
        let len = usize::try_from(len).map_err(|_| ShmError::TooLarge {
            len,
            limit: usize::MAX as u64,
        })?;
        Ok(Self {
            header: Region::map_with(&file, header, false, libc::PROT_READ | libc::PROT_WRITE)?,
            payload: Region::map_at(&file, len, header, true, libc::PROT_READ)?,
        })
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: the header page stays mapped while `self` lives; `at` is
        // a word inside it, 8-aligned.
        unsafe { AtomicU64::from_ptr(self.header.ptr.as_ptr().add(at).cast()) }
    }

    /// Takes the lease of `r` over (marked opened when `opened`), checking
    /// that `r` fits what is mapped.
    fn take(self: Arc<Self>, r: &ShmRef, max_len: u64, opened: bool) -> Result<Lease, ShmError> {
        if r.len > max_len {
            return Err(ShmError::TooLarge {
                len: r.len,
                limit: max_len,
            });
        }
        if r.len > self.payload.len as u64 {
            return Err(ShmError::LengthMismatch {
                path: r.path.clone(),
                declared: r.len,
                actual: self.payload.len as u64,
            });
        }
        // Held from here under the lease with `OPENED` set, so a reference
        // opens once; a lease that is not the reference's is left alone.
        let to = if opened { r.lease | OPENED } else { r.lease };
        let ours = r.lease != FREE
            && r.lease & OPENED == 0
            && self.word(0).load(Ordering::Relaxed) == MAGIC
            && self
                .word(LEASE_AT)
                .compare_exchange(r.lease, to, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if !ours {
            return Err(ShmError::NotLent(r.path.clone()));
        }
        Ok(Lease {
            segment: self,
            lease: to,
            len: r.len as usize,
        })
    }
}

/// A receiver's hold on the payload of a lent segment: hands the lease
/// back when dropped.
pub(super) struct Lease {
    segment: Arc<Attached>,
    lease: u64,
    len: usize,
}

impl Lease {
    /// The payload: `len` bytes from a page boundary, mapped while `self` lives.
    pub(super) fn bytes(&self) -> (std::ptr::NonNull<u8>, usize) {
        (self.segment.payload.ptr, self.len)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Only this lease: a reference released twice frees nothing the
        // sender has lent again since.
        let _ = self.segment.word(LEASE_AT).compare_exchange(
            self.lease,
            FREE,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// The receiver's side of [`SegmentPool::write`] without a
/// [`SegmentCache`]: maps the payload of the lent segment `r` names;
/// dropping the mapping hands the segment back.
pub(super) fn open(r: &ShmRef, max_len: u64) -> Result<Mapping, ShmError> {
    let attached = Arc::new(Attached::map(&r.path, Some(r.len.min(max_len)))?);
    Ok(Mapping::lent(attached.take(r, max_len, true)?))
}

/// Hands back the segment of a reference that will not be opened (either
/// side may call it); a reference no longer lent is left alone.
pub(super) fn release(r: &ShmRef) {
    let taken = Attached::map(&r.path, Some(0)).and_then(|a| {
        Arc::new(a).take(
            &ShmRef {
                len: 0,
                ..r.clone()
            },
            0,
            false,
        )
    });
    if let Err(e) = taken {
        tracing::debug!(path = %r.path, error = %e, "shm: nothing to hand back");
    }
}

/// Segments a [`SegmentCache`] keeps mapped at most.
const CACHED: usize = MAX_SEGMENTS;

/// A receiver's segments of one sender, each mapped once: a payload that
/// arrives in a segment seen before is read where it lies, with no mapping
/// made and no page faulted in.
///
/// It keeps the [`MAX_SEGMENTS`] segments used last; one whose file its sender
/// removed is let go when a new one arrives. The memory of a segment stays
/// while it is kept here, even after its sender let it go.
#[derive(Default)]
pub struct SegmentCache {
    /// Least recently used first.
    kept: Mutex<Vec<(String, Arc<Attached>)>>,
}

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCache")
            .field("segments", &self.len())
            .finish()
    }
}

impl SegmentCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets go of every mapping (their sender is gone); views still held
    /// keep theirs until dropped.
    pub fn clear(&self) {
        let gone = std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        drop(gone);
    }

    /// Segments mapped now.
    pub fn len(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no segment is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`shm::open`](super::shm::open) through `cache` when there is one.
    pub fn open_in(
        cache: Option<&SegmentCache>,
        r: &ShmRef,
        max_len: u64,
    ) -> Result<Mapping, ShmError> {
        match cache {
            Some(cache) => cache.open(r, max_len),
            None => super::shm::open(r, max_len),
        }
    }

    /// Like [`shm::open`](super::shm::open), reusing the mapping of a
    /// segment this cache saw before.
    pub fn open(&self, r: &ShmRef, max_len: u64) -> Result<Mapping, ShmError> {
        if r.lease == FREE {
            return super::shm::open(r, max_len);
        }
        let attached = self.attached(&r.path)?;
        Ok(Mapping::lent(attached.take(r, max_len, true)?))
    }

    fn attached(&self, path: &str) -> Result<Arc<Attached>, ShmError> {
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = kept.iter().position(|(p, _)| p == path) {
                let hit = kept.remove(i);
                let attached = hit.1.clone();
                kept.push(hit);
                return Ok(attached);
            }
        }
        // Mapped without the lock: a big segment takes a while.
        let attached = Arc::new(Attached::map(path, None)?);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        // Let go of segments their sender removed, then the least recently
        // used beyond the bound.
        kept.retain(|(p, _)| std::fs::symlink_metadata(p).is_ok());
        while kept.len() >= CACHED {
            kept.remove(0);
        }
        kept.push((path.to_owned(), attached.clone()));
        Ok(attached)
    }
}

#[cfg(test)]
#[path = "segments_tests.rs"]
mod tests;
