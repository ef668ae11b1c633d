//! [`Pool`]: connecting to a head, opening (or resuming) the pool there,
//! shipping the program, submitting jobs and updates, and coming back
//! after the head or the link restarts.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cluster::head::{HeadActor, PoolOwner, head_id};
use crate::cluster::message::*;
use crate::launch::program::{CHUNK, Program};
use crate::remote::{ActorRef, Node, RemoteNode};
use crate::transport::{JoinLine, Password};

use super::{Worker, kind_name};

/// How long a pool keeps trying to reach its head again (after the link
/// dropped or the head restarted) before it gives up with
/// [`PoolError::HeadLost`].
pub const RECONNECT_PATIENCE: Duration = Duration::from_secs(60);
/// How long one ask to the head may take (a submit that waits for room
/// in a full queue is asked again after this).
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// This program is not running inside the actor runtime.
    #[error("the pool's node did not start: {0}; run the program with #[parallel::main]")]
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
        "lost the head at {line} and it did not come back within {patience:?}; restart it on the same --data and connect again (its ledger keeps accepted jobs)"
    )]
    HeadLost {
        /// Its join line.
        line: String,
        /// How long the pool waited.
        patience: Duration,
    },
    /// The head refused.
    #[error("the head refused: {0}")]
    Refused(String),
    /// This program's executable cannot be read or sent.
    #[error("cannot ship this program to the cluster: {0}")]
    Program(String),
    /// A job, init data or update could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A job failed (in `imap_unordered`; `map` gives each job's error in place).
    #[error(transparent)]
    Job(#[from] super::JobError),
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
}

/// A pool of workers of type `W` on a cluster (see the [module](super) docs).
pub struct Pool<W: Worker> {
    pub(super) node: Node,
    line: JoinLine,
    pub(super) remote: RemoteNode,
    pub(super) head: ActorRef<HeadActor>,
    pub(super) pool: Uuid,
    owner: ActorRef<PoolOwner>,
    pub(super) results: mpsc::UnboundedReceiver<Results>,
    program: Program,
    exe: PathBuf,
    init: Vec<u8>,
    pub(super) next_index: u64,
    pub(super) progress: bool,
    closed: bool,
    _worker: PhantomData<fn() -> W>,
}

