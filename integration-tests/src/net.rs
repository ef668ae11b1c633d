//! What the `net_server` and `net_client` test binaries and the
//! `net_client_server` test agree on. Clients send `(u64, u64)` pairs; the
//! server echoes them to their sender.

/// First half of a pair that asks the server how many clients are
/// connected; it answers `(QUERY, count)`.
pub const QUERY: u64 = u64::MAX;

/// First half of the pairs the streaming `net_client` sends.
pub const STREAM_TAG: u64 = 1_000;
