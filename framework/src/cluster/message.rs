//! The messages between a cluster's actors: typed rkyv messages, each sent
//! with `ActorRef::ask` or `tell`. Jobs, results, updates and init data
//! travel as bytes the head never decodes (the pool layer encodes them with
//! the user's types; a worker decodes them validated).
//!
//! | from → to | message | answer |
//! |---|---|---|
//! | agent → head | [`AgentHello`] | [`AgentWelcome`] |
//! | head → agent | [`RunProgram`], [`StopProgram`], [`RetireWorker`] | `()` |
//! | agent → head | [`FetchChunk`] | [`Chunk`] |
//! | worker → head | [`WorkerHello`] | [`WorkerWelcome`] |
//! | head → worker | [`Jobs`], [`Update`] | `()` |
//! | worker → head | [`Done`] | `()` |
//! | pool → head | [`StageLocal`], [`OpenPool`], [`Upload`], [`UploadLocal`], [`Submit`], [`PushUpdate`], [`ResultsRead`], [`ClosePool`] | see each |
//! | head → pool | [`Results`] | `()` |
//! | client → head | [`Engines`], [`QueueStatus`], [`Abort`], [`HubQuery`], [`PurgeResults`], [`ShutdownEngines`] | see each |
//! | anyone → head | [`Status`], [`StopHead`] | [`StatusReport`], `()` |

use rkyv::{Archive, Deserialize, Serialize};
use uuid::Uuid;

use crate::id::{ActorId, NodeId};
use crate::launch::program::Program;
use crate::remote::ActorRef;
use crate::transport::JoinLine;

use super::agent::AgentActor;
use super::head::PoolOwner;
use super::worker::WorkerActor;

pub use replies::*;

/// A node agent introduces itself to the head.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = AgentWelcome)]
pub struct AgentHello {
    /// The agent.
    pub agent: ActorRef<AgentActor>,
    /// Its host name.
    pub host: String,
    /// How many workers it runs per pool.
    pub workers: u32,
    /// How many GPUs it saw (each worker then sees one).
    pub gpus: u32,
    /// What its workers offer (`gpu` when it saw one).
    pub resources: Vec<String>,
    /// Its operating system (`std::env::consts::OS`).
    pub os: String,
    /// Its architecture (`std::env::consts::ARCH`).
    pub arch: String,
}

/// The head tells an agent to run `workers` of a pool's program.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct RunProgram {
    /// The pool.
    pub pool: Uuid,
    /// Its program (fetched from the head by hash when not cached).
    pub program: Program,
    /// The registered worker type the program runs in worker role.
    pub kind: String,
    /// Where the head keeps it, for an agent on the head's own machine
    /// (which copies it instead of fetching it over the network).
    pub local: Option<LocalCopy>,
}

/// A file on one machine: a copy on that same machine may be read from
/// it instead of going over the network (it is verified all the same).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LocalCopy {
    /// The host key ([`crate::id::host_key`]: machine and network namespace).
    pub host_key: String,
    /// The file's path there.
    pub path: String,
}

/// The head tells an agent that a pool is gone: stop its workers.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct StopProgram {
    /// The pool.
    pub pool: Uuid,
}

/// The head tells an agent to stop one worker of a pool for good (its
/// supervisor does not start it again): the one with process id `pid`.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct RetireWorker {
    /// The pool.
    pub pool: Uuid,
    /// The worker's process id.
    pub pid: u32,
}

/// Stops engines of a set for good (the seed's `shutdown(targets)`); the
/// others go on. The answer names the engines asked to stop.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = Retired)]
pub struct ShutdownEngines {
    /// The engine set.
    pub pool: Uuid,
    /// The engines, by number.
    pub engines: Vec<u32>,
}

/// The engines a [`ShutdownEngines`] asked to stop.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Retired(pub Vec<u32>);

/// An agent asks for a part of a program the head stores.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = Chunk)]
pub struct FetchChunk {
    /// The program's SHA-256.
    pub sha256: [u8; 32],
    /// Where the part starts.
    pub offset: u64,
}

/// A worker process introduces itself (again after the head restarted).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = WorkerWelcome)]
pub struct WorkerHello {
    /// The pool it works for.
    pub pool: Uuid,
    /// The worker's actor.
    pub worker: ActorRef<WorkerActor>,
    /// The agent that started it.
    pub agent: ActorId,
    /// How many jobs it may hold at once.
    pub credit: u32,
}

