//! A read-write shared-memory segment that several processes of one host
//! map at once, with the futex calls to wait on a word inside it.
//!
//! [`shm`](super::shm) hands one payload from a sender to a receiver; an
//! [`Arena`] is long-lived and shared by a whole group: collectives keep
//! their slots and barriers in one, so a transfer between processes of one
//! machine is a `memcpy` into pages that are already mapped everywhere.
//!
//! The creator makes `/dev/shm/parallel-<pid>-<uuid>` (mode 0600), sizes it
//! and touches every page once, so no later access faults. Other processes
//! [`Arena::open`] it by path: the name, the owner and the size are checked
//! before anything is mapped. The creator removes the file when it drops the
//! arena or calls [`Arena::unlink`] (once every member has mapped it); the
//! memory lives until the last mapping goes, even if a process crashes.
//!
//! ```
//! use parallel::transport::arena::Arena;
//! use std::sync::atomic::Ordering;
//!
//! let a = Arena::create(8192)?;
//! let b = Arena::open(a.path(), 8192)?; // in another process, usually
//! a.word(64).store(7, Ordering::Release);
//! assert_eq!(b.word(64).load(Ordering::Acquire), 7);
//! # Ok::<(), parallel::transport::shm::ShmError>(())
//! ```

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::shm::{NewFile, Region, ShmError, open_own, page_size};

/// A shared-memory segment mapped read-write; see the module docs.
pub struct Arena {
    region: Region,
    path: String,
    /// Whether this process created the file (and so removes it).
    owner: bool,
    unlinked: AtomicBool,
}

// SAFETY: the mapping stays valid and at the same address for the arena's
// whole life; concurrent access goes through atomics or through the raw
// pointer, whose users synchronise (see `collective::local`).
unsafe impl Send for Arena {}
// SAFETY: see `Send`.
unsafe impl Sync for Arena {}

impl Arena {
    /// Creates a segment of `len` bytes (zeroed, every page touched).
    pub fn create(len: usize) -> Result<Self, ShmError> {
        let file = NewFile::create()?;
        // Claim every page now (this also sizes the file): a full /dev/shm
        // fails here, not later as a bus error when a page is first written.
        // SAFETY: `fallocate` on a descriptor this function opened.
        let claimed = unsafe { libc::fallocate(file.file.as_raw_fd(), 0, 0, len as libc::off_t) };
        if claimed != 0 {
            return Err(ShmError::Full {
                source: std::io::Error::last_os_error(),
            });
        }
        let region = Region::map_with(&file.file, len, true, libc::PROT_READ | libc::PROT_WRITE)?;
        let page = page_size();
        for offset in (0..len).step_by(page) {
            // SAFETY: `offset < len`, inside the mapping just made writable;
            // no other process knows the file yet.
            unsafe { region.ptr.as_ptr().add(offset).write_volatile(0) };
        }
        let path = file.path.clone();
        // The file stays (the arena removes it); the descriptor closes.
        let _ = file.keep(len as u64);
        Ok(Self {
            region,
            path,
            owner: true,
            unlinked: AtomicBool::new(false),
        })
    }

    /// Maps the segment another process created at `path`, which must be
    /// exactly `len` bytes, a regular file of this user, named like the
    /// creator names them.
    pub fn open(path: &str, len: usize) -> Result<Self, ShmError> {
        let (file, meta) = open_own(path, true, || {})?;
        if meta.len() != len as u64 {
            return Err(ShmError::LengthMismatch {
                path: path.to_owned(),
                declared: len as u64,
                actual: meta.len(),
            });
        }
        let region = Region::map_with(&file, len, true, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(Self {
            region,
            path: path.to_owned(),
            owner: false,
            unlinked: AtomicBool::new(false),
        })
    }

    /// Where the segment's file is (for [`Arena::open`] in another process).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.region.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.region.len == 0
    }

