//! The child side: what a process started by `fork` runs instead of `main`,
//! and the calls its function makes (`yield_value`, `parent().send/receive`).

use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::{Mutex, OnceLock};

use crate::actor::Received;
use crate::id::ActorId;
use crate::remote::{Delivery, Mailbox, Node, RemoteNode, remote_fn};
use crate::transport::{JoinLine, Password};
use crate::wire::{WireType, aligned_copy, decode_owned, encode, type_tag};

use super::error::ProcessError;
use super::protocol::{ChildHello, ExecOutcome, ExecRequest, boot_id, env, host_name, op};
use crate::remote::value::{Payload, open_value, post_value};

/// Posts the child's mailbox holds before the parent waits.
const MAILBOX_CAPACITY: usize = 64;

/// What a child knows about itself, read from its environment.
struct Role {
    id: u32,
    parent: JoinLine,
    mailbox: ActorId,
    listen: std::net::SocketAddr,
    same_host: bool,
}

impl Role {
    fn from_env() -> Result<Role, String> {
        let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
        let parent: JoinLine = var(env::PARENT)?
            .parse()
            .map_err(|e| format!("{}: {e}", env::PARENT))?;
        let mailbox = uuid::Uuid::parse_str(&var(env::MAILBOX)?)
            .map_err(|e| format!("{}: {e}", env::MAILBOX))?;
        let id = var(env::ID)?
            .parse()
            .map_err(|e| format!("{}: {e}", env::ID))?;
        let listen = var(env::LISTEN)?
            .parse()
            .map_err(|e| format!("{}: {e}", env::LISTEN))?;
        let theirs = std::env::var(env::PARENT_BOOT).unwrap_or_default();
        let mine = boot_id();
        Ok(Role {
            id,
            parent,
            mailbox: ActorId(mailbox),
            listen,
            same_host: !mine.is_empty() && mine == theirs,
        })
    }
}

/// True when this process was started by `fork`.
pub fn is_child() -> bool {
    std::env::var(env::ROLE).is_ok_and(|r| r == env::CHILD)
}

/// What the child's function needs to talk to its parent.
pub(crate) struct Context {
    parent: RemoteNode,
    parent_mailbox: ActorId,
    same_host: bool,
    runtime: tokio::runtime::Handle,
    inbox: Mutex<ChildInbox>,
}

struct ChildInbox {
    mailbox: Mailbox,
    joins: VecDeque<Delivery>,
    data: VecDeque<Delivery>,
    collective: VecDeque<Delivery>,
}

static CONTEXT: OnceLock<Context> = OnceLock::new();
static OWN_ID: OnceLock<u32> = OnceLock::new();

/// This process's id: 0 for the top process, 1, 2, … for its children.
pub fn id() -> u32 {
    *OWN_ID.get().unwrap_or(&0)
}

impl ChildInbox {
    /// Files deliveries until `want` finds one; runs calibration requests as they come.
    fn next(&mut self, parent: &Context, want: u8) -> Result<Delivery, ProcessError> {
        loop {
            let queue = match want {
                op::JOIN => &mut self.joins,
                op::COLLECTIVE => &mut self.collective,
                _ => &mut self.data,
            };
            if let Some(d) = queue.pop_front() {
                return Ok(d);
            }
            let Some(d) = spin_then_block(&mut self.mailbox) else {
                return Err(ProcessError::Gone {
                    id: 0,
                    reason: "this process's node stopped".into(),
                });
            };
            match d.op & !op::SHM {
                op::JOIN => self.joins.push_back(d),
                op::DATA => self.data.push_back(d),
                op::COLLECTIVE => self.collective.push_back(d),
                op::CALIBRATE => parent
                    .block_on_post(op::CALIBRATED, &crate::launch::calibrate::kernel_seconds())?,
                other => tracing::warn!(op = other, "unexpected post from the parent ignored"),
            }
        }
    }
}

