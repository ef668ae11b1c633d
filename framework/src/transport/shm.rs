//! Same-host fast path: big payloads cross between processes through files in
//! `/dev/shm` (shared memory) instead of through a socket.
//!
//! The sender archives a value straight into a fresh file
//! `/dev/shm/parallel-<pid>-<uuid>` with [`write()`] and sends only the small
//! [`ShmRef`] naming it. The receiver calls [`open`], which checks the name,
//! unlinks the file at once and maps it read-only: the [`Mapping`] is the
//! payload, viewed in place (see `Received::from_mapping`), and the memory
//! goes back to the system when the mapping is dropped, even if the receiver
//! crashes first. The data is copied once, by the sender, into the file.
//!
//! ```no_run
//! use parallel::transport::shm;
//! use parallel::{Tensor, wire};
//!
//! let t = Tensor::full(&[1024, 1024], 1.0f32);
//! let r = shm::write(&t)?; // sender: send `r` in a message
//! let m = shm::open(&r, 1 << 30)?; // receiver: the file is already gone
//! let view = wire::decode::<Tensor<f32>>(&m)?;
//! assert_eq!(view.len(), 1024 * 1024);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Files left by a sender whose message was never opened are removed with
//! [`discard`], or all at once with [`cleanup_own`] when the process exits.
//!
//! A sender that sends to one receiver again and again keeps a
//! [`SegmentPool`](super::segments::SegmentPool) instead: its segments are
//! written in place and handed back, so no page is allocated per payload
//! ([`open`] and [`discard`] take both kinds of reference).
//!
//! # Trust
//!
//! Both ends run as the same user on the same host. The receiver validates
//! the bytes once, then reads them in place; a process of that user that
//! wrote to or truncated the file after that could corrupt the view, exactly
//! as it could by attaching a debugger. The sender never maps the file:
//! [`write()`] streams it with `pwrite` and closes it before it returns.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::ptr::{self, NonNull};

use rkyv::api::high::HighSerializer;
use rkyv::rancor::{BoxedError, Source};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::{Archive, Deserialize, Serialize};

use crate::wire::{EncodeError, WireType};

/// The folder every shared-memory payload lives in.
pub const SHM_DIR: &str = "/dev/shm";

/// The file-name prefix of every para||el shared-memory payload.
pub const PREFIX: &str = "parallel-";

/// Where a payload written by [`write()`] lies: this travels in a message in
/// place of the payload itself.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShmRef {
    /// Absolute path of the file, `/dev/shm/parallel-<pid>-<uuid>`.
    pub path: String,
    /// Exact length of the archived payload in bytes.
    pub len: u64,
    /// 0 for a file of its own ([`write()`]); otherwise the lease under which
    /// a [`SegmentPool`](super::segments::SegmentPool) lent the segment at
    /// `path`, whose payload starts one page in.
    pub lease: u64,
}

impl From<&ArchivedShmRef> for ShmRef {
    fn from(a: &ArchivedShmRef) -> Self {
        Self {
            path: a.path.as_str().to_owned(),
            len: a.len.to_native(),
            lease: a.lease.to_native(),
        }
    }
}

