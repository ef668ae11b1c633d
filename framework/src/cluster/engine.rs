//! The engine role (s5): a process of the client's program, started by a
//! node agent like a pool's worker, that keeps a typed namespace
//! ([`EngineActor`]) and runs the program's `#[parallel::remote]` functions
//! when a client applies them. Engines are numbered by the head in the
//! order they join.
//!
//! A client reaches each engine directly (its node listens), so an apply
//! is one round trip client → engine; the head only keeps the directory.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use actix::Handler;
use rkyv::{Archive, Deserialize, Serialize};

use crate::remote::{ActorRef, Node, remote_fn};
use crate::transport::JoinLine;

use super::head::HeadActor;
use super::message::{EngineHello, EngineWelcome, Outcome, Panic};
use super::worker::{JobFailure, JobRunner, WorkerKind};

/// How many times an engine says hello before it waits for the next join.
const HELLO_TRIES: u32 = 3;

/// The worker kind under which a client opens its engines.
pub const ENGINE_KIND: &str = "parallel::engine";

/// A value in an engine's namespace: its bytes and its type.
struct Stored {
    tag: u64,
    type_name: String,
    held: Held,
}

/// A stored value's archived bytes: received in a message, or the
/// shared-memory file a client on this machine wrote them to, mapped
/// read-only (kept without a copy).
enum Held {
    Bytes(Vec<u8>),
    Mapped(crate::transport::shm::Mapping),
}

impl Held {
    fn bytes(&self) -> &[u8] {
        match self {
            Held::Bytes(b) => b,
            Held::Mapped(m) => m,
        }
    }
}

/// The largest value a client may hand over in shared memory.
const MAX_SHARED: u64 = 1 << 40;

/// The engine's actor: its namespace (name → value of any wire type).
#[derive(crate::Actor)]
#[actor(messages(Push, Pull, Clear), name = "parallel::cluster::EngineActor")]
pub struct EngineActor {
    namespace: HashMap<String, Stored>,
    /// Segments lent to the clients on this machine (the values they pull),
    /// and theirs as this engine maps them (the values they push).
    segments: crate::transport::segments::PeerSegments,
}

/// Stores a value under a name (replacing what was there).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = Pushed)]
pub struct Push {
    /// The name.
    pub name: String,
    /// The type's tag ([`crate::remote::value::tag_of`]).
    pub tag: u64,
    /// The type's name, for errors.
    pub type_name: String,
    /// The value, encoded (in the message, or in shared memory).
    pub body: Carried,
}

/// Reads the value under a name, as a type.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = Pulled)]
pub struct Pull {
    /// The name.
    pub name: String,
    /// The type asked for.
    pub tag: u64,
    /// Its name, for errors.
    pub type_name: String,
    /// Whether the asker runs on this machine: a large value then comes
    /// back in shared memory.
    pub same_host: bool,
}

/// Empties the namespace.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct Clear;

pub use pulled::{Carried, Pulled, Pushed};

#[allow(missing_docs)]
mod pulled {
    use rkyv::{Archive, Deserialize, Serialize};

    use crate::transport::shm::ShmRef;

    /// A value's archived bytes on their way between a client and an engine.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Carried {
        /// In the message.
        Bytes(Vec<u8>),
        /// In shared memory (both on one machine): a file the receiver
        /// maps and removes, or a segment lent by the sender, handed back
        /// when the receiver lets go of it.
        Shm(ShmRef),
    }

    /// The engine's answer to a [`super::Push`].
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Pushed {
        /// Stored.
        Stored,
        /// Not stored: why.
        Refused(String),
    }

    /// What a [`super::Pull`] found.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Pulled {
        /// The value, encoded.
        Value(Carried),
        /// Nothing under that name.
        Missing,
        /// A value of another type: its type's name.
        WrongType(String),
    }
}

impl Handler<Push> for EngineActor {
    type Result = actix::MessageResult<Push>;
    fn handle(&mut self, msg: Push, _: &mut actix::Context<Self>) -> Self::Result {
        let held = match msg.body {
            Carried::Bytes(bytes) => Held::Bytes(bytes),
            Carried::Shm(file) => match self.segments.mapped.open(&file, MAX_SHARED) {
                Ok(mapping) => Held::Mapped(mapping),
                Err(e) => {
                    return actix::MessageResult(Pushed::Refused(format!(
                        "cannot map the value the client wrote to shared memory: {e}"
                    )));
                }
            },
        };
        self.namespace.insert(
            msg.name,
            Stored {
                tag: msg.tag,
                type_name: msg.type_name,
                held,
            },
        );
        actix::MessageResult(Pushed::Stored)
    }
}

impl Handler<Pull> for EngineActor {
    type Result = actix::MessageResult<Pull>;
    fn handle(&mut self, msg: Pull, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult(match self.namespace.get(&msg.name) {
            None => Pulled::Missing,
            Some(s) if s.tag != msg.tag => Pulled::WrongType(s.type_name.clone()),
            Some(s) => {
                let bytes = s.held.bytes();
                let shared = (msg.same_host && bytes.len() >= crate::config::DEFAULT_SHM_THRESHOLD)
                    .then(|| self.segments.lent.write_bytes(bytes));
                match shared {
                    Some(Ok(file)) => Pulled::Value(Carried::Shm(file)),
                    // No room in shared memory: in the message then.
                    Some(Err(e)) => {
                        tracing::debug!("a pulled value goes in the message ({e})");
                        Pulled::Value(Carried::Bytes(bytes.to_vec()))
                    }
                    None => Pulled::Value(Carried::Bytes(bytes.to_vec())),
                }
            }
        })
    }
}