/// Waits for the next delivery: first a short spin (a reply often comes
/// within microseconds, and waking a parked thread on another vCPU costs
/// about 70 µs here), then parks.
fn spin_then_block(mailbox: &mut Mailbox) -> Option<Delivery> {
    let start = std::time::Instant::now();
    while start.elapsed() < SPIN {
        if let Some(d) = mailbox.try_recv() {
            return Some(d);
        }
        std::hint::spin_loop();
    }
    mailbox.blocking_recv()
}

/// How long a child's function spins for a reply before it parks.
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

impl Context {
    /// The next collective post from the parent (blocks this thread).
    pub(crate) fn next_collective(&self) -> Result<Delivery, ProcessError> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        inbox.next(self, op::COLLECTIVE)
    }

    pub(crate) fn block_on_post<T: WireType>(
        &self,
        operation: u8,
        value: &T,
    ) -> Result<(), ProcessError> {
        let bytes = encode(value)?;
        self.runtime
            .block_on(self.parent.post(self.parent_mailbox, operation, 0, bytes))?;
        Ok(())
    }
}

pub(crate) fn context() -> Result<&'static Context, ProcessError> {
    CONTEXT.get().ok_or_else(|| {
        ProcessError::Misuse(
            "this call is for a child's function (started by fork + exec); this process is not one"
                .into(),
        )
    })
}

/// The parent's node and this process's runtime, for the layers above that
/// talk to the parent on their own (the work queues).
pub(crate) fn parent_link() -> Result<(RemoteNode, tokio::runtime::Handle), ProcessError> {
    let ctx = context()?;
    Ok((ctx.parent.clone(), ctx.runtime.clone()))
}

/// In a child's function: waits until the parent calls `join(value)` on
/// this child, and returns that value (the seed's `parallel.yield()`).
pub fn yield_value<T: WireType>() -> Result<T, ProcessError> {
    let ctx = context()?;
    ctx.block_on_post(op::YIELD, &())?;
    let mut inbox = ctx.inbox.lock().unwrap_or_else(|e| e.into_inner());
    let d = inbox.next(ctx, op::JOIN)?;
    drop(inbox);
    Ok(open_value::<T>(d)
        .map_err(|e| ProcessError::from_value(e, 0))?
        .to_owned()?)
}

/// The parent, as a child's function sees it.
#[derive(Debug, Clone, Copy)]
pub struct Parent;

/// In a child: its parent. `None` in the top process.
pub fn parent() -> Option<Parent> {
    CONTEXT.get().map(|_| Parent)
}

impl Parent {
    /// The parent's id (0: the top process).
    pub fn id(&self) -> u32 {
        0
    }

    /// Sends `value` to the parent (it reads it with `child.receive()`).
    /// Large values go through shared memory when parent and child share a machine.
    pub fn send(&self, value: impl Payload) -> Result<(), ProcessError> {
        let ctx = context()?;
        ctx.runtime
            .block_on(post_value(
                &ctx.parent,
                ctx.parent_mailbox,
                op::DATA,
                &value,
                ctx.same_host,
            ))
            .map_err(|e| ProcessError::from_value(e, 0))
    }

    /// The next value the parent sent, as a read-only view (`to_owned()` for a copy).
    pub fn receive<T: WireType>(&self) -> Result<Received<T>, ProcessError> {
        let ctx = context()?;
        let mut inbox = ctx.inbox.lock().unwrap_or_else(|e| e.into_inner());
        let d = inbox.next(ctx, op::DATA)?;
        drop(inbox);
        open_value::<T>(d).map_err(|e| ProcessError::from_value(e, 0))
    }
}

/// This process's IP address as its parent reaches it ("127.0.0.1" on one machine).
pub fn ip() -> String {
    IP.get().cloned().unwrap_or_else(|| "127.0.0.1".to_string())
}

