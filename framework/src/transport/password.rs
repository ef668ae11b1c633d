//! The cluster password: read from a file, the environment or a prompt —
//! never from the command line — and never printed.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Environment variable naming a file that holds the cluster password.
pub const PASSWORD_FILE_ENV: &str = "PARALLEL_PASSWORD_FILE";
/// Environment variable holding the cluster password itself.
pub const PASSWORD_ENV: &str = "PARALLEL_PASSWORD";

/// The shared secret every node of a cluster knows. It keys the join
/// handshake's HMAC and never travels on the wire. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

/// Why no usable password could be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password file could not be read.
    #[error(
        "cannot read the cluster password file {path}: {source}; check the path in {PASSWORD_FILE_ENV} and its permissions"
    )]
    File {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The prompt failed.
    #[error("could not read the cluster password from the terminal: {0}")]
    Prompt(std::io::Error),
    /// The password is empty.
    #[error("the cluster password is empty; choose a non-empty password shared by every node")]
    Empty,
    /// No source was configured and there is no terminal to ask.
    #[error(
        "no cluster password: set {PASSWORD_FILE_ENV}=<path of a file holding it> or {PASSWORD_ENV}=<password>, or run on a terminal to be prompted (passwords are never taken from the command line)"
    )]
    Missing,
}

impl Password {
    /// A password from a string (for programs that obtained it themselves).
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// Reads the password from a file; one trailing newline (`\n` or `\r\n`)
    /// is removed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PasswordError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PasswordError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        Self::non_empty(text.to_owned())
    }

    /// Asks for the password on the terminal, without echo.
    pub fn prompt(message: &str) -> Result<Self, PasswordError> {
        let secret = rpassword::prompt_password(message).map_err(PasswordError::Prompt)?;
        Self::non_empty(secret)
    }

    /// Finds the password the usual way: the file named by
    /// `PARALLEL_PASSWORD_FILE`, else `PARALLEL_PASSWORD`, else a prompt when
    /// standard input is a terminal.
    pub fn resolve() -> Result<Self, PasswordError> {
        let env = crate::config::environment();
        if let Some(path) = &env.password_file {
            return Self::from_file(path);
        }
        if let Some(secret) = &env.password {
            return Self::non_empty(secret.clone());
        }
        if std::io::stdin().is_terminal() {
            return Self::prompt("para||el cluster password: ");
        }
        Err(PasswordError::Missing)
    }

    /// The secret itself (handed to a worker process in its environment).
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    /// The secret's bytes (the HMAC key of the join handshake).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    fn non_empty(secret: String) -> Result<Self, PasswordError> {
        if secret.is_empty() {
            Err(PasswordError::Empty)
        } else {
            Ok(Self(secret))
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let p = Password::new("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn file_loses_one_trailing_newline() {
        let path = std::env::temp_dir().join(format!("parallel-pw-{}", std::process::id()));
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let p = Password::from_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(p.as_bytes(), b"s3cret");
        assert!(matches!(
            Password::from_file(&path),
            Err(PasswordError::File { .. })
        ));
    }

    #[test]
    fn missing_says_how_to_provide_it() {
        let msg = PasswordError::Missing.to_string();
        assert!(
            msg.contains(PASSWORD_FILE_ENV) && msg.contains(PASSWORD_ENV),
            "{msg}"
        );
    }
}