/// An engine introduces itself (again after the head restarted).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = EngineWelcome)]
pub struct EngineHello {
    /// The engine set (pool) it belongs to.
    pub pool: Uuid,
    /// The engine's actor.
    pub engine: ActorRef<super::engine::EngineActor>,
    /// Where its node listens (clients join it to apply functions).
    pub line: JoinLine,
    /// Its process id.
    pub pid: u32,
    /// Its host key ([`crate::id::host_key`]: machine and network namespace): a client on the same
    /// machine moves large values through shared memory.
    pub host_key: String,
    /// Its worker actor (which runs its load-balanced tasks).
    pub worker: ActorId,
    /// The number a head gave it before (a restarted head gives it again).
    pub number: Option<u32>,
}

/// Asks the head for the engines of a pool, by number.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = EngineList)]
pub struct Engines {
    /// The engine set.
    pub pool: Uuid,
}

/// One engine, as the head lists it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub struct EngineRow {
    /// Its number (join order).
    pub id: u32,
    /// Its actor.
    pub engine: ActorRef<super::engine::EngineActor>,
    /// Where its node listens.
    pub line: JoinLine,
    /// Its process id.
    pub pid: u32,
    /// Its host key ([`crate::id::host_key`]).
    pub host_key: String,
    /// Its worker actor (which runs its load-balanced tasks).
    pub worker: ActorId,
}

/// Asks the head how busy each engine of a pool is (the hub's `queue_status`).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = QueueReport)]
pub struct QueueStatus {
    /// The engine set.
    pub pool: Uuid,
}

/// One engine's queue.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EngineQueue {
    /// The engine's number.
    pub engine: u32,
    /// Load-balanced tasks it holds now.
    pub queued: u32,
    /// Load-balanced tasks it finished since it joined.
    pub completed: u64,
}

/// Every engine's queue, and the tasks not handed out yet.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct QueueReport {
    /// By engine number.
    pub engines: Vec<EngineQueue>,
    /// Tasks waiting for an engine.
    pub unassigned: u64,
}

/// The engines of a pool, by number.
#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub struct EngineList(pub Vec<EngineRow>);

/// One job for a worker: its index in its pool and the try it is.
#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub struct JobOrder {
    /// The job's index in its pool.
    pub index: u64,
    /// Which try this is (a result is taken only from the latest one).
    pub attempt: u32,
    /// The job, encoded by the pool.
    pub job: Vec<u8>,
}

/// Jobs for a worker, to run in order.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Jobs {
    /// The jobs.
    pub jobs: Vec<JobOrder>,
}

/// An update for every worker of a pool, handled between jobs, in order.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Update {
    /// Its number in the pool (1, 2, ...).
    pub seq: u64,
    /// The update, encoded by the pool.
    pub update: Vec<u8>,
}

/// What a job gave.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job's index.
    pub index: u64,
    /// The try that ran.
    pub attempt: u32,
    /// Its output or failure.
    pub output: Outcome,
    /// When and where it ran.
    pub meta: JobMeta,
}

/// When and where a job ran and what it printed (the seed's metadata).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMeta {
    /// The engine that ran it (set by the head; `None` for a pool's
    /// worker, or a job that never ran).
    pub engine: Option<u32>,
    /// When it started, in microseconds since the Unix epoch, by its
    /// worker's clock (0: it never ran).
    pub started_us: u64,
    /// When it ended, likewise.
    pub completed_us: u64,
    /// What it printed with `parallel::print!`.
    pub printed: String,
}

/// A panic a worker caught: its message and where it happened.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    /// The panic's message.
    pub message: String,
    /// Where (`file:line`), when the worker's panic hook noted it.
    pub location: Option<String>,
}

impl std::fmt::Display for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.message, crate::remote::at(&self.location))
    }
}

/// A finished job's result as the head keeps and sends it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Finished {
    /// Its output or failure.
    pub output: Outcome,
    /// When and where it ran.
    pub meta: JobMeta,
}

/// Results of a worker's jobs.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Done {
    /// The worker.
    pub worker: ActorId,
    /// What its jobs gave, in the order they ran.
    pub results: Vec<JobOutcome>,
}

