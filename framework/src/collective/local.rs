//! Collectives between processes of one machine through one shared-memory
//! [`Arena`]: the same-host link of the collective tree, as fast as copying
//! memory.
//!
//! Rank 0 creates the group ([`LocalGroup::create`]); every other rank maps
//! it ([`LocalGroup::open`]). The arena holds a control page (a barrier, an
//! abort word, each rank's pid), each rank's call header, and two *banks* of
//! data, each with one slot per rank plus a result area:
//!
//! ```text
//! control | headers | bank 0: slot 0 .. slot n-1, result | bank 1: ...
//! ```
//!
//! Every call is a sequence of barriers. Data written between barrier `e-1`
//! and barrier `e` goes to bank `e % 2` and is read after barrier `e`, before
//! the reader arrives at barrier `e+1`; it is overwritten only after barrier
//! `e+1`, so one barrier per step is enough and no rank ever reads a slot
//! being rewritten. Large buffers go through in slot-sized segments.
//!
//! - **all_reduce**, small buffers: every rank copies its buffer into its
//!   slot; after one barrier each rank folds all slots itself.
//! - **all_reduce**, large buffers: per segment, copy in; barrier; rank `r`
//!   reduces chunk `r` of every slot into the result area; barrier; every
//!   rank copies the result out (a reduce-scatter and an all-gather through
//!   memory).
//! - **broadcast**, **gather**, **scatter**, **all_gather**: one barrier per
//!   segment; **reduce** is all_reduce where only the root copies out.
//!
//! Results are bit-identical on every rank and equal to the left fold in
//! rank order, `((x0 ⊕ x1) ⊕ x2) ⊕ …` ([`crate::reduce::ReduceOp::fold`]),
//! whichever path is taken: every element is combined by exactly that
//! sequence of operations, once, and every rank copies the same bits.
//!
//! # Failure
//!
//! A rank waiting at a barrier checks, every few milliseconds, that every
//! other rank's process still runs (`/proc/<pid>/stat`). A dead one is
//! recorded in the abort word and every waiting rank is woken: all of them
//! return [`GroupError::RankDied`], within about [`CHECK_EVERY`] of the
//! death. A call that returns `Ok` on a rank has the full, correct result;
//! after an error the group is broken and a new one is made (from the
//! survivors) for the next call. The ranks' call headers are compared after
//! the first barrier, so ranks that make different calls (another size,
//! operation, root or collective) all get [`GroupError::Mismatch`] and the
//! group stays usable.

use std::future::Future;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::actor::Element;
use crate::reduce::{ReduceOp, Reducible, chunk_bounds};
use crate::transport::arena::{self, Arena};

/// The most ranks a group can have.
pub const MAX_RANKS: usize = 256;
/// Bytes of one rank's slot in each bank: the segment size of large calls.
pub const DEFAULT_SLOT: usize = 512 * 1024;
/// An all_reduce of at most this many bytes takes the one-barrier path.
pub const SMALL: usize = 16 * 1024;
/// How often a waiting rank checks that the other ranks' processes run.
pub const CHECK_EVERY: Duration = Duration::from_millis(10);
/// How long a rank spins before it sleeps, when there is a core per rank.
const SPIN_FOR: Duration = Duration::from_millis(1);
/// How long a rank yields its core before it sleeps, when ranks outnumber
/// cores.
const YIELD_FOR: Duration = Duration::from_micros(200);
/// The longest a cooperating rank spins or yields on the async runtime's
/// thread before it lets the runtime's other tasks run (each turn costs the
/// runtime a look at its I/O, about a microsecond).
const TURN: Duration = Duration::from_micros(20);

const MAGIC: u32 = 0x5041_5247;
const LINE: usize = 128;
const W_MAGIC: usize = 0;
const W_RANKS: usize = 4;
const W_SLOT: usize = 8;
const W_ABORT: usize = LINE;
const W_RETIRED: usize = 2 * LINE;
const W_ARRIVED: usize = 3 * LINE;
const W_GENERATION: usize = 4 * LINE;
const W_SLEEPERS: usize = 5 * LINE;
const PIDS: usize = 6 * LINE;
const HEADERS: usize = 4096;
const HEADER: usize = 32;
const DATA: usize = HEADERS + 2 * MAX_RANKS * HEADER;

