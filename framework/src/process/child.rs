//! The child side: what a process started by `fork` runs instead of `main`.
//! Its node joins the parent's, starts this process's actor
//! ([`ProcessActor`]) and says hello to the tree's parent actor; then the
//! process actor takes the parent's messages — `Exec` runs the function on
//! a thread of its own, values and collective posts are filed for that
//! thread, which reads them with the blocking calls the seed's style
//! expects (`yield_value`, `parent().receive()`).

use std::io::BufRead;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

use crate::actor::Received;
use crate::id::{ActorId, host_key, host_name};
use crate::remote::value::{Payload, Value};
use crate::remote::{ActorRef, Node, remote_fn};
use crate::transport::{JoinLine, Password};
use crate::wire::{WireType, aligned_copy, type_tag};

use super::context::Tree;
use super::error::ProcessError;
use super::link::{ChildLink, Queues, refuse_in_async, spin_then_block};
use super::message::{Exec, Finished, Hello, Outcome, SEND_WINDOW, ToParent, Yielded};
use super::parent_actor::ParentActor;
use super::process_actor::ProcessActor;

/// What a child knows about itself, from the start protocol its parent set
/// ([`crate::config::ChildEnv`]).
struct Role {
    number: u32,
    parent: JoinLine,
    parent_actor: ActorId,
    listen: std::net::SocketAddr,
    same_host: bool,
    shm_threshold: usize,
}

impl Role {
    fn from_env() -> Result<Role, String> {
        use crate::config::vars;
        let env = crate::config::environment();
        let child = &env.child;
        fn get<'a>(v: &'a Option<String>, k: &str) -> Result<&'a str, String> {
            v.as_deref().ok_or_else(|| format!("{k} is not set"))
        }
        let parent: JoinLine = get(&child.parent, vars::PARENT)?
            .parse()
            .map_err(|e| format!("{}: {e}", vars::PARENT))?;
        let parent_actor = uuid::Uuid::parse_str(get(&child.parent_actor, vars::PARENT_ACTOR)?)
            .map_err(|e| format!("{}: {e}", vars::PARENT_ACTOR))?;
        let number = get(&child.id, vars::ID)?
            .parse()
            .map_err(|e| format!("{}: {e}", vars::ID))?;
        let listen = get(&child.listen, vars::LISTEN)?
            .parse()
            .map_err(|e| format!("{}: {e}", vars::LISTEN))?;
        let shm_threshold = get(&env.shm_threshold, vars::SHM_THRESHOLD)?
            .parse()
            .map_err(|e| format!("{}: {e}", vars::SHM_THRESHOLD))?;
        let theirs = child.parent_host.clone().unwrap_or_default();
        let mine = host_key();
        Ok(Role {
            number,
            parent,
            parent_actor: ActorId(parent_actor),
            listen,
            same_host: !mine.is_empty() && mine == theirs,
            shm_threshold,
        })
    }
}

/// True when this process was started by `fork`.
pub fn is_child() -> bool {
    crate::config::environment().is_child
}

/// This process's id: 0 for the top process, 1, 2, … for its children (the
/// seed's `parallel.id`). It is not a collective's rank.
pub fn id() -> u32 {
    Tree::global().link().map_or(0, |l| l.number)
}

/// This process's IP address as its parent reaches it ("127.0.0.1" on one machine).
pub fn ip() -> String {
    Tree::global()
        .link()
        .map_or_else(|| "127.0.0.1".to_string(), |l| l.ip.clone())
}

pub(crate) fn link() -> Result<&'static Arc<ChildLink>, ProcessError> {
    Tree::global().link().ok_or_else(|| {
        ProcessError::Misuse(
            "this call is for a child's function (started by fork + exec); this process is not one"
                .into(),
        )
    })
}

/// In a child's function: waits until the parent calls `join(value)` on
/// this child, and returns that value (the seed's `parallel.yield()`).
pub fn yield_value<T: WireType>() -> Result<T, ProcessError> {
    refuse_in_async("yield_value")?;
    let link = link()?;
    link.tell_blocking(Yielded { from: link.me })?;
    let incoming = {
        let queues = link.queues.lock().unwrap_or_else(|e| e.into_inner());
        spin_then_block(&queues.joins)?
    };
    Ok(incoming
        .open_in::<T>(link.segments.as_ref().map(|s| &s.mapped))
        .map_err(|e| ProcessError::from_value(e, 0))?
        .to_owned()?)
}

/// The parent, as a child's function sees it.
#[derive(Debug, Clone, Copy)]
pub struct Parent;

/// In a child: its parent. `None` in the top process.
pub fn parent() -> Option<Parent> {
    Tree::global().link().map(|_| Parent)
}

