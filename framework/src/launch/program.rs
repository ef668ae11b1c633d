//! Programs named by their content, so a node can run the pool owner's own
//! executable without any install.
//!
//! A [`Program`] says what an executable is: its SHA-256, its length and the
//! platform it was built for. A [`ProgramStore`] is a directory holding
//! programs under their hash (`<dir>/<64 hex digits>`, mode 0755); a file is
//! only ever put there under its name after its bytes were hashed, so a name
//! is a promise about the content.
//!
//! Shipping goes in [`CHUNK`]-sized pieces: the side that has the program
//! serves [`ProgramStore::read_chunk`], the side that needs it writes each
//! piece in order into a [`Receiving`] and calls [`Receiving::finish`], which
//! checks length and SHA-256 before the program appears in the store.
//!
//! ```
//! use parallel::launch::program::{CHUNK, Program, ProgramStore};
//! # let dir = std::env::temp_dir().join(format!("parallel-doc-{}", uuid::Uuid::new_v4()));
//! let (program, exe) = Program::own()?;
//! program.check_platform()?;
//! let here = ProgramStore::open(dir.join("here"))?;
//! let there = ProgramStore::open(dir.join("there"))?;
//! here.put_file(&program, &exe)?;
//! let mut receiving = there.receive(&program)?;
//! let mut offset = 0;
//! while offset < program.len {
//!     let chunk = here.read_chunk(&program.sha256, offset, CHUNK)?;
//!     receiving.write(offset, &chunk)?;
//!     offset += chunk.len() as u64;
//! }
//! let path = receiving.finish()?;
//! assert_eq!(there.get(&program.sha256, true)?, Some(path));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), parallel::launch::program::ProgramError>(())
//! ```
//!
//! Every call here does blocking file I/O; from async code run it in
//! `tokio::task::spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The chunk size used over the wire: 4 MiB.
pub const CHUNK: usize = 4 << 20;

/// The mode of a stored program: `rwxr-xr-x`.
const MODE: u32 = 0o755;

/// What a program is: its SHA-256, size and platform.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Program {
    /// SHA-256 of the file's bytes.
    pub sha256: [u8; 32],
    /// Length of the file in bytes.
    pub len: u64,
    /// The operating system it runs on, as [`std::env::consts::OS`] says it (`linux`).
    pub os: String,
    /// The CPU architecture it runs on, as [`std::env::consts::ARCH`] says it (`x86_64`).
    pub arch: String,
}

impl Program {
    /// This process's own executable (`std::env::current_exe`), hashed once
    /// per call, and its path. The platform is this machine's.
    pub fn own() -> Result<(Program, PathBuf), ProgramError> {
        let path = std::env::current_exe().map_err(|source| ProgramError::Io {
            action: "find the path of",
            path: PathBuf::from("this program"),
            source,
        })?;
        let program = Program::of_file(&path)?;
        Ok((program, path))
    }

    /// The program in the file at `path`, taken to be built for this
    /// machine's platform.
    pub fn of_file(path: &Path) -> Result<Program, ProgramError> {
        let (sha256, len) = sha256_file(path).map_err(|source| ProgramError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Program {
            sha256,
            len,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        })
    }

    /// Hex of `sha256` (64 lower-case digits); also its name in a [`ProgramStore`].
    pub fn hash_hex(&self) -> String {
        hex(&self.sha256)
    }

    /// Whether `len` bytes hashing to `sha256` are this program:
    /// [`ProgramError::Length`] or [`ProgramError::Tampered`] if not.
    fn check(&self, len: u64, sha256: &[u8; 32]) -> Result<(), ProgramError> {
        if len != self.len {
            return Err(ProgramError::Length {
                hash: self.hash_hex(),
                expected: self.len,
                received: len,
            });
        }
        if *sha256 != self.sha256 {
            return Err(ProgramError::Tampered {
                expected: self.hash_hex(),
                found: hex(sha256),
            });
        }
        Ok(())
    }

