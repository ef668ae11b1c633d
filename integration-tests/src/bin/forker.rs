//! The test parent for process tests: forks children of itself and runs
//! one scenario, named by the first argument, printing what it sees.

use parallel::collective::{ReduceOp, Reducible, Schedule};
use parallel::{ProcessError, Tensor, nfork};
use parallel_integration_tests::{input_f32, input_i64};

/// The allreduce scenario's ops, in the order every rank runs them.
fn ops<T: Reducible>() -> [(&'static str, ReduceOp<T>); 4] {
    [
        ("sum", ReduceOp::Sum),
        ("prod", ReduceOp::Prod),
        ("min", ReduceOp::Min),
        ("max", ReduceOp::Max),
    ]
}

/// A digest of the bits of `data` (FNV-1a over every element's bits).
fn digest<T: Reducible>(data: &[T]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in data {
        h = (h ^ x.bits()).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}:{h:016x}", data.len())
}

/// Runs every op on f32 and i64 inputs of this rank and prints each result's digest.
fn reduce_all(
    rank: usize,
    len: usize,
    reduce: &mut dyn FnMut(Buf<'_>) -> Result<(), ProcessError>,
) {
    for (name, op) in ops::<f32>() {
        let mut v = input_f32(rank, len);
        reduce(Buf::F32(&mut v, op)).expect("all_reduce f32");
        println!("RESULT f32 {name} rank {rank} {}", digest(&v));
    }
    for (name, op) in ops::<i64>() {
        let mut v = input_i64(rank, len);
        reduce(Buf::I64(&mut v, op)).expect("all_reduce i64");
        println!("RESULT i64 {name} rank {rank} {}", digest(&v));
    }
}

/// The result every rank must get: the schedule's reference over QUIC, the
/// left fold in rank order through shared memory.
fn reference<T: Reducible>(
    quic: bool,
    schedule: &Schedule,
    op: &ReduceOp<T>,
    inputs: &[Vec<T>],
) -> Result<Vec<T>, Box<dyn std::error::Error>> {
    if quic {
        return Ok(schedule.reference(op, inputs)?);
    }
    let parts: Vec<&[T]> = inputs.iter().map(Vec::as_slice).collect();
    Ok(op.fold(&parts).unwrap_or_default())
}

/// One allreduce call of the scenario.
enum Buf<'a> {
    F32(&'a mut Vec<f32>, ReduceOp<f32>),
    I64(&'a mut Vec<i64>, ReduceOp<i64>),
}

/// A child of the allreduce scenario: rank = its id.
#[parallel::remote]
fn reducer(len: u64) {
    let rank = parallel::id() as usize;
    reduce_all(rank, len as usize, &mut |b| match b {
        Buf::F32(v, op) => parallel::collective::all_reduce(v, op),
        Buf::I64(v, op) => parallel::collective::all_reduce(v, op),
    });
}

/// A child of the allreduce-kill scenario: child 2 dies abruptly (SIGABRT)
/// while it waits in the collective, which child 3 joins late.
#[parallel::remote]
fn dying_reducer() {
    let id = parallel::id();
    if id == 2 {
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            std::process::abort();
        });
    }
    if id == 3 {
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let mut v = input_f32(id as usize, 1001);
    match parallel::collective::all_reduce(&mut v, ReduceOp::Sum) {
        Ok(()) => println!("CHILD-UNEXPECTED ok"),
        Err(e) => println!("CHILD-ERR {e}"),
    }
}

/// Yields until told "break"; for each round receives a tensor and sends back its sum.
#[parallel::remote]
fn summer() -> u64 {
    let mut rounds = 0;
    loop {
        let m: String = parallel::yield_value().expect("yield");
        if m == "break" {
            return rounds;
        }
        let parent = parallel::parent().expect("a parent");
        let t = parent.receive::<Tensor<f32>>().expect("receive");
        let sum: f64 = t.as_slice().iter().map(|&x| x as f64).sum();
        parent.send(&sum).expect("send");
        rounds += 1;
    }
}

/// Panics after its first yield.
#[parallel::remote]
fn panicker() {
    let _: String = parallel::yield_value().expect("yield");
    panic!("worker exploded on purpose");
}

/// Does nothing and returns: the process then exits.
#[parallel::remote]
fn nothing() {}

/// Yields forever (until its parent dies).
#[parallel::remote]
fn forever() {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Prints with the process's prefix.
#[parallel::remote]
fn printer(text: String) {
    parallel::print!("{text} from {}", parallel::ip());
}

fn not_registered() {}

/// Sends the path of the program it runs in, then returns.
#[parallel::remote]
fn whoami() {
    let exe = std::env::current_exe().expect("current_exe");
    let parent = parallel::parent().expect("a parent");
    parent
        .send(&exe.to_string_lossy().into_owned())
        .expect("send");
}

/// A spec for `destination`, reached with `ssh_args`.
fn over_ssh(destination: &str, ssh_args: &[String]) -> parallel::Remote {
    ssh_args
        .iter()
        .fold(parallel::Remote::ssh(destination), |r, a| r.ssh_arg(a))
}

/// This process's files in /dev/shm: segments it lends, payloads not yet opened.
fn own_shm_files() -> usize {
    let prefix = format!("parallel-{}-", std::process::id());
    std::fs::read_dir("/dev/shm").map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count()
    })
}

/// Three rounds of join / send `t` / receive each child's sum, printed,
/// with this process's shared-memory files after each (`SEGMENTS`);
/// then "break", sync, and the number of children left.
async fn rounds(children: &parallel::Children, t: &Tensor<f32>) -> Result<(), ProcessError> {
    for _ in 0..3 {
        children.join("go").await?;
        children.send(t).await?;
        let sums = children.receive::<f64>().await?;
        let sums: Vec<f64> = sums.iter().map(|s| s.to_native()).collect();
        println!("SUMS {sums:?}");
        println!("SEGMENTS {}", own_shm_files());
    }
    children.join("break").await?;
    children.sync().await?;
    println!("NCHILDREN {}", parallel::nchildren());
    Ok(())
}

/// Two trees of one process: `IDS`, `PARENTS-DIFFER`, `DEFAULT`, a round
/// on the first (`A-SUMS`), `A-CLOSED <a's children> <b's children>`, a
/// round on the second (`B-SUMS`), `B-RESULT <its function's return value>`.
async fn two_trees() -> Result<(), Box<dyn std::error::Error>> {
    use parallel::{Config, Tree};
    let (a, b) = (Tree::new(Config::default()), Tree::new(Config::default()));
    let (ca, cb) = (a.nfork(2).await?, b.nfork(1).await?);
    let ids = |c: &parallel::Children| c.iter().map(|c| c.id()).collect::<Vec<_>>();
    println!("IDS a={:?} b={:?}", ids(&ca), ids(&cb));
    println!("PARENTS-DIFFER {}", a.parent_id() != b.parent_id());
    println!("DEFAULT {}", parallel::nchildren());
    ca.exec(summer, ()).await?;
    let running = cb.exec(summer, ()).await?;
    let t = Tensor::full(&[10], 2.0f32);
    ca.join("go").await?;
    ca.send(&t).await?;
    let sums: Vec<f64> = ca
        .receive::<f64>()
        .await?
        .iter()
        .map(|s| s.to_native())
        .collect();
    println!("A-SUMS {sums:?}");
    a.close().await;
    println!("A-CLOSED {} {}", a.nchildren(), b.nchildren());
    cb.join("go").await?;
    cb.send(&t).await?;
    let sums: Vec<f64> = cb
        .receive::<f64>()
        .await?
        .iter()
        .map(|s| s.to_native())
        .collect();
    println!("B-SUMS {sums:?}");
    cb.join("break").await?;
    println!("B-RESULT {:?}", running.results().await?);
    b.close().await;
    Ok(())
}

/// A supervised `Counter` in a process started through ssh: prints `PID1`,
/// `BEFORE <answer>`, then, after its process is SIGKILLed, `PID2` (another
/// process, started through ssh again), `AFTER <answer of the new
/// incarnation>`, `NCHILDREN <forked children: 0>` and `SHUTDOWN`.
async fn ssh_supervised(remote: parallel::Remote) -> Result<(), Box<dyn std::error::Error>> {
    use parallel::supervision::{ChildSpec, Strategy, Supervisor};
    use parallel_integration_tests::{Add, Counter, DEADLINE};
    let node = parallel::Node::builder()
        .password(parallel::Password::new(format!(
            "{}",
            parallel::NodeId::new()
        )))
        .start()
        .await?;
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(3, std::time::Duration::from_secs(30))
        .child(ChildSpec::process_on(
            "worker",
            Counter::default,
            remote.into(),
        ))
        .start(&node);
    tokio::time::timeout(DEADLINE, sup.running("worker")).await??;
    let pid1 = sup.pid_of("worker").ok_or("no pid")?;
    println!("PID1 {pid1}");
    let worker = sup
        .child::<Counter>("worker")
        .ok_or("no child named worker")?
        .with_timeout(std::time::Duration::from_secs(5))
        .with_retry(1000, std::time::Duration::from_millis(10));
    println!(
        "BEFORE {}",
        tokio::time::timeout(DEADLINE, worker.ask(Add(1))).await??
    );
    // The "host" is this machine: its pid is ours to signal.
    // SAFETY: a plain syscall on the pid of a process started for us.
    unsafe {
        libc::kill(pid1 as i32, libc::SIGKILL);
    }
    let answer = tokio::time::timeout(DEADLINE, worker.ask(Add(1))).await??;
    tokio::time::timeout(DEADLINE, sup.running("worker")).await??;
    let pid2 = sup.pid_of("worker").ok_or("no pid")?;
    println!("PID2 {pid2} {}", pid2 != pid1);
    println!("AFTER {answer}");
    println!("NCHILDREN {}", parallel::nchildren());
    println!("SHUTDOWN {:?}", sup.shutdown().await);
    Ok(())
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("");
    match scenario {
        "rounds" => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
            let len: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
            let children = nfork(n).await?;
            children.exec(summer, ()).await?;
            let t = Tensor::full(&[len], 1.5f32);
            rounds(&children, &t).await?;
            drop(children);
            println!("SEGMENTS-AFTER {}", own_shm_files());
        }
        "panic" => {
            let child = parallel::fork().await?;
            child.exec(panicker, ()).await?;
            child.join("go").await?;
            match child.join("again").await {
                Err(ProcessError::Failed { message, .. }) => println!("FAILED {message}"),
                other => println!("UNEXPECTED {other:?}"),
            }
        }
        "sync" => {
            let children = nfork(1).await?;
            children.exec(nothing, ()).await?;
            println!("NCHILDREN {}", parallel::nchildren());
            children.sync().await?;
            println!("NCHILDREN {}", parallel::nchildren());
            let more = nfork(2).await?;
            println!("NCHILDREN {}", parallel::nchildren());
            let ids: Vec<u32> = more.iter().map(|c| c.id()).collect();
            println!("IDS {ids:?}");
            println!("HAS1 {}", parallel::children().by_id(1).is_some());
        }
        "orphans" => {
            let children = nfork(2).await?;
            children.exec(forever, ()).await?;
            let pids: Vec<String> = children.iter().map(|c| c.pid().to_string()).collect();
            println!("PIDS {}", pids.join(" "));
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
        "unregistered" => {
            let child = parallel::fork().await?;
            match child.exec(not_registered, ()).await {
                Err(e) => println!("REFUSED {e}"),
                Ok(_) => println!("UNEXPECTED ok"),
            }
        }
        "dead" => {
            let child = parallel::fork().await?;
            child.exec(nothing, ()).await?;
            child.sync().await?;
            match child.send("hello").await {
                Err(e) => println!("SEND-ERR {e}"),
                Ok(()) => println!("UNEXPECTED ok"),
            }
            match child.join("x").await {
                Err(e) => println!("JOIN-ERR {e}"),
                Ok(()) => println!("UNEXPECTED ok"),
            }
        }
        "print" => {
            let children = nfork(2).await?;
            children.exec(printer, ("hello".to_string(),)).await?;
            children.sync().await?;
            parallel::print!("parent done");
        }
        // ssh-rounds DESTINATION SSH-ARGS...: rounds with two children started through ssh.
        "ssh-rounds" => {
            let remote = over_ssh(&args[1], &args[2..]);
            let children = nfork(remote.procs(2)).await?;
            children.exec(summer, ()).await?;
            let pids: Vec<u32> = children.iter().map(|c| c.pid()).collect();
            println!("PIDS {pids:?}");
            let t = Tensor::full(&[100], 1.5f32);
            rounds(&children, &t).await?;
            drop(children);
            println!("SEGMENTS-AFTER {}", own_shm_files());
        }
        // ssh-spread DIR DESTINATION SSH-ARGS...: two "hosts" with 3 and 1
        // cores (the second runs a copy shipped to DIR), calibrated, then sfork(4).
        "ssh-spread" => {
            let copy = std::path::Path::new(&args[1]).join("forker-copy");
            let (destination, ssh_args) = (&args[2], &args[3..]);
            parallel::addremote([
                over_ssh(destination, ssh_args).cores(3),
                over_ssh(destination, ssh_args).cores(1).exe(&copy).ship(),
            ]);
            println!(
                "REMOTES {} CORES {}",
                parallel::remotes().len(),
                parallel::remote_cores()
            );
            parallel::calibrate().await?;
            println!("HOST-SPEEDS {:?}", parallel::remote_speeds());
            println!("NCHILDREN {}", parallel::nchildren());
            let children = parallel::sfork(parallel::remote_cores()).await?;
            let speeds: Vec<f64> = children.iter().map(|c| c.speed()).collect();
            println!("SPEEDS {speeds:?}");
            let calibrated = parallel::calibrate().await?;
            let speeds: Vec<f64> = calibrated.iter().map(|c| c.speed()).collect();
            println!("CALIBRATED {speeds:?}");
            children.exec(whoami, ()).await?;
            let exes = children.receive::<String>().await?;
            let copy = copy.to_string_lossy();
            let copies = exes.iter().filter(|e| e.as_str() == copy).count();
            println!("SPREAD main={} copy={copies}", exes.len() - copies);
            children.sync().await?;
            println!("NCHILDREN {}", parallel::nchildren());
        }
        // two-trees: two independent trees in this process, each with its
        // children, numbers, parent actor; closing one leaves the other.
        "two-trees" => two_trees().await?,
        // close-down: `close` stops a child in order — a Stop message to its
        // process actor, which stops its node's actors: a watch sees Shutdown.
        "close-down" => {
            let child = parallel::fork().await?;
            child.exec(forever, ()).await?;
            let watching = child.actor().clone();
            let down = tokio::spawn(async move { watching.watch().await });
            tokio::task::yield_now().await;
            let started = std::time::Instant::now();
            parallel::close().await;
            let down = tokio::time::timeout(std::time::Duration::from_secs(10), down).await??;
            let exit = child.try_exit().map(|e| e.success);
            println!(
                "CLOSE-DOWN {:?} exit-ok {exit:?} in {} ms",
                down.reason,
                started.elapsed().as_millis()
            );
        }
        // actor: a child's process actor is watched like any actor, and a
        // user actor is spawned inside the child through it.
        "actor" => {
            use parallel_integration_tests::{Add, Counter};
            let child = parallel::fork().await?;
            println!("ACTOR {}", child.actor_id() == child.actor().id());
            let counter = child.spawn(Counter::default()).await?;
            println!("COUNTER {}", counter.ask(Add(2)).await?);
            let watching = child.actor().clone();
            let down = tokio::spawn(async move { watching.watch().await });
            child.kill().await;
            let down = tokio::time::timeout(std::time::Duration::from_secs(10), down).await??;
            println!("DOWN {:?} {}", down.reason, down.id == child.actor_id());
        }
        // ssh-supervised DESTINATION SSH-ARGS...: a supervised process child
        // placed through ssh is SIGKILLed and restarted there.
        "ssh-supervised" => ssh_supervised(over_ssh(&args[1], &args[2..])).await?,
        // ssh-fail EXE DESTINATION SSH-ARGS...: a fork through ssh that must fail.
        "ssh-fail" => {
            let remote = over_ssh(&args[2], &args[3..]).exe(&args[1]);
            let started = std::time::Instant::now();
            match nfork(remote).await {
                Err(e) => println!("ERR {e}"),
                Ok(children) => println!("UNEXPECTED {} children", children.len()),
            }
            println!("SECS {:.1}", started.elapsed().as_secs_f64());
        }
        // ssh-orphans DESTINATION SSH-ARGS...: two children through ssh, then wait to be killed.
        "ssh-orphans" => {
            let children = nfork(over_ssh(&args[1], &args[2..]).procs(2)).await?;
            children.exec(forever, ()).await?;
            let pids: Vec<String> = children.iter().map(|c| c.pid().to_string()).collect();
            println!("PIDS {}", pids.join(" "));
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
        // allreduce N LEN: parent + N children reduce with every op on f32 and i64.
        "allreduce" => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
            let len: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
            let children = nfork(n).await?;
            children.exec(reducer, (len as u64,)).await?;
            // Through QUIC the schedule's order; through shared memory the
            // rank-order fold.
            let quic = std::env::var(parallel::collective::TRANSPORT_VAR).is_ok();
            let schedule = Schedule::allreduce(len, n + 1, 4)?;
            for (name, op) in ops::<f32>() {
                let inputs: Vec<Vec<f32>> = (0..=n).map(|r| input_f32(r, len)).collect();
                let expected = reference(quic, &schedule, &op, &inputs)?;
                println!("REF f32 {name} {}", digest(&expected));
                let mut v = inputs[0].clone();
                children.all_reduce(&mut v, op).await?;
                println!("RESULT f32 {name} rank 0 {}", digest(&v));
            }
            let schedule = Schedule::allreduce(len, n + 1, 8)?;
            for (name, op) in ops::<i64>() {
                let inputs: Vec<Vec<i64>> = (0..=n).map(|r| input_i64(r, len)).collect();
                let expected = reference(quic, &schedule, &op, &inputs)?;
                println!("REF i64 {name} {}", digest(&expected));
                let mut v = inputs[0].clone();
                children.all_reduce(&mut v, op).await?;
                println!("RESULT i64 {name} rank 0 {}", digest(&v));
            }
            children.sync().await?;
            println!("NCHILDREN {}", parallel::nchildren());
        }
        // allreduce-kill: child 2 of 3 dies while the others wait in all_reduce.
        "allreduce-kill" => {
            let children = nfork(3).await?;
            children.exec(dying_reducer, ()).await?;
            let started = std::time::Instant::now();
            let mut v = input_f32(0, 1001);
            match children.all_reduce(&mut v, ReduceOp::Sum).await {
                Err(e) => println!("ABORTED {} ms: {e}", started.elapsed().as_millis()),
                Ok(()) => println!("UNEXPECTED ok"),
            }
            children[0].sync().await?;
            children[2].sync().await?;
            println!("SYNCED");
        }
        other => return Err(format!("unknown scenario {other:?}").into()),
    }
    Ok(())
}
