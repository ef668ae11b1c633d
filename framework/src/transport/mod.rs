//! QUIC transport: endpoint, TLS with pinned certificates, authenticated
//! join, lanes.
//!
//! One QUIC connection links each pair of nodes, always over TLS 1.3. The
//! listener shows a self-signed certificate whose SHA-256 is part of its
//! [`JoinLine`]; the connecting node accepts exactly that certificate. The
//! certificate is fresh per process unless [`TransportConfig::identity_dir`]
//! keeps it on disk, so a restarted node keeps its join line.
//!
//! # Handshake
//!
//! The connector opens the **control lane**, a bidirectional stream with the
//! highest priority, and the two nodes run a challenge/response over wire
//! frames (`Hello`, `Challenge`, `Proof`, `Welcome` or `Refuse`). Each side
//! proves it knows the cluster [`Password`] with an HMAC over both nonces,
//! both node ids and secret material exported from this TLS session; the
//! password itself never travels. Wrong passwords are refused after a delay.
//!
//! # Lanes
//!
//! - **control**: the handshake, then `Goodbye`. Heartbeats are QUIC
//!   datagrams from the side that accepted the connection (to all its peers
//!   at once), acknowledged by the other; silence for `heartbeat_timeout` (no frame at all: no
//!   heartbeat, acknowledgement or data) takes the peer down, judged for all
//!   of a transport's peers by one task on one timer.
//!
//! # Incarnations and fencing
//!
//! Each transport has an incarnation number, fixed when it binds
//! ([`Transport::incarnation`]) and exchanged in the handshake. A peer
//! declared dead by heartbeat timeout is *fenced*: its connection is closed
//! (nothing it sends afterwards is delivered) and the same (node id,
//! incarnation) is refused if it tries to join again — a stopped process
//! that resumes must restart to rejoin. A process that finds its own timers
//! fired late (it was stopped or starved) does not fence its peers for the
//! silence it caused itself: it gives them one more timeout.
//! - **small**: one long-lived unidirectional stream per direction; the
//!   writer gathers queued frames into large writes.
//! - **bulk**: one unidirectional stream per payload of at least
//!   `bulk_threshold` bytes, so a large tensor never holds up a small message.
//! - **reply**: one long-lived unidirectional stream per direction, with a
//!   send queue of its own, for `Reply` and `ReplyError` frames. The
//!   receiver always reads it, so replies never wait behind data frames that
//!   the layer above holds back ([`Inbound::recv_gated`]).
//!
//! The writer numbers every data frame; the receiver hands frames to
//! [`Inbound`] in that order (replies in their own order). Every queue is
//! bounded, so a slow consumer pushes back through QUIC flow control to the
//! sender's [`Peer::send`].

pub mod arena;
mod auth;
pub mod baseline;
mod config;
mod control;
mod direct;
mod endpoint;
mod error;
mod fence;
mod framing;
mod handoff;
mod handshake;
mod identity;
mod join_line;
mod lanes;
pub(crate) mod pages;
mod password;
mod peer;
pub mod segments;
pub mod shm;
mod spares;
mod tasks;
mod tls;

#[cfg(test)]
mod direct_tests;
#[cfg(test)]
mod liveness_tests;
#[cfg(test)]
mod tests;

pub use config::TransportConfig;
pub(crate) use direct::Refused;
pub use endpoint::Transport;
pub use error::{BindError, ConnectError, DownReason, PeerGone, TryReserveError};
pub use join_line::{JoinLine, JoinLineError};
pub use password::{PASSWORD_ENV, PASSWORD_FILE_ENV, Password, PasswordError};
pub use peer::{Inbound, Peer, PeerEvent, SendPermit, Traffic};
pub(crate) use spares::Spares;
