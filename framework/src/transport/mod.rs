//! QUIC transport: endpoint, TLS with pinned certificates, authenticated join, lanes.
