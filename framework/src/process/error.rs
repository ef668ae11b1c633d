//! Errors of the process layer.

use crate::remote::{RequestError, SendError, StartError};
use crate::transport::shm::ShmError;
use crate::wire::{DecodeError, EncodeError};

/// Why a child process could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForkError {
    /// The program has no `#[parallel::main]`: a forked copy would run `main` again.
    #[error(
        "fork needs `#[parallel::main]` on `async fn main()`: a forked process runs the same program and must know it is a child"
    )]
    NoMain,
    /// Called from a child process.
    #[error("fork is called from a child process; only the top process forks in this version")]
    InChild,
    /// The parent's node could not start.
    #[error("could not start this process's node: {0}")]
    Node(#[from] StartError),
    /// The program could not be started.
    #[error("could not start a child on {host}: {reason}")]
    Spawn {
        /// Where.
        host: String,
        /// Why.
        reason: String,
    },
    /// The child exited before it connected back.
    #[error(
        "the child on {host} exited before it connected back ({status}); its last output:\n{stderr}"
    )]
    Exited {
        /// Where.
        host: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed on stderr.
        stderr: String,
    },
    /// The child did not connect back in time.
    #[error("the child on {host} did not connect back within {secs} s; its last output:\n{stderr}")]
    Timeout {
        /// Where.
        host: String,
        /// The deadline in seconds.
        secs: u64,
        /// The last lines it printed on stderr.
        stderr: String,
    },
    /// The child connected back but said something else than hello.
    #[error("the child on {host} broke the protocol: {reason}")]
    Protocol {
        /// Where.
        host: String,
        /// What was wrong.
        reason: String,
    },
}

/// Why an operation on a child (or on the parent, from a child) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The other process is gone.
    #[error("process #{id} is gone: {reason}")]
    Gone {
        /// Its id.
        id: u32,
        /// What happened.
        reason: String,
    },
    /// The child's function panicked (or could not run).
    #[error("process #{id} failed: {message}")]
    Failed {
        /// Its id.
        id: u32,
        /// The panic message, or why it could not run.
        message: String,
    },
    /// The child's function returned: it will not yield or send again.
    #[error(
        "process #{id} finished its function; it will not yield or send any more — check the order of join/receive calls"
    )]
    Finished {
        /// Its id.
        id: u32,
    },
    /// The value that arrived is not of the type asked for.
    #[error(
        "process #{id} sent a value of another type than the one asked for (tag {got:#018x}, expected {expected}); receive the type the other side sends"
    )]
    TypeMismatch {
        /// Its id.
        id: u32,
        /// The tag of what arrived.
        got: u64,
        /// The type asked for.
        expected: &'static str,
    },
    /// A collective (`all_reduce`, `broadcast`, ...) failed: a rank died or
    /// left, or the group was replaced.
    #[error("collective aborted: {0}")]
    Aborted(String),
    /// This call makes no sense in this process.
    #[error("{0}")]
    Misuse(String),
    /// The connection failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A value could not be encoded, or is larger than one frame may carry
    /// (`TransportConfig::max_frame`, 1 GiB: so large a value to a process on
    /// another machine goes in parts). Nothing was sent; the other process,
    /// the link and the send window are as they were.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A value could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Shared memory failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// Processes could not be started (`calibrate` starts one per registered host).
    #[error(transparent)]
    Fork(#[from] ForkError),
}

impl ProcessError {
    /// The process layer's form of a value error for process `id`.
    pub(crate) fn from_value(e: crate::remote::value::ValueError, id: u32) -> Self {
        use crate::remote::value::ValueError;
        match e {
            ValueError::TypeMismatch { got, expected } => {
                ProcessError::TypeMismatch { id, got, expected }
            }
            ValueError::Request(e) => ProcessError::Request(e),
            ValueError::Encode(e) => ProcessError::Encode(e),
            ValueError::Decode(e) => ProcessError::Decode(e),
            ValueError::Shm(e) => ProcessError::Shm(e),
        }
    }

    /// Why a message to the other process was not sent: a value too large
    /// for one frame (or that did not serialize) as [`ProcessError::Encode`],
    /// which leaves the other process and the link as they were; anything
    /// else as the other process gone, `gone` making that error from the
    /// reason.
    pub(crate) fn from_send<M>(e: SendError<M>, gone: impl FnOnce(String) -> Self) -> Self {
        match e {
            SendError::Encode(_, e) => ProcessError::Encode(e),
            other => gone(other.to_string()),
        }
    }

    /// True for a message that was never sent because of what it holds
    /// (the link and the other process are as they were).
    pub(crate) fn is_encode(&self) -> bool {
        matches!(self, ProcessError::Encode(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(reason: String) -> ProcessError {
        ProcessError::Gone { id: 3, reason }
    }

    #[test]
    fn a_message_too_large_to_send_is_an_encode_error_not_a_gone_process() {
        let rule = crate::wire::check_len(2 << 20, 1 << 20).unwrap_err();
        let too_large = EncodeError::too_large("Value", &rule);
        let e = ProcessError::from_send(SendError::Encode(7u8, too_large), gone);
        assert!(e.is_encode(), "{e:?}");
        assert!(e.to_string().contains("max_frame"), "{e}");
    }

    #[test]
    fn a_message_to_a_closed_actor_is_a_gone_process() {
        let closed = SendError::Closed {
            message: 7u8,
            reason: "actor 1 stopped".into(),
        };
        let e = ProcessError::from_send(closed, gone);
        assert!(!e.is_encode());
        assert!(
            matches!(&e, ProcessError::Gone { id: 3, reason } if reason.contains("actor 1 stopped")),
            "{e:?}"
        );
    }
}