/// Abort kinds (high half of the abort word; the low half is rank + 1).
const ABORT_DIED: u32 = 1;
const ABORT_LEFT: u32 = 2;

/// Why a collective of a [`LocalGroup`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// A rank's process ended during the call.
    #[error(
        "rank {rank} (pid {pid}) died during the collective; make a new group of the survivors and call again"
    )]
    RankDied {
        /// Its rank.
        rank: usize,
        /// Its process id.
        pid: u32,
    },
    /// A rank gave up the call (its caller cancelled it or its process is
    /// ending).
    #[error("rank {rank} left the collective before it ended; call again on every rank")]
    Left {
        /// Its rank.
        rank: usize,
    },
    /// The ranks did not make the same call.
    #[error("the ranks made different calls: {0}; every rank must make the same call")]
    Mismatch(String),
    /// The group was replaced by a newer one.
    #[error("the group was replaced by a newer one; call again")]
    Retired,
    /// The shared memory could not be made or mapped.
    #[error("{0}")]
    Memory(String),
}

/// How a rank waits for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Sleep the thread (a child's function thread).
    Block,
    /// Never hold the async runtime's thread: yield to it between spins,
    /// and sleep on a blocking-pool thread, so the process's node keeps
    /// serving its peers (the parent of a tree, on its actix thread).
    Cooperate,
}

/// What one rank calls; compared across ranks after the first barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    kind: u32,
    elem: u32,
    op: u32,
    root: u32,
    count: u64,
    /// Non-zero when this rank's arguments are invalid (see [`Header::bad_text`]).
    bad: u32,
}

/// Codes of the collectives, as call headers carry them (here and in
/// [`crate::collective::Group`]'s posts).
pub(crate) mod kind {
    pub const ALL_REDUCE: u32 = 1;
    pub const BROADCAST: u32 = 2;
    pub const REDUCE: u32 = 3;
    pub const GATHER: u32 = 4;
    pub const SCATTER: u32 = 5;
    pub const ALL_GATHER: u32 = 6;
    pub const BARRIER: u32 = 7;

    /// The collective's name.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            ALL_REDUCE => "all_reduce",
            BROADCAST => "broadcast",
            REDUCE => "reduce",
            GATHER => "gather",
            SCATTER => "scatter",
            ALL_GATHER => "all_gather",
            BARRIER => "barrier",
            _ => "an unknown collective",
        }
    }

    /// A header's `bad` code: the root's scatter buffer has the wrong length.
    pub const BAD_SCATTER_LEN: u32 = 1;
    /// A header's `bad` code: the root is not a rank.
    pub const BAD_ROOT: u32 = 2;

    /// What is wrong with rank `rank`'s call whose header has `bad`.
    pub fn bad_text(bad: u32, rank: usize, root: u64, count: u64, ranks: usize) -> String {
        match bad {
            BAD_SCATTER_LEN => {
                format!("the root (rank {rank}) must pass {ranks} × {count} elements to scatter")
            }
            BAD_ROOT => format!("rank {rank} named root {root}, but there are {ranks} ranks"),
            _ => format!("rank {rank} passed invalid arguments"),
        }
    }
}

use kind::{
    ALL_GATHER, ALL_REDUCE, BAD_ROOT, BAD_SCATTER_LEN, BARRIER, BROADCAST, GATHER, REDUCE, SCATTER,
};

impl Header {
    fn new(kind: u32, elem: usize, op: u32, root: usize, count: usize) -> Self {
        Self {
            kind,
            elem: elem as u32,
            op,
            root: root as u32,
            count: count as u64,
            bad: 0,
        }
    }

    fn bad_text(&self, rank: usize, ranks: usize) -> String {
        kind::bad_text(self.bad, rank, u64::from(self.root), self.count, ranks)
    }
}

/// One rank's handle on a same-host group; see the module docs.
#[derive(Debug)]
pub struct LocalGroup {
    arena: Arc<Arena>,
    rank: usize,
    ranks: usize,
    slot: usize,
    pids: Vec<u32>,
    /// Barriers passed so far (equal on every rank between calls).
    epoch: u64,
    wait: Wait,
    spin: bool,
    broken: bool,
}

fn arena_len(ranks: usize, slot: usize) -> usize {
    DATA + 2 * (ranks + 1) * slot
}