/// A pool opens (or, after its head restarted, resumes) on the head.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = Opened)]
pub struct OpenPool {
    /// The pool's program (the owner's own executable).
    pub program: Program,
    /// The registered worker type.
    pub kind: String,
    /// The workers' init data, encoded.
    pub init: Vec<u8>,
    /// Where its results go.
    pub owner: ActorRef<PoolOwner>,
    /// The pool to resume (its head restarted, or its link dropped).
    pub resume: Option<Uuid>,
    /// A copy of the program the head made from a file handed over on its
    /// machine ([`StageLocal`]): kept as the program if its bytes are
    /// `program`.
    pub staged: Option<Uuid>,
}

/// A part of a program the owner sends (the head asked for it in [`Opened`]).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = Uploaded)]
pub struct Upload {
    /// The program.
    pub program: Program,
    /// Where this part starts.
    pub offset: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// An owner on the head's machine offers the head its executable, to be
/// copied into the store without being sent. The head answers with a
/// token and a Unix socket of its machine ([`Staging::Handoff`]); the
/// owner hands the head its open executable there with the token
/// (`SCM_RIGHTS`), and the head copies and hashes it and answers the hash
/// on that socket. The copy becomes the program when [`OpenPool`] names
/// the token with that hash. The head reads only a file the owner itself
/// opened and gave it, so whoever asks learns nothing of a file it could
/// not read.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = Staging)]
pub struct StageLocal {
    /// The owner's host key ([`crate::id::host_key`]): the head refuses an
    /// owner on another machine.
    pub host_key: String,
}

/// The owner's program, instead of [`Upload`]s, from the copy the head
/// made of the executable an owner on its machine handed it
/// ([`StageLocal`]): taken if its bytes are `program`.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = Uploaded)]
pub struct UploadLocal {
    /// The program.
    pub program: Program,
    /// The copy's token.
    pub staged: Uuid,
}

/// Jobs of a pool, numbered by the owner.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = Submitted)]
pub struct Submit {
    /// The pool.
    pub pool: Uuid,
    /// (index, job) pairs.
    pub jobs: Vec<(u64, Vec<u8>)>,
    /// What every job of this submit waits for and how often it is tried
    /// (`None`: nothing, and [`super::head::MAX_TRIES`] tries).
    pub flags: Option<TaskFlags>,
}

/// A load-balanced task's dependencies and retries (the seed's `after`,
/// `follow`, `timeout`, `retries`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct TaskFlags {
    /// Tasks that must be done before it starts (time dependencies).
    pub after: Vec<u64>,
    /// Tasks that must be done, all on one engine, where it then runs
    /// (location dependencies).
    pub follow: Vec<u64>,
    /// Whether a dependency that failed makes it impossible (else it runs
    /// once its dependencies are done, whatever they gave).
    pub success_only: bool,
    /// Most milliseconds it waits for its dependencies (0: no limit).
    pub timeout_ms: u64,
    /// How many times it runs again when its engine dies while running it
    /// (`None`: the head's default).
    pub retries: Option<u32>,
    /// The engines (by number) it may run on (empty: any).
    pub targets: Vec<u32>,
    /// Resources its engine's node must offer (`parallel node --resource`).
    pub require: Vec<String>,
}

impl TaskFlags {
    /// Whether it waits for other tasks or for one of its target engines.
    pub fn waits(&self) -> bool {
        !self.after.is_empty()
            || !self.follow.is_empty()
            || !self.targets.is_empty()
            || !self.require.is_empty()
    }
}

/// Jobs of a pool that have not started are dropped: each one's result is
/// [`Outcome::Aborted`]; jobs already running or done go on. The answer
/// names the jobs it dropped.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = AbortedJobs)]
pub struct Abort {
    /// The pool.
    pub pool: Uuid,
    /// The jobs to drop.
    pub indices: Vec<u64>,
}

/// Asks the hub where tasks of an engine set stand, and for the results of
/// those done (`with_results`): the seed's `result_status` and
/// `get_result`, for any client, about any client's tasks.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = HubRecords)]
pub struct HubQuery {
    /// The engine set.
    pub pool: Uuid,
    /// The tasks.
    pub indices: Vec<u64>,
    /// Whether to send the results of the completed ones.
    pub with_results: bool,
}