/// What went wrong passing a payload through shared memory, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The payload file could not be created.
    #[error(
        "could not create {path} ({source}); mount a tmpfs at /dev/shm or raise the shm threshold so payloads go over the socket"
    )]
    Create {
        /// The file that could not be created.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// `/dev/shm` has no room for the payload.
    #[error(
        "/dev/shm has no room for the payload ({source}); enlarge it (mount -o remount,size=... /dev/shm), free it, or raise the shm threshold"
    )]
    Full {
        /// What the system said.
        source: io::Error,
    },
    /// Writing the payload file failed for another reason.
    #[error("could not write {path} ({source}); check /dev/shm, or raise the shm threshold")]
    Write {
        /// The file.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// The file could not be mapped into memory.
    #[error(
        "could not map {len} bytes of shared memory ({source}); raise the process's address-space limit (ulimit -v) or the shm threshold"
    )]
    Map {
        /// Bytes to map.
        len: u64,
        /// What the system said.
        source: io::Error,
    },
    /// The value could not be archived.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The path is not a para||el payload file.
    #[error(
        "{0:?} is not a para||el shared-memory file (/dev/shm/parallel-*); refusing to open it — the peer is not a para||el process of this version"
    )]
    BadPath(String),
    /// The payload is larger than the receiver accepts.
    #[error(
        "shared-memory payload of {len} bytes exceeds the {limit}-byte limit; raise `max_frame` on both processes"
    )]
    TooLarge {
        /// Length the reference declares.
        len: u64,
        /// The receiver's limit.
        limit: u64,
    },
    /// The file does not hold the declared number of bytes.
    #[error(
        "{path} holds {actual} bytes but its reference says {declared}; something changed the file after it was sent — leave /dev/shm/parallel-* files alone"
    )]
    LengthMismatch {
        /// The file.
        path: String,
        /// Length the reference declares.
        declared: u64,
        /// Length of the file.
        actual: u64,
    },
    /// The file is a link, not a regular file, or belongs to another user.
    #[error(
        "{0} is not a regular file of this user; refusing it — only a para||el process of the same user can hand over shared memory"
    )]
    Foreign(String),
    /// The file could not be opened (most often: it was already opened or discarded).
    #[error(
        "could not open {path} ({source}); each shared-memory reference can be opened once — was it opened or discarded already?"
    )]
    Open {
        /// The file.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// The pool segment is not lent under the reference's lease (any more).
    #[error(
        "{0} is not lent under this reference (it was opened or handed back already, or its sender reused it); each shared-memory reference can be opened once"
    )]
    NotLent(String),
}

/// The writer every [`ShmWire`] value can be archived into: any rkyv writer,
/// behind a trait object, so one bound covers counting and writing files.
pub type DynWriter<'w> = &'w mut dyn crate::wire::WriteShared<BoxedError>;

/// A type [`write()`] can archive: a [`WireType`] whose serializer is generic
/// over the writer, which is every type deriving rkyv's traits. Implemented
/// automatically.
pub trait ShmWire:
    WireType + for<'a, 'w> Serialize<HighSerializer<DynWriter<'w>, ArenaHandle<'a>, BoxedError>>
{
}

impl<T> ShmWire for T where
    T: WireType + for<'a, 'w> Serialize<HighSerializer<DynWriter<'w>, ArenaHandle<'a>, BoxedError>>
{
}

/// A writer that only counts.
struct Counter(usize);

impl Positional for Counter {
    fn pos(&self) -> usize {
        self.0
    }
}

impl<E: Source> Writer<E> for Counter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.0 += bytes.len();
        Ok(())
    }
}

impl<E: Source> crate::wire::WriteShared<E> for Counter {}

/// The exact number of bytes `value` archives to (what [`write()`] would put
/// in the file and [`crate::wire::encode`] in a buffer), found without
/// copying any of them: cheap next to writing, to choose between shared
/// memory and the socket.
pub fn archived_len<T: ShmWire>(value: &T) -> Result<usize, ShmError> {
    let mut counter = Counter(0);
    crate::wire::encode_to(value, &mut counter)?;
    Ok(counter.0)
}

/// Writes of at least this many bytes go from the value straight to the file.
const DIRECT: usize = 64 << 10;
/// Smaller writes are gathered up to this many bytes, then written at once.
const STAGE: usize = 256 << 10;

/// The writer behind [`write()`]: it streams the archive into the payload file
/// with `pwrite`, large slices (a tensor's data) straight from the value,
/// small pieces gathered first.
struct FileWriter {
    file: NewFile,
    staged: Vec<u8>,
    // Bytes already in the file; `staged` follows them.
    flushed: u64,
    pos: usize,
    failed: Option<io::Error>,
}