fn memory(e: impl std::fmt::Display) -> GroupError {
    GroupError::Memory(format!(
        "shared memory for the collective group: {e}; check that /dev/shm is a writable tmpfs with room"
    ))
}

impl LocalGroup {
    /// Creates a group of `pids.len()` ranks (this process is rank 0 and
    /// `pids[r]` is rank `r`'s process) with `slot`-byte slots.
    pub fn create(pids: &[u32], slot: usize, wait: Wait) -> Result<Self, GroupError> {
        let ranks = pids.len();
        if ranks == 0 || ranks > MAX_RANKS {
            return Err(GroupError::Memory(format!(
                "a group has 1 to {MAX_RANKS} ranks, not {ranks}"
            )));
        }
        let slot = slot.max(64).next_multiple_of(64);
        let arena = Arena::create(arena_len(ranks, slot)).map_err(memory)?;
        arena.word(W_RANKS).store(ranks as u32, Ordering::Relaxed);
        arena.word(W_SLOT).store(slot as u32, Ordering::Relaxed);
        for (r, &pid) in pids.iter().enumerate() {
            arena.word(PIDS + 4 * r).store(pid, Ordering::Relaxed);
        }
        arena.word(W_MAGIC).store(MAGIC, Ordering::Release);
        Ok(Self::new(arena, 0, ranks, slot, pids.to_vec(), wait))
    }

    /// Joins the group rank 0 created at `path` as `rank` of `ranks`.
    pub fn open(
        path: &str,
        rank: usize,
        ranks: usize,
        slot: usize,
        wait: Wait,
    ) -> Result<Self, GroupError> {
        if ranks == 0 || ranks > MAX_RANKS || rank >= ranks || !slot.is_multiple_of(64) || slot == 0
        {
            return Err(memory(format!(
                "rank {rank} of {ranks} with {slot}-byte slots is not a valid group"
            )));
        }
        let arena = Arena::open(path, arena_len(ranks, slot)).map_err(memory)?;
        let agrees = arena.word(W_MAGIC).load(Ordering::Acquire) == MAGIC
            && arena.word(W_RANKS).load(Ordering::Relaxed) as usize == ranks
            && arena.word(W_SLOT).load(Ordering::Relaxed) as usize == slot;
        if !agrees {
            return Err(memory(format!("{path} is not a group of {ranks} ranks")));
        }
        let pids = (0..ranks)
            .map(|r| arena.word(PIDS + 4 * r).load(Ordering::Relaxed))
            .collect();
        Ok(Self::new(arena, rank, ranks, slot, pids, wait))
    }

