//! The head's durable job ledger, in redb (`<data>/ledger.redb`): each
//! pool's record, its accepted jobs, its results (until the owner has read
//! them; an engine set's are kept, marked delivered, until purged), and
//! its updates. A head started again on the same data directory
//! reads it back with [`Ledger::load`] and goes on where it was.
//!
//! **Group commit.** Writes go to a thread of their own (never a tokio or
//! actix thread). It takes every batch queued while it committed the last
//! one and applies them all in one redb write transaction with
//! `Durability::Immediate`, so many small writes cost one fsync; each
//! write's future resolves once its transaction is on disk. Batches are
//! applied in the order [`Ledger::write`] was called.
//!
//! ```
//! use parallel::cluster::ledger::{Ledger, LedgerOp};
//! # let dir = std::env::temp_dir().join(format!("parallel-doc-{}", uuid::Uuid::new_v4()));
//! let ledger = Ledger::open(&dir)?;
//! let pool = [7; 16];
//! let write = ledger.write(vec![
//!     LedgerOp::PutPool { pool, record: b"record".to_vec() },
//!     LedgerOp::AcceptJob { pool, index: 0, job: b"job".to_vec() },
//! ]);
//! tokio::runtime::Builder::new_current_thread().build()?.block_on(write)?;
//! assert_eq!(ledger.load()?[0].jobs, vec![(0, b"job".to_vec())]);
//! # drop(ledger);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

/// A pool's key: its id's 16 bytes.
pub type PoolKey = [u8; 16];

/// The ledger's file name inside the data directory.
pub const FILE_NAME: &str = "ledger.redb";

// Every table is keyed by 24 bytes: the pool's 16, then a big-endian u64
// (0 in `POOLS`), so byte order is (pool, number) order and one pool's rows
// are one range. The encoding is ours, not redb's, so it stays the same
// across redb versions.

/// (pool, 0) → the pool's record.
const POOLS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pools");
/// (pool, index) → a job's row: [`JOB`] then an accepted job that has not
/// finished, or [`RESULT`] then its result, not removed yet. One row from
/// acceptance to removal: a finishing job's result replaces it in place,
/// so a job costs one insert and one removal, not two of each (removals
/// come from the front of the oldest leaf, where redb shifts every later
/// entry: they were a quarter of the ledger's work with two tables).
const WORK: TableDefinition<&[u8], &[u8]> = TableDefinition::new("work");
/// The first byte of a [`WORK`] row that holds a pending job.
const JOB: u8 = 0;
/// The first byte of a [`WORK`] row that holds a result.
const RESULT: u8 = 1;
/// The tables of ledgers written before [`WORK`]: (pool, index) → a pending
/// job, and → a result. [`Ledger::open`] moves their rows into [`WORK`].
const OLD_JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
const OLD_RESULTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("results");
/// (pool, first) → the last index (8 bytes, big-endian; none: `first`
/// alone): the results `first..=last` reached their owner (and are kept
/// for the hub's queries). One row per run of consecutive indices, so that
/// marking a batch of results costs one insert, not one per result.
const DELIVERED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("delivered");
/// (pool, index) → the flags (dependencies, retries) of an accepted job
/// that has not finished.
const FLAGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("flags");
/// (pool, seq) → an update.
const UPDATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("updates");
/// (pool, number) → nothing: an engine of that set was given that number
/// (numbers are never given twice, also across a head restart).
const ENGINES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("engines");

/// Why the ledger could not open, write or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Another ledger (a head in this or another process) has the file open.
    #[error(
        "the ledger {} is in use by another head; stop that head, or give this one another data directory",
        path.display()
    )]
    InUse {
        /// The ledger's file.
        path: PathBuf,
    },
    /// The file could not be created or opened.
    #[error(
        "cannot open the ledger {}: {reason}; check that the data directory is writable and the disk has room; \
         if the file is damaged, move it away to start with an empty ledger (its pools and jobs are then lost)",
        path.display()
    )]
    Open {
        /// The ledger's file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A write transaction failed; nothing of its batches was stored.
    #[error(
        "the ledger could not store a write ({0}); nothing of it was kept: check the data directory's disk \
         (room, permissions, errors), then submit again"
    )]
    Write(String),
    /// A read failed.
    #[error(
        "the ledger could not be read ({0}); check the data directory's disk, then start the head again"
    )]
    Read(String),
    /// The writer thread is gone.
    #[error(
        "the ledger's writer has stopped (it failed, or the head is stopping); start the head again"
    )]
    Closed,
}

