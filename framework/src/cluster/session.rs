//! A program's session with a head: its node, the link to the head, the
//! pool (or engine set) it opened there, and the program it shipped. Pools
//! (`crate::pool`) and clients (`crate::client`) are built on it.
//!
//! A keeper task holds the link: when it drops (the head restarted, the
//! network failed) the keeper joins the head again and resumes the pool at
//! once, whether or not the program is using the session then — a head
//! drops a pool whose owner stays away too long. Calls that were waiting
//! on the head meanwhile wait for the keeper.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
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

/// How many jobs a submit carries at first: the first jobs of a map start
/// after one small ledger commit.
pub const FIRST_BATCH: usize = 256;
/// How many jobs a submit carries at most: a long map pays one ledger
/// commit (one disk sync) per this many jobs.
pub const MAX_BATCH: usize = 4096;
/// How many bytes of jobs a submit carries at most (one job more than that
/// goes alone), so that a batch stays far below the head's queue limit.
pub const BATCH_BYTES: usize = 4 << 20;

/// The size of the next [`Submit`] of a map: [`FIRST_BATCH`] jobs, twice
/// as many with each submit after, up to [`MAX_BATCH`] jobs, and never
/// (by more than one job) over [`BATCH_BYTES`]. Each submit waits for the
/// head's ledger commit, so submits of a fixed small size would cap a map
/// of tiny jobs at one batch per commit.
#[derive(Debug)]
pub struct Batches {
    next: usize,
}

impl Default for Batches {
    fn default() -> Self {
        Batches { next: FIRST_BATCH }
    }
}

impl Batches {
    /// The next batch: numbered jobs taken from `jobs` while it has room
    /// (none are taken past that); the one after may hold twice as many.
    /// Empty once `jobs` gives no more.
    pub fn fill(&mut self, jobs: &mut impl Iterator<Item = (u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
        let (mut batch, mut bytes) = (Vec::new(), 0);
        while batch.len() < self.next
            && bytes < BATCH_BYTES
            && let Some(job) = jobs.next()
        {
            bytes += job.1.len();
            batch.push(job);
        }
        if !batch.is_empty() {
            self.next = (self.next * 2).min(MAX_BATCH);
        }
        batch
    }
}

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

/// The link to the head as the keeper last made it.
#[derive(Clone)]
enum Link {
    /// Up (until its remote says otherwise): the remote and the head there.
    Up(Box<(RemoteNode, ActorRef<HeadActor>)>),
    /// The head did not come back within [`RECONNECT_PATIENCE`].
    Lost,
    /// The head refused to resume the pool: why.
    Refused(String),
}

/// What opens (and resumes) the pool on a head; the keeper has a copy.
#[derive(Clone)]
struct Opening {
    line: JoinLine,
    /// The pool this session opens and resumes; `None` when attached to
    /// another's pool, which is then neither opened nor resumed.
    owned: Option<Owned>,
}

/// A pool this session opened: its program and where its results come.
#[derive(Clone)]
struct Owned {
    program: Program,
    exe: PathBuf,
    kind: String,
    init: Vec<u8>,
    owner: ActorRef<PoolOwner>,
}

/// A session with a head (see the module docs).
pub struct Session {
    node: Node,
    opening: Opening,
    pool: Uuid,
    results: Option<mpsc::UnboundedReceiver<Results>>,
    /// The link, as the keeper keeps it.
    link: watch::Receiver<Link>,
    /// The head's actor, for whoever routes results (updated on reconnect).
    heads: watch::Receiver<ActorRef<HeadActor>>,
    /// Joins the head again whenever the link drops.
    keeper: actix_rt::task::JoinHandle<()>,
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
        Session::join(line, password, None, kind, init).await
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
        let mut session = Session::join(line, password, Some(pool), "", Vec::new()).await?;
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

