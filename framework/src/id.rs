//! Identities: every actor and every node is addressed by a uuid.

use std::fmt;

/// The address of an actor, local or remote. Stable for the actor's whole life
/// (and, once supervision lands, across restarts).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct ActorId(pub uuid::Uuid);

/// The identity of one node: one OS process running the framework.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct NodeId(pub uuid::Uuid);

macro_rules! uuid_id {
    ($t:ident, $prefix:literal) => {
        impl $t {
            /// A fresh random id (uuid v4).
            pub fn new() -> Self {
                Self(uuid::Uuid::new_v4())
            }
            /// The nil id: used on the wire where a frame has no actor target.
            pub const fn nil() -> Self {
                Self(uuid::Uuid::nil())
            }
            /// The id as 16 bytes, as it travels in a frame header.
            pub const fn to_bytes(self) -> [u8; 16] {
                *self.0.as_bytes()
            }
            /// The id from the 16 bytes of a frame header.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(uuid::Uuid::from_bytes(bytes))
            }
            /// True for the nil id.
            pub fn is_nil(self) -> bool {
                self.0.is_nil()
            }
        }
        impl Default for $t {
            fn default() -> Self {
                Self::new()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0.simple())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
        impl From<&$t> for $t {
            fn from(v: &$t) -> Self {
                *v
            }
        }
        impl From<&<$t as rkyv::Archive>::Archived> for $t {
            fn from(v: &<$t as rkyv::Archive>::Archived) -> Self {
                Self::from_bytes(*v.0.as_bytes())
            }
        }
    };
}
uuid_id!(ActorId, "actor-");
uuid_id!(NodeId, "node-");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_bytes() {
        let a = ActorId::new();
        assert_eq!(ActorId::from_bytes(a.to_bytes()), a);
        assert_ne!(ActorId::new(), a);
        assert!(NodeId::nil().is_nil());
        assert!(a.to_string().starts_with("actor-"));
    }
}
