//! The join line: where a node listens and which certificate it will show.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

const SCHEME: &str = "quic://";
const FINGERPRINT_TAG: &str = "#sha256=";
const EXPECTED: &str =
    "expected quic://<ip>:<port>#sha256=<64 hex digits>, as printed by the node you join";

/// Everything a node needs to join another: its address and the SHA-256 of
/// its certificate (pinned: no trust on first use).
///
/// Written as `quic://127.0.0.1:4567#sha256=<64 lowercase hex digits>`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct JoinLine {
    /// Address the node listens on.
    pub addr: SocketAddr,
    /// SHA-256 of the node's certificate (DER).
    pub fingerprint: [u8; 32],
}

/// A string that is not a join line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinLineError {
    /// It does not start with `quic://`.
    #[error("join line {0:?} does not start with quic://; {EXPECTED}")]
    Scheme(String),
    /// The `#sha256=` part is missing.
    #[error("join line {0:?} has no #sha256= fingerprint; {EXPECTED}")]
    NoFingerprint(String),
    /// The address part does not parse.
    #[error("join line {line:?} has a bad address {addr:?}; {EXPECTED}")]
    Addr {
        /// The whole line.
        line: String,
        /// The address part.
        addr: String,
    },
    /// The fingerprint is not 64 hex digits.
    #[error("join line {0:?} has a bad fingerprint (it must be 64 hex digits); {EXPECTED}")]
    Fingerprint(String),
}

impl JoinLine {
    /// Where a node that joins this line should listen so that it can
    /// reach it: on loopback for a node on loopback, else on every
    /// interface (a socket bound to loopback cannot send to another host).
    pub fn bind_to_reach(&self) -> SocketAddr {
        match self.addr.ip() {
            ip if ip.is_loopback() => SocketAddr::new(ip, 0),
            std::net::IpAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
            std::net::IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        }
    }
}

impl fmt::Display for JoinLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}{FINGERPRINT_TAG}{}",
            self.addr,
            hex(&self.fingerprint)
        )
    }
}

impl FromStr for JoinLine {
    type Err = JoinLineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let line = s.trim();
        let rest = line
            .strip_prefix(SCHEME)
            .ok_or_else(|| JoinLineError::Scheme(line.to_owned()))?;
        let (addr, fp) = rest
            .split_once(FINGERPRINT_TAG)
            .ok_or_else(|| JoinLineError::NoFingerprint(line.to_owned()))?;
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| JoinLineError::Addr {
                line: line.to_owned(),
                addr: addr.to_owned(),
            })?;
        let fingerprint = unhex32(fp).ok_or_else(|| JoinLineError::Fingerprint(line.to_owned()))?;
        Ok(Self { addr, fingerprint })
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinLine {
        let mut fingerprint = [0u8; 32];
        for (i, b) in fingerprint.iter_mut().enumerate() {
            *b = (i * 9) as u8;
        }
        JoinLine {
            addr: "127.0.0.1:4567".parse().unwrap(),
            fingerprint,
        }
    }

    #[test]
    fn round_trips_through_text() {
        let line = sample();
        let text = line.to_string();
        assert!(
            text.starts_with("quic://127.0.0.1:4567#sha256=0009121b"),
            "{text}"
        );
        assert_eq!(text.len(), "quic://127.0.0.1:4567#sha256=".len() + 64);
        assert_eq!(text.parse::<JoinLine>().unwrap(), line);
        assert_eq!(format!("  {text}\n").parse::<JoinLine>().unwrap(), line);
        assert_eq!(
            text.to_uppercase()
                .replace("QUIC", "quic")
                .replace("SHA256", "sha256")
                .parse::<JoinLine>()
                .unwrap(),
            line
        );
        let v6 = JoinLine {
            addr: "[::1]:9".parse().unwrap(),
            ..line
        };
        assert_eq!(v6.to_string().parse::<JoinLine>().unwrap(), v6);
    }

    #[test]
    fn bad_lines_say_what_is_expected() {
        let good = sample().to_string();
        for bad in [
            good.replace("quic://", "http://"),
            good.replace("#sha256=", "#"),
            good.replace("127.0.0.1", "nohost"),
            good[..good.len() - 1].to_owned(),
            good.replace("0009", "zz09"),
        ] {
            let err = bad.parse::<JoinLine>().unwrap_err();
            assert!(err.to_string().contains("expected quic://"), "{err}");
        }
    }

    #[test]
    fn travels_in_messages() {
        let line = sample();
        let buf = crate::wire::encode(&line).unwrap();
        assert_eq!(crate::wire::decode_owned::<JoinLine>(&buf).unwrap(), line);
    }
}
