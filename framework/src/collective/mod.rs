//! Collectives over a group of processes: the seed's
//! `tree.allReduce(grads, fn)` — every rank ends with the combination of
//! every rank's tensor, bit-identical on all of them — and `broadcast`,
//! `reduce`, `scatter`, `gather`, `all_gather`, `barrier`.
//!
//! The parent of a process tree is rank 0 and calls the methods of
//! [`crate::Children`]; each child (rank 1..n, in group order) calls the
//! functions here from its function with the same arguments. Children on
//! the parent's machine share one shared-memory arena
//! ([`crate::process::local_group`]): transfers are `memcpy`s and barriers
//! futex words, with no message per call. When a child runs on another
//! host, every collective runs over the QUIC links through the parent:
//! `all_reduce` and `barrier` the schedules of [`crate::reduce`], and
//! `reduce`, `broadcast`, `gather`, `all_gather` and `scatter` a star
//! through rank 0 (each child sends the parent its part, the parent folds,
//! concatenates or splits in rank order and sends each child its result),
//! with the same results as on one machine. Calls that disagree (another
//! collective, length, root or operation) fail on every rank with
//! [`crate::ProcessError::Misuse`]; a rank that dies makes every other
//! rank's call fail: never a hang, never a partial result.
//!
//! The operations, schedules and topologies are re-exported here from
//! [`crate::reduce`].

pub use crate::process::allreduce::ReduceBuffer;
pub use crate::process::collectives::{
    TRANSPORT_VAR, all_gather, all_reduce, barrier, broadcast, gather, reduce, scatter,
};
pub use crate::process::group::{
    CollectiveError, FORM_TIMEOUT, FormError, Group, GroupOptions, Transport,
};
pub use crate::process::local_group::{GroupError, LocalGroup};
pub use crate::reduce::*;
pub use crate::reduce::{ops, ring, schedule, topology, tree};
