//! A pool on the head's machine hands the head its open executable
//! ([`StageLocal`](super::super::message::StageLocal)): the head listens
//! on a Unix socket with an abstract name (Linux), owned by the head actor
//! and closed with it. A connection
//! brings a token the head gave out over the authenticated QUIC link and
//! one file descriptor (`crate::launch::handoff`); the head copies and
//! hashes that file into its store and answers, on the same connection,
//! the hash and length (`crate::launch::handoff::reply`) or why not.
//! Everything else on the socket is refused.

use std::time::{Duration, Instant};

use actix::{ActorFutureExt, AsyncContext, Handler, WrapFuture};
use uuid::Uuid;

use crate::launch::handoff::{self, TOKEN_LEN, reply};

use super::super::message::Staging;
use super::{HeadActor, MAX_STAGED};

/// How long a connection may take to bring its token and file.
const PATIENCE: Duration = Duration::from_secs(5);
/// The listening socket (see the module docs) and its abstract name.
pub(super) struct Listener {
    pub(super) name: String,
    socket: std::os::unix::net::UnixListener,
}

impl Listener {
    /// Binds a fresh abstract name; `None` where there are none (not
    /// Linux) or binding failed (then pools send their program).
    pub(super) fn bind() -> Option<Listener> {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("parallel-head-{}", Uuid::new_v4().simple());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).ok()?;
            match std::os::unix::net::UnixListener::bind_addr(&addr) {
                Ok(socket) => Some(Listener { name, socket }),
                Err(e) => {
                    tracing::debug!(
                        "no socket for pools on this machine ({e}): they send their program"
                    );
                    None
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Takes connections for as long as the head actor runs: each on a
    /// blocking thread, at most [`MAX_STAGED`] at once.
    pub(super) fn serve(self, act: &HeadActor, ctx: &mut actix::Context<HeadActor>) {
        let head = ctx.address();
        let socket = self.socket;
        let accepting = async move {
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_STAGED));
            let listener = match socket
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixListener::from_std(socket))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(
                        "the head's socket for pools on its machine failed ({e}); they send their program"
                    );
                    return;
                }
            };
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: not in a tight loop.
                        tracing::debug!("the head's socket for pools could not accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let head = head.clone();
                actix::spawn(async move {
                    let _slot = slot;
                    let Ok(stream) = stream.into_std() else {
                        return;
                    };
                    let received = tokio::task::spawn_blocking(move || {
                        stream.set_nonblocking(false)?;
                        stream.set_read_timeout(Some(PATIENCE))?;
                        stream.set_write_timeout(Some(PATIENCE))?;
                        let (token, file) = handoff::recv_file(&stream)?;
                        Ok::<_, std::io::Error>((stream, token, file))
                    })
                    .await;
                    let Ok(Ok((stream, token, file))) = received else {
                        tracing::debug!(
                            "a connection to the head's socket brought no token and file"
                        );
                        return;
                    };
                    let outcome = match head.send(HandedOver { token, file }).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err("the head stopped".to_owned()),
                    };
                    let bytes = reply(&outcome);
                    let _ = tokio::task::spawn_blocking(move || {
                        use std::io::Write;
                        (&stream).write_all(&bytes)
                    })
                    .await;
                });
            }
        };
        // Dropped, with the socket, when the head actor stops.
        ctx.spawn(accepting.into_actor(act));
    }
}

/// A file handed over on the head's socket with `token` (local only).
struct HandedOver {
    token: [u8; TOKEN_LEN],
    file: std::fs::File,
}

impl actix::Message for HandedOver {
    type Result = Result<([u8; 32], u64), String>;
}

impl Handler<HandedOver> for HeadActor {
    type Result = actix::ResponseActFuture<Self, Result<([u8; 32], u64), String>>;

    fn handle(&mut self, msg: HandedOver, _: &mut actix::Context<Self>) -> Self::Result {
        let token = Uuid::from_bytes(msg.token);
        if self.handoffs.remove(&token).is_none() {
            return Box::pin(actix::fut::ready(Err(
                "no pool was told this token (or it is used, or older than a minute): ask the head again".to_owned(),
            )));
        }
        let store = self.programs.clone();
        // Copied and hashed off the actor's thread.
        let io = tokio::task::spawn_blocking(move || {
            store.stage_open(
                msg.file,
                std::path::Path::new("the executable a pool handed over"),
            )
        });
        Box::pin(io.into_actor(self).map(move |done, act, _| match done {
            Ok(Ok(copy)) => {
                let program = copy.program();
                act.staged.insert(token, (copy, Instant::now()));
                Ok((program.sha256, program.len))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("copying the program failed: {e}")),
        }))
    }
}

impl HeadActor {
    /// The answer to [`super::super::message::StageLocal`] from a pool on
    /// `host_key`.
    pub(super) fn stage_local(&mut self, host_key: &str) -> Staging {
        // The socket is bound only where local copies are on.
        if host_key.is_empty() || host_key != crate::id::host_key() {
            return Staging::Refused(
                "the program is not on the head's machine: send it in parts".into(),
            );
        }
        let Some(socket) = self.handoff_socket.clone() else {
            return Staging::Refused(
                "the head takes no files handed over on this machine: send the program".into(),
            );
        };
        if self.staged.len() + self.handoffs.len() >= MAX_STAGED {
            return Staging::Refused(format!(
                "{MAX_STAGED} copies already wait for the pools that asked for them; open those pools first"
            ));
        }
        let token = Uuid::new_v4();
        self.handoffs.insert(token, Instant::now());
        Staging::Handoff { token, socket }
    }
}
