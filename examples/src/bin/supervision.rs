//! A supervision tree with a worker in a forked child process, killed with
//! SIGKILL mid-run. The program prints the `Down` reason, the restart (same
//! `ActorId`, incarnation 2) and that a client calling the worker every
//! 10 ms continues after the restart; it exits 0.
//!
//! Run with `cargo run --release -p parallel-examples --bin supervision`.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::Handler;
use parallel::supervision::{ChildSpec, Strategy, Supervisor, SupervisorEvent};
use parallel::{Actor, Message, Node, Password};
use rkyv::{Archive, Deserialize, Serialize};
use tokio::time::timeout;

/// Doubles numbers and counts what it did; `spawn` lets a parent start it
/// in a child process by name.
#[derive(Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Double), spawn)]
struct Worker {
    served: u64,
}

/// Asks a [`Worker`] for twice the number and how many calls this
/// incarnation has served.
#[derive(Message, Archive, Serialize, Deserialize)]
#[message(result = (u64, u64))]
struct Double(u64);

impl Handler<Double> for Worker {
    type Result = actix::MessageResult<Double>;
    fn handle(&mut self, msg: Double, _: &mut actix::Context<Self>) -> Self::Result {
        self.served += 1;
        actix::MessageResult((msg.0 * 2, self.served))
    }
}

const T: Duration = Duration::from_secs(20);

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let node = Node::builder()
        .password(Password::new(parallel::NodeId::new().to_string()))
        .start()
        .await?;
    // ANCHOR: tree
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(10)) // give up after a 4th restart within 10 s
        .child(ChildSpec::process("worker", Worker::default))
        .start(&node);
    let mut events = sup.events();
    // ANCHOR_END: tree
    let id = sup.id_of("worker").ok_or("no child named worker")?;
    let pid = wait_for_pid(&sup).await?;
    println!("worker {id} runs in process {pid}");

    // ANCHOR: client
    let worker = sup
        .child::<Worker>("worker")
        .ok_or("no child named worker")?
        .with_timeout(Duration::from_secs(5))
        .with_retry(500, Duration::from_millis(10)); // up to 5 s across a restart
    let done = Arc::new(AtomicBool::new(false));
    let (ok, incarnation_calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = tokio::spawn({
        let (done, ok, calls) = (done.clone(), ok.clone(), incarnation_calls.clone());
        async move {
            let mut slowest = Duration::ZERO;
            for i in 0.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let asked = Instant::now();
                let (twice, served) = worker.ask(Double(i)).await?;
                assert_eq!(twice, 2 * i);
                slowest = slowest.max(asked.elapsed());
                ok.fetch_add(1, Ordering::Relaxed);
                calls.store(served, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, parallel::AskError>((worker.id(), slowest))
        }
    });
    // ANCHOR_END: client

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);
    println!("client: {before} calls answered before the kill");
    // ANCHOR: kill
    // SAFETY: a plain syscall on the pid of the child process we forked.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let killed = Instant::now();
    let down = timeout(T, events.recv()).await??;
    if let SupervisorEvent::Down { name, id, reason } = down.event {
        let ms = killed.elapsed().as_millis();
        println!("supervisor: {name} ({id}) is down: {reason:?} ({ms} ms after SIGKILL)");
    }
    if let SupervisorEvent::Restarted {
        name,
        id: again,
        incarnation,
    } = timeout(T, events.recv()).await??.event
    {
        println!(
            "supervisor: restarted {name} with the same ActorId: {} (incarnation {incarnation})",
            again == id
        );
    }
    // ANCHOR_END: kill
    // ANCHOR: history
    let pid = wait_for_pid(&sup).await?;
    println!("worker {id} runs again, in a new process {pid}");
    // What the supervisor reported, with when (kept for late readers too).
    for report in sup.history() {
        println!("supervisor history: {report}");
    }
    // ANCHOR_END: history
    // Let the client go on for a while against the new incarnation.
    let resumed = ok.load(Ordering::Relaxed);
    let start = Instant::now();
    while ok.load(Ordering::Relaxed) < resumed + 20 && start.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, Ordering::Relaxed);
    let (client_id, slowest) = timeout(T, client).await???;
    let total = ok.load(Ordering::Relaxed);
    println!(
        "client: {total} calls answered in all, {} after the restart (the new incarnation served {}), none lost; same ActorId: {}; slowest call {:.0} ms (across the restart)",
        total - before,
        incarnation_calls.load(Ordering::Relaxed),
        client_id == id,
        slowest.as_secs_f64() * 1e3
    );
    if client_id != id || incarnation_calls.load(Ordering::Relaxed) >= total {
        return Err("the client did not continue on the new incarnation".into());
    }
    // ANCHOR: shutdown
    println!("supervisor: {:?}", timeout(T, sup.shutdown()).await?);
    // ANCHOR_END: shutdown
    Ok(())
}

// ANCHOR: running
/// Waits until the worker runs and returns its process id.
async fn wait_for_pid(sup: &parallel::supervision::SupervisorRef) -> Result<u32, Box<dyn Error>> {
    timeout(T, sup.running("worker"))
        .await
        .map_err(|_| "the worker did not start within 20 s")??;
    Ok(sup
        .pid_of("worker")
        .ok_or("the running worker has no pid")?)
}
// ANCHOR_END: running
