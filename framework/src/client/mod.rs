//! s5: IPython-parallel's client on the cluster. A [`Client`] opens a set of
//! engines (processes of this program, started by the node agents as for a
//! pool), numbered in the order they join; a [`DirectView`] on some of them
//! applies `#[parallel::remote]` functions there and moves data in and out
//! of their namespaces (`push` / `pull`, `scatter` / `gather`).
//!
//! ```no_run
//! #[parallel::remote]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! #[parallel::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The head's join line, as `parallel head` printed it.
//!     let line = std::env::args().nth(1).ok_or("usage: PROGRAM JOIN_LINE")?.parse()?;
//!     let mut rc = parallel::client::Client::connect(&line, parallel::Password::resolve()?).await?;
//!     rc.wait_for_engines(4, std::time::Duration::from_secs(30)).await?;
//!     let dview = rc.direct_view_all();
//!     dview.scatter("a", (0..16u64).collect()).await?;
//!     let a: Vec<u64> = dview.gather("a").await?;
//!     assert_eq!(a, (0..16).collect::<Vec<_>>());
//!     let squares = rc.view(0)?.apply_sync(square, (7u64,)).await?;
//!     assert_eq!(squares, vec![49]);
//!     rc.close().await;
//!     Ok(())
//! }
//! ```
//!
//! A [`LoadBalancedView`] sends tasks through the head instead, which gives
//! each to an engine with room, keeps it in its ledger and runs it again
//! when its engine dies.
//!
//! The head is the hub: it keeps every load-balanced task and result in its
//! ledger, so another client ([`Client::attach`]) fetches results by task
//! number ([`Client::get_result`]), also after the head was restarted,
//! until they are purged ([`Client::purge_results`]).

mod balanced;
mod hub;
mod meta;
mod result;
mod view;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::engine::{ENGINE_KIND, EngineActor};
use crate::cluster::message::{
    Abort, AbortedJobs, ClosePool, EngineList, Engines, QueueStatus, Retired, ShutdownEngines,
    StopHead,
};
pub use crate::cluster::message::{EngineQueue, QueueReport};
use crate::cluster::session::{Session, SessionError};
use crate::remote::{ActorRef, RemoteNode};
use crate::transport::{JoinLine, Password};

