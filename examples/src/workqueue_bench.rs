//! The two halves of the work-queue benchmark (`workqueue_items_per_s`):
//! the parent owns a queue of `u64` and writes numbered items into it;
//! readers in child processes open it by name and read until it is closed.
//!
//! How a bench binary wires it (the `#[parallel::remote]` wrapper must be
//! declared in the binary, so that its children, started from the same
//! program, know it):
//!
//! ```ignore
//! #[parallel::remote]
//! fn wq_reader(name: String) -> u64 {
//!     parallel_examples::workqueue_bench::read_all(&name)
//! }
//!
//! #[parallel::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let children = parallel::nfork(2).await?;
//!     children.exec(wq_reader, ("bench queue 1".to_string(),)).await?;
//!     let items_per_s =
//!         parallel_examples::workqueue_bench::drive(&children, "bench queue 1", 100_000).await?;
//!     println!("workqueue_items_per_s {items_per_s:.0}");
//!     children.sync().await?; // the readers end once the queue is drained
//!     Ok(())
//! }
//! ```
//!
//! - [`drive`] opens the queue and must be its owner: do not open that
//!   name in the parent before (use a fresh name for each call).
//! - The children may start reading before [`drive`] opens the queue: a
//!   child's handle keeps asking for up to
//!   [`parallel::workqueue::SERVE_WAIT`].
//! - What an exec'd function returns does not reach the parent, so
//!   [`read_all`] also sends its count with `parent().send`; [`drive`]
//!   receives one count from each child and checks they add up.
//! - A reader uses the default batching: a batch per round trip that starts
//!   at [`parallel::workqueue::DEFAULT_PREFETCH`] items and grows while the
//!   reader runs out before its next batch arrives (up to
//!   [`parallel::workqueue::MAX_ADAPTIVE_PREFETCH`]), the next batch asked
//!   for while the current one is handed out (a reader's process that dies
//!   gives back what it had not acknowledged).

use std::error::Error;
use std::time::{Duration, Instant};

use parallel::WorkQueue;

/// How long each step of [`drive`] may take before it gives up.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The reader's side, run in a child: reads the parent's queue `name` until
/// it is closed and drained, sends the number of items read to the parent
/// and returns it.
pub fn read_all(name: &str) -> u64 {
    // ANCHOR: reader
    // In a forked child, `named` reaches the parent's queue of that name.
    let q = WorkQueue::<u64>::named(name);
    let mut read = 0u64;
    while let Some(_item) = q.read() {
        read += 1;
    }
    // ANCHOR_END: reader
    if let Some(parent) = parallel::parent()
        && let Err(e) = parent.send(&read)
    {
        eprintln!("work queue reader: could not send its count: {e}");
    }
    read
}

/// The parent's side: opens the queue `name` (as its owner), writes `items`
/// numbered `u64`s into it from a thread of its own, closes it, receives
/// each child's count and checks they add up to `items`. Returns items per
/// second, from the first write to the last count. `children` must already
/// run [`read_all`] on `name` (see the module docs).
pub async fn drive(
    children: &parallel::Children,
    name: &str,
    items: u64,
) -> Result<f64, Box<dyn Error>> {
    // ANCHOR: owner
    // In the parent, the first handle opened under a name owns the queue;
    // its children reach it by that name.
    let q = WorkQueue::<u64>::named(name);
    // ANCHOR_END: owner
    if !q.is_owner() {
        return Err(format!(
            "work queue {name:?} is already open in this process; give drive a fresh name"
        )
        .into());
    }
    let start = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Writes block while the queue is full: not on the runtime's thread.
    std::thread::spawn(move || {
        let mut written = 0u64;
        for i in 0..items {
            if q.write(i).is_err() {
                break;
            }
            written += 1;
        }
        q.close();
        let _ = tx.send(written);
    });
    let written = tokio::time::timeout(STEP_TIMEOUT, rx)
        .await
        .map_err(|_| "the writer did not finish in time")??;
    if written != items {
        return Err(format!("the queue closed after {written} of {items} items").into());
    }
    let counts = tokio::time::timeout(STEP_TIMEOUT, children.receive::<u64>())
        .await
        .map_err(|_| "the readers did not report in time")??;
    let secs = start.elapsed().as_secs_f64();
    let read: u64 = counts.iter().map(|c| c.to_native()).sum();
    if read != items {
        return Err(format!("the readers read {read} items, {items} were written").into());
    }
    Ok(items as f64 / secs)
}