    /// The first byte. Reads and writes through it must be synchronised
    /// between processes (by the words of [`Arena::word`]).
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.ptr.as_ptr()
    }

    /// The 32-bit atomic word at `offset`.
    ///
    /// # Panics
    /// If `offset` is not a multiple of 4 or the word does not fit: offsets
    /// are the caller's constants, so that is a bug in the caller.
    pub fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `AtomicU32` has the layout of `u32`, and every access to
        // this word from any process is atomic.
        unsafe { AtomicU32::from_ptr(self.word_at(offset, 4).cast()) }
    }

    /// The 64-bit atomic word at `offset`.
    ///
    /// # Panics
    /// As [`Arena::word`], for a multiple of 8.
    pub fn word64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as in `word`, for `AtomicU64` and `u64`.
        unsafe { AtomicU64::from_ptr(self.word_at(offset, 8).cast()) }
    }

    /// The address of a `size`-byte word at `offset`: aligned to `size`, in
    /// bounds, valid while `self` lives.
    fn word_at(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(
            offset.is_multiple_of(size) && offset + size <= self.region.len,
            "arena word at {offset} is misaligned or past the end ({} bytes)",
            self.region.len
        );
        // SAFETY: in bounds (checked above) of the mapping `self` owns.
        unsafe { self.as_ptr().add(offset) }
    }

    /// Removes the file (mappings stay valid). Only the creator does;
    /// call it once every member has opened the segment.
    pub fn unlink(&self) {
        if self.owner && !self.unlinked.swap(true, Ordering::AcqRel) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        self.unlink();
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("path", &self.path)
            .field("len", &self.region.len)
            .field("owner", &self.owner)
            .finish()
    }
}

/// Sleeps while `word` holds `expected`, at most `timeout`; returns early
/// when [`wake`] is called on the word (or spuriously). Works across
/// processes that map the same arena.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned 32-bit word for the duration of the
    // call; FUTEX_WAIT only reads it and `ts` outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every process sleeping in [`wait`] on `word`.
pub fn wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned 32-bit word; FUTEX_WAKE does not
    // access it.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_share_the_bytes_and_the_file_goes_on_drop() {
        let a = Arena::create(3 * 4096 + 100).unwrap();
        let path = a.path().to_owned();
        let b = Arena::open(&path, a.len()).unwrap();
        // SAFETY: in bounds; nothing else touches these bytes.
        unsafe { a.as_ptr().add(5000).write(42) };
        // SAFETY: as above.
        assert_eq!(unsafe { b.as_ptr().add(5000).read() }, 42);
        a.word(8).store(9, Ordering::SeqCst);
        assert_eq!(b.word(8).load(Ordering::SeqCst), 9);
        drop(b);
        assert!(std::path::Path::new(&path).exists());
        drop(a);
        assert!(!std::path::Path::new(&path).exists());
    }

    #[test]
    fn wrong_size_and_foreign_paths_are_refused() {
        let a = Arena::create(4096).unwrap();
        assert!(matches!(
            Arena::open(a.path(), 8192),
            Err(ShmError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Arena::open("/etc/passwd", 4096),
            Err(ShmError::BadPath(_))
        ));
        assert!(matches!(
            Arena::open("/dev/shm/parallel-../x", 4096),
            Err(ShmError::BadPath(_))
        ));
    }

    #[test]
    fn unlink_keeps_the_mapping() {
        let a = Arena::create(4096).unwrap();
        let b = Arena::open(a.path(), 4096).unwrap();
        a.unlink();
        assert!(!std::path::Path::new(a.path()).exists());
        b.word(0).store(5, Ordering::SeqCst);
        assert_eq!(a.word(0).load(Ordering::SeqCst), 5);
    }

    #[test]
    fn wait_returns_on_wake_or_timeout() {
        let a = std::sync::Arc::new(Arena::create(4096).unwrap());
        let start = std::time::Instant::now();
        wait(a.word(0), 0, Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(10));
        let a2 = a.clone();
        let t = std::thread::spawn(move || {
            while a2.word(0).load(Ordering::SeqCst) == 0 {
                wait(a2.word(0), 0, Duration::from_secs(5));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        a.word(0).store(1, Ordering::SeqCst);
        wake(a.word(0));
        t.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(4));
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn a_misaligned_word_is_a_bug() {
        let a = Arena::create(4096).unwrap();
        let _ = a.word(2);
    }
}
