//! s4: a pool of workers on a cluster. Write a [`Worker`] (the seed's
//! `WorkerInterface`), register it with `#[parallel::worker]` on its impl
//! (or [`register_worker!`](crate::register_worker) after it),
//! start a head and nodes (`parallel head`, `parallel node`), then
//! [`Pool::connect`] from any program: `map`, `imap_unordered`,
//! `update_workers`.
//!
//! The workers run the pool owner's own program: `connect` sends the
//! running executable to the head (once per SHA-256), each node agent
//! fetches and verifies it and starts its workers as that program, where
//! `#[parallel::main]` hands over to the registered worker type. Nothing is
//! installed on the nodes.
//!
//! ```no_run
//! use parallel::pool::{Pool, Worker};
//!
//! struct Square;
//!
//! #[parallel::worker]
//! impl Worker for Square {
//!     type Init = ();
//!     type Job = u64;
//!     type Output = u64;
//!     type Update = ();
//!     fn init(_: ()) -> Self {
//!         Square
//!     }
//!     fn run(&mut self, job: u64) -> u64 {
//!         job * job
//!     }
//! }
//!
//! #[parallel::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The head's join line, as `parallel head` printed it.
//!     let line = std::env::args().nth(1).ok_or("usage: PROGRAM JOIN_LINE")?.parse()?;
//!     let mut pool = Pool::<Square>::connect(&line, parallel::Password::resolve()?, ()).await?;
//!     let squares = pool.map(0..100).await?;
//!     assert_eq!(squares[9].as_ref().ok(), Some(&81));
//!     pool.close().await;
//!     Ok(())
//! }
//! ```

mod connect;
mod results;
#[cfg(test)]
mod tests;

use crate::cluster::worker::{JobFailure, JobRunner, WorkerKind};
use crate::wire::WireType;

pub use connect::{Pool, PoolError};
pub use results::{JobError, Unordered};

/// A worker: built once per worker process from the pool's init data, then
/// given jobs one at a time, and updates between jobs in the order the
/// pool sent them (the seed's `WorkerInterface`). Register the type with
/// [`register_worker!`](crate::register_worker).
pub trait Worker: Send + 'static {
    /// What every worker is built from.
    type Init: WireType;
    /// One job.
    type Job: WireType;
    /// What a job gives.
    type Output: WireType + Send;
    /// An update from the pool owner ([`Pool::update_workers`]).
    type Update: WireType;

    /// Builds the worker (heavy preparation goes here: once per worker).
    fn init(init: Self::Init) -> Self;
    /// Builds the worker knowing the GPU its node agent gave it (`None` on
    /// a node without GPUs; each worker of a GPU node gets one and sees only
    /// that one). Calls [`Worker::init`] unless overridden: a GPU worker
    /// overrides this and opens its device, e.g. with
    /// `parallel::gpu::Device::open(gpu.ordinal)` (feature `cuda`).
    fn init_on(init: Self::Init, gpu: Option<WorkerGpu>) -> Self
    where
        Self: Sized,
    {
        let _ = gpu;
        Self::init(init)
    }
    /// Runs one job.
    fn run(&mut self, job: Self::Job) -> Self::Output;
    /// Handles an update (between jobs). Does nothing unless overridden.
    fn handle_update(&mut self, update: Self::Update) {
        let _ = update;
    }
}

/// The GPU a cluster worker was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerGpu {
    /// The machine's id for it (`nvidia-smi`'s index, or what the node's
    /// `CUDA_VISIBLE_DEVICES` listed).
    pub id: String,
    /// Its ordinal in the worker's process: always 0, the worker's
    /// `CUDA_VISIBLE_DEVICES` shows only this GPU.
    pub ordinal: u32,
}

/// The name a worker type is registered and asked for under.
pub fn kind_name<W: Worker>() -> &'static str {
    std::any::type_name::<W>()
}

/// The registration of `W` (what [`register_worker!`](crate::register_worker) submits).
pub const fn kind_of<W: Worker>() -> WorkerKind {
    WorkerKind {
        name: kind_name::<W>,
        start: start::<W>,
    }
}

/// Registers a [`Worker`] type, so that the program, started as a worker
/// on a node, runs it: `parallel::register_worker!(MyWorker);` at module level.
#[macro_export]
macro_rules! register_worker {
    ($worker:ty) => {
        $crate::__private::inventory::submit! {
            $crate::pool::kind_of::<$worker>()
        }
    };
}

struct Typed<W: Worker>(W);

fn start<W: Worker>(init: &[u8]) -> Result<Box<dyn JobRunner>, String> {
    let init = crate::wire::decode_owned::<W::Init>(init).map_err(|e| e.to_string())?;
    let gpu = crate::config::environment()
        .worker
        .as_ref()
        .and_then(|w| w.gpu.clone())
        .map(|id| WorkerGpu { id, ordinal: 0 });
    Ok(Box::new(Typed(W::init_on(init, gpu))))
}

impl<W: Worker> JobRunner for Typed<W> {
    fn run(&mut self, job: &[u8]) -> Result<Vec<u8>, JobFailure> {
        let invalid = |e: crate::wire::DecodeError| JobFailure::Invalid(e.to_string());
        let job = crate::wire::decode_owned::<W::Job>(job).map_err(invalid)?;
        let output = self.0.run(job);
        crate::wire::encode(&output)
            .map(|b| b.to_vec())
            .map_err(|e| JobFailure::Invalid(e.to_string()))
    }

    fn update(&mut self, update: &[u8]) -> Result<(), String> {
        let update = crate::wire::decode_owned::<W::Update>(update).map_err(|e| e.to_string())?;
        self.0.handle_update(update);
        Ok(())
    }
}