/// One change to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerOp {
    /// A pool opens, or its record changes.
    PutPool {
        /// The pool.
        pool: PoolKey,
        /// Its record.
        record: Vec<u8>,
    },
    /// A pool is gone: its record and all its jobs, results and updates.
    RemovePool {
        /// The pool.
        pool: PoolKey,
    },
    /// A job is accepted. Nothing happens if its result is stored and not
    /// read yet (a job that has finished does not come back).
    AcceptJob {
        /// The pool.
        pool: PoolKey,
        /// The job's index.
        index: u64,
        /// The job.
        job: Vec<u8>,
    },
    /// An accepted job's flags (dependencies, retries), kept until it
    /// finishes. Nothing happens if the job is not pending.
    PutFlags {
        /// The pool.
        pool: PoolKey,
        /// The job's index.
        index: u64,
        /// The flags, encoded by the head.
        flags: Vec<u8>,
    },
    /// A job finished: it leaves the pending jobs and its result is kept
    /// until read. Nothing happens if the job is not pending (finished or
    /// removed already), so a late duplicate never overwrites a result.
    FinishJob {
        /// The pool.
        pool: PoolKey,
        /// The job's index.
        index: u64,
        /// The result.
        result: Vec<u8>,
    },
    /// A result is no longer needed (its owner read it, or it was purged
    /// from the hub): it is removed, with its delivered mark.
    ResultRead {
        /// The pool.
        pool: PoolKey,
        /// The job's index.
        index: u64,
    },
    /// Results reached their owner and are kept (an engine set's results
    /// stay for the hub's queries): marked, so a head started again does
    /// not send them once more. Results not stored are not marked. One row
    /// per run of consecutive indices.
    ResultsDelivered {
        /// The pool.
        pool: PoolKey,
        /// The jobs' indices.
        indices: Vec<u64>,
    },
    /// An engine of the pool was given `number`.
    NumberEngine {
        /// The pool (an engine set).
        pool: PoolKey,
        /// The number.
        number: u64,
    },
    /// An update for the pool (stored under its number, replacing one with
    /// the same number).
    PutUpdate {
        /// The pool.
        pool: PoolKey,
        /// Its number.
        seq: u64,
        /// The update.
        update: Vec<u8>,
    },
}

/// Everything the ledger holds of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolState {
    /// The pool.
    pub pool: PoolKey,
    /// Its record.
    pub record: Vec<u8>,
    /// Pending jobs, by index.
    pub jobs: Vec<(u64, Vec<u8>)>,
    /// Results stored, by index.
    pub results: Vec<(u64, Vec<u8>)>,
    /// Which of `results` reached their owner already (ascending).
    pub delivered: Vec<u64>,
    /// Flags of pending jobs, by index.
    pub flags: Vec<(u64, Vec<u8>)>,
    /// Updates, by number.
    pub updates: Vec<(u64, Vec<u8>)>,
    /// Engine numbers given out (ascending).
    pub engines: Vec<u64>,
}

type Reply = oneshot::Sender<Result<(), LedgerError>>;
type Request = (Vec<LedgerOp>, Reply);

/// The durable ledger (see the module docs). Clones share one database and
/// one writer thread.
///
/// Dropping the last clone ends the writer thread after it has committed
/// what was queued, and waits for that (a few fsyncs at most), so the file
/// can be opened again at once.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

