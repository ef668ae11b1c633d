//! The one message set of a group: every message between the members of a
//! [`super::Group`] is one of these typed rkyv messages, told (or asked) to
//! the other member's [`super::member::GroupMember`] actor and decoded once
//! by its `#[actor(..)]` list, never sorted by a hand-written operation code.
//! Each carries the sender's rank (`from`), except [`Hello`], sent before
//! the ranks are known.
//!
//! | message | when | what it does |
//! |---|---|---|
//! | [`Hello`] | forming (asked) | the sender's member actor runs: its node, pid, host and machine |
//! | [`Arena`] | forming (asked) | a machine's first member → the others there: the arena to map |
//! | [`Begin`] | every call | the sender's call and its arguments |
//! | [`Chunk`] | all_reduce | one chunk of a schedule's step (read in place) |
//! | [`Part`] | reduce, broadcast, gather, all_gather, scatter | a whole buffer (read in place) |
//! | [`Done`] | every call but barrier | the sender has its result |
//! | [`Abort`] | a call failed | the sender gave the call up, and why |
//! | [`Leave`] | the group dropped | the sender takes no more calls |

use std::sync::Arc;

use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer, WriterExt};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, DeserializeWith, SerializeWith};
use rkyv::{Archive, Deserialize, Place, Serialize};

use crate::id::NodeId;
use crate::wire::{ALIGN, SHARE_FROM, WriteShared};

/// Forming: the sender's member actor runs (asked, so the sender learns
/// that this member's actor runs too).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Hello {
    /// The sender's node.
    pub node: NodeId,
    /// Its OS process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// Its machine: members with equal values share memory.
    pub boot: String,
}

/// Forming, to the other members of one machine: map the arena at `path`
/// (asked: the sender goes on once each has it).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Arena {
    /// The sender's rank.
    pub from: u32,
    /// The arena's file.
    pub path: String,
    /// Bytes of each member's slot.
    pub slot: u64,
}

/// A call begins: its arguments (kind, element size, op, root, count,
/// misuse code), which every member compares with its own.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Begin {
    /// The sender's rank.
    pub from: u32,
    /// Which call of the group (1, 2, …).
    pub call: u64,
    /// The call's arguments.
    pub head: [u64; 6],
}

/// One chunk of a schedule's step: the elements' native bytes, which the
/// receiver reads where they lie in the message.
#[derive(crate::Message, Archive, Serialize, Deserialize, Clone)]
#[message(result = ())]
pub struct Chunk {
    /// The sender's rank.
    pub from: u32,
    /// Which call.
    pub call: u64,
    /// Index into the schedule's steps.
    pub step: u32,
    /// Index into the schedule's chunks.
    pub chunk: u32,
    /// Which piece of the chunk (a chunk of a large buffer travels in
    /// pieces of at most 1 MiB).
    pub piece: u32,
    /// The piece's elements, each element's native bytes in order.
    #[rkyv(with = SharedBytes)]
    pub bytes: Arc<[u8]>,
}

/// A member's whole buffer in a call that moves buffers (reduce, broadcast,
/// gather, all_gather, scatter); read where it lies in the message.
#[derive(crate::Message, Archive, Serialize, Deserialize, Clone)]
#[message(result = ())]
pub struct Part {
    /// The sender's rank.
    pub from: u32,
    /// Which call.
    pub call: u64,
    /// The elements' native bytes, in order.
    #[rkyv(with = SharedBytes)]
    pub bytes: Arc<[u8]>,
}

/// The sender finished the call: it has its result.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Done {
    /// The sender's rank.
    pub from: u32,
    /// Which call.
    pub call: u64,
}

/// The sender gave the call up; every member's call fails with `reason`.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Abort {
    /// The sender's rank.
    pub from: u32,
    /// Which call.
    pub call: u64,
    /// Why.
    pub reason: String,
}

/// The sender dropped its group: no member waits for it in a call.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Leave {
    /// The sender's rank.
    pub from: u32,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("from", &self.from)
            .field("call", &self.call)
            .field("step", &self.step)
            .field("chunk", &self.chunk)
            .field("piece", &self.piece)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("from", &self.from)
            .field("call", &self.call)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Archives shared bytes (`Arc<[u8]>`, so one buffer sent to several
/// members is not copied per member) as an `ArchivedVec<u8>` starting on a
/// 16-byte boundary, like [`crate::wire::AlignedBytes`]:
/// `#[rkyv(with = SharedBytes)]`. A run of at least
/// [`crate::wire::SHARE_FROM`] bytes is handed to the writer shared
/// ([`crate::wire::WriteShared`]): a remote send hands it to QUIC from
/// where it lies, any other writer copies it.
#[derive(Debug, Clone, Copy)]
pub struct SharedBytes;

impl ArchiveWith<Arc<[u8]>> for SharedBytes {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve_with(field: &Arc<[u8]>, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out)
    }
}

impl<S> SerializeWith<Arc<[u8]>, S> for SharedBytes
where
    S: Fallible + Allocator + Writer + WriteShared<S::Error> + ?Sized,
{
    fn serialize_with(field: &Arc<[u8]>, serializer: &mut S) -> Result<VecResolver, S::Error> {
        let pos = serializer.align(ALIGN)?;
        if field.len() >= SHARE_FROM {
            serializer.write_shared(bytes::Bytes::from_owner(field.clone()))?;
        } else {
            serializer.write(field)?;
        }
        Ok(VecResolver::from_pos(pos))
    }
}

impl<D: Fallible + ?Sized> DeserializeWith<ArchivedVec<u8>, Arc<[u8]>, D> for SharedBytes {
    fn deserialize_with(field: &ArchivedVec<u8>, _: &mut D) -> Result<Arc<[u8]>, D::Error> {
        Ok(Arc::from(field.as_slice()))
    }
}
