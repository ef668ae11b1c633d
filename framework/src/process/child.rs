//! The child side: what a process started by `fork` runs instead of `main`.
//! Its node joins the parent's, starts this process's actor
//! ([`ProcessActor`]) and says hello to the tree's parent actor; then the
//! process actor takes the parent's messages — `Exec` runs the function on
//! a thread of its own, values and collective posts are filed for that
//! thread, which reads them with the blocking calls the seed's style
//! expects (`yield_value`, `parent().receive()`).

use std::io::BufRead;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};

use actix::Handler;

use crate::actor::Received;
use crate::id::{ActorId, boot_id, host_name};
use crate::remote::value::{Incoming, Payload, Value};
use crate::remote::{ActorRef, Node, RemoteNode, remote_fn};
use crate::transport::{JoinLine, Password};
use crate::wire::{WireType, aligned_copy, type_tag};

use super::context::Tree;
use super::error::ProcessError;
use super::message::{
    Calibrate, CollectiveDown, CollectiveMsg, CollectiveUp, Credit, Exec, Finished, Hello, Joined,
    Outcome, ToChild, ToParent, Yielded,
};
use super::parent_actor::ParentActor;

/// Values sent with `send` that may be in flight to the other side before
/// the sender waits for it to read some (each side returns credit as it reads).
pub const SEND_WINDOW: usize = 64;

/// How long a child's function spins for a message before it parks: a
/// reply often comes within microseconds, and waking a parked thread on
/// another vCPU costs about 70 µs here.
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

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
        let theirs = child.parent_boot.clone().unwrap_or_default();
        let mine = boot_id();
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

/// What the process actor files for the function's thread.
struct Queues {
    joins: Receiver<Incoming>,
    data: Receiver<Incoming>,
    collective: Receiver<CollectiveMsg>,
}

/// A child process's link to its parent: what its function talks through.
pub(crate) struct ChildLink {
    number: u32,
    /// This process's actor.
    me: ActorId,
    /// The tree's parent actor.
    parent: ActorRef<ParentActor>,
    /// The parent's node.
    parent_node: RemoteNode,
    node: Node,
    same_host: bool,
    shm_threshold: usize,
    ip: String,
    runtime: tokio::runtime::Handle,
    queues: Mutex<Queues>,
    /// Values this child may still send before the parent reads some.
    credits: Arc<tokio::sync::Semaphore>,
    /// Values read since credit was last returned to the parent.
    read: AtomicU32,
    /// This child's rank and its group's size, as the parent last announced.
    ranks: Mutex<Option<(usize, usize)>>,
    /// Collective posts read while waiting for the ranks, not handed out yet.
    stash: Mutex<std::collections::VecDeque<CollectiveMsg>>,
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

/// Refuses a blocking call made on an async runtime's thread (it would
/// stall that runtime, or panic inside tokio).
pub(crate) fn refuse_in_async(what: &str) -> Result<(), ProcessError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(ProcessError::Misuse(format!(
            "{what} blocks its thread, and this thread runs an async runtime: call it from the child's function (which runs on a thread of its own), or use the async form"
        )));
    }
    Ok(())
}

impl ChildLink {
    /// The parent's node and this process's runtime, for the layers above
    /// that talk to the parent on their own (the work queues, collectives).
    pub(crate) fn parent_node(&self) -> &RemoteNode {
        &self.parent_node
    }

    /// This process's runtime (to block on from the function's thread).
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// This process's node.
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Tells the parent actor `msg`, from the function's thread.
    fn tell_blocking<M>(&self, msg: M) -> Result<(), ProcessError>
    where
        M: crate::Message,
        ParentActor: Handler<M> + Handler<crate::actor::Deliver<M>>,
    {
        self.runtime
            .block_on(self.parent.tell(msg))
            .map_err(|e| ProcessError::Gone {
                id: 0,
                reason: e.to_string(),
            })
    }

    /// The next collective post from the parent (blocks this thread). A
    /// group's ranks are noted on the way ([`ChildLink::ranks`]).
    pub(crate) fn next_collective(&self) -> Result<CollectiveMsg, ProcessError> {
        if let Some(msg) = lock(&self.stash).pop_front() {
            return Ok(msg);
        }
        let queues = lock(&self.queues);
        loop {
            match spin_then_block(&queues.collective)? {
                CollectiveMsg::Ranks { rank, size } => {
                    *lock(&self.ranks) = Some((rank as usize, size as usize));
                }
                msg => return Ok(msg),
            }
        }
    }

    /// This child's rank in its group and the group's size, as the parent
    /// announced them when the group formed; waits (blocking this thread)
    /// for the first announcement. Other posts read meanwhile are kept for
    /// the coming collective.
    pub(crate) fn ranks(&self) -> Result<(usize, usize), ProcessError> {
        if let Some(known) = *lock(&self.ranks) {
            return Ok(known);
        }
        let queues = lock(&self.queues);
        loop {
            match spin_then_block(&queues.collective)? {
                CollectiveMsg::Ranks { rank, size } => {
                    let known = (rank as usize, size as usize);
                    *lock(&self.ranks) = Some(known);
                    return Ok(known);
                }
                msg => lock(&self.stash).push_back(msg),
            }
        }
    }