impl FileWriter {
    /// A writer into a fresh file (removed unless kept).
    fn create() -> Result<FileWriter, ShmError> {
        Ok(FileWriter {
            file: NewFile::create()?,
            staged: Vec::new(),
            flushed: 0,
            pos: 0,
            failed: None,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() >= DIRECT {
            self.flush()?;
            self.file.file.write_all_at(bytes, self.flushed)?;
            self.flushed += bytes.len() as u64;
        } else {
            if self.staged.len() + bytes.len() > STAGE {
                self.flush()?;
            }
            self.staged.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.staged.is_empty() {
            self.file.file.write_all_at(&self.staged, self.flushed)?;
            self.flushed += self.staged.len() as u64;
            self.staged.clear();
        }
        Ok(())
    }

    fn io_error(&self, source: io::Error) -> ShmError {
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG | libc::ENOMEM) => {
                ShmError::Full { source }
            }
            _ => ShmError::Write {
                path: self.file.path.clone(),
                source,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("writing the shared-memory file failed")]
struct WriteFailed;

impl Positional for FileWriter {
    fn pos(&self) -> usize {
        self.pos
    }
}

impl<E: Source> Writer<E> for FileWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        if self.failed.is_some() {
            return Err(E::new(WriteFailed));
        }
        if let Err(e) = self.put(bytes) {
            self.failed = Some(e);
            return Err(E::new(WriteFailed));
        }
        self.pos += bytes.len();
        Ok(())
    }
}

/// A shared run is written to the file like any large slice: from where it lies.
impl<E: Source> crate::wire::WriteShared<E> for FileWriter {}

/// Whether [`open`] maps every page up front (`MAP_POPULATE`) rather than on
/// first touch; see the benchmark for why not.
const POPULATE_READ: bool = false;

/// Archives `value` straight into a fresh file in `/dev/shm` and returns
/// where it is.
///
/// The archive streams into the file as it is made: the payload bytes are
/// copied once, from the value into shared memory, with no heap copy of the
/// whole archive. The file holds exactly the bytes [`crate::wire::encode`]
/// would return. It is created with mode 0600 and stays until the receiver
/// [`open`]s it, or [`discard`] or [`cleanup_own`] removes it; on error it is
/// removed.
pub fn write<T: ShmWire>(value: &T) -> Result<ShmRef, ShmError> {
    let mut writer = FileWriter::create()?;
    let done = crate::wire::encode_to(value, &mut writer);
    if let Some(source) = writer.failed.take() {
        return Err(writer.io_error(source));
    }
    done?;
    if let Err(source) = writer.flush() {
        return Err(writer.io_error(source));
    }
    debug_assert_eq!(writer.flushed, writer.pos as u64);
    let len = writer.flushed;
    Ok(writer.file.keep(len))
}

/// Copies `bytes` (an archive made already, e.g. one received or mapped)
/// into a fresh file in `/dev/shm`, as [`write()`] would have archived it.
pub fn write_bytes(bytes: &[u8]) -> Result<ShmRef, ShmError> {
    let mut writer = FileWriter::create()?;
    if let Err(source) = writer.put(bytes).and_then(|()| writer.flush()) {
        return Err(writer.io_error(source));
    }
    let len = writer.flushed;
    Ok(writer.file.keep(len))
}

/// Opens a payload written by [`write()`] in another process, removes its file
/// at once, and maps it read-only.
///
/// Refused without touching anything: a path that is not a file directly in
/// `/dev/shm` named `parallel-*` (letters, digits and `-` only). Refused after
/// unlinking the file (it was handed to this process, which now frees it):
/// `r.len` over `max_len`, a file whose size is not `r.len`, a link, a
/// non-regular file or another user's file.
///
/// A reference to a pool segment ([`ShmRef::lease`] not 0) is opened in
/// place instead: the file stays (its sender owns it), and dropping the
/// mapping hands the segment back.
pub fn open(r: &ShmRef, max_len: u64) -> Result<Mapping, ShmError> {
    if r.lease != 0 {
        return super::segments::open(r, max_len);
    }
    open_tuned(r, max_len, POPULATE_READ)
}

/// Opens the para||el file `path` (never through a link), read-only or
/// read-write; `then` runs on it before anything is checked. Refuses a
/// non-regular file or another user's.
pub(super) fn open_own(
    path: &str,
    write: bool,
    then: impl FnOnce(),
) -> Result<(File, std::fs::Metadata), ShmError> {
    check_path(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => ShmError::Foreign(path.to_owned()),
            _ => ShmError::Open {
                path: path.to_owned(),
                source,
            },
        })?;
    then();
    let meta = file.metadata().map_err(|source| ShmError::Open {
        path: path.to_owned(),
        source,
    })?;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() || meta.uid() != uid {
        return Err(ShmError::Foreign(path.to_owned()));
    }
    Ok((file, meta))
}

fn open_tuned(r: &ShmRef, max_len: u64, populate: bool) -> Result<Mapping, ShmError> {
    // Unlink first: from here the file lives only as long as this process
    // holds it, whatever happens next.
    let (file, meta) = open_own(&r.path, false, || {
        if let Err(e) = std::fs::remove_file(&r.path) {
            tracing::debug!(path = %r.path, error = %e, "shm: could not unlink an opened payload");
        }
    })?;
    if r.len > max_len {
        return Err(ShmError::TooLarge {
            len: r.len,
            limit: max_len,
        });
    }
    if meta.len() != r.len {
        return Err(ShmError::LengthMismatch {
            path: r.path.clone(),
            declared: r.len,
            actual: meta.len(),
        });
    }
    let len = usize::try_from(r.len).map_err(|_| ShmError::TooLarge {
        len: r.len,
        limit: usize::MAX as u64,
    })?;
    let region = Region::map(&file, len, populate)?;
    Ok(Mapping::own(region))
}

/// Removes the file of a payload that will never be opened (its message
/// could not be delivered), or hands a pool segment back. A reference that
/// names no para||el payload file, or a file already gone, is left alone.
pub fn discard(r: &ShmRef) {
    if check_path(&r.path).is_err() {
        return;
    }
    if r.lease != 0 {
        super::segments::release(r);
        return;
    }
    match std::fs::remove_file(&r.path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(path = %r.path, error = %e, "shm: could not discard a payload"),
    }
}

/// Removes every payload file this process wrote that no receiver opened
/// (`/dev/shm/parallel-<this pid>-*`), and returns how many there were. Call
/// it when the process exits.
pub fn cleanup_own() -> usize {
    remove_with_prefix(&format!("{PREFIX}{}-", std::process::id()))
}

fn remove_with_prefix(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return 0;
    };
    let mut removed = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(prefix))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