impl Parent {
    /// The parent's number (0: the top process, the seed's `parallel.parent.id`).
    pub fn id(&self) -> u32 {
        0
    }

    /// The id of the tree's parent actor, which every message of this child
    /// to its parent goes to.
    pub fn actor_id(&self) -> ActorId {
        Tree::global()
            .link()
            .map_or(ActorId::nil(), |l| l.parent.id())
    }

    /// Sends `value` to the parent (it reads it with `child.receive()`).
    /// Large values go through shared memory when parent and child share a
    /// machine. Waits while the parent has [`SEND_WINDOW`] of this child's
    /// values unread.
    pub fn send(&self, value: impl Payload) -> Result<(), ProcessError> {
        refuse_in_async("parent().send")?;
        let link = link()?;
        let value = Value::pack(
            &value,
            link.segments.as_ref().map(|s| &s.lent),
            link.shm_threshold,
        )
        .map_err(|e| ProcessError::from_value(e, 0))?;
        let credits = link.credits.clone();
        let Ok(permit) = link.runtime.block_on(credits.acquire_owned()) else {
            value.discard();
            return Err(ProcessError::Gone {
                id: 0,
                reason: "the link to the parent is closed".into(),
            });
        };
        link.tell_blocking(ToParent {
            from: link.me,
            value,
        })?;
        // Sent: its place in the parent's window is taken until the parent
        // reads it (a value not sent gives the place back with the permit).
        permit.forget();
        Ok(())
    }

    /// The next value the parent sent, as a read-only view (`to_owned()` for a copy).
    pub fn receive<T: WireType>(&self) -> Result<Received<T>, ProcessError> {
        refuse_in_async("parent().receive")?;
        let link = link()?;
        let incoming = {
            let queues = link.queues.lock().unwrap_or_else(|e| e.into_inner());
            spin_then_block(&queues.data)?
        };
        link.after_read()?;
        incoming
            .open_in::<T>(link.segments.as_ref().map(|s| &s.mapped))
            .map_err(|e| ProcessError::from_value(e, 0))
    }
}

/// Runs this process as a child and exits; never returns.
pub(crate) fn run() -> ! {
    if let Some(parent) = crate::config::environment()
        .child
        .parent_pid
        .as_deref()
        .and_then(|p| p.parse().ok())
    {
        super::spawn::die_with(parent);
    }
    let role = match Role::from_env() {
        Ok(role) => role,
        Err(e) => {
            eprintln!(
                "para||el child: bad start environment ({e}); a child is started by fork(), not by hand"
            );
            std::process::exit(2);
        }
    };
    let mut password = String::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    if lines.read_line(&mut password).unwrap_or(0) == 0 {
        eprintln!(
            "<parallel#{:03}> no password on stdin: the parent is gone",
            role.number
        );
        std::process::exit(2);
    }
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    drop(lines);
    // The parent holds our stdin: end of file means it is gone (or closed us).
    std::thread::spawn(|| {
        let mut sink = String::new();
        let stdin = std::io::stdin();
        while stdin
            .lock()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
        crate::transport::shm::cleanup_own();
        std::process::exit(0);
    });
    let code = actix_rt::System::new().block_on(serve(role, password));
    crate::transport::shm::cleanup_own();
    std::process::exit(code)
}

