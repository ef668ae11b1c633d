//! This node's certificate and key: fresh per process, or kept in a
//! directory so a restarted node shows the same fingerprint (and join line).
//!
//! A kept identity is `<dir>/cert.der` (DER) and `<dir>/key.der` (PKCS#8).
//! Each file is written to a temporary file and renamed into place, the key
//! first (mode 0600), so `cert.der` is only ever there beside a whole key:
//! without `cert.der` a new identity is made.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::error::BindError;
use super::tls::{SERVER_NAME, fingerprint};

/// File name of the certificate in an identity directory.
const CERT_FILE: &str = "cert.der";
/// File name of the private key in an identity directory.
const KEY_FILE: &str = "key.der";

/// This process's certificate and key.
pub(crate) struct Identity {
    /// The self-signed certificate the listener shows.
    pub cert: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of `cert`.
    pub fingerprint: [u8; 32],
}

impl Identity {
    /// A fresh self-signed certificate.
    pub fn generate() -> Result<Self, BindError> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| BindError::Tls(format!("cannot generate a certificate: {e}")))?;
        let cert = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        Ok(Self::new(cert, key))
    }

    fn new(cert: CertificateDer<'static>, key: PrivatePkcs8KeyDer<'static>) -> Self {
        let fingerprint = fingerprint(&cert);
        Self {
            cert,
            key,
            fingerprint,
        }
    }

    /// The identity kept in `dir`: loaded and checked if `cert.der` is
    /// there, else made (with `dir`, mode 0700) and written.
    pub fn load_or_create(dir: &Path) -> Result<Self, BindError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| BindError::IdentityIo { path, source }
        };
        match std::fs::read(&cert_path) {
            Ok(cert) => {
                let key = std::fs::read(&key_path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => invalid(&key_path, "it is missing"),
                    _ => BindError::IdentityIo {
                        path: key_path.clone(),
                        source: e,
                    },
                })?;
                let id = Self::new(cert.into(), key.into());
                id.check(&cert_path, &key_path)?;
                Ok(id)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io(dir))?;
                let id = Self::generate()?;
                write_atomic(&key_path, id.key.secret_pkcs8_der(), 0o600).map_err(io(&key_path))?;
                write_atomic(&cert_path, &id.cert, 0o644).map_err(io(&cert_path))?;
                Ok(id)
            }
            Err(e) => Err(io(&cert_path)(e)),
        }
    }

    /// Checks that the key loads and that the certificate is one for it.
    fn check(&self, cert_path: &Path, key_path: &Path) -> Result<(), BindError> {
        let provider = rustls::crypto::ring::default_provider();
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(self.key.clone_key()))
            .map_err(|e| invalid(key_path, &format!("it is not a PKCS#8 private key ({e})")))?;
        match CertifiedKey::new(vec![self.cert.clone()], key).keys_match() {
            Ok(()) => Ok(()),
            Err(rustls::Error::InconsistentKeys(_)) => Err(invalid(
                cert_path,
                &format!("it does not belong to the key {}", key_path.display()),
            )),
            Err(e) => Err(invalid(
                cert_path,
                &format!("it is not a DER certificate ({e})"),
            )),
        }
    }
}

fn invalid(path: &Path, problem: &str) -> BindError {
    BindError::IdentityInvalid {
        path: path.to_owned(),
        problem: problem.to_owned(),
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it there,
/// so `path` holds either nothing or all of `bytes`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.set_extension(format!("der.tmp{}", std::process::id()));
    let write = || {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::id::NodeId;
    use crate::transport::{Password, Transport, TransportConfig};

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "parallel-identity-{name}-{}-{}",
            std::process::id(),
            NodeId::new()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    async fn join_line(dir: &Path, listen: std::net::SocketAddr) -> crate::transport::JoinLine {
        let config = TransportConfig {
            listen,
            identity_dir: Some(dir.to_owned()),
            ..TransportConfig::default()
        };
        // The endpoint of a previous run frees its port once its driver
        // task has finished: try again for a while.
        let mut tries = 0;
        let (transport, _events) = loop {
            let bound = Transport::bind(NodeId::new(), Password::new("pw".into()), config.clone());
            match bound.await {
                Err(BindError::Socket { .. }) if tries < 100 => tries += 1,
                bound => break bound.expect("bind"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let line = transport.join_line();
        transport.shutdown().await;
        line
    }

    #[tokio::test]
    async fn the_same_dir_keeps_the_join_line_and_a_fresh_dir_gets_a_new_one() {
        let dir = scratch("same");
        let first = join_line(&dir.join("nested"), "127.0.0.1:0".parse().unwrap()).await;
        let again = join_line(&dir.join("nested"), first.addr).await;
        assert_eq!(again.to_string(), first.to_string());
        let other = scratch("other");
        let fresh = join_line(&other, "127.0.0.1:0".parse().unwrap()).await;
        assert_ne!(fresh.fingerprint, first.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }

    #[test]
    fn the_key_is_private_and_the_dir_too() {
        let dir = scratch("modes");
        let id = Identity::load_or_create(&dir).unwrap();
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            Identity::load_or_create(&dir).unwrap().fingerprint,
            id.fingerprint
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(
            leftovers.len(),
            2,
            "only cert.der and key.der: {leftovers:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_or_foreign_cert_is_refused_naming_the_file() {
        let dir = scratch("corrupt");
        Identity::load_or_create(&dir).unwrap();
        let cert = dir.join(CERT_FILE);
        std::fs::write(&cert, b"not a certificate").unwrap();
        let err = Identity::load_or_create(&dir).err().expect("refused");
        assert!(matches!(&err, BindError::IdentityInvalid { path, .. } if *path == cert));
        let text = err.to_string();
        assert!(text.contains(&cert.display().to_string()), "{text}");
        assert!(text.contains("delete both"), "{text}");

        let other = scratch("foreign");
        Identity::load_or_create(&other).unwrap();
        std::fs::copy(other.join(CERT_FILE), &cert).unwrap();
        let err = Identity::load_or_create(&dir).err().expect("refused");
        assert!(err.to_string().contains("does not belong"), "{err}");

        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let err = Identity::load_or_create(&dir).err().expect("refused");
        assert!(err.to_string().contains("missing"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }
}
