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

use crate::remote::Node;
use crate::transport::{JoinLine, Password};

use super::message::{EngineHello, EngineWelcome};
use super::worker::{WorkerStart, join_head, sigterm};

/// The worker kind under which a client opens its engines.
pub const ENGINE_KIND: &str = "parallel::engine";

/// A value in an engine's namespace: its bytes and its type.
struct Stored {
    tag: u64,
    type_name: String,
    bytes: Vec<u8>,
}

/// The engine's actor: its namespace (name → value of any wire type).
#[derive(crate::Actor)]
#[actor(messages(Push, Pull, Clear), name = "parallel::cluster::EngineActor")]
pub struct EngineActor {
    namespace: HashMap<String, Stored>,
}

/// Stores a value under a name (replacing what was there).
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone)]
#[message(result = ())]
pub struct Push {
    /// The name.
    pub name: String,
    /// The type's tag ([`crate::remote::value::tag_of`]).
    pub tag: u64,
    /// The type's name, for errors.
    pub type_name: String,
    /// The value, encoded.
    pub bytes: Vec<u8>,
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
}

/// Empties the namespace.
#[derive(crate::Message, Archive, Serialize, Deserialize, Debug, Clone, Copy)]
#[message(result = ())]
pub struct Clear;

pub use pulled::Pulled;

#[allow(missing_docs)]
mod pulled {
    use rkyv::{Archive, Deserialize, Serialize};

    /// What a [`super::Pull`] found.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub enum Pulled {
        /// The value, encoded.
        Value(Vec<u8>),
        /// Nothing under that name.
        Missing,
        /// A value of another type: its type's name.
        WrongType(String),
    }
}

impl Handler<Push> for EngineActor {
    type Result = ();
    fn handle(&mut self, msg: Push, _: &mut actix::Context<Self>) {
        self.namespace.insert(
            msg.name,
            Stored {
                tag: msg.tag,
                type_name: msg.type_name,
                bytes: msg.bytes,
            },
        );
    }
}

impl Handler<Pull> for EngineActor {
    type Result = actix::MessageResult<Pull>;
    fn handle(&mut self, msg: Pull, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult(match self.namespace.get(&msg.name) {
            None => Pulled::Missing,
            Some(s) if s.tag != msg.tag => Pulled::WrongType(s.type_name.clone()),
            Some(s) => Pulled::Value(s.bytes.clone()),
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

/// Joins the head (again after it restarted), introduces the engine and
/// serves until the pool is gone, the head stays away past
/// [`super::worker::HEAD_PATIENCE`], or SIGTERM; the exit code.
pub(super) async fn serve(start: WorkerStart) -> i32 {
    let password = match Password::resolve() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("para||el engine: {e}");
            return 2;
        }
    };
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let node = match Node::builder()
        .listen(listen)
        .password(password)
        .start()
        .await
    {
        Ok(n) => n,
        Err(e) => {
            eprintln!("para||el engine: cannot start its node: {e}");
            return 2;
        }
    };
    let line = reachable(node.join_line(), start.head.addr);
    let actor = node.spawn(EngineActor {
        namespace: HashMap::new(),
    });
    let Some(mut term) = sigterm("engine") else {
        return 2;
    };
    let code = loop {
        let Some((remote, head)) = join_head(&node, &start.head, "engine").await else {
            break 1;
        };
        let hello = EngineHello {
            pool: start.pool,
            engine: actor.clone(),
            line: line.clone(),
            pid: std::process::id(),
        };
        match head.ask(hello).await {
            Ok(EngineWelcome::Joined(id)) => tracing::info!(engine = id, "engine joined its head"),
            Ok(EngineWelcome::Gone) => break 0,
            Err(e) => {
                tracing::warn!("engine hello failed: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        tokio::select! {
            _ = term.recv() => break 0,
            _ = remote.closed() => tracing::info!("engine lost its head; joining again"),
        }
    };
    let _ = start.agent;
    node.shutdown().await;
    code
}
