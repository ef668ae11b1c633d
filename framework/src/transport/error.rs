//! Errors of the transport, one enum per operation, each saying what to do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::join_line::hex;

/// Why a peer is down. Every peer goes down exactly once, for one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// The peer said goodbye: it shut down in order.
    Goodbye,
    /// Nothing was heard on the peer's control lane for this long.
    HeartbeatTimeout(Duration),
    /// The QUIC connection failed or the peer closed it.
    ConnectionLost(String),
    /// The peer sent bytes that break the protocol; only this peer was dropped.
    ProtocolError(String),
    /// This node closed the connection, for the given reason.
    Closed(String),
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Goodbye => f.write_str("the peer said goodbye (it shut down in order)"),
            Self::HeartbeatTimeout(t) => {
                write!(
                    f,
                    "no heartbeat from the peer for {t:?}; it crashed, hangs, or the network is down"
                )
            }
            Self::ConnectionLost(why) => write!(f, "the connection was lost: {why}"),
            Self::ProtocolError(why) => {
                write!(f, "the peer broke the protocol and was dropped: {why}")
            }
            Self::Closed(why) => write!(f, "this node closed the connection: {why}"),
        }
    }
}

/// The peer is down; nothing more can be sent to it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer is gone: {0}")]
pub struct PeerGone(pub DownReason);

/// Why [`super::Peer::try_reserve`] found no room.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryReserveError {
    /// The peer's send queue is full; wait with `reserve` or try later.
    #[error("the peer's send queue is full; wait with `reserve` or slow down")]
    Full,
    /// The peer is down.
    #[error("peer is gone: {0}")]
    Gone(DownReason),
}

/// Why [`super::Transport::bind`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The UDP socket could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; choose another address or port (port 0 picks a free one)"
    )]
    Socket {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The certificate or TLS setup failed (a bug or an unusable crypto provider).
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The configuration is inconsistent.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// A file of the identity directory could not be read or written.
    #[error(
        "cannot read or write the node identity at {}: {source}; check the permissions of `identity_dir` or choose another one",
        path.display()
    )]
    IdentityIo {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The identity directory holds a certificate or key that cannot be used.
    #[error(
        "the node identity file {} is unusable: {problem}; delete both cert.der and key.der to make a new identity (nodes will then need the new join line)",
        path.display()
    )]
    IdentityInvalid {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// Why [`super::Transport::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The listener refused our proof of the password.
    #[error(
        "wrong cluster password ({0}); check PARALLEL_PASSWORD or the file named by PARALLEL_PASSWORD_FILE on both nodes"
    )]
    WrongPassword(String),
    /// The listener showed a certificate other than the one in the join line.
    #[error(
        "the node at this address shows certificate sha256={} but the join line pins sha256={}; copy the join line again from the node you mean to join (it changes when that node restarts, unless it keeps its identity with `identity_dir`)",
        hex(got),
        hex(expected)
    )]
    FingerprintMismatch {
        /// The fingerprint in the join line.
        expected: [u8; 32],
        /// The fingerprint the listener showed.
        got: [u8; 32],
    },
    /// The listener could not prove it knows the password.
    #[error(
        "the listener could not prove it knows the cluster password; it belongs to another cluster or is an impostor — check the join line and PARALLEL_PASSWORD on both nodes"
    )]
    ListenerProof,
    /// The other node declared this one dead (or this one declared it dead)
    /// and refuses the old incarnation; the reason says which and what to do.
    #[error("{0}")]
    Fenced(String),
    /// The listener refused us for another reason.
    #[error("the listener refused to join: {0}")]
    Refused(String),
    /// The two nodes speak different wire versions or formats.
    #[error("version mismatch: {0}")]
    VersionMismatch(String),
    /// The handshake did not finish in time.
    #[error(
        "no answer from the listener within {0:?}; is the address right, the node running, and UDP not blocked?"
    )]
    Timeout(Duration),
    /// QUIC or TLS failed.
    #[error("cannot connect: {0}")]
    Io(String),
    /// The listener sent something the protocol does not allow.
    #[error("the listener broke the join protocol: {0}")]
    Protocol(String),
    /// The join line points at this node itself.
    #[error("the join line points at this node itself; use the join line of another node")]
    SelfConnect,
    /// This transport is shutting down.
    #[error("the transport is shutting down")]
    ShuttingDown,
}