    /// Starts this program's node, joins the head and opens a pool (or,
    /// with `attach`, uses that pool without owning it); starts the keeper.
    async fn join(
        line: &JoinLine,
        password: Password,
        attach: Option<Uuid>,
        kind: &str,
        init: Vec<u8>,
    ) -> Result<Session, SessionError> {
        // Hashing this program reads all of it (about 14 ms for 17 MB): a
        // head on this machine (joined on loopback) does it as it copies the
        // file this program hands it; for one elsewhere this program does
        // it, off the runtime's thread, while its node starts and joins. A
        // session attached to another's pool ships nothing.
        let hashing = match attach {
            Some(_) => None,
            None => {
                let exe = Program::own_path().map_err(|e| SessionError::Program(e.to_string()))?;
                let early = (!line.addr.ip().is_loopback()).then(|| hash(&exe));
                Some((exe, early))
            }
        };
        let node = Node::builder()
            .password(password)
            .listen(line.bind_to_reach())
            .start()
            .await?;
        let remote = node.join(line).await.map_err(|e| SessionError::Connect {
            line: line.to_string(),
            reason: e.to_string(),
        })?;
        let head = head_ref(&remote);
        // No results ever come to a session that does not own its pool.
        let (tx, rx) = mpsc::unbounded_channel();
        let (pool, opening) = match hashing {
            // Attached: to the pool `attach` names.
            None => {
                let opening = Opening {
                    line: line.clone(),
                    owned: None,
                };
                (attach.unwrap_or_default(), opening)
            }
            Some((exe, early)) => {
                let (staged, program) = match stage(&head, &exe).await {
                    Some((token, program)) => (Some(token), program),
                    None => {
                        let program = early
                            .unwrap_or_else(|| hash(&exe))
                            .await
                            .map_err(|e| {
                                SessionError::Program(format!("hashing this program stopped: {e}"))
                            })?
                            .map_err(|e| SessionError::Program(e.to_string()))?;
                        (None, program)
                    }
                };
                let owned = Owned {
                    program,
                    exe,
                    kind: kind.to_owned(),
                    init,
                    owner: node.spawn(PoolOwner { results: tx }),
                };
                let opening = Opening {
                    line: line.clone(),
                    owned: Some(owned),
                };
                let pool = opening.open(&head, None, staged).await?;
                (pool, opening)
            }
        };
        let (heads_tx, heads) = watch::channel(head.clone());
        let (link_tx, link) = watch::channel(Link::Up(Box::new((remote.clone(), head))));
        let keeper = actix_rt::spawn(keep(
            node.clone(),
            opening.clone(),
            pool,
            remote,
            link_tx,
            heads_tx,
        ));
        Ok(Session {
            node,
            opening,
            pool,
            results: Some(rx),
            link,
            heads,
            keeper,
            closed: false,
        })
    }

    /// Whether this session opened its pool (rather than attached to one).
    pub fn owns_pool(&self) -> bool {
        self.opening.owned.is_some()
    }

    /// The pool's id on its head.
    pub fn pool(&self) -> Uuid {
        self.pool
    }

    /// The head's actor now.
    pub fn head(&self) -> ActorRef<HeadActor> {
        self.heads.borrow().clone()
    }

    /// This program's node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The link now, or why there is none.
    fn current(&self) -> Result<(RemoteNode, ActorRef<HeadActor>), SessionError> {
        match &*self.link.borrow() {
            Link::Up(up) => Ok(up.as_ref().clone()),
            Link::Lost => Err(self.head_lost()),
            Link::Refused(why) => Err(SessionError::Refused(why.clone())),
        }
    }

    fn head_lost(&self) -> SessionError {
        SessionError::HeadLost {
            line: self.opening.line.to_string(),
            patience: RECONNECT_PATIENCE,
        }
    }

    /// Whether the link to the head is up.
    pub fn is_alive(&self) -> bool {
        self.current().is_ok_and(|(remote, _)| remote.is_alive())
    }

    /// Resolves once the link to the head (as it is now) drops.
    pub async fn lost(&self) {
        if let Ok((remote, _)) = self.current() {
            remote.closed().await;
        }
    }

    /// Takes the stream of results the head sends for this pool, to route
    /// them elsewhere ([`Session::next_results`] then has none); with
    /// [`Session::heads`] to acknowledge them.
    pub fn take_results(&mut self) -> Option<mpsc::UnboundedReceiver<Results>> {
        self.results.take()
    }

    /// The head's actor now, and after every reconnect.
    pub fn heads(&self) -> watch::Receiver<ActorRef<HeadActor>> {
        self.heads.clone()
    }

