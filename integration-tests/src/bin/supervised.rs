//! The test program for supervised process children: supervises a
//! `Counter` in a forked child process, SIGKILLs that process once the
//! counter answered, and prints what it sees, one fact per line:
//! `PID1`, `BEFORE`, `DOWN <reason> <ms after the kill>`,
//! `RESTARTED <same id?> <incarnation>`, `AFTER <answer>`, `PID2`, `SHUTDOWN`.
//!
//! With the argument `poison` it asks the process child, through a retrying
//! reference, a message whose handler panics, and prints `POISON <error>`,
//! `CRASHES <Down events seen>`, `INCARNATION <of the last restart>`,
//! `AFTER <answer of the next incarnation>`, then `LOCAL <error>` after the
//! same panic in a local actor, and `SHUTDOWN`.
//!
//! With the argument `owners` it supervises a process child and forks a
//! child too, and prints who owns which: `CHILDREN <forked children>`,
//! `CLOSED <children after close>`, `FORKED-GONE <bool>`, `AFTER-CLOSE
//! <answer of the supervised child>`, `SUPERVISED-GONE <bool>` after the
//! supervisor's shutdown.

use std::error::Error;
use std::time::{Duration, Instant};

use parallel::supervision::{ChildSpec, Strategy, Supervisor, SupervisorEvent};
use parallel::{Node, Password};
use parallel_integration_tests::{Add, Boom, Counter, DEADLINE, alive};
use tokio::time::timeout;

/// Waits until the child named `name` runs and returns its process id.
async fn running_pid(
    sup: &parallel::supervision::SupervisorRef,
    name: &str,
) -> Result<u32, Box<dyn Error>> {
    timeout(DEADLINE, sup.running(name)).await??;
    Ok(sup
        .pid_of(name)
        .ok_or("a running process child has no pid")?)
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let node = Node::builder()
        .password(Password::new(format!("{}", parallel::NodeId::new())))
        .start()
        .await?;
    match std::env::args().nth(1).as_deref() {
        Some("poison") => return poison(&node).await,
        Some("owners") => return owners(&node).await,
        _ => {}
    }
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(10))
        .child(ChildSpec::process("worker", Counter::default))
        .start(&node);
    let mut events = sup.events();
    let id = sup.id_of("worker").ok_or("no child named worker")?;
    let pid1 = running_pid(&sup, "worker").await?;
    println!("PID1 {pid1}");
    let worker = sup
        .child::<Counter>("worker")
        .ok_or("no child named worker")?
        .with_timeout(Duration::from_secs(5))
        .with_retry(1000, Duration::from_millis(10));
    println!("BEFORE {}", timeout(DEADLINE, worker.ask(Add(1))).await??);

    // SAFETY: a plain syscall on the pid of a process we forked.
    unsafe {
        libc::kill(pid1 as i32, libc::SIGKILL);
    }
    let killed = Instant::now();
    let SupervisorEvent::Down { reason, .. } = timeout(DEADLINE, events.recv()).await??.event
    else {
        return Err("expected a Down event".into());
    };
    println!("DOWN {reason:?} {}", killed.elapsed().as_millis());
    let SupervisorEvent::Restarted {
        id: again,
        incarnation,
        ..
    } = timeout(DEADLINE, events.recv()).await??.event
    else {
        return Err("expected a Restarted event".into());
    };
    println!("RESTARTED {} {incarnation}", again == id);
    println!("AFTER {}", timeout(DEADLINE, worker.ask(Add(1))).await??);
    let pid2 = running_pid(&sup, "worker").await?;
    println!("PID2 {pid2} {}", worker.id() == id);
    println!("SHUTDOWN {:?}", timeout(DEADLINE, sup.shutdown()).await?);
    Ok(())
}

/// Asks the process child a message that crashes its handler, through a
/// reference that retries: the caller gets the panic, and the message does
/// not crash the next incarnations.
async fn poison(node: &Node) -> Result<(), Box<dyn Error>> {
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(10))
        .child(ChildSpec::process("worker", Counter::default))
        .start(node);
    let mut events = sup.events();
    running_pid(&sup, "worker").await?;
    let worker = sup
        .child::<Counter>("worker")
        .ok_or("no child named worker")?
        .with_timeout(Duration::from_secs(5))
        .with_retry(20, Duration::from_millis(20));
    let answer = timeout(DEADLINE, worker.ask(Boom)).await?;
    println!("POISON {answer:?}");
    // Every crash the message caused, and the restarts after them; a message
    // sent again would crash the next incarnations within this time.
    let (mut crashes, mut incarnation) = (0, 0);
    let quiet = Instant::now() + Duration::from_millis(1500);
    while let Ok(event) = tokio::time::timeout_at(quiet.into(), events.recv()).await {
        match event?.event {
            SupervisorEvent::Down { .. } => crashes += 1,
            SupervisorEvent::Restarted { incarnation: n, .. } => incarnation = n,
            SupervisorEvent::GaveUp => println!("GAVEUP"),
        }
    }
    println!("CRASHES {crashes}");
    println!("INCARNATION {incarnation}");
    println!("AFTER {}", timeout(DEADLINE, worker.ask(Add(1))).await??);
    // A handler panic in this process too: stderr shows how each is reported.
    let local = node.spawn(Counter::default());
    println!("LOCAL {:?}", timeout(DEADLINE, local.ask(Boom)).await?);
    println!("SHUTDOWN {:?}", timeout(DEADLINE, sup.shutdown()).await?);
    Ok(())
}

/// A supervised process child and a forked child have one owner each:
/// `close()` stops the forked one and leaves the supervised one to its
/// supervisor, whose shutdown stops it.
async fn owners(node: &Node) -> Result<(), Box<dyn Error>> {
    let sup = Supervisor::new(Strategy::OneForOne)
        .child(ChildSpec::process("worker", Counter::default))
        .start(node);
    let supervised = running_pid(&sup, "worker").await?;
    let forked = parallel::nfork(1).await?;
    let forked_pid = forked[0].pid();
    let listed: Vec<u32> = parallel::children().iter().map(|c| c.pid()).collect();
    println!(
        "CHILDREN {} {}",
        listed.len(),
        listed == [forked_pid] && forked_pid != supervised
    );
    timeout(DEADLINE, parallel::close()).await?;
    println!("CLOSED {}", parallel::children().len());
    let gone = timeout(DEADLINE, forked[0].exited()).await.is_ok();
    println!("FORKED-GONE {gone}");
    let worker = sup
        .child::<Counter>("worker")
        .ok_or("no child named worker")?
        .with_timeout(Duration::from_secs(5));
    println!(
        "AFTER-CLOSE {}",
        timeout(DEADLINE, worker.ask(Add(7))).await??
    );
    println!("SHUTDOWN {:?}", timeout(DEADLINE, sup.shutdown()).await?);
    let deadline = Instant::now() + DEADLINE;
    while alive(supervised) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("SUPERVISED-GONE {}", !alive(supervised));
    Ok(())
}