pub use balanced::{Imap, LoadBalancedView};
pub use hub::{BadEngineSetId, EngineSetId, ResultStatus};
pub use meta::Metadata;
pub use result::AsyncResult;
pub use view::{DirectImap, DirectView, ParallelFunction, RemoteFunction, Targets};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The session with the head failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A target that is no engine.
    #[error(
        "there is no engine {asked}: the engines are {have:?} (ask rc.ids() again after engines join)"
    )]
    NoSuchEngine {
        /// What was asked for.
        asked: i64,
        /// The engines there are.
        have: Vec<u32>,
    },
    /// Fewer engines than waited for.
    #[error(
        "only {have} of {want} engines joined within {waited:?}: start more nodes or workers (`parallel node --workers N`)"
    )]
    TooFewEngines {
        /// Engines there are.
        have: usize,
        /// Engines waited for.
        want: usize,
        /// How long.
        waited: Duration,
    },
    /// An engine could not be reached.
    #[error("engine {engine} cannot be reached: {reason}")]
    Engine {
        /// The engine.
        engine: u32,
        /// Why.
        reason: String,
    },
    /// A function panicked on an engine (the seed's `RemoteError`).
    #[error(transparent)]
    RemoteError(RemoteError),
    /// A function could not run on an engine (not registered there, its
    /// arguments or result could not travel, the engine could not be
    /// reached).
    #[error("on engine {engine}: {error}")]
    Remote {
        /// The engine.
        engine: u32,
        /// What failed.
        error: crate::remote::CallError,
    },
    /// A name held a value of another type.
    #[error("engine {engine} holds {name:?} as {stored}, not as {asked}: pull it as {stored}")]
    WrongType {
        /// The engine.
        engine: u32,
        /// The name.
        name: String,
        /// The stored type.
        stored: String,
        /// The type asked for.
        asked: String,
    },
    /// Nothing under a name.
    #[error("engine {engine} has nothing named {name:?}: push or scatter it first")]
    Missing {
        /// The engine.
        engine: u32,
        /// The name.
        name: String,
    },
    /// A value could not be encoded or decoded.
    #[error("cannot {what}: {reason}")]
    Codec {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The head refused.
    #[error("the head refused: {0}")]
    Refused(String),
    /// A load-balanced task failed: it was no valid task there.
    #[error("the task failed: {0}")]
    Task(String),
    /// The task's engine died while running it (the seed's
    /// `EngineError`): a load-balanced task with no retries left (see
    /// `LoadBalancedView::retries`), or a direct apply on an engine that is
    /// gone (at once).
    #[error("the engine died: {0}")]
    EngineDied(String),
    /// Some messages of a tracked apply never left this program: the
    /// connection to their engine went first, or one was larger than a
    /// frame may be.
    #[error(
        "only {sent} of {total} messages left this program: the connection to an engine went first, \
         or a message was larger than a frame may be (the result's get() says which and why)"
    )]
    NotSent {
        /// Messages that left.
        sent: usize,
        /// Messages there were.
        total: usize,
    },
    /// A result did not come in time.
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// The task was aborted before it started (the seed's `AbortedTask`).
    #[error("the task was aborted before it started")]
    Aborted,
    /// The head did not answer.
    #[error("the head did not answer: {0}; it may be restarting, try again")]
    Head(String),
    /// The task's dependencies were not met within its timeout (the seed's
    /// `DependencyTimeout`).
    #[error(
        "the task's dependencies were not done within its timeout: give it a longer .timeout(..), or none"
    )]
    DependencyTimeout,
    /// The task's dependencies can never be met (the seed's
    /// `ImpossibleDependency`): a dependency failed (and the task wanted
    /// success only), is unknown, or its engine is gone.
    #[error("the task cannot run: {0}")]
    ImpossibleDependency(String),
    /// The hub does not know a task.
    #[error(
        "task {0} is not on the hub: it was never submitted to this engine set, or its result was purged \
         (also by the head's --results-limit)"
    )]
    UnknownTask(u64),
    /// A purge named tasks that are not done.
    #[error(
        "tasks {0:?} are not done: wait for them (rc.wait or rc.get_result) before purging them; \
         nothing was purged"
    )]
    Outstanding(Vec<u64>),
    /// Load-balanced tasks from a client that attached to another's engine set.
    #[error(
        "this client attached to engine set {0}, which another client opened: submit load-balanced tasks \
         from that client (an attached client queries the hub, fetches results and uses direct views)"
    )]
    NotOwner(uuid::Uuid),
}

/// A function that panicked on an engine (the seed's `RemoteError`): the
/// engine, the panic's message and where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The engine it ran on (when known).
    pub engine: Option<u32>,
    /// The panic's message.
    pub message: String,
    /// Where it panicked (`file:line`), when the engine noted it (not when
    /// it prints backtraces instead: `RUST_BACKTRACE` set).
    pub location: Option<String>,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(engine) = self.engine {
            write!(f, "on engine {engine}: ")?;
        }
        write!(
            f,
            "the remote function panicked: {}{}",
            self.message,
            crate::remote::at(&self.location)
        )
    }
}

impl std::error::Error for RemoteError {}

impl ClientError {
    /// The error of a call to engine `engine` (a panic is a [`RemoteError`]).
    pub(crate) fn of_call(engine: u32, error: crate::remote::CallError) -> ClientError {
        match error {
            crate::remote::CallError::Panicked { message, location } => {
                ClientError::RemoteError(RemoteError {
                    engine: Some(engine),
                    message,
                    location,
                })
            }
            crate::remote::CallError::Request(crate::remote::RequestError::PeerLost {
                reason,
                ..
            }) => ClientError::EngineDied(format!(
                "engine {engine} is gone ({reason}); apply to the engines rc.ids() lists now"
            )),
            error => ClientError::Remote { engine, error },
        }
    }
}

/// One engine as a client reaches it: a link to its node and its actor.
#[derive(Clone)]
pub(crate) struct EngineLink {
    pub(crate) remote: RemoteNode,
    pub(crate) actor: ActorRef<EngineActor>,
    pub(crate) pid: u32,
    /// The shared memory with it: present exactly when it runs on this
    /// machine (large values go through shared memory then).
    pub(crate) segments: Option<std::sync::Arc<crate::transport::segments::PeerSegments>>,
}