static IP: OnceLock<String> = OnceLock::new();

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
    let _ = OWN_ID.set(role.id);
    let mut password = String::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    if lines.read_line(&mut password).unwrap_or(0) == 0 {
        eprintln!(
            "<parallel#{:03}> no password on stdin: the parent is gone",
            role.id
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
    let tag = format!("<parallel#{:03}>", role.id);
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
    let parent = match node.join(&role.parent).await {
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
    let _ = IP.set(ip.clone());
    let mut mailbox = node.open_mailbox(MAILBOX_CAPACITY);
    let hello = ChildHello {
        id: role.id,
        pid: std::process::id(),
        host: host_name(),
        ip,
        boot_id: boot_id(),
        mailbox: mailbox.id(),
    };
    let sent = match encode(&hello) {
        Ok(bytes) => parent
            .post(role.mailbox, op::HELLO, 0, bytes)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        eprintln!("{tag} could not greet its parent: {e}");
        return 5;
    }
    // The lease: when the parent's connection goes, so does this process.
    let watched = parent.clone();
    let lease_tag = tag.clone();
    actix_rt::spawn(async move {
        let reason = watched.closed().await;
        if LEAVING.load(std::sync::atomic::Ordering::Acquire) {
            // Our own orderly shutdown closed the link: let it finish.
            return;
        }
        tracing::info!("{lease_tag} parent gone ({reason}); exiting");
        crate::transport::shm::cleanup_own();
        std::process::exit(0);
    });

    // Wait for the function to run, keeping what arrives before it.
    let mut joins = VecDeque::new();
    let mut data = VecDeque::new();
    let mut collective = VecDeque::new();
    let request = loop {
        let Some(d) = mailbox.recv().await else {
            return 6;
        };
        match d.op & !op::SHM {
            op::EXEC => match decode_owned::<ExecRequest>(&d.payload) {
                Ok(r) => break r,
                Err(e) => {
                    eprintln!("{tag} unreadable exec request: {e}");
                    return 7;
                }
            },
            op::JOIN => joins.push_back(d),
            op::DATA => data.push_back(d),
            op::COLLECTIVE => collective.push_back(d),
            op::CALIBRATE => {
                let secs = crate::launch::calibrate::kernel_seconds();
                if let Ok(bytes) = encode(&secs) {
                    let _ = parent.post(role.mailbox, op::CALIBRATED, 0, bytes).await;
                }
            }
            other => tracing::warn!(op = other, "unexpected post before exec ignored"),
        }
    };
    let _ = CONTEXT.set(Context {
        parent: parent.clone(),
        parent_mailbox: role.mailbox,
        same_host: role.same_host,
        runtime: tokio::runtime::Handle::current(),
        inbox: Mutex::new(ChildInbox {
            mailbox,
            joins,
            data,
            collective,
        }),
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("parallel#{:03}", role.id))
        .spawn(move || {
            let _ = done_tx.send(run_function(&request));
        })
        .ok();
    let outcome = done_rx
        .await
        .unwrap_or_else(|_| ExecOutcome::Failed("the function's thread died".into()));
    if let ExecOutcome::Failed(message) = &outcome {
        eprintln!("{tag} {message}");
    }
    // Wait until the parent has the outcome before leaving.
    if let Ok(bytes) = encode(&outcome) {
        let _ = parent
            .post_confirmed(role.mailbox, op::DONE, 0, bytes)
            .await;
    }
    LEAVING.store(true, std::sync::atomic::Ordering::Release);
    node.shutdown().await;
    0
}

/// Set when the child leaves in order, so the lease does not cut the goodbye short.
static LEAVING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn run_function(request: &ExecRequest) -> ExecOutcome {
    let Some(function) = remote_fn(type_tag(&request.name)) else {
        return ExecOutcome::Failed(format!(
            "function {} is not registered in this binary: mark it #[parallel::remote] and run the same program on every host",
            request.name
        ));
    };
    let args = aligned_copy(&request.args);
    match function.invoke(&args) {
        Ok(result) => ExecOutcome::Returned(result.to_vec()),
        Err(failure) => ExecOutcome::Failed(failure.message),
    }
}