struct Shared {
    /// The database, once opened: by [`Ledger::open`] for a ledger that
    /// exists, by the writer thread for a new one.
    db: Arc<OnceLock<Result<Database, LedgerError>>>,
    /// Whether [`Ledger::open`] made a new ledger.
    new: bool,
    /// `None` only while dropping.
    writes: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has drained it.
        drop(self.writes.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens or creates `<dir>/ledger.redb` (creating `dir` if needed) and
    /// starts the writer thread.
    ///
    /// A ledger that exists is opened here (its tables checked, older
    /// layouts moved). A new one is created by the writer thread, in the
    /// background (a new redb file syncs the disk about seven times): `open`
    /// returns once the file exists and is locked, writes queue until the
    /// database is ready, and [`Ledger::is_new`] says that there is nothing
    /// to load. Either way a file another ledger has open is
    /// [`LedgerError::InUse`] here, at once.
    pub fn open(dir: &Path) -> Result<Ledger, LedgerError> {
        let path = dir.join(FILE_NAME);
        let failed = |reason: String| LedgerError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| failed(e.to_string()))?;
        // redb locks the file the same way (`flock`), on this same open
        // file, so taking the lock first costs it nothing.
        lock(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => LedgerError::InUse { path: path.clone() },
            _ => failed(e.to_string()),
        })?;
        let new = file.metadata().map_err(|e| failed(e.to_string()))?.len() == 0;
        let ready = Arc::new(OnceLock::new());
        // A new one is made by the writer; one that exists, now.
        let create = if new {
            Some((file, path.clone()))
        } else {
            let _ = ready.set(Ok(database(file, &path)?));
            None
        };
        let commits = Arc::new(AtomicU64::new(0));
        let (writes, requests) = mpsc::channel::<Request>();
        let writer = {
            let (ready, commits) = (ready.clone(), commits.clone());
            std::thread::Builder::new()
                .name("parallel-ledger".into())
                .spawn(move || {
                    if let Some((file, path)) = create {
                        let _ = ready.set(database(file, &path));
                    }
                    writer(&ready, &requests, &commits)
                })
                .map_err(|e| failed(format!("cannot start its writer thread: {e}")))?
        };
        Ok(Ledger {
            shared: Arc::new(Shared {
                db: ready,
                new,
                writes: Some(writes),
                writer: Some(writer),
                commits,
            }),
        })
    }

    /// The database, once it is open (a new one: once the writer has
    /// created it).
    fn db(&self) -> Result<&Database, LedgerError> {
        self.shared.db.wait().as_ref().map_err(Clone::clone)
    }

    /// Whether [`Ledger::open`] found no ledger and made a new one: then
    /// the ledger holds only what was written through this handle since,
    /// and a head starting on it has nothing to [`load`](Ledger::load).
    pub fn is_new(&self) -> bool {
        self.shared.new
    }

    /// Queues `ops` (at once, not when the future is first polled); the
    /// future resolves once they are durable. One redb write transaction,
    /// with `Durability::Immediate`, commits every batch queued meanwhile
    /// (group commit: many small writes cost one fsync). If that commit
    /// fails, every batch in it fails with the same error and none of them
    /// is stored. An empty `ops` resolves once everything queued before it
    /// is durable.
    pub fn write(
        &self,
        ops: Vec<LedgerOp>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let queued = self
            .shared
            .writes
            .as_ref()
            .is_some_and(|writes| writes.send((ops, reply)).is_ok());
        async move {
            if !queued {
                return Err(LedgerError::Closed);
            }
            answer.await.unwrap_or(Err(LedgerError::Closed))
        }
    }

    /// Everything stored, for a head that starts again: per pool (in key
    /// order) its record, pending jobs (index order), results (index order,
    /// with which were delivered) and updates (seq order). Rows of a pool without a record are
    /// not returned. Reads one consistent snapshot and blocks on the disk:
    /// call it before the head runs, or from a blocking thread.
    pub fn load(&self) -> Result<Vec<PoolState>, LedgerError> {
        let read = |e: redb::Error| LedgerError::Read(e.to_string());
        let txn = self.db()?.begin_read().map_err(|e| read(e.into()))?;
        let open = |def| txn.open_table(def).map_err(|e| read(e.into()));
        let (pools, work, delivered, flags, updates, engines) = (
            open(POOLS)?,
            open(WORK)?,
            open(DELIVERED)?,
            open(FLAGS)?,
            open(UPDATES)?,
            open(ENGINES)?,
        );
        let rows = |table: &redb::ReadOnlyTable<&[u8], &[u8]>, pool: &PoolKey| {
            let range = pool_range(pool);
            let mut out = Vec::new();
            for row in table
                .range::<&[u8]>(range.start().as_slice()..=range.end().as_slice())
                .map_err(|e| read(e.into()))?
            {
                let (k, v) = row.map_err(|e| read(e.into()))?;
                if let Some((_, n)) = split(k.value()) {
                    out.push((n, v.value().to_vec()));
                }
            }
            Ok::<_, LedgerError>(out)
        };
        let mut states = Vec::with_capacity(pools.len().map_err(|e| read(e.into()))? as usize);
        for row in pools.iter().map_err(|e| read(e.into()))? {
            let (k, v) = row.map_err(|e| read(e.into()))?;
            let Some((pool, _)) = split(k.value()) else {
                continue;
            };
            let (mut jobs, mut results) = (Vec::new(), Vec::new());
            for (index, mut row) in rows(&work, &pool)? {
                let kind = match row.first() {
                    Some(&JOB) => &mut jobs,
                    Some(&RESULT) => &mut results,
                    _ => {
                        return Err(LedgerError::Read(format!(
                            "job {index} of a pool has a row of no known kind; the ledger file is damaged: \
                             move it away to start with an empty ledger (its pools and jobs are then lost)"
                        )));
                    }
                };
                row.remove(0);
                kind.push((index, row));
            }
            states.push(PoolState {
                pool,
                record: v.value().to_vec(),
                jobs,
                results,
                delivered: delivered_indices(rows(&delivered, &pool)?),
                flags: rows(&flags, &pool)?,
                updates: rows(&updates, &pool)?,
                engines: rows(&engines, &pool)?.into_iter().map(|(n, _)| n).collect(),
            });
        }
        Ok(states)
    }

    /// How many write transactions the writer has committed since
    /// [`Ledger::open`].
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }
}