async fn serve(role: Role, password: String) -> i32 {
    let tag = format!("<parallel#{:03}>", role.number);
    // The parent proved the one-time password: it may spawn any
    // `#[actor(spawn)]` type here (supervised process children).
    let node = match Node::builder()
        .password(Password::new(password))
        .allow_all_registered()
        .listen(role.listen)
        .start()
        .await
    {
        Ok(node) => node,
        Err(e) => {
            eprintln!("{tag} could not start its node: {e}");
            return 3;
        }
    };
    let parent_node = match node.join(&role.parent).await {
        Ok(parent) => parent,
        Err(e) => {
            eprintln!("{tag} could not join its parent at {}: {e}", role.parent);
            return 4;
        }
    };
    let ip = std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(role.parent.addr).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_string());
    let (joins, joins_rx) = channel();
    let (data, data_rx) = channel();
    let (collective, collective_rx) = channel();
    let (exec_tx, exec_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let credits = Arc::new(tokio::sync::Semaphore::new(SEND_WINDOW));
    let actor = node.spawn(ProcessActor {
        joins,
        data,
        collective,
        credits: credits.clone(),
        exec: Some(exec_tx),
        stop: Some(stop_tx),
    });
    let parent = ActorRef::<ParentActor>::remote(role.parent_actor, parent_node.link());
    let link = Arc::new(ChildLink {
        number: role.number,
        me: actor.id(),
        parent: parent.clone(),
        parent_node: parent_node.clone(),
        node: node.clone(),
        segments: role.same_host.then(Default::default),
        shm_threshold: role.shm_threshold,
        ip: ip.clone(),
        runtime: tokio::runtime::Handle::current(),
        queues: Mutex::new(Queues {
            joins: joins_rx,
            data: data_rx,
            collective: collective_rx,
        }),
        credits,
        read: AtomicU32::new(0),
        ranks: Mutex::new(None),
        stash: Mutex::new(std::collections::VecDeque::new()),
    });
    Tree::global().set_link(link.clone());
    let hello = Hello {
        number: role.number,
        actor: actor.id(),
        node: node.id(),
        pid: std::process::id(),
        host: host_name(),
        ip,
        host_key: host_key(),
    };
    if let Err(e) = parent.ask(hello).await {
        eprintln!("{tag} could not greet its parent: {e}");
        return 5;
    }
    // The lease: when the parent's connection goes, so does this process.
    let leaving = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = parent_node.clone();
    let lease_tag = tag.clone();
    let lease_leaving = leaving.clone();
    actix_rt::spawn(async move {
        let reason = watched.closed().await;
        if lease_leaving.load(Ordering::Acquire) {
            // Our own orderly shutdown closed the link: let it finish.
            return;
        }
        tracing::info!("{lease_tag} parent gone ({reason}); exiting");
        crate::transport::shm::cleanup_own();
        std::process::exit(0);
    });
    // `Stop` ends the process in order, whatever it is doing: the node says
    // goodbye (the parent sees a clean end), then the process exits.
    let stop_node = node.clone();
    let stop_leaving = leaving.clone();
    actix_rt::spawn(async move {
        if stop_rx.await.is_ok() {
            stop_leaving.store(true, Ordering::Release);
            stop_node.shutdown().await;
            crate::transport::shm::cleanup_own();
            std::process::exit(0);
        }
    });
    let Ok(request) = exec_rx.await else {
        return 6;
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("parallel#{:03}", role.number))
        .spawn(move || {
            let _ = done_tx.send(run_function(&request));
        })
        .ok();
    let outcome = done_rx
        .await
        .unwrap_or_else(|_| Outcome::Failed("the function's thread died".into()));
    // A function that failed ends the process with status 1, so whoever
    // owns it (the tree's root supervisor) sees it did not end normally.
    let code = match &outcome {
        Outcome::Failed(message) => {
            eprintln!("{tag} {message}");
            1
        }
        Outcome::Returned(_) => 0,
    };
    // Wait until the parent has the outcome before leaving.
    let finished = Finished {
        from: link.me,
        outcome,
    };
    if leaving.load(Ordering::Acquire) {
        // The parent stopped this child (its node is shutting down): it
        // waits for no outcome, and the function ended because of that.
    } else if let Err(e) = parent.ask(finished).await {
        tracing::warn!("{tag} could not report its end to the parent: {e}");
    }
    leaving.store(true, Ordering::Release);
    node.shutdown().await;
    code
}

fn run_function(request: &Exec) -> Outcome {
    let Some(function) = remote_fn(type_tag(&request.name)) else {
        return Outcome::Failed(format!(
            "function {} is not registered in this binary: mark it #[parallel::remote] and run the same program on every host",
            request.name
        ));
    };
    let args = aligned_copy(&request.args);
    match function.invoke(&args) {
        Ok(result) => Outcome::Returned(result),
        Err(failure) => Outcome::Failed(failure.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocking_calls_refuse_an_async_thread_and_say_why() {
        let e = yield_value::<u32>().unwrap_err();
        assert!(
            matches!(&e, ProcessError::Misuse(m) if m.contains("yield_value blocks its thread")),
            "{e}"
        );
        let e = crate::collective::barrier().unwrap_err();
        assert!(
            matches!(&e, ProcessError::Misuse(m) if m.contains("collective::barrier blocks")),
            "{e}"
        );
        let mut v = [1.0f32; 4];
        let e = crate::collective::reduce(&mut v, crate::collective::ReduceOp::Sum, 0).unwrap_err();
        assert!(
            matches!(&e, ProcessError::Misuse(m) if m.contains("async form")),
            "{e}"
        );
    }

    #[test]
    fn outside_a_child_they_say_they_are_for_a_childs_function() {
        let e = yield_value::<u32>().unwrap_err();
        assert!(
            matches!(&e, ProcessError::Misuse(m) if m.contains("child's function")),
            "{e}"
        );
    }
}