/// Removes results from the hub (and its ledger): `indices`, or every
/// result (`None`). A result its client has not read yet still reaches it
/// (and is forgotten then). Tasks not done are never purged: naming one
/// refuses the whole purge.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = Purged)]
pub struct PurgeResults {
    /// The engine set.
    pub pool: Uuid,
    /// The tasks, or all.
    pub indices: Option<Vec<u64>>,
}

/// An update for every worker of a pool, present and future.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = Submitted)]
pub struct PushUpdate {
    /// The pool.
    pub pool: Uuid,
    /// The update, encoded.
    pub update: Vec<u8>,
}

/// Results of a pool, from the head to its owner.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct Results {
    /// The pool.
    pub pool: Uuid,
    /// (index, result) pairs.
    pub results: Vec<(u64, Finished)>,
}

/// The owner has these results: the head forgets them.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug)]
#[message(result = ())]
pub struct ResultsRead {
    /// The pool.
    pub pool: Uuid,
    /// The indices read.
    pub indices: Vec<u64>,
}

/// The owner closes its pool: queued and running jobs are dropped, the
/// workers stop.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct ClosePool {
    /// The pool.
    pub pool: Uuid,
}

/// Asks the head what runs where.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = StatusReport)]
pub struct Status;

/// Asks the head to stop (with its nodes when `nodes`).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct StopHead {
    /// Stop every node agent too.
    pub nodes: bool,
}

/// Asks an agent what its processes use now, what its supervisors did and
/// its GPUs (for the dashboard).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = super::usage::NodeUsage)]
pub struct Usage;

/// Asks an agent to stop.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct StopAgent;

/// One node in a [`StatusReport`].
#[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// The agent's node.
    #[serde(serialize_with = "super::view::display")]
    pub node: NodeId,
    /// Its host name.
    pub host: String,
    /// Workers per pool.
    pub workers: u32,
    /// GPUs seen.
    pub gpus: u32,
    /// Workers connected now, over all pools.
    pub connected: u32,
    /// Whether the agent answered the head in time.
    pub up: bool,
    /// CPU of the agent and its workers (percent of one core) since the
    /// head last asked, when the agent said.
    pub cpu_percent: Option<f32>,
    /// Resident memory of the agent and its workers, when it said.
    pub rss_bytes: Option<u64>,
}

/// One pool in a [`StatusReport`] and on the dashboard.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, PartialEq)]
pub struct PoolRow {
    /// The pool.
    pub pool: Uuid,
    /// Its worker type.
    pub kind: String,
    /// Workers connected.
    pub workers: u32,
    /// Jobs queued (or waiting for their dependencies).
    pub queued: u64,
    /// Jobs handed to workers and not back yet.
    pub running: u64,
    /// Jobs accepted since the head started (with those restored from its
    /// ledger).
    pub submitted: u64,
    /// Jobs done since the head started.
    pub done: u64,
    /// Of those, failures.
    pub failed: u64,
    /// Jobs accepted that are neither queued, running nor done (0 unless
    /// the head lost one).
    pub lost: u64,
    /// Results not read by the owner yet.
    pub unread: u64,
    /// Bytes of queued and running jobs.
    pub queued_bytes: u64,
    /// Whether its owner is connected.
    pub owner_connected: bool,
}

/// Answers and outcomes. (rkyv's derive writes helper types for the
/// variants of an archived enum, without docs: allowed here.)
#[allow(missing_docs)]
mod replies {
    use rkyv::{Archive, Deserialize, Serialize};
    use uuid::Uuid;

    use super::{Finished, NodeRow, PoolRow};

