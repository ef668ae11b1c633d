//! Asking a running head what runs and to stop, from any program
//! (`parallel status`, `parallel stop`); stopping the node agent of this
//! machine.

use std::path::Path;
use std::time::Duration;

use crate::remote::{ActorRef, Node};
use crate::transport::{JoinLine, Password};

use super::head::{HeadActor, head_id};
use super::message::{Status, StatusReport, StopHead};

/// The file in a node agent's data directory that holds its process id.
pub const NODE_PID_FILE: &str = "node.pid";

/// Why the head could not be asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// This program's node did not start.
    #[error(transparent)]
    Node(#[from] crate::remote::StartError),
    /// The head did not answer.
    #[error(
        "the head at {line} did not answer: {reason}; is it running (`parallel head`), and is the password right?"
    )]
    Head {
        /// Its join line.
        line: String,
        /// What failed.
        reason: String,
    },
    /// No node agent runs with that data directory.
    #[error("no node agent runs with data directory {0}")]
    NoNode(String),
}

async fn head(
    line: &JoinLine,
    password: Password,
) -> Result<(Node, ActorRef<HeadActor>), ControlError> {
    let node = Node::builder()
        .password(password)
        .listen(line.bind_to_reach())
        .start()
        .await?;
    let remote = node.join(line).await.map_err(|e| ControlError::Head {
        line: line.to_string(),
        reason: e.to_string(),
    })?;
    let head = ActorRef::remote(head_id(), remote.link()).with_timeout(Duration::from_secs(10));
    Ok((node, head))
}

/// What the head at `line` knows: nodes, workers, pools.
pub async fn status(line: &JoinLine, password: Password) -> Result<StatusReport, ControlError> {
    let (node, head) = head(line, password).await?;
    let report = head.ask(Status).await.map_err(|e| ControlError::Head {
        line: line.to_string(),
        reason: e.to_string(),
    });
    node.shutdown().await;
    report
}

/// Asks the head at `line` to stop (its node agents too when `nodes`).
pub async fn stop_head(
    line: &JoinLine,
    password: Password,
    nodes: bool,
) -> Result<(), ControlError> {
    let (node, head) = head(line, password).await?;
    let done = head
        .ask(StopHead { nodes })
        .await
        .map_err(|e| ControlError::Head {
            line: line.to_string(),
            reason: e.to_string(),
        });
    node.shutdown().await;
    done
}

/// Stops the node agent running on this machine with data directory `dir`
/// (SIGTERM to the process recorded there; its workers go with it).
pub fn stop_local_node(dir: &Path) -> Result<(), ControlError> {
    if !super::is_node_running(Some(dir)) {
        return Err(ControlError::NoNode(dir.display().to_string()));
    }
    let pid = std::fs::read_to_string(dir.join(NODE_PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| ControlError::NoNode(dir.display().to_string()))?;
    // SAFETY: kill(2) with a pid read from the agent's own pid file.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    Ok(())
}
