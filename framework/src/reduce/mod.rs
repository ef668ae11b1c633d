//! Reduction operations and collective schedules — allreduce, reduce,
//! broadcast — as pure, I/O-free functions (like `wire`, this layer does no
//! I/O; the `collective` module runs these schedules between processes).
//!
//! The seed's `tree.allReduce(grads, fn)`: every rank ends with the
//! combination of every rank's tensor. This module holds the part that needs
//! no processes or sockets, so it can be tested exhaustively:
//!
//! - [`ops`]: [`ReduceOp`] (`Sum`, `Prod`, `Min`, `Max`, a closure) over
//!   [`Reducible`] elements (`i32`, `i64`, `f32`, `f64`);
//! - [`ring`]: the bandwidth-optimal ring allreduce
//!   (reduce-scatter, then all-gather) and [`chunk_bounds`];
//! - [`tree`]: the latency-optimal tree (reduce to a root, broadcast);
//! - [`schedule`]: [`Schedule`], its [`Step`]s and [`Transfer`]s, the
//!   in-memory simulator, the sequential reference and [`choose`];
//! - [`topology`]: ring and tree orders that keep the ranks of one host
//!   together, with each link labelled by how it will be carried.
//!
//! Results are bit-identical on every rank: each schedule fixes the order in
//! which contributions are combined (see [`Schedule::reference`]), and the
//! runtime applies reductions in the listed order, never arrival order.
//!
//! ```
//! use parallel::reduce::{ReduceOp, Schedule};
//! let inputs: Vec<Vec<f32>> = (0..4).map(|r| vec![r as f32 * 0.1; 6]).collect();
//! let schedule = Schedule::allreduce(6, 4, 4).unwrap();
//! let mut buffers = inputs.clone();
//! schedule.simulate(&ReduceOp::Sum, &mut buffers).unwrap();
//! let expected = schedule.reference(&ReduceOp::Sum, &inputs).unwrap();
//! assert!(buffers.iter().all(|b| b == &expected));
//! ```

pub mod ops;
pub mod ring;
pub mod schedule;
pub mod topology;
pub mod tree;

#[cfg(test)]
mod tests;

pub use ops::{ReduceFn, ReduceOp, Reducible};
pub use ring::chunk_bounds;
pub use schedule::{
    Action, Algorithm, CostModel, Phase, RankStep, Schedule, ScheduleError, Step, Transfer, choose,
};
pub use topology::{Link, Place, Topology};
pub use tree::Tree;
