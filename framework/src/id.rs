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

impl ActorId {
    /// The id every node derives for `name` in `domain` (a work queue, a
    /// collective group, ...): the same on every node, different for another
    /// name or domain. A SHA-256 of both, as a version-8 (custom) uuid.
    pub fn named(domain: &str, name: &str) -> Self {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(domain.as_bytes());
        context.update(b"\0");
        context.update(name.as_bytes());
        let digest = context.finish();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_ref()[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8: custom
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
        Self::from_bytes(bytes)
    }
}

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

/// Which host this process runs on, for deciding what two processes can
/// share: the machine's boot id and the process's network namespace. Equal
/// keys mean the same running machine and the same network (shared memory,
/// files and loopback work between the two processes); processes in two
/// network namespaces are two hosts, as containers or a test bed of
/// namespaces are, even on one machine. Empty when unknown (then never
/// equal to another).
pub fn host_key() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if boot.is_empty() {
        return boot;
    }
    let net = std::fs::read_link("/proc/self/ns/net")
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{boot}/{net}")
}

/// This machine's host name (`localhost` when unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_key_names_the_machine_and_the_network_namespace() {
        let key = host_key();
        if std::path::Path::new("/proc/self/ns/net").exists() {
            let (boot, net) = key.split_once('/').expect("boot id / namespace");
            assert_eq!(boot.len(), 36, "{key}");
            assert!(net.starts_with("net:["), "{key}");
        }
        assert_eq!(key, host_key());
    }

    #[test]
    fn ids_round_trip_through_bytes() {
        let a = ActorId::new();
        assert_eq!(ActorId::from_bytes(a.to_bytes()), a);
        assert_ne!(ActorId::new(), a);
        assert!(NodeId::nil().is_nil());
        assert!(a.to_string().starts_with("actor-"));
    }
}