pub(super) fn check_path(path: &str) -> Result<(), ShmError> {
    let bad = || ShmError::BadPath(path.to_owned());
    let name = path
        .strip_prefix(SHM_DIR)
        .and_then(|p| p.strip_prefix('/'))
        .ok_or_else(bad)?;
    let rest = name.strip_prefix(PREFIX).ok_or_else(bad)?;
    let ok = !rest.is_empty()
        && name.len() <= 255
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err(bad()) }
}

/// A payload file being written; removed on drop unless kept.
pub(super) struct NewFile {
    pub(super) file: File,
    pub(super) path: String,
    kept: bool,
}

impl NewFile {
    pub(super) fn create() -> Result<Self, ShmError> {
        let path = format!(
            "{SHM_DIR}/{PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| ShmError::Create {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            file,
            path,
            kept: false,
        })
    }

    pub(super) fn keep(mut self, len: u64) -> ShmRef {
        self.kept = true;
        ShmRef {
            path: std::mem::take(&mut self.path),
            len,
            lease: 0,
        }
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The system's page size (4096 where it cannot be read).
pub(super) fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// A page-aligned stand-in for the start of an empty mapping.
#[repr(align(4096))]
struct Page;

/// An `mmap`ed range, unmapped on drop. Empty ranges map nothing.
pub(super) struct Region {
    pub(super) ptr: NonNull<u8>,
    pub(super) len: usize,
}

impl Region {
    /// Maps `len` bytes of `file` read-only.
    fn map(file: &File, len: usize, populate: bool) -> Result<Self, ShmError> {
        Self::map_with(file, len, populate, libc::PROT_READ)
    }

    /// Maps `len` bytes of `file` shared, with protection `prot`.
    pub(super) fn map_with(
        file: &File,
        len: usize,
        populate: bool,
        prot: libc::c_int,
    ) -> Result<Self, ShmError> {
        Self::map_at(file, len, 0, populate, prot)
    }

    /// Maps `len` bytes of `file` from `offset` (a multiple of the page
    /// size) shared, with protection `prot`.
    pub(super) fn map_at(
        file: &File,
        len: usize,
        offset: usize,
        populate: bool,
        prot: libc::c_int,
    ) -> Result<Self, ShmError> {
        let offset = libc::off_t::try_from(offset).map_err(|_| ShmError::Map {
            len: len as u64,
            source: io::Error::other("offset out of range"),
        })?;
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::<Page>::dangling().cast(),
                len: 0,
            });
        }
        let flags = libc::MAP_SHARED | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address) of
        // a file descriptor that is open for the access asked for.
        let ptr =
            unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, file.as_raw_fd(), offset) };
        if ptr == libc::MAP_FAILED {
            return Err(ShmError::Map {
                len: len as u64,
                source: io::Error::last_os_error(),
            });
        }
        match NonNull::new(ptr.cast::<u8>()) {
            Some(ptr) => Ok(Self { ptr, len }),
            None => Err(ShmError::Map {
                len: len as u64,
                source: io::Error::other("mmap returned a null address"),
            }),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr..ptr+len` is exactly the range `mmap` returned,
            // unmapped only here.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// A payload [`open`]ed from shared memory: read-only bytes, mapped in place,
/// freed (or, from a pool, handed back to its sender) when dropped.
///
/// The bytes start at a page boundary, so any archived root can be viewed in
/// place, and they never move while the mapping lives.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    _keep: Keep,
}

/// What keeps a [`Mapping`]'s bytes mapped.
enum Keep {
    /// A mapping of its own.
    Own { _region: Region },
    /// A lent pool segment's payload.
    Lent { _lease: super::segments::Lease },
}

impl Mapping {
    fn own(region: Region) -> Self {
        Self {
            ptr: region.ptr,
            len: region.len,
            _keep: Keep::Own { _region: region },
        }
    }

    /// The payload of a lent pool segment, handed back when dropped.
    pub(super) fn lent(lease: super::segments::Lease) -> Self {
        let (ptr, len) = lease.bytes();
        Self {
            ptr,
            len,
            _keep: Keep::Lent { _lease: lease },
        }
    }
}

// SAFETY: the mapping is read-only and owned by this value alone; sharing or
// sending it shares or sends only `&[u8]`.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`.
unsafe impl Sync for Mapping {}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is live readable memory that `_keep`
        // keeps mapped (or an empty range at an aligned dangling pointer).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("addr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Tensor;
    use crate::wire::{decode, encode};

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        name: String,
        values: Vec<f32>,
        tags: Vec<String>,
        n: u64,
    }

    fn sample() -> Sample {
        Sample {
            name: "payload".into(),
            values: (0..1000).map(|i| i as f32 * 0.5).collect(),
            tags: vec!["a".into(), "a longer tag than inline".into()],
            n: 42,
        }
    }

    #[test]
    fn bytes_copied_into_a_file_map_back_as_the_same_archive() {
        let encoded = encode(&sample()).unwrap();
        let r = write_bytes(&encoded).unwrap();
        assert_eq!(r.len, encoded.len() as u64);
        let m = open(&r, u64::MAX).unwrap();
        assert_eq!(&m[..], &encoded[..]);
        assert!(
            !std::path::Path::new(&r.path).exists(),
            "file left in /dev/shm"
        );
    }

    #[test]
    fn round_trip_gives_the_bytes_of_encode() {
        let s = sample();
        let r = write(&s).unwrap();
        assert!(
            r.path
                .starts_with(&format!("/dev/shm/parallel-{}-", std::process::id()))
        );
        let meta = std::fs::metadata(&r.path).unwrap();
        assert_eq!(meta.len(), r.len);
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );

        let m = open(&r, u64::MAX).unwrap();
        assert!(
            !std::path::Path::new(&r.path).exists(),
            "file left in /dev/shm"
        );
        assert_eq!(&*m, &encode(&s).unwrap()[..]);
        assert_eq!(archived_len(&s).unwrap(), m.len());
        assert_eq!(m.as_ptr() as usize % 4096, 0);
        let view = decode::<Sample>(&m).unwrap();
        assert_eq!(view.name, "payload");
        assert_eq!(crate::wire::to_owned::<Sample>(view).unwrap(), s);
        // Once opened, a reference cannot be opened again.
        assert!(matches!(open(&r, u64::MAX), Err(ShmError::Open { .. })));
    }

    #[test]
    fn empty_archive_round_trips() {
        let r = write(&()).unwrap();
        assert_eq!(r.len, 0);
        let m = open(&r, 0).unwrap();
        assert!(m.is_empty());
        assert!(decode::<()>(&m).is_ok());
    }

    #[test]
    fn foreign_paths_are_refused_untouched() {
        for path in [
            "/etc/passwd",
            "/dev/shm/../etc/passwd",
            "/dev/shm/parallel-../../etc/passwd",
            "/dev/shm/parallel-1/x",
            "/dev/shm/parallel-",
            "/dev/shm/other-1-2",
            "/dev/shmparallel-1-2",
            "/tmp/parallel-1-2",
            "dev/shm/parallel-1-2",
            "/dev/shm//parallel-1-2",
            "/dev/shm/parallel-1-2\0",
        ] {
            let r = ShmRef {
                path: path.into(),
                len: 4,
                lease: 0,
            };
            let err = open(&r, u64::MAX).unwrap_err();
            assert!(matches!(err, ShmError::BadPath(_)), "{path}: {err}");
            discard(&r);
        }
        assert!(std::path::Path::new("/etc/passwd").exists());
    }

    #[test]
    fn a_link_is_refused() {
        let target = write(&sample()).unwrap();
        let link = format!("{SHM_DIR}/{PREFIX}{}x-link", std::process::id());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target.path, &link).unwrap();
        let r = ShmRef {
            path: link.clone(),
            len: target.len,
            lease: 0,
        };
        assert!(matches!(open(&r, u64::MAX), Err(ShmError::Foreign(_))));
        std::fs::remove_file(&link).unwrap();
        assert!(open(&target, u64::MAX).is_ok());
    }

    #[test]
    fn wrong_or_excessive_lengths_are_refused_and_freed() {
        let s = sample();
        let mut r = write(&s).unwrap();
        r.len += 1;
        let err = open(&r, u64::MAX).unwrap_err();
        assert!(matches!(err, ShmError::LengthMismatch { .. }), "{err}");
        assert!(!std::path::Path::new(&r.path).exists());

        let r = write(&s).unwrap();
        let err = open(&r, r.len - 1).unwrap_err();
        assert!(matches!(err, ShmError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("max_frame"), "{err}");
        assert!(!std::path::Path::new(&r.path).exists());
    }

    #[test]
    fn discard_and_cleanup_remove_files() {
        let r = write(&sample()).unwrap();
        discard(&r);
        assert!(!std::path::Path::new(&r.path).exists());
        discard(&r);

        // `cleanup_own` itself would race with the other tests of this
        // process, so check its engine on a prefix of its own.
        let prefix = format!("{PREFIX}{}x-", std::process::id());
        for i in 0..3 {
            std::fs::write(format!("{SHM_DIR}/{prefix}{i}"), b"x").unwrap();
        }
        assert_eq!(remove_with_prefix(&prefix), 3);
        assert_eq!(remove_with_prefix(&prefix), 0);
    }

    #[test]
    fn archived_ref_converts_back() {
        let r = ShmRef {
            path: "/dev/shm/parallel-1-ab".into(),
            len: 9,
            lease: 0,
        };
        let buf = encode(&r).unwrap();
        let a = decode::<ShmRef>(&buf).unwrap();
        assert_eq!(ShmRef::from(a), r);
    }

    #[test]
    fn tensor_of_64_mib_round_trips() {
        let n = 16 << 20;
        let t = Tensor::from_vec((0..n).map(|i| (i % 1000) as f32).collect::<Vec<f32>>());
        let r = write(&t).unwrap();
        assert!(r.len >= 64 << 20);
        assert_eq!(archived_len(&t).unwrap() as u64, r.len);
        let m = open(&r, 1 << 30).unwrap();
        assert_eq!(&*m, &encode(&t).unwrap()[..]);
        let view = decode::<Tensor<f32>>(&m).unwrap();
        assert_eq!(view.shape(), vec![n]);
        assert_eq!(view.as_slice(), t.as_slice());
        let range = m.as_ptr_range();
        assert!(range.contains(&view.as_slice().as_ptr().cast::<u8>()));
    }

    fn sum(xs: &[f32]) -> f32 {
        let mut acc = [0f32; 16];
        let chunks = xs.chunks_exact(16);
        let tail: f32 = chunks.remainder().iter().sum();
        for c in chunks {
            for (a, x) in acc.iter_mut().zip(c) {
                *a += x;
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    fn best<R>(runs: usize, mut f: impl FnMut() -> R) -> (std::time::Duration, R) {
        let mut best = std::time::Duration::MAX;
        let mut out = None;
        for _ in 0..runs {
            let t0 = std::time::Instant::now();
            let r = std::hint::black_box(f());
            best = best.min(t0.elapsed());
            out = Some(r);
        }
        match out {
            Some(r) => (best, r),
            None => panic!("no run"),
        }
    }

    /// `cargo test -p parallel --release --lib shm -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark; run in release with --nocapture"]
    fn bench_64_mib_tensor_against_memcpy() {
        const RUNS: usize = 7;
        let n = 16 << 20;
        let t = Tensor::from_vec((0..n).map(|i| (i % 1000) as f32).collect::<Vec<f32>>());
        // SAFETY: any f32 is 4 plain bytes.
        let src: &[u8] = unsafe { std::slice::from_raw_parts(t.as_slice().as_ptr().cast(), n * 4) };
        let mb = src.len() as f64 / (1 << 20) as f64;

        let mut dst = vec![1u8; src.len()];
        let (warm, _) = best(RUNS, || {
            std::hint::black_box(&mut dst).copy_from_slice(std::hint::black_box(src))
        });
        let (cold, _) = best(RUNS, || {
            let mut d = Vec::<u8>::with_capacity(src.len());
            d.extend_from_slice(src);
            d
        });
        let (heap_sum, _) = best(RUNS, || sum(t.as_slice()));
        let (enc, _) = best(RUNS, || encode(&t).map(|b| b.len()));
        println!(
            "memcpy 64 MiB: warm dst {:.2} ms ({:.1} GB/s), fresh dst {:.2} ms; sum on heap {:.2} ms; wire::encode {:.2} ms",
            warm.as_secs_f64() * 1e3,
            mb / 1024.0 / warm.as_secs_f64(),
            cold.as_secs_f64() * 1e3,
            heap_sum.as_secs_f64() * 1e3,
            enc.as_secs_f64() * 1e3,
        );

        let variants = [
            ("map on touch (default)", POPULATE_READ),
            ("receiver MAP_POPULATE", !POPULATE_READ),
        ];
        for (name, populate) in variants {
            let mut w = std::time::Duration::MAX;
            let mut o = std::time::Duration::MAX;
            let mut d = std::time::Duration::MAX;
            let mut s = std::time::Duration::MAX;
            let mut total = std::time::Duration::MAX;
            let mut xfer = std::time::Duration::MAX;
            for _ in 0..RUNS {
                let t0 = std::time::Instant::now();
                let r = write(&t).unwrap();
                let t1 = std::time::Instant::now();
                let m = open_tuned(&r, u64::MAX, populate).unwrap();
                let t2 = std::time::Instant::now();
                let view = decode::<Tensor<f32>>(&m).unwrap();
                let t3 = std::time::Instant::now();
                let x = std::hint::black_box(sum(view.as_slice()));
                let t4 = std::time::Instant::now();
                assert!(x > 0.0);
                drop(m);
                w = w.min(t1 - t0);
                o = o.min(t2 - t1);
                d = d.min(t3 - t2);
                s = s.min(t4 - t3);
                total = total.min(t4 - t0);
                xfer = xfer.min(t3 - t0);
            }
            let transfer = xfer;
            println!(
                "{name:32} write {:6.2} ms  open {:5.2} ms  validate {:5.2} ms  sum {:5.2} ms | write+open+sum {:6.2} ms, ratio to warm memcpy {:.2}; write+open+validate {:6.2} ms = {:.0} % of memcpy bandwidth",
                w.as_secs_f64() * 1e3,
                o.as_secs_f64() * 1e3,
                d.as_secs_f64() * 1e3,
                s.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3,
                total.as_secs_f64() / warm.as_secs_f64(),
                transfer.as_secs_f64() * 1e3,
                100.0 * warm.as_secs_f64() / transfer.as_secs_f64(),
            );
        }
    }
}