    /// The head's answer to an agent.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum AgentWelcome {
        /// Joined.
        Joined,
        /// Refused: why.
        Refused(String),
    }

    /// A part of a program.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Chunk {
        /// The bytes (empty at the end).
        Bytes(Vec<u8>),
        /// The head does not have it: why.
        Missing(String),
    }

    /// The head's answer to an engine.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum EngineWelcome {
        /// Joined, with this number.
        Joined(u32),
        /// Its pool is gone: exit.
        Gone,
    }

    /// The head's answer to a worker.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum WorkerWelcome {
        /// Start: build the worker from `init`, then handle `updates` in order.
        Start {
            init: Vec<u8>,
            updates: Vec<(u64, Vec<u8>)>,
        },
        /// The pool is gone: exit.
        Gone,
    }

    /// What a job gave.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Outcome {
        /// Its output, encoded.
        Output(Vec<u8>),
        /// It panicked: the message and where.
        Panicked(super::Panic),
        /// Its bytes were not a valid job (or its output could not be encoded).
        Invalid(String),
        /// Its workers went down too many times while running it.
        Died(String),
        /// It was aborted before it started.
        Aborted,
        /// Its dependencies were not met within its timeout.
        DependencyTimeout,
        /// Its dependencies can never be met: why.
        Impossible(String),
        /// Its worker may not run it (its `depend` predicate said no there):
        /// the head hands it to another worker, never to its owner.
        Unmet,
    }

    /// Where one task stands on the hub.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Record {
        /// Submitted, not done.
        Pending,
        /// Done: its result when it was asked for.
        Completed(Option<Finished>),
        /// Not on the hub: never submitted, or purged (also by the head's
        /// results limit).
        Unknown,
    }

    /// The hub's answer to [`super::HubQuery`].
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum HubRecords {
        /// One record per task asked about, in the order asked.
        Records(Vec<Record>),
        /// The head has no such engine set.
        NoSuchSet,
    }

    /// The hub's answer to [`super::PurgeResults`].
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Purged {
        /// These results were removed.
        Purged(Vec<u64>),
        /// Nothing was removed: these tasks are not done.
        Outstanding(Vec<u64>),
        /// The head has no such engine set.
        NoSuchSet,
    }

    /// The jobs an [`super::Abort`] dropped (the others had started or
    /// finished, or were never submitted).
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct AbortedJobs(pub Vec<u64>);

    /// The head's answer to [`super::OpenPool`].
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Opened {
        /// Open: the pool's id, whether the head needs the program uploaded,
        /// and how many updates it holds.
        Ready {
            pool: Uuid,
            upload: bool,
            updates: u64,
        },
        /// Refused: why.
        Refused(String),
    }

    /// The head's answer to [`super::StageLocal`].
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Staging {
        /// Hand the executable over, with `token`, on the Unix socket with
        /// the abstract name `socket`; [`super::OpenPool`] then names the
        /// copy by `token`.
        Handoff {
            /// What the file handed over is for (once, for a minute).
            token: Uuid,
            /// The socket's abstract name (no leading NUL).
            socket: String,
        },
        /// Not here (the owner is on another machine, or the head takes no
        /// more copies now): why.
        Refused(String),
    }

    /// The head's answer to [`super::Upload`].
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Uploaded {
        /// Send the next part.
        More,
        /// The program is stored and verified.
        Stored,
        /// Refused: why.
        Refused(String),
    }

    /// The head's answer to [`super::Submit`] and [`super::PushUpdate`]:
    /// given once the jobs are in the ledger and there is room for them.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Submitted {
        /// Accepted (durable).
        Accepted,
        /// Refused: why.
        Refused(String),
    }

    /// What the head knows, for `parallel status`.
    #[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, PartialEq)]
    pub struct StatusReport {
        /// The head's join line.
        pub join_line: String,
        /// Node agents.
        pub nodes: Vec<NodeRow>,
        /// Pools.
        pub pools: Vec<PoolRow>,
        /// The nodes' GPUs (those whose agents answered in time).
        pub gpus: Vec<crate::cluster::gpus::GpuRow>,
        /// Jobs since the head started, over every pool.
        pub totals: JobTotals,
    }

    /// Jobs since the head started, over every pool, in a [`StatusReport`]
    /// and on the dashboard (zero when the head records no activity).
    #[derive(
        Archive,
        Serialize,
        Deserialize,
        serde::Serialize,
        Debug,
        Clone,
        Copy,
        Default,
        PartialEq,
        Eq,
    )]
    pub struct JobTotals {
        /// Accepted.
        pub submitted: u64,
        /// Handed to workers, each try counted.
        pub started: u64,
        /// Results taken, failures included.
        pub done: u64,
        /// Failed results.
        pub failed: u64,
        /// Handed out again after their worker went down.
        pub retries: u64,
        /// Lost track of, over the open pools (must be 0).
        pub lost: u64,
    }
}
