//! Why an actor (or a process, or a node) stopped: the reason a watcher's
//! `Down` carries.

use rkyv::{Archive, Deserialize, Serialize};

use crate::id::ActorId;

/// Why something a watcher watched is gone.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It stopped by itself, normally.
    Normal,
    /// Its supervisor (or the program) shut it down.
    Shutdown,
    /// Its handler panicked; the panic message.
    Panic(String),
    /// It was killed (its process got SIGKILL, or its supervisor killed it).
    Killed,
    /// The node that hosted it is unreachable.
    NoConnection,
    /// There was no such actor when the watch began.
    NoProc,
    /// It failed with this error.
    Error(String),
}

impl ExitReason {
    /// True for a normal stop or a shutdown: the exits a transient child is
    /// not restarted after.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("stopped normally"),
            ExitReason::Shutdown => f.write_str("shut down"),
            ExitReason::Panic(m) => write!(f, "panicked: {m}"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::NoConnection => f.write_str("its node is unreachable"),
            ExitReason::NoProc => f.write_str("no such actor"),
            ExitReason::Error(e) => write!(f, "failed: {e}"),
        }
    }
}

/// What a watcher receives, exactly once, when what it watches is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Down {
    /// The actor.
    pub id: ActorId,
    /// Why it is gone.
    pub reason: ExitReason,
}
