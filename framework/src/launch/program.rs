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

/// The size of each buffer a local copy goes through, and how many there
/// are: small enough that hashing one overlaps reading and writing the
/// next, from the first megabyte on.
const COPY_BUFFER: usize = 1 << 20;
const COPY_BUFFERS: usize = 4;

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
        let path = Program::own_path()?;
        let program = Program::of_file(&path)?;
        Ok((program, path))
    }

    /// The path of this process's own executable (`std::env::current_exe`),
    /// without reading it.
    pub fn own_path() -> Result<PathBuf, ProgramError> {
        std::env::current_exe().map_err(|source| ProgramError::Io {
            action: "find the path of",
            path: PathBuf::from("this program"),
            source,
        })
    }

    /// The program in the file at `path`, taken to be built for this
    /// machine's platform.
    pub fn of_file(path: &Path) -> Result<Program, ProgramError> {
        let (sha256, len) = sha256_file(path).map_err(|source| ProgramError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Program::here(sha256, len))
    }

    /// The program of `len` bytes hashing to `sha256`, on this machine's
    /// platform.
    pub fn here(sha256: [u8; 32], len: u64) -> Program {
        Program {
            sha256,
            len,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
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
    /// [`ProgramStore::link_stored`] hash a file already stored in such a
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

    /// Copies the local file at `path` in as `program`, checking its length
    /// and hash on the way (a mismatch leaves nothing in the store).
    /// Returns the stored path; a program already in the store is not
    /// copied again.
    pub fn put_file(&self, program: &Program, path: &Path) -> Result<PathBuf, ProgramError> {
        if let Some(stored) = self.already(program)? {
            return Ok(stored);
        }
        self.stage_file(path)?.install(program)
    }

    /// Copies the local file at `path` into the store under a hidden
    /// temporary name (mode 0600), hashing what it copies, without knowing
    /// yet which program it is: [`StagedFile::install`] names it once it is
    /// told, if the bytes copied are that program. Lets a head copy an
    /// executable a program on its own machine handed it
    /// ([`ProgramStore::stage_open`]) and install it under the hash it found.
    pub fn stage_file(&self, path: &Path) -> Result<StagedFile, ProgramError> {
        let file = File::open(path).map_err(|source| ProgramError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        self.stage_open(file, path)
    }

    /// [`ProgramStore::stage_file`] of a file already open (one another
    /// process handed over); `path` only names it in errors. Only a
    /// regular file is copied.
    pub fn stage_open(&self, file: File, path: &Path) -> Result<StagedFile, ProgramError> {
        let read_error = |source| ProgramError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        };
        if !file.metadata().map_err(read_error)?.is_file() {
            return Err(read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file: hand over the program's executable",
            )));
        }
        let (staged, sha256, len) = self.copy_hashed(file, path)?;
        Ok(StagedFile {
            staged,
            sha256,
            len,
        })
    }

    /// Copies `file` (at `path`) to a temporary file of the store, hashing
    /// the bytes it writes on a second thread while it reads the next
    /// chunk: the file's SHA-256 and length.
    fn copy_hashed(
        &self,
        mut file: File,
        path: &Path,
    ) -> Result<(Staged, [u8; 32], u64), ProgramError> {
        let read_error = |source| ProgramError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        };
        let mut staged = Staged::create(self, "staged")?;
        // A few buffers go round: some are hashed while others are read
        // into and written.
        let (to_hash, hashing) = std::sync::mpsc::sync_channel::<Vec<u8>>(COPY_BUFFERS);
        let (to_fill, empty) = std::sync::mpsc::sync_channel::<Vec<u8>>(COPY_BUFFERS);
        for _ in 0..COPY_BUFFERS {
            let _ = to_fill.send(vec![0u8; COPY_BUFFER]);
        }
        std::thread::scope(|scope| {
            let hasher = scope.spawn(move || {
                let mut context = ring::digest::Context::new(&ring::digest::SHA256);
                for buffer in hashing {
                    context.update(&buffer);
                    // The reader stops taking buffers once it failed.
                    let _ = to_fill.send(buffer);
                }
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(context.finish().as_ref());
                sha256
            });
            let mut len = 0u64;
            let copied = loop {
                // Fails only when the hasher stopped (it panicked): `join`
                // below raises that panic again.
                let Ok(mut buffer) = empty.recv() else {
                    break Ok(());
                };
                buffer.resize(COPY_BUFFER, 0);
                let n = match read_full(&mut file, &mut buffer) {
                    Ok(n) => n,
                    Err(e) => break Err(read_error(e)),
                };
                if n == 0 {
                    break Ok(());
                }
                buffer.truncate(n);
                if let Err(e) = staged.write(&buffer) {
                    break Err(e);
                }
                len += n as u64;
                if to_hash.send(buffer).is_err() {
                    break Ok(());
                }
            };
            drop(to_hash);
            let sha256 = hasher
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            copied.map(|()| (sha256, len))
        })
        .map(|(sha256, len)| (staged, sha256, len))
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
        Ok(Receiving {
            program: program.clone(),
            staged: Staged::create(self, &program.hash_hex())?,
            offset: 0,
            context: ring::digest::Context::new(&ring::digest::SHA256),
        })
    }

    /// Puts in as `program` the file another store on this machine holds it
    /// in (`path`, named by the program's hash): by a hard link when both
    /// lie on one file system, so nothing is read or written, else by a
    /// hashed copy ([`ProgramStore::put_file`]). A linked file is taken as
    /// its store named it: its name must be the program's hash
    /// ([`ProgramError::Missing`] otherwise) and its length the program's,
    /// but its bytes are not hashed again — the store that named it hashed
    /// them first. For a node agent on its head's machine: the head names
    /// only files it hashed since it started, and whoever could change the
    /// head's files in place could change the link too. A file taken this
    /// way is hashed like any other the next time it is taken from this
    /// store ([`ProgramStore::get`] with `verify`).
    pub fn link_stored(&self, program: &Program, path: &Path) -> Result<PathBuf, ProgramError> {
        let hash = program.hash_hex();
        if path.file_name() != Some(std::ffi::OsStr::new(&hash)) {
            return Err(ProgramError::Missing {
                hash,
                dir: path.parent().unwrap_or(Path::new("")).to_path_buf(),
            });
        }
        if let Some(stored) = self.already(program)? {
            return Ok(stored);
        }
        let temp = self
            .dir
            .join(format!(".{hash}.{}.link", uuid::Uuid::new_v4().simple()));
        if fs::hard_link(path, &temp).is_err() {
            return self.put_file(program, path);
        }
        let io_error = |action, source| ProgramError::Io {
            action,
            path: temp.clone(),
            source,
        };
        let checked = fs::metadata(&temp)
            .map_err(|e| io_error("look up", e))
            .and_then(|meta| match meta.len() == program.len {
                true => Ok(()),
                false => Err(ProgramError::Length {
                    hash: hash.clone(),
                    expected: program.len,
                    received: meta.len(),
                }),
            })
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

/// A file copied into a [`ProgramStore`] under a temporary name, hashed,
/// but not yet named ([`ProgramStore::stage_file`]). Dropping it removes
/// the copy.
pub struct StagedFile {
    staged: Staged,
    sha256: [u8; 32],
    len: u64,
}

impl std::fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedFile")
            .field("temp", &self.staged.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl StagedFile {
    /// Puts the copy into its store as `program` (mode 0755) and returns
    /// its path, if the bytes copied are that program: else
    /// [`ProgramError::Length`] or [`ProgramError::Tampered`], and the copy
    /// is removed.
    pub fn install(self, program: &Program) -> Result<PathBuf, ProgramError> {
        program.check(self.len, &self.sha256)?;
        self.staged.install(program)
    }

    /// The program the copied bytes are, on this machine's platform.
    pub fn program(&self) -> Program {
        Program::here(self.sha256, self.len)
    }
}

/// A program being received into a [`ProgramStore`]. Dropping it before
/// [`finish`](Receiving::finish) removes its temporary file.
pub struct Receiving {
    program: Program,
    staged: Staged,
    /// The next byte expected.
    offset: u64,
    context: ring::digest::Context,
}

impl std::fmt::Debug for Receiving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiving")
            .field("program", &self.program)
            .field("temp", &self.staged.path)
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
        self.staged.write(bytes)?;
        self.context.update(bytes);
        self.offset = end;
        Ok(())
    }

    /// Checks that every byte arrived and that they hash to the program's
    /// SHA-256, then renames the file into place (mode 0755) and returns its
    /// path. On [`ProgramError::Tampered`] or [`ProgramError::Length`] no
    /// file is left behind.
    pub fn finish(self) -> Result<PathBuf, ProgramError> {
        let mut found = [0u8; 32];
        found.copy_from_slice(self.context.clone().finish().as_ref());
        self.program.check(self.offset, &found)?;
        self.staged.install(&self.program)
    }
}