    fn new(
        arena: Arena,
        rank: usize,
        ranks: usize,
        slot: usize,
        pids: Vec<u32>,
        wait: Wait,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            arena: Arc::new(arena),
            rank,
            ranks,
            slot,
            pids,
            epoch: 0,
            wait,
            spin: ranks <= cores,
            broken: false,
        }
    }

    /// Where the arena is, for [`LocalGroup::open`].
    pub fn path(&self) -> &str {
        self.arena.path()
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many ranks.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// Bytes of a slot.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The ranks' process ids.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Whether the group can take another call: no call failed in it and it
    /// was not replaced.
    pub fn usable(&self) -> bool {
        !self.broken
            && self.arena.word(W_ABORT).load(Ordering::Acquire) == 0
            && self.arena.word(W_RETIRED).load(Ordering::Acquire) == 0
    }

    /// Marks the group replaced: every rank waiting in it returns
    /// [`GroupError::Retired`].
    pub fn retire(&self) {
        self.arena.word(W_RETIRED).store(1, Ordering::SeqCst);
        arena::wake(self.arena.word(W_GENERATION));
    }

    /// Gives up the group: every rank waiting in it returns
    /// [`GroupError::Left`] naming this rank.
    pub fn leave(&mut self) {
        self.set_abort(ABORT_LEFT, self.rank);
    }

    fn set_abort(&mut self, kind: u32, subject: usize) {
        self.broken = true;
        let word = (kind << 16) | (subject as u32 + 1);
        let _ =
            self.arena
                .word(W_ABORT)
                .compare_exchange(0, word, Ordering::SeqCst, Ordering::SeqCst);
        arena::wake(self.arena.word(W_GENERATION));
    }

    /// Marks rank `rank` of the group at `path` as gone without mapping the
    /// arena (a rank that could not map it): the others stop waiting for it
    /// and return [`GroupError::Left`]. Writes the abort word through the
    /// file, which every mapping of it shares.
    pub fn give_up(path: &str, rank: usize) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let word = (ABORT_LEFT << 16) | (rank as u32 + 1);
        file.write_all_at(&word.to_ne_bytes(), W_ABORT as u64)
    }

    /// `Ok` while the group is usable; otherwise why not (a rank died or
    /// left, or it was [`GroupError::Retired`]).
    pub fn check(&mut self) -> Result<(), GroupError> {
        if self.broken {
            self.check_flags()?;
            return Err(GroupError::Left { rank: self.rank });
        }
        self.check_flags()
    }

    fn check_flags(&mut self) -> Result<(), GroupError> {
        let abort = self.arena.word(W_ABORT).load(Ordering::Acquire);
        if abort != 0 {
            self.broken = true;
            let subject = ((abort & 0xffff) as usize).saturating_sub(1);
            return Err(match abort >> 16 {
                ABORT_DIED => GroupError::RankDied {
                    rank: subject,
                    pid: self.pids.get(subject).copied().unwrap_or(0),
                },
                _ => GroupError::Left { rank: subject },
            });
        }
        if self.arena.word(W_RETIRED).load(Ordering::Acquire) != 0 {
            self.broken = true;
            return Err(GroupError::Retired);
        }
        Ok(())
    }

    fn check_peers(&mut self) -> Result<(), GroupError> {
        for (r, &pid) in self.pids.iter().enumerate() {
            if r != self.rank && !alive(pid) {
                self.set_abort(ABORT_DIED, r);
                return Err(GroupError::RankDied { rank: r, pid });
            }
        }
        Ok(())
    }

    /// Waits until every rank has called it as often as this one.
    async fn barrier(&mut self) -> Result<(), GroupError> {
        self.check_flags()?;
        let generation = self.arena.word(W_GENERATION);
        let seen = generation.load(Ordering::Acquire);
        let arrived = self.arena.word(W_ARRIVED).fetch_add(1, Ordering::AcqRel) + 1;
        if arrived as usize == self.ranks {
            self.arena.word(W_ARRIVED).store(0, Ordering::Relaxed);
            generation.store(seen.wrapping_add(1), Ordering::SeqCst);
            if self.arena.word(W_SLEEPERS).load(Ordering::SeqCst) > 0 {
                arena::wake(generation);
            }
        } else {
            self.wait_for(seen).await?;
        }
        self.epoch += 1;
        if self.epoch == 1 {
            // Everyone has mapped the arena: the file can go.
            self.arena.unlink();
        }
        Ok(())
    }

    async fn wait_for(&mut self, seen: u32) -> Result<(), GroupError> {
        let start = Instant::now();
        let mut next_check = start + CHECK_EVERY;
        let mut spins = 0u32;
        let cooperate = self.wait == Wait::Cooperate;
        // When a cooperating rank last let the runtime's other tasks run.
        let mut last_turn = start;
        loop {
            let generation = self.arena.word(W_GENERATION);
            if generation.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            self.check_flags()?;
            spins += 1;
            if self.spin {
                if !spins.is_multiple_of(64) {
                    std::hint::spin_loop();
                    continue;
                }
                if start.elapsed() < SPIN_FOR {
                    if cooperate && last_turn.elapsed() >= TURN {
                        // Never hold the runtime's thread for long: let its
                        // other tasks (the node's QUIC, heartbeats) run.
                        tokio::task::yield_now().await;
                        last_turn = Instant::now();
                    }
                    continue;
                }
            } else if start.elapsed() < YIELD_FOR {
                // More ranks than cores: hand the core to a rank that has
                // work, but stay runnable to see the barrier open at once.
                std::thread::yield_now();
                if cooperate && last_turn.elapsed() >= TURN {
                    tokio::task::yield_now().await;
                    last_turn = Instant::now();
                }
                continue;
            }
            let now = Instant::now();
            if now >= next_check {
                self.check_peers()?;
                next_check = now + CHECK_EVERY;
            }
            if cooperate {
                // Sleep on the futex on a blocking-pool thread, never on the
                // runtime's: the node keeps serving its peers meanwhile.
                let arena = self.arena.clone();
                let slept =
                    tokio::task::spawn_blocking(move || sleep_on(&arena, seen, CHECK_EVERY));
                if slept.await.is_err() {
                    // The pool is shutting down: sleep a tick here instead.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } else {
                sleep_on(&self.arena, seen, CHECK_EVERY);
            }
        }
    }

    fn write_header(&self, h: &Header) {
        let base = HEADERS + ((self.epoch % 2) as usize * MAX_RANKS + self.rank) * HEADER;
        let w = |i: usize, v: u32| self.arena.word(base + 4 * i).store(v, Ordering::Relaxed);
        w(0, h.kind);
        w(1, h.elem);
        w(2, h.op);
        w(3, h.root);
        w(4, h.count as u32);
        w(5, (h.count >> 32) as u32);
        w(6, h.bad);
    }

    /// After the call's first barrier: every rank's header, read from the
    /// parity the barrier closed.
    fn agree(&self, mine: &Header) -> Result<(), GroupError> {
        let parity = ((self.epoch - 1) % 2) as usize;
        for r in 0..self.ranks {
            let base = HEADERS + (parity * MAX_RANKS + r) * HEADER;
            let w = |i: usize| self.arena.word(base + 4 * i).load(Ordering::Relaxed);
            let theirs = Header {
                kind: w(0),
                elem: w(1),
                op: w(2),
                root: w(3),
                count: u64::from(w(4)) | (u64::from(w(5)) << 32),
                bad: w(6),
            };
            if theirs.bad != 0 {
                return Err(GroupError::Mismatch(theirs.bad_text(r, self.ranks)));
            }
            if theirs != *mine {
                return Err(GroupError::Mismatch(format!(
                    "rank {} called {} of {} elements of {} bytes (op {}, root {}), rank {r} called {} of {} elements of {} bytes (op {}, root {})",
                    self.rank,
                    kind::name(mine.kind),
                    mine.count,
                    mine.elem,
                    mine.op,
                    mine.root,
                    kind::name(theirs.kind),
                    theirs.count,
                    theirs.elem,
                    theirs.op,
                    theirs.root,
                )));
            }
        }
        Ok(())
    }

    /// Rank `idx`'s slot in the bank of the coming barrier's parity (`ahead`
    /// barriers later), as `T`s; `idx == ranks` is the result area.
    fn slot_ptr<T>(&self, ahead: u64, idx: usize) -> *mut T {
        let parity = ((self.epoch + ahead) % 2) as usize;
        let offset = DATA + (parity * (self.ranks + 1) + idx) * self.slot;
        // SAFETY (of the offset): idx <= ranks, so the slot lies inside the
        // arena sized by `arena_len`.
        unsafe { self.arena.as_ptr().add(offset).cast() }
    }

    /// The slot data written before the last barrier (`idx` of the bank that
    /// barrier closed), `n` elements.
    fn read<T: Element>(&self, idx: usize, n: usize) -> &[T] {
        debug_assert!(n * size_of::<T>() <= self.slot * (self.ranks + 1 - idx));
        // SAFETY: in bounds (callers keep `n` within the slot, or the bank
        // for `idx == 0`), aligned (slots are 64-byte multiples from a page),
        // and by the barrier protocol nobody writes this bank until every
        // rank has passed the next barrier, which this one has not.
        unsafe { std::slice::from_raw_parts(self.slot_ptr::<T>(1, idx), n) }
    }

    /// Copies `data` into slot `idx` of the bank the coming barrier closes.
    fn write<T: Element>(&self, idx: usize, data: &[T]) {
        debug_assert!(std::mem::size_of_val(data) <= self.slot * (self.ranks + 1 - idx));
        // SAFETY: in bounds and aligned as in `read`; only this rank writes
        // this slot before the barrier, and every reader of its previous
        // contents finished before the last barrier.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.slot_ptr::<T>(0, idx), data.len())
        };
    }

    /// Elements of `T` per slot.
    fn per_slot<T>(&self) -> usize {
        self.slot / size_of::<T>()
    }

    /// The first barrier of a call, with the header check.
    async fn open_call(&mut self, h: Header) -> Result<(), GroupError> {
        self.write_header(&h);
        self.barrier().await?;
        self.agree(&h)
    }

    /// Every rank ends with the left fold, in rank order, of every rank's
    /// `data`.
    pub async fn all_reduce<T: Reducible>(
        &mut self,
        data: &mut [T],
        op: &ReduceOp<T>,
    ) -> Result<(), GroupError> {
        self.reduce_to(data, op, None, ALL_REDUCE).await
    }

    /// Rank `root` ends with the left fold, in rank order, of every rank's
    /// `data`; the other ranks' buffers are left as they were.
    pub async fn reduce<T: Reducible>(
        &mut self,
        data: &mut [T],
        op: &ReduceOp<T>,
        root: usize,
    ) -> Result<(), GroupError> {
        self.reduce_to(data, op, Some(root), REDUCE).await
    }

    async fn reduce_to<T: Reducible>(
        &mut self,
        data: &mut [T],
        op: &ReduceOp<T>,
        root: Option<usize>,
        kind: u32,
    ) -> Result<(), GroupError> {
        let mut h = Header::new(
            kind,
            size_of::<T>(),
            op.code(),
            root.unwrap_or(0),
            data.len(),
        );
        if root.is_some_and(|r| r >= self.ranks) {
            h.bad = BAD_ROOT;
        }
        let keeps = |rank: usize| root.is_none_or(|r| r == rank);
        let bytes = std::mem::size_of_val(data);
        if bytes <= SMALL.min(self.slot) {
            self.write(self.rank, data);
            self.open_call(h).await?;
            if keeps(self.rank) {
                data.copy_from_slice(self.read(0, data.len()));
                for r in 1..self.ranks {
                    op.apply(data, self.read(r, data.len()));
                }
            }
            return Ok(());
        }
        let per = self.per_slot::<T>();
        for (i, seg) in data.chunks_mut(per).enumerate() {
            self.write(self.rank, seg);
            if i == 0 {
                self.open_call(h).await?;
            } else {
                self.barrier().await?;
            }
            let mine = chunk_bounds(seg.len(), self.ranks)[self.rank].clone();
            // SAFETY: `mine` of the result area of the bank the next barrier
            // closes (inside the slot: `mine.end <= seg.len() <= per`); this
            // rank alone writes it before that barrier, and its previous
            // readers finished before the last one.
            let out: &mut [T] = unsafe {
                std::slice::from_raw_parts_mut(
                    self.slot_ptr::<T>(0, self.ranks).add(mine.start),
                    mine.len(),
                )
            };
            out.copy_from_slice(&self.read::<T>(0, seg.len())[mine.clone()]);
            for r in 1..self.ranks {
                op.apply(out, &self.read::<T>(r, seg.len())[mine.clone()]);
            }
            self.barrier().await?;
            if keeps(self.rank) {
                seg.copy_from_slice(self.read(self.ranks, seg.len()));
            }
        }
        Ok(())
    }

    /// Every rank ends with rank `root`'s `data`.
    pub async fn broadcast<T: Element>(
        &mut self,
        data: &mut [T],
        root: usize,
    ) -> Result<(), GroupError> {
        let mut h = Header::new(BROADCAST, size_of::<T>(), 0, root, data.len());
        if root >= self.ranks {
            h.bad = BAD_ROOT;
        }
        // The root may use the whole bank.
        let per = (self.slot * (self.ranks + 1)) / size_of::<T>();
        let segments = data.len().div_ceil(per).max(1);
        for i in 0..segments {
            let seg = i * per..((i + 1) * per).min(data.len());
            if self.rank == root {
                self.write(0, &data[seg.clone()]);
            }
            if i == 0 {
                self.open_call(h).await?;
            } else {
                self.barrier().await?;
            }
            if self.rank != root {
                data[seg.clone()].copy_from_slice(self.read(0, seg.len()));
            }
        }
        Ok(())
    }

    /// Rank `root` gets every rank's `data`, concatenated in rank order
    /// (`Some`, the others `None`). Every rank passes the same length.
    pub async fn gather<T: Element>(
        &mut self,
        data: &[T],
        root: usize,
    ) -> Result<Option<Vec<T>>, GroupError> {
        let all = self.exchange(data, Some(root), GATHER).await?;
        Ok(all)
    }

    /// Every rank gets every rank's `data`, concatenated in rank order.
    pub async fn all_gather<T: Element>(&mut self, data: &[T]) -> Result<Vec<T>, GroupError> {
        let all = self.exchange(data, None, ALL_GATHER).await?;
        Ok(all.unwrap_or_default())
    }

    async fn exchange<T: Element>(
        &mut self,
        data: &[T],
        root: Option<usize>,
        kind: u32,
    ) -> Result<Option<Vec<T>>, GroupError> {
        let mut h = Header::new(kind, size_of::<T>(), 0, root.unwrap_or(0), data.len());
        if root.is_some_and(|r| r >= self.ranks) {
            h.bad = BAD_ROOT;
        }
        let keeps = root.is_none_or(|r| r == self.rank);
        let n = data.len();
        let mut out: Vec<T> = if keeps {
            Vec::with_capacity(n * self.ranks)
        } else {
            Vec::new()
        };
        let per = self.per_slot::<T>();
        let segments = n.div_ceil(per).max(1);
        let mut parts: Vec<Vec<T>> = Vec::new();
        if keeps && segments > 1 {
            parts = (0..self.ranks).map(|_| Vec::with_capacity(n)).collect();
        }
        for i in 0..segments {
            let seg = i * per..((i + 1) * per).min(n);
            self.write(self.rank, &data[seg.clone()]);
            if i == 0 {
                self.open_call(h).await?;
            } else {
                self.barrier().await?;
            }
            if keeps && segments > 1 {
                for (r, part) in parts.iter_mut().enumerate() {
                    part.extend_from_slice(self.read::<T>(r, seg.len()));
                }
            } else if keeps {
                for r in 0..self.ranks {
                    out.extend_from_slice(self.read::<T>(r, seg.len()));
                }
            }
        }
        if !keeps {
            return Ok(None);
        }
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(Some(out))
    }

    /// Rank `root`'s `send` (every rank's part, `ranks × recv.len()`
    /// elements in rank order) is split: rank `r` gets part `r` in `recv`.
    /// The other ranks' `send` is not read.
    pub async fn scatter<T: Element>(
        &mut self,
        send: &[T],
        recv: &mut [T],
        root: usize,
    ) -> Result<(), GroupError> {
        let n = recv.len();
        let mut h = Header::new(SCATTER, size_of::<T>(), 0, root, n);
        if root >= self.ranks {
            h.bad = BAD_ROOT;
        } else if self.rank == root && send.len() != n * self.ranks {
            h.bad = BAD_SCATTER_LEN;
        }
        let valid = h.bad == 0;
        let per = self.per_slot::<T>();
        let segments = n.div_ceil(per).max(1);
        for i in 0..segments {
            let seg = i * per..((i + 1) * per).min(n);
            if self.rank == root && valid {
                for r in 0..self.ranks {
                    self.write(r, &send[r * n + seg.start..r * n + seg.end]);
                }
            }
            if i == 0 {
                self.open_call(h).await?;
            } else {
                self.barrier().await?;
            }
            recv[seg.clone()].copy_from_slice(self.read(self.rank, seg.len()));
        }
        Ok(())
    }

    /// Returns once every rank has called it.
    pub async fn barrier_call(&mut self) -> Result<(), GroupError> {
        self.open_call(Header::new(BARRIER, 0, 0, 0, 0)).await
    }
}

/// Whether the process `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => match stat.iter().rposition(|&b| b == b')') {
            Some(i) => !matches!(stat.get(i + 2), Some(b'Z' | b'X' | b'x')),
            None => true,
        },
    }
}

/// Sleeps on the arena's generation word while it is `seen` (and the group
/// is neither aborted nor retired), at most `slice`, counted among the
/// sleepers so the last rank to arrive wakes it.
fn sleep_on(arena: &Arena, seen: u32, slice: Duration) {
    let sleepers = arena.word(W_SLEEPERS);
    let generation = arena.word(W_GENERATION);
    sleepers.fetch_add(1, Ordering::SeqCst);
    if generation.load(Ordering::SeqCst) == seen
        && arena.word(W_ABORT).load(Ordering::SeqCst) == 0
        && arena.word(W_RETIRED).load(Ordering::SeqCst) == 0
    {
        arena::wait(generation, seen, slice);
    }
    sleepers.fetch_sub(1, Ordering::SeqCst);
}

/// Runs a group call to its end on this thread. For [`Wait::Block`] groups,
/// whose calls never wait on the async runtime.
pub fn block<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