impl Handler<Clear> for EngineActor {
    type Result = ();
    fn handle(&mut self, _: Clear, _: &mut actix::Context<Self>) {
        self.namespace.clear();
    }
}

/// `line` with the address of the interface that routes to `toward` when
/// it listens on every interface.
fn reachable(mut line: JoinLine, toward: SocketAddr) -> JoinLine {
    if line.addr.ip().is_unspecified() {
        let ip = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect(toward).map(|_| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip())
            .unwrap_or(Ipv4Addr::LOCALHOST.into());
        line.addr.set_ip(ip);
    }
    line
}

/// What a worker process adds when it is an engine: the namespace actor,
/// and where clients reach its node.
pub(super) struct EngineSide {
    actor: ActorRef<EngineActor>,
    line: JoinLine,
    /// The number its head gave it (asked for again from a restarted head).
    number: std::sync::OnceLock<u32>,
}

impl EngineSide {
    /// Starts the namespace actor on `node` (whose head is at `head`).
    pub(super) fn start(node: &Node, head: SocketAddr) -> Self {
        EngineSide {
            actor: node.spawn(EngineActor {
                namespace: HashMap::new(),
                segments: Default::default(),
            }),
            line: reachable(node.join_line(), head),
            number: std::sync::OnceLock::new(),
        }
    }

    /// Introduces the engine to its head; false when its pool is gone.
    pub(super) async fn hello(
        &self,
        head: &ActorRef<HeadActor>,
        pool: uuid::Uuid,
        worker: crate::id::ActorId,
    ) -> bool {
        let hello = EngineHello {
            pool,
            engine: self.actor.clone(),
            line: self.line.clone(),
            pid: std::process::id(),
            host_key: crate::id::host_key(),
            worker,
            number: self.number.get().copied(),
        };
        for _ in 0..HELLO_TRIES {
            match head.ask(hello.clone()).await {
                Ok(EngineWelcome::Joined(id)) => {
                    if self.number.set(id).is_err() && self.number.get() != Some(&id) {
                        tracing::warn!(
                            engine = id,
                            "the restarted head gave this engine another number"
                        );
                    }
                    tracing::info!(engine = id, "engine joined its head");
                    return true;
                }
                Ok(EngineWelcome::Gone) => return false,
                Err(e) => {
                    tracing::warn!("engine hello failed: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        // The link's loss (if that is why) makes the worker join again.
        true
    }
}

/// One task for an engine through a load-balanced view: a registered
/// function (by the tag of its name) and its encoded arguments.
#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
pub struct Task {
    /// The tag of the function's registered name.
    pub function: u64,
    /// Its arguments, encoded as a tuple.
    pub args: Vec<u8>,
    /// A chunk of argument tuples (the view's `chunksize`) instead of
    /// `args`: the function runs on each in order, and the task's output is
    /// the list of their outcomes (one that panics fails alone).
    pub chunk: Vec<Vec<u8>>,
    /// A registered function returning `bool` (by tag) and its encoded
    /// arguments: the task runs only on an engine where it returns true
    /// (the seed's `@depend`).
    pub predicate: Option<(u64, Vec<u8>)>,
}

/// Runs the registered function `function` on `args`: its encoded output.
fn call(function: u64, args: &[u8]) -> Result<Vec<u8>, JobFailure> {
    let function = remote_fn(function).ok_or_else(|| {
        JobFailure::Invalid(format!(
            "no function with tag {function:#018x} is registered in this program; mark it #[parallel::remote]"
        ))
    })?;
    match function.invoke(args) {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(failure) if failure.code == crate::actor::code::PANICKED => {
            Err(JobFailure::Raised(Panic {
                message: failure.message,
                location: failure.location,
            }))
        }
        Err(failure) => Err(JobFailure::Invalid(failure.message)),
    }
}

/// The engine as a worker: runs [`Task`]s with the program's registered
/// functions; a function that panics fails its task only.
struct TaskRunner;

impl JobRunner for TaskRunner {
    fn run(&mut self, job: &[u8]) -> Result<Vec<u8>, JobFailure> {
        let task = crate::wire::decode_owned::<Task>(job)
            .map_err(|e| JobFailure::Invalid(e.to_string()))?;
        if let Some((predicate, args)) = &task.predicate {
            let met = call(*predicate, args)?;
            let met = crate::wire::decode_owned::<bool>(&met).map_err(|e| {
                JobFailure::Invalid(format!("the task's depend function gave no bool: {e}"))
            })?;
            if !met {
                return Err(JobFailure::Unmet);
            }
        }
        if task.chunk.is_empty() {
            return call(task.function, &task.args);
        }
        let outcomes: Vec<Outcome> = task
            .chunk
            .iter()
            .map(|args| match call(task.function, args) {
                Ok(bytes) => Outcome::Output(bytes),
                Err(JobFailure::Raised(panic)) => Outcome::Panicked(panic),
                Err(JobFailure::Invalid(why)) => Outcome::Invalid(why),
                Err(JobFailure::Unmet) => Outcome::Unmet,
            })
            .collect();
        crate::wire::encode(&outcomes)
            .map(|b| b.to_vec())
            .map_err(|e| JobFailure::Invalid(format!("cannot encode the chunk's outputs: {e}")))
    }

    fn update(&mut self, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

fn engine_kind() -> &'static str {
    ENGINE_KIND
}

fn start_engine(_: &[u8]) -> Result<Box<dyn JobRunner>, String> {
    Ok(Box::new(TaskRunner))
}

inventory::submit! {
    WorkerKind {
        name: engine_kind,
        start: start_engine,
    }
}