/// A client of a cluster's engines (see the [module](self) docs).
pub struct Client {
    session: Session,
    engines: BTreeMap<u32, EngineLink>,
    /// The number of the next load-balanced task.
    next_task: u64,
    /// Load-balanced tasks waiting for their result.
    waiting: balanced::Waiting,
    /// Changes after each batch of results the router handed out.
    arrived: tokio::sync::watch::Receiver<u64>,
    /// Hands results to them.
    router: actix_rt::task::JoinHandle<()>,
}

impl Client {
    /// Joins the head at `line` with `password` and opens this program's
    /// engines: every node agent starts its workers as engines of this
    /// program. Must run inside `#[parallel::main]`.
    pub async fn connect(line: &JoinLine, password: Password) -> Result<Client, ClientError> {
        Client::start(Session::open(line, password, ENGINE_KIND, Vec::new()).await?)
    }

    /// Joins the head at `line` as another client of the engine set `set`
    /// (which a client of this same program opened: its [`Client::id`]).
    /// It sees the same engines and the hub's records of every task
    /// ([`Client::get_result`], [`Client::result_status`]); the engines stay
    /// when it closes. Load-balanced tasks are submitted by the client that
    /// opened the set ([`ClientError::NotOwner`] here).
    pub async fn attach(
        line: &JoinLine,
        password: Password,
        set: EngineSetId,
    ) -> Result<Client, ClientError> {
        Client::start(Session::attach(line, password, set.0).await?)
    }

    fn start(mut session: Session) -> Result<Client, ClientError> {
        let results = session.take_results().ok_or(SessionError::Closed)?;
        let waiting = balanced::Waiting::default();
        let (arrived_tx, arrived) = tokio::sync::watch::channel(0u64);
        let router = actix_rt::spawn(balanced::Router::run(
            results,
            session.heads(),
            session.pool(),
            waiting.clone(),
            arrived_tx,
        ));
        Ok(Client {
            session,
            engines: BTreeMap::new(),
            next_task: 0,
            waiting,
            arrived,
            router,
        })
    }

    /// The engine set's id on its head: what another client gives
    /// [`Client::attach`].
    pub fn id(&self) -> EngineSetId {
        EngineSetId(self.session.pool())
    }

    /// The engines' numbers now (asking the head; joining new engines).
    pub async fn ids(&mut self) -> Result<Vec<u32>, ClientError> {
        let EngineList(rows) = self
            .session
            .ask(Engines {
                pool: self.session.pool(),
            })
            .await?;
        let listed: Vec<u32> = rows.iter().map(|r| r.id).collect();
        self.engines.retain(|id, _| listed.contains(id));
        for row in rows {
            if self.engines.contains_key(&row.id) {
                continue;
            }
            let remote =
                self.session
                    .node()
                    .join(&row.line)
                    .await
                    .map_err(|e| ClientError::Engine {
                        engine: row.id,
                        reason: e.to_string(),
                    })?;
            self.engines.insert(
                row.id,
                EngineLink {
                    remote,
                    actor: row.engine,
                    pid: row.pid,
                    segments: (!row.host_key.is_empty() && row.host_key == crate::id::host_key())
                        .then(Default::default),
                },
            );
        }
        Ok(self.engines.keys().copied().collect())
    }

