//! A program's session with a head: its node, the link to the head, the
//! pool (or engine set) it opened there, and the program it shipped. Pools
//! (`crate::pool`) and clients (`crate::client`) are built on it; it comes
//! back by itself after the link drops or the head restarts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::launch::program::{CHUNK, Program};
use crate::remote::{ActorRef, Node, RemoteNode};
use crate::transport::{JoinLine, Password};

use super::head::{HeadActor, PoolOwner, head_id};
use super::message::*;

/// How long a session keeps trying to reach its head again (after the link
/// dropped or the head restarted) before it gives up with
/// [`SessionError::HeadLost`].
pub const RECONNECT_PATIENCE: Duration = Duration::from_secs(60);
/// How long one ask to the head may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session could not be opened or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// This program's node did not start.
    #[error("this program's node did not start: {0}; run the program with #[parallel::main]")]
    Node(#[from] crate::remote::StartError),
    /// The head could not be reached.
    #[error(
        "cannot reach the head at {line}: {reason}; start it with `parallel head`, check the join line and the password"
    )]
    Connect {
        /// Its join line.
        line: String,
        /// What failed.
        reason: String,
    },
    /// The head was lost and did not come back in time.
    #[error(
        "lost the head at {line} and it did not come back within {patience:?}; restart it on the same --data and connect again (its ledger keeps accepted work)"
    )]
    HeadLost {
        /// Its join line.
        line: String,
        /// How long the session waited.
        patience: Duration,
    },
    /// The head refused.
    #[error("the head refused: {0}")]
    Refused(String),
    /// This program's executable cannot be read or sent.
    #[error("cannot ship this program to the cluster: {0}")]
    Program(String),
    /// The session was closed.
    #[error("the session is closed")]
    Closed,
}

/// A session with a head (see the module docs).
pub struct Session {
    node: Node,
    line: JoinLine,
    remote: RemoteNode,
    head: ActorRef<HeadActor>,
    pool: Uuid,
    /// Where the pool's results come (`None`: attached to another's pool).
    owner: Option<ActorRef<PoolOwner>>,
    results: Option<mpsc::UnboundedReceiver<Results>>,
    /// The head's actor, for whoever routes results (updated on reconnect).
    heads: tokio::sync::watch::Sender<ActorRef<HeadActor>>,
    program: Program,
    exe: PathBuf,
    kind: String,
    init: Vec<u8>,
    closed: bool,
}

impl Session {
    /// Joins the head at `line` with `password` and opens a pool of worker
    /// type `kind` built from `init` (encoded), shipping this program if
    /// the head does not have it yet.
    pub async fn open(
        line: &JoinLine,
        password: Password,
        kind: &str,
        init: Vec<u8>,
    ) -> Result<Session, SessionError> {
        let mut session = Session::join(line, password, true, kind, init).await?;
        session.open_pool(None).await?;
        Ok(session)
    }

    /// Joins the head at `line` with `password` as a second session of
    /// `pool`, which another program opened (and owns: its results go
    /// there, and closing this session leaves the pool running). Refused
    /// when the head has no such pool.
    pub async fn attach(
        line: &JoinLine,
        password: Password,
        pool: Uuid,
    ) -> Result<Session, SessionError> {
        let mut session = Session::join(line, password, false, "", Vec::new()).await?;
        session.pool = pool;
        let probe = HubQuery {
            pool,
            indices: Vec::new(),
            with_results: false,
        };
        match session.ask(probe).await? {
            HubRecords::NoSuchSet => Err(SessionError::Refused(format!(
                "the head has no pool or engine set {pool}: check the id (a client prints it with Client::id), \
                 and that its owner has not closed it"
            ))),
            HubRecords::Records(_) => Ok(session),
        }
    }

