//! Collectives over a group of processes: the seed's
//! `tree.allReduce(grads, fn)` — every rank ends with the combination of
//! every rank's tensor, bit-identical on all of them.
//!
//! [`all_reduce`] in a child's function and [`crate::Children::all_reduce`]
//! in the parent run the schedules of [`crate::reduce`] over the process
//! tree (parent = rank 0, children = ranks 1..n). In this first version
//! every transfer goes through the parent, which forwards child-to-child
//! chunks; direct child-to-child links are the next step for bandwidth. A
//! rank that dies makes every other rank's call fail: never a hang, never
//! a partial result.
//!
//! The operations, schedules and topologies are re-exported here from
//! [`crate::reduce`].

pub use crate::process::allreduce::{ReduceBuffer, all_reduce};
pub use crate::reduce::*;
pub use crate::reduce::{ops, ring, schedule, topology, tree};