    /// Waits until at least `n` engines joined (or `timeout` passed); their numbers.
    pub async fn wait_for_engines(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<u32>, ClientError> {
        let since = Instant::now();
        loop {
            let ids = self.ids().await?;
            if ids.len() >= n {
                return Ok(ids);
            }
            if since.elapsed() > timeout {
                return Err(ClientError::TooFewEngines {
                    have: ids.len(),
                    want: n,
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of engine `id` (as its engine reported it).
    pub fn engine_pid(&self, id: u32) -> Option<u32> {
        self.engines.get(&id).map(|e| e.pid)
    }

    /// A view on some engines: one number (`-1` is the last), several, or
    /// [`Targets::All`]; evaluated now, against the engines known since the
    /// last [`Client::ids`].
    pub fn view(&self, targets: impl Into<Targets>) -> Result<DirectView<'_>, ClientError> {
        let have: Vec<u32> = self.engines.keys().copied().collect();
        let chosen = targets.into().resolve(&have)?;
        Ok(DirectView::new(self, chosen))
    }

    /// A view on every engine known now.
    pub fn direct_view_all(&self) -> DirectView<'_> {
        DirectView::new(self, self.engines.keys().copied().collect())
    }

    /// How busy each engine is (the hub's `queue_status`): load-balanced
    /// tasks it holds and has finished, and tasks waiting for an engine.
    pub async fn queue_status(&mut self) -> Result<QueueReport, ClientError> {
        let pool = self.session.pool();
        Ok(self.session.ask(QueueStatus { pool }).await?)
    }

    /// Aborts the load-balanced tasks `ids` (their [`AsyncResult::msg_ids`])
    /// that have not started: each fails with [`ClientError::Aborted`];
    /// those running or done go on. Returns the ones it aborted.
    pub async fn abort(&mut self, ids: &[u64]) -> Result<Vec<u64>, ClientError> {
        let pool = self.session.pool();
        let AbortedJobs(dropped) = self
            .session
            .ask(Abort {
                pool,
                indices: ids.to_vec(),
            })
            .await?;
        Ok(dropped)
    }

    /// The load-balanced tasks this client submitted whose result has not
    /// come yet (the hub's `outstanding`), in submit order.
    pub fn outstanding(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.waiting.iter().map(|e| *e.key()).collect();
        ids.sort_unstable();
        ids
    }

    /// Waits up to `timeout` until every task of `ids` (load-balanced tasks
    /// this client submitted, by [`AsyncResult::msg_ids`]) has its result
    /// here (the hub's `wait`); true if they all have. Joins a restarted
    /// head again meanwhile.
    pub async fn wait(&mut self, ids: &[u64], timeout: Duration) -> Result<bool, ClientError> {
        let waiting = self.waiting.clone();
        let all_here = move || ids.iter().all(|id| !waiting.contains_key(id));
        let mut arrived = self.arrived.clone();
        arrived.mark_unchanged();
        let until = async {
            // Until they are here, or the router stopped (no more come).
            while !all_here() && arrived.changed().await.is_ok() {}
        };
        if let Ok(joined) = tokio::time::timeout(timeout, self.session.alongside(until)).await {
            joined?;
        }
        Ok(all_here())
    }

    fn aborter(&self) -> balanced::Aborter {
        balanced::Aborter {
            heads: self.session.heads(),
            pool: self.session.pool(),
        }
    }

    /// A view that hands each task to whichever engine has room, through
    /// the head (which records it and runs it again if its engine dies).
    pub fn load_balanced_view(&mut self) -> LoadBalancedView<'_> {
        LoadBalancedView::new(self)
    }

    pub(crate) fn link(&self, id: u32) -> Result<&EngineLink, ClientError> {
        self.engines
            .get(&id)
            .ok_or_else(|| ClientError::NoSuchEngine {
                asked: i64::from(id),
                have: self.engines.keys().copied().collect(),
            })
    }

    /// Stops the engines `targets` for good (the seed's
    /// `shutdown(targets)`): their node agents do not start them again,
    /// and the others go on. Returns the engines asked to stop (those
    /// known and connected); each leaves [`Client::ids`] once it is gone.
    pub async fn shutdown_engines(
        &mut self,
        targets: impl Into<Targets>,
    ) -> Result<Vec<u32>, ClientError> {
        let have: Vec<u32> = self.engines.keys().copied().collect();
        let engines = targets.into().resolve(&have)?;
        let pool = self.session.pool();
        let Retired(stopped) = self.session.ask(ShutdownEngines { pool, engines }).await?;
        Ok(stopped)
    }

    /// Stops every engine of this set (the seed's `shutdown()`; also from a
    /// client that attached to it) and, with `hub`, the head as well (its
    /// node agents stay, for the next head); then closes this client. The
    /// engines' results go with them.
    pub async fn shutdown(mut self, hub: bool) -> Result<(), ClientError> {
        let pool = self.session.pool();
        self.session.ask(ClosePool { pool }).await?;
        if hub {
            self.session.tell(StopHead { nodes: false });
        }
        self.close().await;
        Ok(())
    }

    /// Closes the engines (they stop; an attached client leaves them to the
    /// client that opened them) and this client's node.
    pub async fn close(self) {
        self.router.abort();
        self.session.close().await;
    }
}