    /// Posts a collective message to the parent (blocks this thread).
    pub(crate) fn post_collective(&self, msg: CollectiveMsg) -> Result<(), ProcessError> {
        self.tell_blocking(CollectiveUp { from: self.me, msg })
    }

    fn after_read(&self) -> Result<(), ProcessError> {
        let read = self.read.fetch_add(1, Ordering::Relaxed) + 1;
        if read as usize >= SEND_WINDOW / 2 {
            self.read.fetch_sub(read, Ordering::Relaxed);
            self.tell_blocking(Credit {
                from: self.me,
                n: read,
            })?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for the next message on `queue`: spins briefly, then parks.
fn spin_then_block<T>(queue: &Receiver<T>) -> Result<T, ProcessError> {
    let gone = || ProcessError::Gone {
        id: 0,
        reason: "this process's node stopped".into(),
    };
    let start = std::time::Instant::now();
    while start.elapsed() < SPIN {
        match queue.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(gone()),
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    queue.recv().map_err(|_| gone())
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
        .open::<T>()
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
        let value = Value::pack(&value, link.same_host, link.shm_threshold)
            .map_err(|e| ProcessError::from_value(e, 0))?;
        let credits = link.credits.clone();
        let permit = link.runtime.block_on(credits.acquire_owned());
        match permit {
            Ok(permit) => permit.forget(),
            Err(_) => {
                value.discard();
                return Err(ProcessError::Gone {
                    id: 0,
                    reason: "the link to the parent is closed".into(),
                });
            }
        }
        link.tell_blocking(ToParent {
            from: link.me,
            value,
        })
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
            .open::<T>()
            .map_err(|e| ProcessError::from_value(e, 0))
    }
}

/// A child process's actor: its id is the child's address for every
/// message of its parent (see [`super::message`]). It files values and
/// collective posts for the function's thread, runs the function on
/// `Exec`, and the calibration kernel on `Calibrate`.
#[derive(crate::Actor)]
#[actor(
    messages(Exec, Calibrate, CollectiveDown, Credit),
    view(Joined, ToChild),
    name = "parallel::process::ProcessActor"
)]
pub struct ProcessActor {
    joins: Sender<Incoming>,
    data: Sender<Incoming>,
    collective: Sender<CollectiveMsg>,
    credits: Arc<tokio::sync::Semaphore>,
    /// Where the function is handed to run, once (by `serve`).
    exec: Option<tokio::sync::oneshot::Sender<Exec>>,
}

impl Handler<Exec> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Exec, _: &mut actix::Context<Self>) {
        match self.exec.take() {
            Some(run) => {
                let _ = run.send(msg);
            }
            None => tracing::warn!(
                function = msg.name,
                "a second exec was ignored: a child runs one function"
            ),
        }
    }
}

impl Handler<Calibrate> for ProcessActor {
    type Result = actix::ResponseFuture<f64>;
    fn handle(&mut self, _: Calibrate, _: &mut actix::Context<Self>) -> Self::Result {
        Box::pin(async {
            tokio::task::spawn_blocking(super::calibrate::kernel_seconds)
                .await
                .unwrap_or(f64::NAN)
        })
    }
}

impl Handler<CollectiveDown> for ProcessActor {
    type Result = ();
    fn handle(&mut self, CollectiveDown(msg): CollectiveDown, _: &mut actix::Context<Self>) {
        let _ = self.collective.send(msg);
    }
}

impl Handler<Credit> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Credit, _: &mut actix::Context<Self>) {
        self.credits.add_permits(msg.n as usize);
    }
}

impl Handler<Joined> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Joined, _: &mut actix::Context<Self>) {
        let _ = self.joins.send(Incoming::owned(msg.value));
    }
}

impl Handler<Received<Joined>> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Received<Joined>, _: &mut actix::Context<Self>) {
        let _ = self.joins.send(Incoming::received(msg, |m| &m.value));
    }
}

impl Handler<ToChild> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: ToChild, _: &mut actix::Context<Self>) {
        let _ = self.data.send(Incoming::owned(msg.value));
    }
}

impl Handler<Received<ToChild>> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Received<ToChild>, _: &mut actix::Context<Self>) {
        let _ = self.data.send(Incoming::received(msg, |m| &m.value));
    }
}

/// Runs this process as a child and exits; never returns.
pub(crate) fn run() -> ! {
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
    let credits = Arc::new(tokio::sync::Semaphore::new(SEND_WINDOW));
    let actor = node.spawn(ProcessActor {
        joins,
        data,
        collective,
        credits: credits.clone(),
        exec: Some(exec_tx),
    });
    let parent = ActorRef::<ParentActor>::remote(role.parent_actor, parent_node.link());
    let link = Arc::new(ChildLink {
        number: role.number,
        me: actor.id(),
        parent: parent.clone(),
        parent_node: parent_node.clone(),
        node: node.clone(),
        same_host: role.same_host,
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
        boot_id: boot_id(),
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
    if let Outcome::Failed(message) = &outcome {
        eprintln!("{tag} {message}");
    }
    // Wait until the parent has the outcome before leaving.
    let finished = Finished {
        from: link.me,
        outcome,
    };
    if let Err(e) = parent.ask(finished).await {
        tracing::warn!("{tag} could not report its end to the parent: {e}");
    }
    leaving.store(true, Ordering::Release);
    node.shutdown().await;
    0
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