    /// The next results the head sent for this pool (joining again if the
    /// link drops).
    pub async fn next_results(&mut self) -> Result<Results, SessionError> {
        loop {
            let (remote, _) = self.current()?;
            let Some(results) = self.results.as_mut() else {
                return Err(SessionError::Closed);
            };
            let got = tokio::select! {
                r = results.recv() => Some(r),
                _ = remote.closed() => None,
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

    /// Waits until the keeper has the head back and the pool resumed (at
    /// once if the link is up), for up to [`RECONNECT_PATIENCE`].
    pub async fn reconnect(&mut self) -> Result<(), SessionError> {
        if self.closed {
            return Err(SessionError::Closed);
        }
        let mut link = self.link.clone();
        let back = async {
            loop {
                let now = match &*link.borrow_and_update() {
                    Link::Up(up) if up.0.is_alive() => Some(Ok(())),
                    Link::Up(_) => None,
                    Link::Lost => Some(Err(self.head_lost())),
                    Link::Refused(why) => Some(Err(SessionError::Refused(why.clone()))),
                };
                if let Some(now) = now {
                    return now;
                }
                if link.changed().await.is_err() {
                    // The keeper stopped: the session is closing.
                    return Err(SessionError::Closed);
                }
            }
        };
        // The keeper gives up after its patience; this waits a little more.
        tokio::time::timeout(RECONNECT_PATIENCE + Duration::from_secs(10), back)
            .await
            .unwrap_or_else(|_| Err(self.head_lost()))
    }

    /// Asks the head `msg`, joining again when the link drops meanwhile.
    pub async fn ask<M>(&mut self, msg: M) -> Result<M::Result, SessionError>
    where
        M: crate::actor::Message + Clone,
        HeadActor: crate::actor::Accepts<M>,
    {
        loop {
            let (remote, head) = self.current()?;
            let asked = head.ask(msg.clone());
            let outcome = tokio::select! {
                r = asked => Some(r),
                _ = remote.closed() => None,
            };
            match outcome {
                Some(Ok(answer)) => return Ok(answer),
                Some(Err(e)) if remote.is_alive() => {
                    tracing::debug!("the head did not answer ({e}); asking again");
                }
                _ => self.reconnect().await?,
            }
        }
    }

    /// Awaits `fut` (something that waits on the head, like a result),
    /// waiting for the keeper to join the head again whenever the link
    /// drops meanwhile.
    pub async fn alongside<T>(
        &mut self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, SessionError> {
        tokio::pin!(fut);
        loop {
            let (remote, _) = self.current()?;
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = remote.closed() => self.reconnect().await?,
            }
        }
    }

    /// Tells the head `msg` (no answer; lost if the link is down).
    pub fn tell<M>(&self, msg: M)
    where
        M: crate::actor::Message<Result = ()>,
        HeadActor: crate::actor::Accepts<M>,
    {
        let _ = self.head().try_tell(msg);
    }

    /// Closes the pool on the head (when this session opened it) and this
    /// program's node.
    pub async fn close(mut self) {
        self.closed = true;
        self.keeper.abort();
        if self.owns_pool() {
            let _ = self
                .head()
                .with_timeout(Duration::from_secs(5))
                .ask(ClosePool { pool: self.pool })
                .await;
        }
        self.node.shutdown().await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
        if !self.closed && self.owns_pool() {
            let _ = self.head().try_tell(ClosePool { pool: self.pool });
        }
    }
}

/// The keeper: whenever the link to the head drops, joins the head again
/// and resumes the pool (shipping the program if the head lost it), for up
/// to [`RECONNECT_PATIENCE`] each time; publishes each new link. Runs until
/// the session ends, or gives up.
async fn keep(
    node: Node,
    opening: Opening,
    pool: Uuid,
    mut remote: RemoteNode,
    link: watch::Sender<Link>,
    heads: watch::Sender<ActorRef<HeadActor>>,
) {
    loop {
        remote.closed().await;
        tracing::warn!("lost the head at {}; joining again", opening.line);
        let since = Instant::now();
        loop {
            if since.elapsed() > RECONNECT_PATIENCE {
                tracing::error!(
                    "the head at {} did not come back within {RECONNECT_PATIENCE:?}",
                    opening.line
                );
                link.send_replace(Link::Lost);
                return;
            }
            match node.join(&opening.line).await {
                Ok(back) => {
                    let head = head_ref(&back);
                    match opening.open(&head, Some(pool), None).await {
                        Ok(_) => {
                            tracing::info!(%pool, "joined the head again after {:?}", since.elapsed());
                            heads.send_replace(head.clone());
                            link.send_replace(Link::Up(Box::new((back.clone(), head))));
                            remote = back;
                            break;
                        }
                        Err(SessionError::Refused(why)) => {
                            tracing::error!(%pool, "the head refused to resume the pool: {why}");
                            link.send_replace(Link::Refused(why));
                            return;
                        }
                        Err(e) => tracing::debug!("resuming the pool failed: {e}"),
                    }
                }
                Err(e) => tracing::debug!("joining the head again failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Opening {
    /// Opens the pool on `head` (resuming `resume`), handing over the copy
    /// of the program the head `staged` (if any) or shipping the program
    /// when the head asks for it; the pool's id. An attached session opens
    /// nothing.
    async fn open(
        &self,
        head: &ActorRef<HeadActor>,
        resume: Option<Uuid>,
        staged: Option<Uuid>,
    ) -> Result<Uuid, SessionError> {
        let Some(owned) = &self.owned else {
            return Ok(resume.unwrap_or_default());
        };
        let msg = OpenPool {
            program: owned.program.clone(),
            kind: owned.kind.clone(),
            init: owned.init.clone(),
            owner: owned.owner.clone(),
            resume,
            staged,
        };
        match head.ask(msg).await {
            Ok(Opened::Ready { pool, upload, .. }) => {
                if upload {
                    owned.upload(head).await?;
                }
                Ok(pool)
            }
            Ok(Opened::Refused(why)) => Err(SessionError::Refused(why)),
            Err(e) => Err(SessionError::Connect {
                line: self.line.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

impl Owned {
    /// Sends this program to the head: handed over as a file when the head
    /// runs on this machine ([`stage`]), else in chunks.
    async fn upload(&self, head: &ActorRef<HeadActor>) -> Result<(), SessionError> {
        let started = Instant::now();
        if let Some((staged, program)) = stage(head, &self.exe).await
            && program == self.program
        {
            let local = UploadLocal { program, staged };
            if let Ok(Uploaded::Stored) = head.ask(local).await {
                return Ok(());
            }
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
            match head.ask(msg).await {
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
}

/// Hashes the executable at `exe` on a blocking thread.
fn hash(
    exe: &std::path::Path,
) -> tokio::task::JoinHandle<Result<Program, crate::launch::ProgramError>> {
    let exe = exe.to_path_buf();
    tokio::task::spawn_blocking(move || Program::of_file(&exe))
}

/// How long a head on this machine may take to copy this program.
const HANDOFF_PATIENCE: Duration = Duration::from_secs(120);

/// Hands this program's executable at `exe`, open, to a head on this
/// machine ([`StageLocal`]), which copies and hashes it: the copy's token
/// and the program as the head hashed it, or `None` when the head is
/// elsewhere or did not take it (the program is then hashed here and sent
/// if the head asks for it).
async fn stage(head: &ActorRef<HeadActor>, exe: &std::path::Path) -> Option<(Uuid, Program)> {
    let started = Instant::now();
    let asked = StageLocal {
        host_key: crate::id::host_key(),
    };
    let (token, socket) = match head.ask(asked).await {
        Ok(Staging::Handoff { token, socket }) => (token, socket),
        Ok(Staging::Refused(why)) => {
            tracing::debug!("the head does not copy the program: {why}");
            return None;
        }
        Err(e) => {
            tracing::debug!("the head does not copy the program: {e}");
            return None;
        }
    };
    let exe = exe.to_path_buf();
    let handed = tokio::task::spawn_blocking(move || {
        let unreadable = |e: std::io::Error| format!("{}: {e}", exe.display());
        let file = std::fs::File::open(&exe).map_err(unreadable)?;
        let len = file.metadata().map_err(unreadable)?.len();
        let (sha256, copied) =
            crate::launch::handoff::hand_over(&file, token.as_bytes(), &socket, HANDOFF_PATIENCE)?;
        if copied != len {
            return Err(format!(
                "{} changed while the head copied it ({len} bytes, {copied} copied)",
                exe.display()
            ));
        }
        Ok::<_, String>(Program::here(sha256, len))
    })
    .await;
    match handed {
        Ok(Ok(program)) => {
            tracing::info!(
                "program copied by the head on this machine in {:?}",
                started.elapsed()
            );
            Some((token, program))
        }
        Ok(Err(why)) => {
            tracing::debug!("the head did not copy the program: {why}");
            None
        }
        Err(e) => {
            tracing::debug!("the head did not copy the program: {e}");
            None
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes of the batches a map of `jobs` jobs of `len` bytes each
    /// is submitted in.
    fn sizes(jobs: u64, len: usize) -> Vec<usize> {
        let (mut jobs, mut batches) = ((0..jobs).map(|i| (i, vec![0; len])), Batches::default());
        std::iter::from_fn(|| Some(batches.fill(&mut jobs).len()))
            .take_while(|&n| n > 0)
            .collect()
    }

    #[test]
    fn batches_start_small_and_double_up_to_the_most() {
        assert_eq!(
            sizes(20_000, 10),
            [256, 512, 1024, 2048, 4096, 4096, 4096, 3872]
        );
        assert_eq!(sizes(100, 10), [100]);
    }

    #[test]
    fn batches_stay_under_their_byte_limit_by_one_job_at_most() {
        // Jobs of a byte over 1 MiB: three leave room, the fourth passes
        // 4 MiB and ends the batch.
        assert_eq!(sizes(10, (1 << 20) + 1), [4, 4, 2]);
        // A job larger than the limit goes alone.
        assert_eq!(sizes(3, BATCH_BYTES * 2), [1, 1, 1]);
    }
}
