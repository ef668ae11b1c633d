//! The test parent for the collectives: forks children of itself and runs
//! one scenario, named by the first argument. Every rank checks its own
//! result against the sequential reference (every rank can compute every
//! rank's input) and prints `OK <what> rank <r>` or `BAD <what> rank <r> ...`.
//! With `PARALLEL_COLLECTIVE_TRANSPORT=quic` the collectives run over the
//! QUIC links (the path of children on other hosts) instead of shared memory.

use parallel::collective::{self, ReduceOp, Schedule};
use parallel::{Children, ProcessError, nfork};
use parallel_integration_tests::{input_f32 as floats, input_i64 as ints};

/// The left fold in rank order of every rank's `floats` with `op`.
fn folded(ranks: usize, len: usize, op: &ReduceOp<f32>) -> Vec<f32> {
    let inputs: Vec<Vec<f32>> = (0..ranks).map(|r| floats(r, len)).collect();
    let parts: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    op.fold(&parts).unwrap_or_default()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn report(what: &str, rank: usize, ok: bool, detail: impl std::fmt::Debug) {
    if ok {
        println!("OK {what} rank {rank}");
    } else {
        println!("BAD {what} rank {rank} {detail:?}");
    }
}

/// True when the parent runs the collectives over QUIC.
fn quic() -> bool {
    std::env::var(collective::TRANSPORT_VAR)
        .is_ok_and(|v| v.eq_ignore_ascii_case("quic") || v.eq_ignore_ascii_case("relay"))
}

/// What every rank checks after each collective of the `every` scenario.
struct Expect {
    rank: usize,
    ranks: usize,
    len: usize,
    /// Over QUIC, all_reduce gives its schedule's reference, not the
    /// rank-order fold.
    quic: bool,
}

/// The root of each rooted collective: the last rank, so a child is root.
fn root(ranks: usize) -> usize {
    ranks - 1
}

impl Expect {
    fn all_reduce(&self, op: &str, v: &[f32], reduce_op: &ReduceOp<f32>) {
        let expected = if self.quic {
            let inputs: Vec<Vec<f32>> = (0..self.ranks).map(|r| floats(r, self.len)).collect();
            Schedule::allreduce(self.len, self.ranks, 4)
                .and_then(|s| s.reference(reduce_op, &inputs))
                .unwrap_or_default()
        } else {
            folded(self.ranks, self.len, reduce_op)
        };
        report(
            &format!("all_reduce-{op}"),
            self.rank,
            bits(v) == bits(&expected),
            v.len(),
        );
    }

    fn reduce(&self, v: &[f32]) {
        let expected = if self.rank == root(self.ranks) {
            folded(self.ranks, self.len, &ReduceOp::Sum)
        } else {
            floats(self.rank, self.len)
        };
        report("reduce", self.rank, bits(v) == bits(&expected), v.len());
    }

    fn broadcast(&self, v: &[i64]) {
        report(
            "broadcast",
            self.rank,
            v == ints(root(self.ranks), self.len),
            v.len(),
        );
    }

    fn all(&self) -> Vec<i64> {
        (0..self.ranks).flat_map(|r| ints(r, self.len)).collect()
    }

    fn gather(&self, v: &Option<Vec<i64>>) {
        let expected = (self.rank == 0).then(|| self.all());
        report(
            "gather",
            self.rank,
            *v == expected,
            v.as_ref().map(Vec::len),
        );
    }

    fn all_gather(&self, v: &[i64]) {
        report("all_gather", self.rank, v == self.all(), v.len());
    }

    fn scatter(&self, v: &[i64]) {
        report(
            "scatter",
            self.rank,
            v == ints(self.rank, self.len),
            v.len(),
        );
    }
}

fn ops() -> [(&'static str, ReduceOp<f32>); 4] {
    [
        ("sum", ReduceOp::Sum),
        ("prod", ReduceOp::Prod),
        ("min", ReduceOp::Min),
        ("max", ReduceOp::Max),
    ]
}

/// A child of the `every` scenario: runs every collective, in the parent's order.
#[parallel::remote]
fn every(ranks: u64, len: u64, quic: bool) {
    let (ranks, len) = (ranks as usize, len as usize);
    let rank = parallel::id() as usize;
    let e = Expect {
        rank,
        ranks,
        len,
        quic,
    };
    let run = || -> Result<(), ProcessError> {
        for (name, op) in ops() {
            let mut v = floats(rank, len);
            collective::all_reduce(&mut v, op.clone())?;
            e.all_reduce(name, &v, &op);
        }
        let mut v = floats(rank, len);
        collective::reduce(&mut v, ReduceOp::Sum, root(ranks))?;
        e.reduce(&v);
        let mut b = ints(rank, len);
        collective::broadcast(&mut b, root(ranks))?;
        e.broadcast(&b);
        e.gather(&collective::gather(&ints(rank, len), 0)?);
        e.all_gather(&collective::all_gather(&ints(rank, len))?);
        let send = if rank == root(ranks) {
            e.all()
        } else {
            Vec::new()
        };
        let mut part = vec![0i64; len];
        collective::scatter(&send, &mut part, root(ranks))?;
        e.scatter(&part);
        collective::barrier()?;
        report("barrier", rank, true, ());
        Ok(())
    };
    if let Err(err) = run() {
        println!("BAD error rank {rank} {err}");
    }
}

/// The parent's side of the `every` scenario.
async fn every_in_parent(children: &Children, len: usize) -> Result<(), ProcessError> {
    let ranks = children.len() + 1;
    let e = Expect {
        rank: 0,
        ranks,
        len,
        quic: quic(),
    };
    for (name, op) in ops() {
        let mut v = floats(0, len);
        children.all_reduce(&mut v, op.clone()).await?;
        e.all_reduce(name, &v, &op);
    }
    let mut v = floats(0, len);
    children.reduce(&mut v, ReduceOp::Sum, root(ranks)).await?;
    e.reduce(&v);
    let mut b = ints(0, len);
    children.broadcast(&mut b, root(ranks)).await?;
    e.broadcast(&b);
    e.gather(&children.gather(&ints(0, len), 0).await?);
    e.all_gather(&children.all_gather(&ints(0, len)).await?);
    let mut part = vec![0i64; len];
    children.scatter(&[], &mut part, root(ranks)).await?;
    e.scatter(&part);
    children.barrier().await?;
    report("barrier", 0, true, ());
    Ok(())
}

/// A child of the `sigkill` scenario: child 2 never joins (the parent
/// SIGKILLs it); the others see the collective fail, then run one more in
/// the group the parent rebuilds from the survivors.
#[parallel::remote]
fn survivor(len: u64) {
    let id = parallel::id();
    if id == 2 {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    // ANCHOR: survivor
    let mut v = vec![id as f64; len as usize];
    match collective::all_reduce(&mut v, ReduceOp::Sum) {
        Ok(()) => println!("CHILD-UNEXPECTED ok"),
        Err(e) => println!("CHILD-ERR {id} {e}"),
    }
    // ANCHOR_END: survivor
    let mut v = vec![id as f64; len as usize];
    match collective::all_reduce(&mut v, ReduceOp::Sum) {
        // Ranks: the parent (0.0), child 1 and child 3.
        Ok(()) if v.iter().all(|&x| x == 4.0) => println!("CHILD-REBUILT {id}"),
        Ok(()) => println!("CHILD-WRONG {id} {:?}", &v[..v.len().min(3)]),
        Err(e) => println!("CHILD-ERR-AGAIN {id} {e}"),
    }
}

/// Prints `MISUSE <what> rank <r>` when `result` is the misuse error every
/// rank must get for calls that disagree, `BAD ...` otherwise.
fn expect_misuse<R: std::fmt::Debug>(what: &str, rank: usize, result: Result<R, ProcessError>) {
    match result {
        Err(ProcessError::Misuse(_)) => println!("MISUSE {what} rank {rank}"),
        other => println!("BAD {what} rank {rank} {other:?}"),
    }
}

/// The calls of the `misuse` scenario on rank `rank` (the parent's through
/// `calls`, a child's through `parallel::collective`): a bad root, a root
/// passing scatter a `send` of the wrong length, rank 1 passing another
/// length; then a right call, which must work.
#[parallel::remote]
fn misuse(ranks: u64, len: u64) {
    let (ranks, len) = (ranks as usize, len as usize);
    let rank = parallel::id() as usize;
    expect_misuse(
        "bad-root",
        rank,
        collective::gather(&ints(rank, len), ranks),
    );
    let send = if rank == 1 {
        vec![0i64; ranks * len + 1]
    } else {
        Vec::new()
    };
    let mut part = vec![0i64; len];
    expect_misuse(
        "scatter-len",
        rank,
        collective::scatter(&send, &mut part, 1),
    );
    let mut b = ints(rank, if rank == 1 { len + 1 } else { len });
    expect_misuse("length", rank, collective::broadcast(&mut b, 0));
    let e = Expect {
        rank,
        ranks,
        len,
        quic: false,
    };
    match collective::all_gather(&ints(rank, len)) {
        Ok(v) => e.all_gather(&v),
        Err(err) => println!("BAD all_gather rank {rank} {err}"),
    }
}

/// The parent's side of the `misuse` scenario.
async fn misuse_in_parent(children: &Children, len: usize) {
    let ranks = children.len() + 1;
    expect_misuse("bad-root", 0, children.gather(&ints(0, len), ranks).await);
    let mut part = vec![0i64; len];
    expect_misuse("scatter-len", 0, children.scatter(&[], &mut part, 1).await);
    let mut b = ints(0, len);
    expect_misuse("length", 0, children.broadcast(&mut b, 0).await);
    let e = Expect {
        rank: 0,
        ranks,
        len,
        quic: false,
    };
    match children.all_gather(&ints(0, len)).await {
        Ok(v) => e.all_gather(&v),
        Err(err) => println!("BAD all_gather rank 0 {err}"),
    }
}

/// A child of the `star-kill` scenario: child 2 never joins (the parent
/// SIGKILLs it) a gather, which fails on the others; then the survivors
/// broadcast.
#[parallel::remote]
fn star_survivor(len: u64) {
    let id = parallel::id();
    let len = len as usize;
    if id == 2 {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    match collective::gather(&ints(id as usize, len), 0) {
        Ok(_) => println!("CHILD-UNEXPECTED ok"),
        Err(e) => println!("CHILD-ERR {id} {e}"),
    }
    let mut b = vec![0i64; len];
    match collective::broadcast(&mut b, 0) {
        Ok(()) if b == ints(0, len) => println!("CHILD-REBUILT {id}"),
        Ok(()) => println!("CHILD-WRONG {id}"),
        Err(e) => println!("CHILD-ERR-AGAIN {id} {e}"),
    }
}

/// Runs `call` (a collective of `children`) and SIGKILLs child 2 300 ms
/// into it; prints how long after the kill the call failed
/// (`ABORTED <ms> ms: <error>`), or `UNEXPECTED ok`.
async fn kill_child_2_during<R>(
    children: &Children,
    call: impl std::future::Future<Output = Result<R, ProcessError>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let victim = children.by_id(2).ok_or("no child 2")?.pid();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let at = std::time::Instant::now();
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .await;
        at
    });
    let result = call.await;
    let failed_at = std::time::Instant::now();
    let killed_at = killer.await?;
    let ms = failed_at.saturating_duration_since(killed_at).as_millis();
    match result {
        Err(e) => println!("ABORTED {ms} ms: {e}"),
        Ok(_) => println!("UNEXPECTED ok"),
    }
    Ok(())
}

/// A child of the second batch of `ranks`: prints its number and the rank
/// the parent gave it, then checks an all_reduce of the ranks.
#[parallel::remote]
fn ranked() {
    let id = parallel::id();
    let (rank, size) = match (collective::rank(), collective::size()) {
        (Ok(rank), Ok(size)) => (rank, size),
        (r, s) => return println!("BAD rank {r:?} size {s:?}"),
    };
    println!("RANK id={id} rank={rank} size={size}");
    let mut v = [rank as f64];
    match collective::all_reduce(&mut v, ReduceOp::Sum) {
        Ok(()) if v[0] == (0..size).sum::<usize>() as f64 => println!("SUM ok {rank}"),
        other => println!("BAD sum {rank} {other:?} {v:?}"),
    }
}

/// One all_reduce of 1 in the child's current group, checked against the
/// group's size, which (with the rank) is known once the call began: a
/// group is announced by the parent's call that forms it.
fn reduce_ranks(what: &str) {
    let mut v = [1.0f64];
    let result = collective::all_reduce(&mut v, ReduceOp::Sum);
    let (rank, size) = match (collective::rank(), collective::size()) {
        (Ok(rank), Ok(size)) => (rank, size),
        (r, s) => return println!("BAD {what} rank {r:?} size {s:?}"),
    };
    match result {
        Ok(()) if v[0] == size as f64 => {
            println!("OK {what} id {} rank {rank} of {size}", parallel::id())
        }
        other => println!("BAD {what} id {} {other:?} {v:?}", parallel::id()),
    }
}

/// A child of `regroup`: the whole group, then (children 1 and 2 only) a
/// group without child 3, then the whole group again.
#[parallel::remote]
fn regrouped() {
    reduce_ranks("all");
    if parallel::id() != 3 {
        reduce_ranks("pair");
    }
    reduce_ranks("again");
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("");
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let len: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1001);
    match scenario {
        // every N LEN: parent + N children run every collective.
        "every" => {
            let children = nfork(n).await?;
            children
                .exec(every, ((n + 1) as u64, len as u64, quic()))
                .await?;
            if let Err(e) = every_in_parent(&children, len).await {
                println!("BAD error rank 0 {e}");
            }
            children.sync().await?;
            println!("DONE");
        }
        // sigkill N LEN: child 2 is SIGKILLed while every rank waits in all_reduce.
        "sigkill" => {
            let children = nfork(n).await?;
            children.exec(survivor, (len as u64,)).await?;
            let mut v = vec![0.0f64; len];
            kill_child_2_during(&children, children.all_reduce(&mut v, ReduceOp::Sum)).await?;
            // ANCHOR: rebuild
            let survivors: Children = children.iter().filter(|c| c.id() != 2).cloned().collect();
            let mut v = vec![0.0f64; len];
            survivors.all_reduce(&mut v, ReduceOp::Sum).await?;
            // ANCHOR_END: rebuild
            println!(
                "REBUILT {}",
                if v.iter().all(|&x| x == 4.0) {
                    "ok"
                } else {
                    "wrong"
                }
            );
            survivors.sync().await?;
            println!("SYNCED");
        }
        // misuse N LEN: calls that disagree fail on every rank; the next works.
        "misuse" => {
            let children = nfork(n).await?;
            children.exec(misuse, ((n + 1) as u64, len as u64)).await?;
            misuse_in_parent(&children, len).await;
            children.sync().await?;
            println!("DONE");
        }
        // star-kill N LEN: child 2 is SIGKILLed while every rank waits in a
        // gather; the survivors then broadcast.
        "star-kill" => {
            let children = nfork(n).await?;
            children.exec(star_survivor, (len as u64,)).await?;
            kill_child_2_during(&children, children.gather(&ints(0, len), 0)).await?;
            let survivors: Children = children.iter().filter(|c| c.id() != 2).cloned().collect();
            let mut b = ints(0, len);
            survivors.broadcast(&mut b, 0).await?;
            survivors.sync().await?;
            println!("SYNCED");
        }
        // ranks N: N children, then N more (a second fork), then the first
        // N stop: the survivors' ranks are 1..N, not their ids.
        "ranks" => {
            let first = nfork(n).await?;
            let second = nfork(n).await?;
            for child in first.iter() {
                child.stop(std::time::Duration::from_secs(5)).await;
            }
            second.exec(ranked, ()).await?;
            let group = second.communicator().await?;
            println!(
                "PARENT rank={} size={} backend={}",
                group.rank(),
                group.size(),
                group.backend_name()
            );
            let mut v = [0.0f64];
            group.all_reduce(&mut v, ReduceOp::Sum).await?;
            if v[0] == (0..=n).sum::<usize>() as f64 {
                println!("SUM ok 0");
            } else {
                println!("BAD sum 0 {v:?}");
            }
            second.sync().await?;
            println!("DONE");
        }
        // regroup: the parent changes the group between calls (3 children,
        // then children 1 and 2, then all 3): nothing fails.
        "regroup" => {
            let children = nfork(3).await?;
            children.exec(regrouped, ()).await?;
            let pair: Children = children.iter().filter(|c| c.id() != 3).cloned().collect();
            for (what, group) in [("all", &children), ("pair", &pair), ("again", &children)] {
                let size = group.len() + 1;
                let mut v = [1.0f64];
                match group.all_reduce(&mut v, ReduceOp::Sum).await {
                    Ok(()) if v[0] == size as f64 => {
                        println!("OK {what} id 0 rank 0 of {size}")
                    }
                    other => println!("BAD {what} id 0 {other:?} {v:?}"),
                }
            }
            children.sync().await?;
            println!("DONE");
        }
        other => return Err(format!("unknown scenario {other:?}").into()),
    }
    Ok(())
}