    /// `Ok` if this machine can run it (its OS and architecture equal
    /// [`std::env::consts::OS`] and [`std::env::consts::ARCH`]), else
    /// [`ProgramError::Platform`] naming both.
    pub fn check_platform(&self) -> Result<(), ProgramError> {
        let (here_os, here_arch) = (std::env::consts::OS, std::env::consts::ARCH);
        if self.os == here_os && self.arch == here_arch {
            return Ok(());
        }
        Err(ProgramError::Platform {
            program_os: self.os.clone(),
            program_arch: self.arch.clone(),
            here_os: here_os.to_string(),
            here_arch: here_arch.to_string(),
        })
    }
}

/// Why a program could not be hashed, stored, received or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// A file or directory could not be read or written.
    #[error(
        "could not {action} {}: {source}; check that the path exists, is writable by this user and its disk is not full",
        path.display()
    )]
    Io {
        /// What was being done (`read`, `create`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The program was built for another platform.
    #[error(
        "the program is built for {program_os}/{program_arch} but this machine is {here_os}/{here_arch}; \
         run the pool owner on a {here_os}/{here_arch} machine, or add nodes that are {program_os}/{program_arch}"
    )]
    Platform {
        /// The program's OS.
        program_os: String,
        /// The program's architecture.
        program_arch: String,
        /// This machine's OS.
        here_os: String,
        /// This machine's architecture.
        here_arch: String,
    },
    /// Bytes did not hash to the program's name; the bad file was removed.
    #[error(
        "program bytes have SHA-256 {found}, not the expected {expected}; the bad copy was removed, \
         fetch the program again (if it keeps happening, the disk or the sender is corrupting it)"
    )]
    Tampered {
        /// The hash the program should have (hex).
        expected: String,
        /// The hash its bytes have (hex).
        found: String,
    },
    /// A received program did not have the announced length.
    #[error(
        "program {hash} should be {expected} bytes but {received} arrived; send every chunk, \
         from offset 0 to the end, then finish"
    )]
    Length {
        /// The program's hash (hex).
        hash: String,
        /// Its announced length.
        expected: u64,
        /// How many bytes arrived (or would have, counting the rejected chunk).
        received: u64,
    },
    /// A chunk came at another offset than the next one expected.
    #[error(
        "chunk for program {hash} starts at byte {offset} but byte {expected} comes next; \
         send chunks in order, each starting where the last one ended"
    )]
    Offset {
        /// The program's hash (hex).
        hash: String,
        /// The offset the next chunk must have.
        expected: u64,
        /// The offset the chunk had.
        offset: u64,
    },
    /// The store does not hold the program.
    #[error(
        "program {hash} is not in the store at {}; put or receive it there first",
        dir.display()
    )]
    Missing {
        /// The program's hash (hex).
        hash: String,
        /// The store's directory.
        dir: PathBuf,
    },
}

/// A directory of programs named by their hash (`<dir>/<hex>`), mode 0755.
/// Programs being received live beside them under a hidden temporary name
/// until they are verified.
#[derive(Clone, Debug)]
pub struct ProgramStore {
    dir: PathBuf,
    /// Whether a received program is flushed to disk before it is renamed
    /// into place (see [`ProgramStore::unsynced`]).
    sync: bool,
}

