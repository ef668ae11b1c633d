//! The local pair of `bench_remote`: local tells through the framework,
//! and plain actix with and without what the framework's tell guarantees,
//! each side in a fresh process of this program.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::{Actor as _, Handler};
use parallel::{Node, Password};
use parallel_examples::raw::BoxError;
use tokio::process::Command;

use super::{Bytes100, Count, LOCAL_N, PAYLOAD, PlainSink, Sink};

/// The role of a process that measures local tells.
pub(super) const ROLE_LOCAL_OURS: &str = "local ours";
/// The role of a process that measures actix's `do_send`.
pub(super) const ROLE_LOCAL_ACTIX: &str = "local actix";
/// The role of a process that measures actix with a bounded mailbox.
pub(super) const ROLE_LOCAL_BOUNDED: &str = "local actix bounded";
/// The role of a process that measures actix carrying the tell's guarantees.
pub(super) const ROLE_LOCAL_GUARDED: &str = "local actix guarded";
/// Runs in each process of the local pair; the fastest counts.
const LOCAL_RUNS: usize = 3;
/// What such a process prints before its rate.
const RATE_LINE: &str = "RATE ";

/// Messages per second of one side of the local pair, measured in a fresh
/// process of this program in the role `role`.
pub(super) async fn local_rate(role: &str) -> Result<f64, BoxError> {
    let out = Command::new(std::env::current_exe()?)
        .env(parallel_examples::ROLE_ENV, role)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .map_err(|_| format!("the {role} process did not finish within 120 s"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rate = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RATE_LINE))
        .ok_or_else(|| {
            format!(
                "the {role} process printed no rate ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(rate.trim().parse()?)
}

/// A process of the local pair: its side three times, then the fastest
/// run's rate.
pub(super) async fn local_side(role: &str) -> Result<(), BoxError> {
    let mut best = 0.0f64;
    for _ in 0..LOCAL_RUNS {
        let rate = if role == ROLE_LOCAL_OURS {
            let node = Node::builder()
                .password(Password::new(parallel_examples::one_time_password()))
                .start()
                .await?;
            // The same loop as the remote tell's, to an actor of this node.
            let rate = super::tell(&node.spawn(Sink::default()), LOCAL_N).await?;
            node.shutdown().await;
            rate
        } else if role == ROLE_LOCAL_BOUNDED {
            actix_bounded().await?
        } else if role == ROLE_LOCAL_GUARDED {
            actix_guarded().await?
        } else {
            actix_do_send().await?
        };
        best = best.max(rate);
    }
    println!("{RATE_LINE}{best}");
    Ok(())
}

async fn actix_do_send() -> Result<f64, BoxError> {
    let addr = PlainSink::default().start();
    let start = Instant::now();
    for i in 0..LOCAL_N {
        addr.do_send(Bytes100 {
            data: [i as u8; PAYLOAD],
        });
    }
    counted(&addr, start, "plain actix").await
}

/// The local tell with actix's own backpressure: the plain actix actor with a mailbox of the
/// framework's size, the sender queueing with `try_send` and, while the
/// mailbox is full, waiting for room with `send().await` — the least a
/// sender that must not overrun an actor's mailbox does on actix (the
/// framework's `tell` waits the same way, for one of its own slots).
async fn actix_bounded() -> Result<f64, BoxError> {
    let mut ctx = actix::Context::<PlainSink>::new();
    ctx.set_mailbox_capacity(parallel::actor::DEFAULT_MAILBOX);
    let addr = ctx.run(PlainSink::default());
    let start = Instant::now();
    for i in 0..LOCAL_N {
        let msg = Bytes100 {
            data: [i as u8; PAYLOAD],
        };
        match addr.try_send(msg) {
            Ok(()) => {}
            Err(actix::prelude::SendError::Full(msg)) => addr.send(msg).await?,
            Err(actix::prelude::SendError::Closed(_)) => {
                return Err("the bounded actix sink stopped".into());
            }
        }
    }
    counted(&addr, start, "bounded actix").await
}

/// A place in [`actix_guarded`]'s mailbox, given back when dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A message with the place it holds in the mailbox.
struct Guarded(Bytes100, Place);

impl actix::Message for Guarded {
    type Result = ();
}

impl Handler<Guarded> for PlainSink {
    type Result = ();
    fn handle(&mut self, Guarded(msg, place): Guarded, ctx: &mut actix::Context<Self>) {
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            <Self as Handler<Bytes100>>::handle(self, msg, ctx)
        }));
        drop(place);
        if handled.is_err() {
            actix::ActorContext::stop(ctx);
        }
    }
}

/// The floor under the local tell: plain actix carrying by hand what the
/// framework's tell guarantees, in the fewest steps — a place in a mailbox
/// of the framework's size that every sender shares (taken with one
/// compare-and-swap, held by the message, given back when it is handled),
/// the sender waiting (yielding) while none is free, and the handler run
/// under `catch_unwind` so that a panic stops the actor, not the thread.
async fn actix_guarded() -> Result<f64, BoxError> {
    let addr = PlainSink::default().start();
    let free = Arc::new(AtomicUsize::new(parallel::actor::DEFAULT_MAILBOX));
    let start = Instant::now();
    for i in 0..LOCAL_N {
        loop {
            let now = free.load(Ordering::SeqCst);
            if now > 0
                && free
                    .compare_exchange(now, now - 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        let msg = Bytes100 {
            data: [i as u8; PAYLOAD],
        };
        addr.do_send(Guarded(msg, Place(free.clone())));
    }
    counted(&addr, start, "guarded actix").await
}

/// The rate of a plain actix side whose sends began at `start`: once the
/// sink (`what`, for the error) has counted all [`LOCAL_N`] messages.
async fn counted(
    addr: &actix::Addr<PlainSink>,
    start: Instant,
    what: &str,
) -> Result<f64, BoxError> {
    let n = addr.send(Count).await?;
    let secs = start.elapsed().as_secs_f64();
    if n != LOCAL_N {
        return Err(format!("the {what} sink counted {n} of {LOCAL_N}").into());
    }
    Ok(LOCAL_N as f64 / secs)
}