/// A file being written into a store under a hidden temporary name; removed
/// when dropped unless [`Staged::install`] moved it into place.
struct Staged {
    /// `None` once installed.
    file: Option<File>,
    path: PathBuf,
    /// Flush to disk before the rename (the store's setting).
    sync: bool,
}

impl Staged {
    /// A new temporary file in `store` (mode 0600: it may be a copy of a
    /// file others cannot read until it is known to be a program), its
    /// name starting with `hint`.
    fn create(store: &ProgramStore, hint: &str) -> Result<Staged, ProgramError> {
        let path = store
            .dir
            .join(format!(".{hint}.{}.part", uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| ProgramError::Io {
                action: "create",
                path: path.clone(),
                source,
            })?;
        Ok(Staged {
            file: Some(file),
            path,
            sync: store.sync,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ProgramError> {
        let Some(file) = self.file.as_mut() else {
            unreachable!("a Staged holds its file until install() consumes it");
        };
        file.write_all(bytes).map_err(|source| ProgramError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })
    }

    /// Makes the file executable (mode 0755), flushes it to disk in a
    /// synced store, and renames it to `program`'s name in its store,
    /// replacing what was there.
    fn install(mut self, program: &Program) -> Result<PathBuf, ProgramError> {
        let target = self.path.with_file_name(program.hash_hex());
        let io_error = |action, source| ProgramError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        let Some(file) = self.file.take() else {
            unreachable!("a Staged holds its file until install() consumes it");
        };
        let installed = (|| {
            if self.sync {
                file.sync_all().map_err(|e| io_error("write", e))?;
            }
            file.set_permissions(fs::Permissions::from_mode(MODE))
                .map_err(|e| io_error("make executable", e))?;
            drop(file);
            fs::rename(&self.path, &target).map_err(|e| io_error("move into the store", e))
        })();
        match installed {
            Ok(()) => Ok(target),
            Err(e) => {
                let _ = fs::remove_file(&self.path);
                Err(e)
            }
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Still open: neither installed nor failed installing (an error on
        // the way, or dropped early).
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
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