impl ProgramStore {
    /// The store in `dir`, which is created (with its parents) if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ProgramError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| ProgramError::Io {
            action: "create the program store directory",
            path: dir.clone(),
            source,
        })?;
        Ok(ProgramStore { dir, sync: true })
    }

    /// The same store, without flushing received programs to disk: for a
    /// store whose files are verified before they are trusted after a
    /// restart (a node agent calls [`ProgramStore::get`] with `verify`; a
    /// head hashes what it did not write itself), so that a file torn by a
    /// power loss is found out and fetched again. Saves writing a large
    /// program to disk before its first use. [`ProgramStore::put_file`] and
    /// [`ProgramStore::link_file`] hash a file already stored in such a
    /// store instead of taking it as it is.
    pub fn unsynced(mut self) -> Self {
        self.sync = false;
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the program with this hash lives (or would live) in the store.
    pub fn path_of(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(hex(sha256))
    }

    /// The path of a stored program whose bytes hash to its name, or `None`
    /// if the store does not hold it. When `verify` is true its bytes are
    /// hashed again; a tampered file is removed and reported as
    /// [`ProgramError::Tampered`].
    pub fn get(&self, sha256: &[u8; 32], verify: bool) -> Result<Option<PathBuf>, ProgramError> {
        let path = self.path_of(sha256);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ProgramError::Io {
                    action: "look up",
                    path,
                    source,
                });
            }
        }
        if verify {
            let (found, _) = sha256_file(&path).map_err(|source| ProgramError::Io {
                action: "read",
                path: path.clone(),
                source,
            })?;
            if found != *sha256 {
                let _ = fs::remove_file(&path);
                return Err(ProgramError::Tampered {
                    expected: hex(sha256),
                    found: hex(&found),
                });
            }
        }
        Ok(Some(path))
    }

    /// Copies the local file at `path` in as `program` (used by the head for
    /// the owner's upload when on the same machine, and by tests), checking
    /// its length and hash on the way. Returns the stored path; a program
    /// already in the store is not copied again.
    pub fn put_file(&self, program: &Program, path: &Path) -> Result<PathBuf, ProgramError> {
        if let Some(stored) = self.already(program)? {
            return Ok(stored);
        }
        let read_error = |source| ProgramError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let mut receiving = self.receive(program)?;
        let mut buffer = vec![0u8; CHUNK];
        let mut offset = 0u64;
        loop {
            let n = read_full(&mut file, &mut buffer).map_err(read_error)?;
            if n == 0 {
                break;
            }
            receiving.write(offset, &buffer[..n])?;
            offset += n as u64;
        }
        receiving.finish()
    }

    /// The stored file of `program`, if any: hashed again in an unsynced
    /// store (a tampered or torn one is removed, and `None`).
    fn already(&self, program: &Program) -> Result<Option<PathBuf>, ProgramError> {
        match self.get(&program.sha256, !self.sync) {
            Err(ProgramError::Tampered { expected, found }) => {
                tracing::warn!(
                    "a stored program was damaged ({found} instead of {expected}); storing it again"
                );
                Ok(None)
            }
            other => other,
        }
    }

    /// Starts receiving `program` in chunks. The file lives at a temporary
    /// name until [`Receiving::finish`] verifies its length and SHA-256 and
    /// renames it into place (mode 0755). Chunks must come in order.
    pub fn receive(&self, program: &Program) -> Result<Receiving, ProgramError> {
        let hash = program.hash_hex();
        let temp = self
            .dir
            .join(format!(".{hash}.{}.part", uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .open(&temp)
            .map_err(|source| ProgramError::Io {
                action: "create",
                path: temp.clone(),
                source,
            })?;
        Ok(Receiving {
            program: program.clone(),
            target: self.path_of(&program.sha256),
            file: Some(file),
            temp: Some(temp),
            offset: 0,
            context: ring::digest::Context::new(&ring::digest::SHA256),
            sync: self.sync,
        })
    }

    /// Puts the local file at `path` in as `program` by a hard link when it
    /// lies on the same file system (nothing is written), else by a copy
    /// ([`ProgramStore::put_file`]); either way its length and hash are
    /// checked first. For a file that is not changed in place afterwards,
    /// such as another store's (the head's, on its own machine).
    pub fn link_file(&self, program: &Program, path: &Path) -> Result<PathBuf, ProgramError> {
        if let Some(stored) = self.already(program)? {
            return Ok(stored);
        }
        let temp = self.dir.join(format!(
            ".{}.{}.link",
            program.hash_hex(),
            uuid::Uuid::new_v4().simple()
        ));
        if fs::hard_link(path, &temp).is_err() {
            return self.put_file(program, path);
        }
        let io_error = |action, source| ProgramError::Io {
            action,
            path: temp.clone(),
            source,
        };
        let checked = sha256_file(&temp)
            .map_err(|e| io_error("read", e))
            .and_then(|(found, len)| program.check(len, &found))
            .and_then(|()| {
                let target = self.path_of(&program.sha256);
                fs::rename(&temp, &target)
                    .map(|()| target)
                    .map_err(|e| io_error("move into the store", e))
            });
        if checked.is_err() {
            let _ = fs::remove_file(&temp);
        }
        checked
    }

    /// Reads up to `max` bytes at `offset` of a stored program (for serving
    /// chunks); fewer near the end, none at or past it.
    pub fn read_chunk(
        &self,
        sha256: &[u8; 32],
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>, ProgramError> {
        let path = self.path_of(sha256);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ProgramError::Missing {
                    hash: hex(sha256),
                    dir: self.dir.clone(),
                });
            }
            Err(source) => {
                return Err(ProgramError::Io {
                    action: "open",
                    path,
                    source,
                });
            }
        };
        let read_error = |source| ProgramError::Io {
            action: "read",
            path: path.clone(),
            source,
        };
        let len = file.metadata().map_err(read_error)?.len();
        // Sized by what is there, not by `max`: `max` may come from a peer.
        let want = len.saturating_sub(offset).min(max as u64) as usize;
        if want == 0 {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(offset)).map_err(read_error)?;
        let mut bytes = vec![0u8; want];
        let n = read_full(&mut file, &mut bytes).map_err(read_error)?;
        bytes.truncate(n);
        Ok(bytes)
    }
}

