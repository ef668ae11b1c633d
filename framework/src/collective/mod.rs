//! Collectives over a group of processes: the seed's
//! `tree.allReduce(grads, fn)` — every rank ends with the combination of
//! every rank's tensor, bit-identical on all of them — and `broadcast`,
//! `reduce`, `scatter`, `gather`, `all_gather`, `barrier`.
//!
//! The parent of a process tree is rank 0 and calls the methods of
//! [`crate::Children`]; each child (rank 1..n, in group order) calls the
//! functions here from its function with the same arguments. Children on
//! the parent's machine share one shared-memory arena
//! ([`local`]): transfers are `memcpy`s and barriers
//! futex words, with no message per call. When a child runs on another
//! machine, the tree forms a [`Group`] on its first collective: the children
//! join each other and calls run over direct QUIC links between the ranks
//! (the children of one machine through its own arena, AllReduce reduced per
//! machine first), not through the parent. When the children cannot reach
//! each other, every call goes through the parent instead (the relay, also
//! chosen by `PARALLEL_COLLECTIVE_TRANSPORT=relay`): `all_reduce` and
//! `barrier` as the schedules of [`crate::reduce`], the others as a star
//! through rank 0, with the same results. Calls that disagree (another
//! collective, length, root or operation) fail on every rank with
//! [`crate::ProcessError::Misuse`]; a rank that dies makes every other
//! rank's call fail: never a hang, never a partial result.
//!
//! A [`Group`] can also be formed by processes that are not a tree: peers
//! that joined each other's nodes ([`Group::form`]), or the tasks of a
//! Slurm step ([`slurm_group`], ranked as Slurm ranks them).
//!
//! The operations, schedules and topologies are re-exported here from
//! [`crate::reduce`].

mod children;
mod communicator;
pub(crate) mod group;
pub mod local;
mod mesh;
mod posts;
mod relay;
mod slurm;
mod star;
mod state;

pub use crate::reduce::*;
pub use crate::reduce::{ops, ring, schedule, topology, tree};
pub use children::{
    TRANSPORT_VAR, all_gather, all_reduce, barrier, broadcast, gather, rank, reduce, scatter, size,
};
pub use communicator::Communicator;
pub use group::{CollectiveError, FORM_TIMEOUT, FormError, Group, GroupOptions, Transport};
pub use local::{GroupError, LocalGroup};
pub use relay::ReduceBuffer;
pub use slurm::{SlurmGroup, SlurmGroupError, slurm_group, slurm_group_with};