    /// Starts this program's node and joins the head; with a pool owner
    /// when `owns` (no results ever come otherwise).
    async fn join(
        line: &JoinLine,
        password: Password,
        owns: bool,
        kind: &str,
        init: Vec<u8>,
    ) -> Result<Session, SessionError> {
        let (program, exe) = Program::own().map_err(|e| SessionError::Program(e.to_string()))?;
        let node = Node::builder().password(password).start().await?;
        let remote = node.join(line).await.map_err(|e| SessionError::Connect {
            line: line.to_string(),
            reason: e.to_string(),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let owner = owns.then(|| node.spawn(PoolOwner { results: tx }));
        let head = head_ref(&remote);
        let (heads, _) = tokio::sync::watch::channel(head.clone());
        Ok(Session {
            node,
            line: line.clone(),
            remote,
            head,
            pool: Uuid::nil(),
            owner,
            results: Some(rx),
            heads,
            program,
            exe,
            kind: kind.to_owned(),
            init,
            closed: false,
        })
    }

    /// Whether this session opened its pool (rather than attached to one).
    pub fn owns_pool(&self) -> bool {
        self.owner.is_some()
    }

    /// The pool's id on its head.
    pub fn pool(&self) -> Uuid {
        self.pool
    }

    /// The head's actor.
    pub fn head(&self) -> &ActorRef<HeadActor> {
        &self.head
    }

    /// This program's node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Whether the link to the head is up.
    pub fn is_alive(&self) -> bool {
        self.remote.is_alive()
    }

    /// Resolves once the link to the head drops.
    pub async fn lost(&self) {
        self.remote.closed().await;
    }

    /// Takes the stream of results the head sends for this pool, to route
    /// them elsewhere ([`Session::next_results`] then has none); with
    /// [`Session::heads`] to acknowledge them.
    pub fn take_results(&mut self) -> Option<mpsc::UnboundedReceiver<Results>> {
        self.results.take()
    }

    /// The head's actor now, and after every reconnect.
    pub fn heads(&self) -> tokio::sync::watch::Receiver<ActorRef<HeadActor>> {
        self.heads.subscribe()
    }

    /// The next results the head sent for this pool (joining again if the
    /// link drops).
    pub async fn next_results(&mut self) -> Result<Results, SessionError> {
        loop {
            let Some(results) = self.results.as_mut() else {
                return Err(SessionError::Closed);
            };
            let got = tokio::select! {
                r = results.recv() => Some(r),
                _ = self.remote.closed() => None,
            };
            match got {
                Some(Some(r)) if r.pool == self.pool => return Ok(r),
                Some(Some(_)) => continue,
                Some(None) => return Err(SessionError::Closed),
                None => self.reconnect().await?,
            }
        }
    }

    /// Results already here, without waiting.
    pub fn try_results(&mut self) -> Option<Results> {
        let results = self.results.as_mut()?;
        loop {
            match results.try_recv() {
                Ok(r) if r.pool == self.pool => return Some(r),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    async fn open_pool(&mut self, resume: Option<Uuid>) -> Result<(), SessionError> {
        let Some(owner) = self.owner.clone() else {
            // Attached to another's pool: nothing to open or resume.
            return Ok(());
        };
        let msg = OpenPool {
            program: self.program.clone(),
            kind: self.kind.clone(),
            init: self.init.clone(),
            owner,
            resume,
        };
        match self.head.ask(msg).await {
            Ok(Opened::Ready { pool, upload, .. }) => {
                self.pool = pool;
                if upload {
                    self.upload().await?;
                }
                Ok(())
            }
            Ok(Opened::Refused(why)) => Err(SessionError::Refused(why)),
            Err(e) => Err(SessionError::Connect {
                line: self.line.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Sends this program to the head: a copy of the file when the head
    /// runs on this machine, else in chunks.
    async fn upload(&mut self) -> Result<(), SessionError> {
        let started = Instant::now();
        let local = UploadLocal {
            program: self.program.clone(),
            copy: LocalCopy {
                boot_id: crate::id::boot_id(),
                path: self.exe.display().to_string(),
            },
        };
        if let Ok(Uploaded::Stored) = self.head.ask(local).await {
            tracing::info!(
                "program copied by the head on this machine in {:?}",
                started.elapsed()
            );
            return Ok(());
        }
        let mut offset = 0u64;
        loop {
            let (exe, max) = (self.exe.clone(), CHUNK);
            let bytes = tokio::task::spawn_blocking(move || read_at(&exe, offset, max))
                .await
                .map_err(|e| SessionError::Program(e.to_string()))?
                .map_err(|e| SessionError::Program(format!("{}: {e}", self.exe.display())))?;
            let len = bytes.len() as u64;
            let msg = Upload {
                program: self.program.clone(),
                offset,
                bytes,
            };
            match self.head.ask(msg).await {
                Ok(Uploaded::More) if len > 0 => offset += len,
                Ok(Uploaded::More) => {
                    return Err(SessionError::Program(
                        "the executable changed while it was sent; connect again".into(),
                    ));
                }
                Ok(Uploaded::Stored) => break,
                Ok(Uploaded::Refused(why)) => return Err(SessionError::Refused(why)),
                Err(e) => return Err(SessionError::Program(format!("upload failed: {e}"))),
            }
        }
        tracing::info!(
            bytes = self.program.len,
            "program sent to the head in {:?}",
            started.elapsed()
        );
        Ok(())
    }

    /// Joins the head again and resumes the pool, for up to
    /// [`RECONNECT_PATIENCE`].
    pub async fn reconnect(&mut self) -> Result<(), SessionError> {
        if self.closed {
            return Err(SessionError::Closed);
        }
        let since = Instant::now();
        tracing::warn!("lost the head at {}; joining again", self.line);
        loop {
            if since.elapsed() > RECONNECT_PATIENCE {
                return Err(SessionError::HeadLost {
                    line: self.line.to_string(),
                    patience: RECONNECT_PATIENCE,
                });
            }
            match self.node.join(&self.line).await {
                Ok(remote) => {
                    self.head = head_ref(&remote);
                    self.heads.send_replace(self.head.clone());
                    self.remote = remote;
                    match self.open_pool(Some(self.pool)).await {
                        Ok(()) => {
                            tracing::info!(pool = %self.pool, "joined the head again after {:?}", since.elapsed());
                            return Ok(());
                        }
                        Err(SessionError::Refused(why)) => return Err(SessionError::Refused(why)),
                        Err(e) => tracing::debug!("resuming the pool failed: {e}"),
                    }
                }
                Err(e) => tracing::debug!("joining the head again failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Asks the head `msg`, joining again when the link drops meanwhile.
    pub async fn ask<M>(&mut self, msg: M) -> Result<M::Result, SessionError>
    where
        M: crate::actor::Message + Clone,
        HeadActor: actix::Handler<M> + actix::Handler<crate::actor::Deliver<M>>,
    {
        loop {
            let asked = self.head.ask(msg.clone());
            let outcome = tokio::select! {
                r = asked => Some(r),
                _ = self.remote.closed() => None,
            };
            match outcome {
                Some(Ok(answer)) => return Ok(answer),
                Some(Err(e)) if self.remote.is_alive() => {
                    tracing::debug!("the head did not answer ({e}); asking again");
                }
                _ => self.reconnect().await?,
            }
        }
    }

    /// Awaits `fut` (something that waits on the head, like a result),
    /// joining the head again whenever the link drops meanwhile.
    pub async fn alongside<T>(
        &mut self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, SessionError> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = self.remote.closed() => self.reconnect().await?,
            }
        }
    }

    /// Tells the head `msg` (no answer; lost if the link is down).
    pub fn tell<M>(&self, msg: M)
    where
        M: crate::actor::Message<Result = ()>,
        HeadActor: actix::Handler<M> + actix::Handler<crate::actor::Deliver<M>>,
    {
        let _ = self.head.try_tell(msg);
    }

    /// Closes the pool on the head (when this session opened it) and this
    /// program's node.
    pub async fn close(mut self) {
        self.closed = true;
        if self.owns_pool() {
            let _ = self
                .head
                .clone()
                .with_timeout(Duration::from_secs(5))
                .ask(ClosePool { pool: self.pool })
                .await;
        }
        self.node.shutdown().await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed && self.owns_pool() {
            let _ = self.head.try_tell(ClosePool { pool: self.pool });
        }
    }
}

fn head_ref(remote: &RemoteNode) -> ActorRef<HeadActor> {
    ActorRef::remote(head_id(), remote.link()).with_timeout(ASK_TIMEOUT)
}

fn read_at(path: &std::path::Path, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(max);
    file.take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}