/// A program being received into a [`ProgramStore`]. Dropping it before
/// [`finish`](Receiving::finish) removes its temporary file.
pub struct Receiving {
    program: Program,
    target: PathBuf,
    file: Option<File>,
    /// The temporary file; `None` once it was renamed or removed.
    temp: Option<PathBuf>,
    /// The next byte expected.
    offset: u64,
    context: ring::digest::Context,
    /// Flush to disk before the rename.
    sync: bool,
}

impl std::fmt::Debug for Receiving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiving")
            .field("program", &self.program)
            .field("temp", &self.temp)
            .field("received", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Receiving {
    /// The program being received.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// How many bytes were received so far (the offset the next chunk must have).
    pub fn received(&self) -> u64 {
        self.offset
    }

    /// Writes the chunk that starts at byte `offset`, which must be where the
    /// last chunk ended ([`ProgramError::Offset`] otherwise); a chunk running
    /// past the program's length is refused with [`ProgramError::Length`].
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), ProgramError> {
        let hash = || self.program.hash_hex();
        if offset != self.offset {
            return Err(ProgramError::Offset {
                hash: hash(),
                expected: self.offset,
                offset,
            });
        }
        let end = offset.saturating_add(bytes.len() as u64);
        if end > self.program.len {
            return Err(ProgramError::Length {
                hash: hash(),
                expected: self.program.len,
                received: end,
            });
        }
        let (Some(file), Some(temp)) = (self.file.as_mut(), self.temp.as_ref()) else {
            unreachable!("a Receiving holds its file until finish() consumes it");
        };
        file.write_all(bytes).map_err(|source| ProgramError::Io {
            action: "write",
            path: temp.clone(),
            source,
        })?;
        self.context.update(bytes);
        self.offset = end;
        Ok(())
    }

    /// Checks that every byte arrived and that they hash to the program's
    /// SHA-256, then renames the file into place (mode 0755) and returns its
    /// path. On [`ProgramError::Tampered`] or [`ProgramError::Length`] no
    /// file is left behind.
    pub fn finish(mut self) -> Result<PathBuf, ProgramError> {
        let mut found = [0u8; 32];
        found.copy_from_slice(self.context.clone().finish().as_ref());
        self.program.check(self.offset, &found)?;
        let temp = self.temp.clone().expect("present until finish");
        let io_error = |action, source| ProgramError::Io {
            action,
            path: temp.clone(),
            source,
        };
        let file = self.file.take().expect("present until finish");
        if self.sync {
            file.sync_all().map_err(|e| io_error("write", e))?;
        }
        // Set explicitly: the mode given at creation is cut by the umask.
        file.set_permissions(fs::Permissions::from_mode(MODE))
            .map_err(|e| io_error("make executable", e))?;
        drop(file);
        fs::rename(&temp, &self.target).map_err(|e| io_error("move into the store", e))?;
        self.temp = None;
        Ok(self.target.clone())
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.file = None;
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// The SHA-256 of the file at `path`, and its length in bytes.
pub(crate) fn sha256_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    let mut file = File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        len += n as u64;
    }
    let mut sum = [0u8; 32];
    sum.copy_from_slice(context.finish().as_ref());
    Ok((sum, len))
}

/// `sha256` in lower-case hex (64 digits).
pub(crate) fn hex(sha256: &[u8; 32]) -> String {
    hex_bytes(sha256)
}

fn hex_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// Reads until `buffer` is full or the file ends; the number of bytes read.
fn read_full(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
