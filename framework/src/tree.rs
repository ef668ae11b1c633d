//! The process tree as a supervision tree. Every child that `fork`/`nfork`
//! start is owned by the tree's root supervisor (a temporary child: never
//! restarted, as the seed's children are not), so `close` is that
//! supervisor's ordered shutdown of its children, youngest first, and
//! `sync` waits for their `Down`. A supervisor's process children
//! (`ChildSpec::process`) belong to that supervisor alone: they are not in
//! `children()`, and `close` leaves them to it.
//!
//! The free functions work on the default [`Tree`]; the same operations
//! are methods of any other context (an independent tree).

use tokio::sync::OnceCell;

use crate::process::{CLOSE_TIMEOUT, Child, Children, ForkError, IntoPlacements, Tree};
use crate::supervision::{Strategy, Supervisor, SupervisorRef};

/// The tree's root supervisor, kept in its context.
#[derive(Default)]
struct Root(OnceCell<SupervisorRef>);

impl Tree {
    /// The root supervisor of this tree, once the first fork started the
    /// tree's node: it owns every forked child.
    pub fn root(&self) -> Option<SupervisorRef> {
        self.extension(Root::default).0.get().cloned()
    }

    async fn own(&self, children: &Children) -> Result<(), ForkError> {
        let node = self.node().ok_or_else(|| ForkError::Protocol {
            host: "localhost".into(),
            reason: "the tree's node is gone".into(),
        })?;
        let root = self.extension(Root::default);
        let root = root
            .0
            .get_or_init(|| async { Supervisor::new(Strategy::OneForOne).start(&node) })
            .await;
        for child in children {
            root.adopt(
                format!("child #{}", child.id()),
                child.actor_id(),
                Box::new(child.clone()),
                CLOSE_TIMEOUT,
            )
            .await;
        }
        Ok(())
    }

    /// Starts child processes (see [`Tree::spawn`]) owned by the tree's
    /// root supervisor: `nfork(4)` on this machine, or on other hosts with
    /// remote specs (`nfork(vec![Remote::ssh("host").procs(4).into()])`).
    pub async fn nfork(&self, what: impl IntoPlacements) -> Result<Children, ForkError> {
        let children = self.spawn(what).await?;
        if let Err(e) = self.own(&children).await {
            for child in &children {
                child.kill().await;
            }
            return Err(e);
        }
        Ok(children)
    }

    /// Starts one child process on this machine.
    pub async fn fork(&self) -> Result<Child, ForkError> {
        let children = self.nfork(1).await?;
        Ok(children
            .0
            .into_iter()
            .next()
            .expect("nfork(1) starts one child"))
    }

    /// Stops every forked child, local and remote, youngest first: the root
    /// supervisor asks each to end (its stdin closes), gives it
    /// [`CLOSE_TIMEOUT`], then kills it; all are forgotten. Processes of
    /// other supervisors are theirs to stop.
    pub async fn close(&self) {
        if let Some(root) = self.root() {
            root.terminate_children().await;
        }
        for child in self.children().iter() {
            child.kill().await;
        }
    }

    /// The same as [`Tree::close`], for code that cannot await (a panic
    /// or signal path): kills every forked child at once.
    pub fn close_now(&self) {
        for child in self.children().iter() {
            child.kill_now();
        }
    }
}

/// Starts one child process on this machine (the default context's tree).
pub async fn fork() -> Result<Child, ForkError> {
    Tree::global().fork().await
}

/// Starts child processes: `nfork(4)` on this machine, or on other hosts
/// with remote specs (`nfork(vec![Remote::ssh("host").procs(4).into()])`).
/// Every child runs this same program, connects back over the
/// authenticated QUIC transport, and waits for `exec`. Fails, naming the
/// host and the reason, if any child does not come up; the others are then
/// stopped.
pub async fn nfork(what: impl IntoPlacements) -> Result<Children, ForkError> {
    Tree::global().nfork(what).await
}

/// The living children of this process, in number order.
pub fn children() -> Children {
    Tree::global().children()
}

/// How many children this process has.
pub fn nchildren() -> usize {
    Tree::global().nchildren()
}

/// Stops every child, local and remote, youngest first (see
/// [`Tree::close`]). Runs by itself when `#[parallel::main]`'s `main`
/// returns, fails, panics, or the program gets Ctrl+C / SIGTERM.
pub async fn close() {
    Tree::global().close().await;
    crate::transport::shm::cleanup_own();
}

/// The same as [`close`], for code that cannot await.
pub(crate) fn close_now() {
    Tree::global().close_now();
    crate::transport::shm::cleanup_own();
}
