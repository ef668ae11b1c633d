//! Transport settings, with defaults that suit a cluster on one network.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one node's transport. Every bound here is what keeps memory
/// finite under a flood; [`Default`] gives values that suit a local cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Address the node listens on; port 0 picks a free port (default
    /// `127.0.0.1:0`: loopback only).
    pub listen: SocketAddr,
    /// Hard limit on one frame's payload, checked before anything is
    /// allocated for it (default [`crate::wire::DEFAULT_MAX_FRAME`], 1 GiB).
    pub max_frame: u64,
    /// How often the side that accepted a connection sends a heartbeat, and
    /// how often each side looks for signs of life from the other (default
    /// 500 ms: three chances within the 1.5 s timeout). The other side's
    /// acknowledgements answer the heartbeats, so an idle connection costs
    /// two packets an interval.
    pub heartbeat_interval: Duration,
    /// A peer is declared dead if nothing at all is heard from it for this
    /// long (default 1500 ms; judged four times an interval, so between a
    /// quarter interval less and this long after its last packet). A node
    /// that finds it did not run itself for a while (stopped, or its whole
    /// machine paused) gives every peer another timeout before judging it;
    /// this is the only liveness timer (QUIC's own idle timeout is off).
    pub heartbeat_timeout: Duration,
    /// Connections that have not completed the join handshake within this
    /// time are dropped (default 5 s).
    pub handshake_timeout: Duration,
    /// Most connections accepted at once; more are refused (default 256).
    pub max_incoming: usize,
    /// QUIC receive window of a whole connection, in bytes (default 16 MiB).
    /// Keep it larger than `stream_window`: a data lane that is not read
    /// holds at most `stream_window` of it, and the rest is what lets
    /// replies through meanwhile.
    pub connection_window: u64,
    /// QUIC receive window of one stream, in bytes (default 8 MiB).
    pub stream_window: u64,
    /// Most unidirectional streams a peer may have open towards this node at
    /// once: the small lane, the reply lane and concurrent bulk payloads
    /// (default 64).
    pub max_uni_streams: u32,
    /// Payloads of at least this many bytes travel on a stream of their own
    /// so they never hold up small messages (default 256 KiB).
    pub bulk_threshold: usize,
    /// Frames queued per peer before [`super::Peer::send`] waits (default
    /// 1024); replies have a queue of this size of their own. A peer also
    /// keeps up to this many small payload buffers (512 bytes at most each)
    /// for the next messages to it.
    pub send_queue: usize,
    /// Messages from one peer that the node holds for actors and mailboxes
    /// whose inbox is full, so that messages for other actors go on
    /// (default 1024). While this many (or `parked_bytes`) are held, the
    /// peer's data lanes are not read: QUIC flow control then makes its
    /// sends wait. Replies and heartbeats from it flow either way.
    pub parked_frames: usize,
    /// Payload bytes of the messages held that way, per peer (default
    /// 8 MiB); the last batch taken (at most 256 frames) may go beyond it.
    pub parked_bytes: usize,
    /// Directory that keeps this node's certificate and key, so it shows the
    /// same fingerprint (and join line, on the same address) after a
    /// restart. `cert.der` and `key.der` (PKCS#8) are loaded and checked if
    /// there; otherwise the directory is made (mode 0700) and a new pair is
    /// written (the key with mode 0600). Default `None`: a fresh
    /// certificate per process.
    pub identity_dir: Option<PathBuf>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_millis(1500),
            handshake_timeout: Duration::from_secs(5),
            max_incoming: 256,
            connection_window: 16 << 20,
            stream_window: 8 << 20,
            max_uni_streams: 64,
            bulk_threshold: 256 << 10,
            send_queue: 1024,
            parked_frames: 1024,
            parked_bytes: 8 << 20,
            identity_dir: None,
        }
    }
}