impl<W: Worker> Pool<W> {
    /// Joins the head at `line` with `password`, opens a pool of `W`
    /// built from `init` on every worker, and ships this program to the
    /// head if it does not have it yet. Must run inside `#[parallel::main]`.
    pub async fn connect(
        line: &JoinLine,
        password: Password,
        init: W::Init,
    ) -> Result<Self, PoolError> {
        let (program, exe) = Program::own().map_err(|e| PoolError::Program(e.to_string()))?;
        let init = crate::wire::encode(&init)
            .map(|b| b.to_vec())
            .map_err(|e| PoolError::Encode {
                what: "the init data",
                reason: e.to_string(),
            })?;
        let node = Node::builder().password(password).start().await?;
        let remote = node.join(line).await.map_err(|e| PoolError::Connect {
            line: line.to_string(),
            reason: e.to_string(),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let owner = node.spawn(PoolOwner { results: tx });
        let head = head_ref(&remote);
        let mut pool = Pool {
            node,
            line: line.clone(),
            remote,
            head,
            pool: Uuid::nil(),
            owner,
            results: rx,
            program,
            exe,
            init,
            next_index: 0,
            progress: true,
            closed: false,
            _worker: PhantomData,
        };
        pool.open(None).await?;
        Ok(pool)
    }

    /// Whether `map` and `imap_unordered` show a progress bar (on standard
    /// error, only when it is a terminal; default on).
    pub fn progress(&mut self, show: bool) -> &mut Self {
        self.progress = show;
        self
    }

    /// The pool's id on its head.
    pub fn id(&self) -> Uuid {
        self.pool
    }

    async fn open(&mut self, resume: Option<Uuid>) -> Result<(), PoolError> {
        let msg = OpenPool {
            program: self.program.clone(),
            kind: kind_name::<W>().to_owned(),
            init: self.init.clone(),
            owner: self.owner.clone(),
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
            Ok(Opened::Refused(why)) => Err(PoolError::Refused(why)),
            Err(e) => Err(PoolError::Connect {
                line: self.line.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Sends this program to the head: a copy of the file when the head
    /// runs on this machine, else in chunks.
    async fn upload(&mut self) -> Result<(), PoolError> {
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
                .map_err(|e| PoolError::Program(e.to_string()))?
                .map_err(|e| PoolError::Program(format!("{}: {e}", self.exe.display())))?;
            let len = bytes.len() as u64;
            let msg = Upload {
                program: self.program.clone(),
                offset,
                bytes,
            };
            match self.head.ask(msg).await {
                Ok(Uploaded::More) if len > 0 => offset += len,
                Ok(Uploaded::More) => {
                    return Err(PoolError::Program(
                        "the executable changed while it was sent; connect again".into(),
                    ));
                }
                Ok(Uploaded::Stored) => break,
                Ok(Uploaded::Refused(why)) => return Err(PoolError::Refused(why)),
                Err(e) => return Err(PoolError::Program(format!("upload failed: {e}"))),
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
    pub(super) async fn reconnect(&mut self) -> Result<(), PoolError> {
        if self.closed {
            return Err(PoolError::Closed);
        }
        let since = Instant::now();
        tracing::warn!("lost the head at {}; joining again", self.line);
        loop {
            if since.elapsed() > RECONNECT_PATIENCE {
                return Err(PoolError::HeadLost {
                    line: self.line.to_string(),
                    patience: RECONNECT_PATIENCE,
                });
            }
            if let Ok(remote) = self.node.join(&self.line).await {
                self.head = head_ref(&remote);
                self.remote = remote;
                match self.open(Some(self.pool)).await {
                    Ok(()) => return Ok(()),
                    Err(PoolError::Refused(why)) => return Err(PoolError::Refused(why)),
                    Err(e) => tracing::debug!("resuming the pool failed: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Submits jobs (already numbered), again after a reconnect; returns
    /// once the head has them in its ledger.
    pub(super) async fn submit(&mut self, jobs: Vec<(u64, Vec<u8>)>) -> Result<(), PoolError> {
        loop {
            let msg = Submit {
                pool: self.pool,
                jobs: jobs.clone(),
            };
            let asked = self.head.ask(msg);
            let outcome = tokio::select! {
                r = asked => Some(r),
                _ = self.remote.closed() => None,
            };
            match outcome {
                Some(Ok(Submitted::Accepted)) => return Ok(()),
                Some(Ok(Submitted::Refused(why))) => return Err(PoolError::Refused(why)),
                Some(Err(e)) if self.remote.is_alive() => {
                    tracing::debug!("submit not answered ({e}); asking again");
                }
                _ => self.reconnect().await?,
            }
        }
    }

    /// The next results from the head (reconnecting if the link drops).
    pub(super) async fn next_results(&mut self) -> Result<Results, PoolError> {
        loop {
            let got = tokio::select! {
                r = self.results.recv() => Some(r),
                _ = self.remote.closed() => None,
            };
            match got {
                Some(Some(r)) if r.pool == self.pool => return Ok(r),
                Some(Some(_)) => continue,
                Some(None) => return Err(PoolError::Closed),
                None => self.reconnect().await?,
            }
        }
    }

    /// Tells the head these results arrived (it forgets them).
    pub(super) fn acknowledge(&self, indices: Vec<u64>) {
        let _ = self.head.try_tell(ResultsRead {
            pool: self.pool,
            indices,
        });
    }

    /// Sends `update` to every worker of the pool, handled between jobs in
    /// the order sent — workers that join later get it too.
    pub async fn update_workers(&mut self, update: &W::Update) -> Result<(), PoolError> {
        let bytes = crate::wire::encode(update)
            .map(|b| b.to_vec())
            .map_err(|e| PoolError::Encode {
                what: "the update",
                reason: e.to_string(),
            })?;
        loop {
            let msg = PushUpdate {
                pool: self.pool,
                update: bytes.clone(),
            };
            match self.head.ask(msg).await {
                Ok(Submitted::Accepted) => return Ok(()),
                Ok(Submitted::Refused(why)) => return Err(PoolError::Refused(why)),
                Err(_) if self.remote.is_alive() => continue,
                Err(_) => self.reconnect().await?,
            }
        }
    }

    async fn status(&mut self) -> Result<StatusReport, PoolError> {
        loop {
            match self.head.ask(Status).await {
                Ok(report) => return Ok(report),
                Err(_) if self.remote.is_alive() => continue,
                Err(_) => self.reconnect().await?,
            }
        }
    }

    /// How many workers run this pool's jobs now.
    pub async fn workers_count(&mut self) -> Result<usize, PoolError> {
        let report = self.status().await?;
        Ok(report
            .pools
            .iter()
            .find(|p| p.pool == self.pool)
            .map_or(0, |p| p.workers as usize))
    }

    /// How many node agents the cluster has now.
    pub async fn nodes_count(&mut self) -> Result<usize, PoolError> {
        Ok(self.status().await?.nodes.len())
    }

    /// Closes the pool: queued and running jobs are dropped, its workers
    /// stop. Also done (without waiting) when the pool is dropped.
    pub async fn close(mut self) {
        self.closed = true;
        let _ = self
            .head
            .clone()
            .with_timeout(Duration::from_secs(5))
            .ask(ClosePool { pool: self.pool })
            .await;
        self.node.shutdown().await;
    }
}

impl<W: Worker> Drop for Pool<W> {
    fn drop(&mut self) {
        if !self.closed {
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