fn key(pool: &PoolKey, n: u64) -> [u8; 24] {
    let mut k = [0; 24];
    k[..16].copy_from_slice(pool);
    k[16..].copy_from_slice(&n.to_be_bytes());
    k
}

fn pool_range(pool: &PoolKey) -> RangeInclusive<[u8; 24]> {
    key(pool, 0)..=key(pool, u64::MAX)
}

fn split(k: &[u8]) -> Option<(PoolKey, u64)> {
    let pool = k.get(..16)?.try_into().ok()?;
    let n = u64::from_be_bytes(k.get(16..24)?.try_into().ok()?);
    Some((pool, n))
}

/// Takes `file`'s exclusive `flock` without waiting (`WouldBlock`: another
/// open of it holds the lock), as redb does when it opens a file.
fn lock(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` on a descriptor `file` keeps open; no memory is passed.
    let done = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The database in `file` (locked, at `path`): created in it if it is
/// empty, with its tables made and the rows of older layouts moved.
fn database(file: std::fs::File, path: &Path) -> Result<Database, LedgerError> {
    let failed = |reason: String| LedgerError::Open {
        path: path.to_path_buf(),
        reason,
    };
    // New files in the v3 format, the only one redb 3 reads. The lock
    // redb takes is the one `Ledger::open` holds on this same open file.
    let db = Database::builder()
        .create_with_file_format_v3(true)
        .create_file(file)
        .map_err(|e| failed(e.to_string()))?;
    // Create the tables, so that reads find them, and move the rows of
    // a ledger written before `WORK` into it.
    let txn = db.begin_write().map_err(|e| failed(e.to_string()))?;
    for table in [POOLS, WORK, DELIVERED, FLAGS, UPDATES, ENGINES] {
        txn.open_table(table).map_err(|e| failed(e.to_string()))?;
    }
    migrate_to_work(&txn).map_err(|Failed(e)| failed(e))?;
    txn.commit().map_err(|e| failed(e.to_string()))?;
    Ok(db)
}

/// The writer thread: one transaction for everything queued, until the
/// last [`Ledger`] is dropped and the queue is empty. If the database
/// could not be opened, every write fails with that error.
fn writer(
    ready: &OnceLock<Result<Database, LedgerError>>,
    requests: &mpsc::Receiver<Request>,
    commits: &AtomicU64,
) {
    let db = match ready.wait() {
        Ok(db) => db,
        Err(e) => {
            for (_, reply) in requests.iter() {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
    };
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        let outcome = if batch.iter().all(|(ops, _)| ops.is_empty()) {
            Ok(())
        } else {
            let outcome = commit(db, batch.iter().flat_map(|(ops, _)| ops))
                .map_err(|Failed(e)| LedgerError::Write(e));
            if outcome.is_ok() {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            outcome
        };
        for (_, reply) in batch {
            let _ = reply.send(outcome.clone());
        }
    }
}

/// A failed write transaction, as text (any redb error converts with `?`).
struct Failed(String);

impl<E: Into<redb::Error>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed(e.into().to_string())
    }
}

/// Applies `ops` in order in one transaction and commits it durably.
fn commit<'a>(db: &Database, ops: impl Iterator<Item = &'a LedgerOp>) -> Result<(), Failed> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut pools = txn.open_table(POOLS)?;
        let mut work = txn.open_table(WORK)?;
        let mut delivered = txn.open_table(DELIVERED)?;
        let mut flags = txn.open_table(FLAGS)?;
        let mut updates = txn.open_table(UPDATES)?;
        let mut engines = txn.open_table(ENGINES)?;
        for op in ops {
            match op {
                LedgerOp::PutPool { pool, record } => {
                    pools.insert(key(pool, 0).as_slice(), record.as_slice())?;
                }
                LedgerOp::RemovePool { pool } => {
                    pools.remove(key(pool, 0).as_slice())?;
                    let range = pool_range(pool);
                    let (lo, hi) = (range.start().as_slice(), range.end().as_slice());
                    for table in [
                        &mut work,
                        &mut delivered,
                        &mut flags,
                        &mut updates,
                        &mut engines,
                    ] {
                        remove_range(table, lo, hi)?;
                    }
                }
                LedgerOp::AcceptJob { pool, index, job } => {
                    let k = key(pool, *index);
                    if kind_of(&work, &k)? != Some(RESULT) {
                        put(&mut work, &k, JOB, job)?;
                    }
                }
                LedgerOp::FinishJob {
                    pool,
                    index,
                    result,
                } => {
                    let k = key(pool, *index);
                    if kind_of(&work, &k)? == Some(JOB) {
                        put(&mut work, &k, RESULT, result)?;
                    }
                    flags.remove(k.as_slice())?;
                }
                LedgerOp::ResultRead { pool, index } => {
                    let k = key(pool, *index);
                    // A pending job stays (only a result is read).
                    if kind_of(&work, &k)? == Some(RESULT) {
                        work.remove(k.as_slice())?;
                    }
                    unmark_delivered(&mut delivered, pool, *index)?;
                }
                LedgerOp::PutFlags {
                    pool,
                    index,
                    flags: bytes,
                } => {
                    let k = key(pool, *index);
                    if kind_of(&work, &k)? == Some(JOB) {
                        flags.insert(k.as_slice(), bytes.as_slice())?;
                    }
                }
                LedgerOp::ResultsDelivered { pool, indices } => {
                    mark_delivered(&work, &mut delivered, pool, indices)?;
                }
                LedgerOp::NumberEngine { pool, number } => {
                    engines.insert(key(pool, *number).as_slice(), [].as_slice())?;
                }
                LedgerOp::PutUpdate { pool, seq, update } => {
                    updates.insert(key(pool, *seq).as_slice(), update.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Removes every row of `table` with a key in `lo..=hi`. Keys first, then
/// one removal each: redb's `retain_in` copies pages for every row it
/// drops, and took 12 times as long for a pool of 200,000 results.
fn remove_range(table: &mut redb::Table<&[u8], &[u8]>, lo: &[u8], hi: &[u8]) -> Result<(), Failed> {
    let mut keys = Vec::new();
    for row in table.range::<&[u8]>(lo..=hi)? {
        keys.push(row?.0.value().to_vec());
    }
    for k in keys {
        table.remove(k.as_slice())?;
    }
    Ok(())
}

/// The kind ([`JOB`] or [`RESULT`]) of the [`WORK`] row under `k`, if any.
fn kind_of(work: &redb::Table<&[u8], &[u8]>, k: &[u8; 24]) -> Result<Option<u8>, Failed> {
    Ok(work
        .get(k.as_slice())?
        .and_then(|row| row.value().first().copied()))
}

/// Writes the [`WORK`] row `k`: `kind`, then `bytes` (written in place,
/// not joined in a buffer first).
fn put(
    work: &mut redb::Table<&[u8], &[u8]>,
    k: &[u8; 24],
    kind: u8,
    bytes: &[u8],
) -> Result<(), Failed> {
    let len = u32::try_from(bytes.len() + 1).map_err(|_| {
        Failed(format!(
            "a row of {} bytes is too large for the ledger",
            bytes.len()
        ))
    })?;
    let mut row = work.insert_reserve(k.as_slice(), len)?;
    let out = row.as_mut();
    out[0] = kind;
    out[1..].copy_from_slice(bytes);
    Ok(())
}

/// Moves the rows of a ledger written before [`WORK`] (tables `jobs` and
/// `results`) into it, and removes those tables. Nothing to do for a
/// ledger that has none.
fn migrate_to_work(txn: &redb::WriteTransaction) -> Result<(), Failed> {
    let old: Vec<String> = txn
        .list_tables()?
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    let mut work = txn.open_table(WORK)?;
    for (table, kind) in [(OLD_JOBS, JOB), (OLD_RESULTS, RESULT)] {
        if !old
            .iter()
            .any(|name| name == redb::TableHandle::name(&table))
        {
            continue;
        }
        let rows = {
            let old = txn.open_table(table)?;
            let mut rows = Vec::new();
            for row in old.iter()? {
                let (k, v) = row?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
            }
            rows
        };
        for (k, v) in rows {
            let k: [u8; 24] = k.as_slice().try_into().map_err(|_| {
                Failed(format!(
                    "a row of the old `{}` table has a key of {} bytes, not 24",
                    redb::TableHandle::name(&table),
                    k.len()
                ))
            })?;
            // A result wins over a job of the same index, as a finished job does.
            if kind == JOB && kind_of(&work, &k)? == Some(RESULT) {
                continue;
            }
            put(&mut work, &k, kind, &v)?;
        }
        txn.delete_table(table)?;
    }
    Ok(())
}

/// Marks the stored ones of `indices` delivered: one row per run of
/// consecutive indices.
fn mark_delivered(
    work: &redb::Table<&[u8], &[u8]>,
    delivered: &mut redb::Table<&[u8], &[u8]>,
    pool: &PoolKey,
    indices: &[u64],
) -> Result<(), Failed> {
    let mut stored = Vec::with_capacity(indices.len());
    for index in indices {
        if kind_of(work, &key(pool, *index))? == Some(RESULT) {
            stored.push(*index);
        }
    }
    stored.sort_unstable();
    stored.dedup();
    for (first, last) in runs(&stored) {
        let k = key(pool, first);
        // A run already marked from the same index keeps its longer end.
        let last = match delivered.get(k.as_slice())? {
            Some(v) => last.max(run_end(first, v.value())),
            None => last,
        };
        delivered.insert(k.as_slice(), last.to_be_bytes().as_slice())?;
    }
    Ok(())
}

/// Removes `index`'s delivered mark, splitting the run that holds it.
fn unmark_delivered(
    delivered: &mut redb::Table<&[u8], &[u8]>,
    pool: &PoolKey,
    index: u64,
) -> Result<(), Failed> {
    let found = {
        let lo = key(pool, 0);
        let hi = key(pool, index);
        let mut before = delivered.range::<&[u8]>(lo.as_slice()..=hi.as_slice())?;
        match before.next_back() {
            Some(row) => {
                let (k, v) = row?;
                split(k.value()).map(|(_, first)| (first, run_end(first, v.value())))
            }
            None => None,
        }
    };
    let Some((first, last)) = found.filter(|(_, last)| *last >= index) else {
        return Ok(());
    };
    delivered.remove(key(pool, first).as_slice())?;
    if first < index {
        delivered.insert(
            key(pool, first).as_slice(),
            (index - 1).to_be_bytes().as_slice(),
        )?;
    }
    if index < last {
        delivered.insert(
            key(pool, index + 1).as_slice(),
            last.to_be_bytes().as_slice(),
        )?;
    }
    Ok(())
}

/// The last index of the run that starts at `first` with row value `value`.
fn run_end(first: u64, value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(first, u64::from_be_bytes)
        .max(first)
}

/// The runs of consecutive numbers in sorted `indices`, as (first, last).
fn runs(indices: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &i in indices {
        match out.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(i) => *last = i,
            _ => out.push((i, i)),
        }
    }
    out
}

/// Every index the delivered rows (first, value) of one pool mark.
fn delivered_indices(rows: Vec<(u64, Vec<u8>)>) -> Vec<u64> {
    let mut out = Vec::new();
    for (first, value) in rows {
        out.extend(first..=run_end(first, &value));
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
