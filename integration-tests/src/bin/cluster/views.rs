//! The s5 roles of the cluster tests' program: clients of engine sets
//! (direct and load-balanced views, the hub), and the functions their
//! engines run.

use std::error::Error;
use std::time::Duration;

use parallel::{JoinLine, Password};

use super::stdin_closed;

/// An engine's process id (to check which engine answered).
#[parallel::remote]
fn engine_pid() -> u32 {
    std::process::id()
}

/// A square, computed on an engine.
#[parallel::remote]
fn square(x: u64) -> u64 {
    x * x
}

/// A square after `ms` milliseconds.
#[parallel::remote]
fn slow_square(x: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

/// A square after `ms` milliseconds, except that 13 panics.
#[parallel::remote]
fn slow_square_but_13(x: u64, ms: u64) -> u64 {
    assert!(x != 13, "13 is unlucky");
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

/// The sum of the bytes.
#[parallel::remote]
fn checksum(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|b| u64::from(*b)).sum()
}

/// A square, except that 13 panics.
#[parallel::remote]
fn square_but_13(x: u64) -> u64 {
    if x == 13 {
        panic!("13 is unlucky");
    }
    x * x
}

/// How many of `squares` are the square of their place.
fn right_squares<E>(squares: &[Result<u64, E>]) -> usize {
    squares
        .iter()
        .enumerate()
        .filter(|(i, r)| r.as_ref().ok() == Some(&((*i as u64) * (*i as u64))))
        .count()
}

/// Direct views on `engines` engines: scatter / gather over 1, 3 and all,
/// multi-target order, a wrong type, clear.
pub(crate) async fn client(
    line: JoinLine,
    password: Password,
    engines: usize,
) -> Result<(), Box<dyn Error>> {
    use parallel::client::{Client, ClientError, Targets};
    let mut rc = Client::connect(&line, password).await?;
    let ids = rc
        .wait_for_engines(engines, Duration::from_secs(60))
        .await?;
    println!("IDS {ids:?}");
    for targets in [Targets::One(0), Targets::Many(vec![0, 1, 2]), Targets::All] {
        let view = rc.view(targets)?;
        view.scatter("a", (0..16u64).collect()).await?;
        let parts: Vec<Vec<u64>> = view.pull("a").await?;
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        let gathered: Vec<u64> = view.gather("a").await?;
        let in_order = gathered == (0..16).collect::<Vec<_>>();
        println!(
            "SCATTER {} SIZES {sizes:?} IN_ORDER {in_order}",
            view.targets().len()
        );
    }
    let last = rc.view(-1)?.targets().to_vec();
    let stepped = rc
        .view(Targets::Stepped { start: 0, step: 2 })?
        .targets()
        .to_vec();
    println!("LAST {last:?} STEPPED {stepped:?}");
    // Asking twice for the same engines gives the same view.
    println!(
        "SAME_VIEW {} {} {}",
        rc.view(-1)? == rc.view(last.clone())?,
        rc.view(Targets::Stepped { start: 0, step: 2 })? == rc.view([0u32, 2])?,
        rc.view(0)? == rc.view(-1)?
    );
    let order = [2u32, 0, 1];
    let pids = rc.view(order)?.apply_sync(engine_pid, ()).await?;
    let expected: Vec<u32> = order.iter().filter_map(|id| rc.engine_pid(*id)).collect();
    println!("ORDER {}", if pids == expected { "ok" } else { "WRONG" });
    let squares = rc.direct_view_all().apply_sync(square, (9u64,)).await?;
    println!("SQUARES {squares:?}");
    let mut later = rc.view(0)?.apply(square, (3u64,));
    let done = later.wait(Duration::from_secs(30)).await;
    println!("ASYNC {done} {}", later.get().await?[0]);
    // Results as read-only views of the replies, and owned copies of them.
    let seen = rc.view([1u32, 2])?.apply_received(square, (11u64,)).await?;
    let owned = seen
        .iter()
        .map(|r| r.to_owned())
        .collect::<Result<Vec<u64>, _>>()?;
    println!("RECEIVED {owned:?} {}", seen[1].to_native());
    rc.view(0)?.push("x", &5u64).await?;
    match rc.view(0)?.pull::<String>("x").await {
        Err(e @ ClientError::WrongType { .. }) => println!("WRONGTYPE {e}"),
        other => println!("UNEXPECTED {other:?}"),
    }
    rc.direct_view_all().clear().await?;
    match rc.view(0)?.pull::<u64>("x").await {
        Err(ClientError::Missing { .. }) => println!("CLEARED"),
        other => println!("UNEXPECTED {other:?}"),
    }
    match rc.view(99) {
        Err(e) => println!("NOSUCH {e}"),
        Ok(_) => println!("UNEXPECTED view 99"),
    }
    let direct = rc.view(vec![1])?.apply_sync(square_but_13, (13u64,)).await;
    println!(
        "DIRECT_PANIC {}",
        matches!(&direct, Err(ClientError::RemoteError(e)) if e.engine == Some(1) && e.message == "13 is unlucky" && e.location.is_some())
    );
    let mut lb = rc.load_balanced_view();
    let squares = lb
        .map_sync(square_but_13, (0..200u64).map(|x| (x,)))
        .await?;
    let right = squares
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != 13 && r.as_ref().ok() == Some(&((*i as u64) * (*i as u64))))
        .count();
    match &squares[13] {
        Err(ClientError::RemoteError(e)) => println!(
            "LB {right} RIGHT; 13: {e}; STRUCTURED {} {} {}",
            e.engine.is_some(),
            e.message == "13 is unlucky",
            e.location
                .as_ref()
                .is_some_and(|at| at.contains("src/bin/cluster/views.rs:"))
        ),
        other => println!("UNEXPECTED {other:?}"),
    }
    println!("LB ONE {}", lb.apply_sync(square, (12u64,)).await?);
    let one = lb.apply(square, (6u64,)).await?;
    let many = lb.map(square, (0..5u64).map(|x| (x,))).await?;
    let ids = (one.msg_ids().len(), many.msg_ids().len());
    let many: Vec<u64> = many.get().await?.into_iter().collect::<Result<_, _>>()?;
    println!("LB ASYNC {} {many:?} ids {ids:?}", one.get().await?);
    let queues = rc.queue_status().await?;
    let completed: u64 = queues.engines.iter().map(|q| q.completed).sum();
    let queued: u32 = queues.engines.iter().map(|q| q.queued).sum();
    println!(
        "QUEUE {} engines, {completed} completed, {queued} queued, {} unassigned",
        queues.engines.len(),
        queues.unassigned
    );
    // The first task is the slowest: imap still gives them in input order.
    let mut it = rc
        .load_balanced_view()
        .imap(slow_square, [(3u64, 60u64), (4, 0), (5, 10), (6, 0)])
        .await?;
    let mut ordered = Vec::new();
    while let Some(r) = it.next().await {
        ordered.push(r?);
    }
    println!("IMAP {ordered:?} {}", it.remaining());
    // 3 MiB: through shared memory both ways (the engines run here).
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let one = rc.view(vec![0])?;
    one.push("big", &big).await?;
    let back: Vec<Vec<u8>> = one.pull("big").await?;
    let seen = one.pull_received::<Vec<u8>>("big").await?;
    // A tracked apply with a 3 MiB argument: its send is seen to leave.
    let tracked = one.apply_tracked(checksum, (big.clone(),));
    let left = tracked.wait_on_send(Duration::from_secs(30)).await.is_ok() && tracked.sent();
    let untracked = rc.view(0)?.apply(square, (2u64,));
    println!(
        "TRACKED {left} {} {}",
        untracked.sent(),
        tracked.await?[0] == big.iter().map(|b| u64::from(*b)).sum::<u64>()
    );
    untracked.await?;
    println!(
        "BIG {} {}",
        back[0] == big,
        seen[0].as_slice() == big.as_slice()
    );
    // 30 tasks in chunks of 7: 5 tasks; 13 fails alone.
    let chunked = rc
        .load_balanced_view()
        .chunksize(7)
        .map(square_but_13, (0..30u64).map(|x| (x,)))
        .await?;
    let tasks = chunked.msg_ids().len();
    let chunked = chunked.get().await?;
    let right = chunked
        .iter()
        .enumerate()
        .filter(|(i, r)| r.as_ref().ok() == Some(&((*i as u64) * (*i as u64))))
        .count();
    let alone =
        matches!(&chunked[13], Err(ClientError::RemoteError(e)) if e.message == "13 is unlucky");
    let mut it = rc
        .load_balanced_view()
        .chunksize(4)
        .imap(square, (0..10u64).map(|x| (x,)))
        .await?;
    let mut streamed = Vec::new();
    while let Some(r) = it.next().await {
        streamed.push(r?);
    }
    println!(
        "CHUNKS {tasks} tasks {} results {right} right {alone} {streamed:?}",
        chunked.len()
    );
    let all = rc.direct_view_all();
    all.set("k", &7u32).await?;
    all.update([("m".to_string(), 1u32), ("n".to_string(), 2u32)])
        .await?;
    let got: Vec<u32> = all.get("k").await?;
    let n: Vec<u32> = all.get("n").await?;
    println!("DICT {got:?} {n:?}");
    let mapped = all
        .map_sync(square, (0..10u64).map(|x| (x,)).collect())
        .await?;
    println!("DMAP {mapped:?}");
    let mut pending = all.map(square, (0..5u64).map(|x| (x,)).collect());
    let ready = pending.wait(Duration::from_secs(30)).await;
    let noted = pending.metadata().iter().flatten().count();
    println!("DMAP_ASYNC {ready} {noted} {:?}", pending.get().await?);
    // The first item is the slowest: imap still gives them in input order,
    // and 13's panic fails only its own item.
    let mut it = all.imap(
        slow_square_but_13,
        vec![(3u64, 300u64), (4, 0), (13, 0), (5, 0), (6, 0), (7, 0)],
    );
    let mut ordered = Vec::new();
    while let Some(r) = it.next().await {
        ordered.push(r.map_or_else(|e| e.to_string(), |v| v.to_string()));
    }
    println!("DIMAP {ordered:?} {}", it.remaining());
    let remote = all.remote(square);
    println!("REMOTEFN {:?}", remote.call((4u64,)).await?);
    // Not awaited at once: the call goes on while this one runs.
    let kept = remote.call((5u64,));
    let parallel = all.parallel(square);
    println!(
        "PARALLELFN {:?} {:?}",
        parallel.call((1..6u64).map(|x| (x,)).collect()).await?,
        kept.await?
    );
    // The last engine stops for good: it leaves, and no new one comes.
    let last = *rc.ids().await?.last().ok_or("no engines")?;
    let retired = rc.shutdown_engines(vec![last]).await?;
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        while rc.ids().await.is_ok_and(|ids| ids.contains(&last)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("RETIRED {retired:?} {gone} {:?}", rc.ids().await?);
    rc.close().await;
    Ok(())
}

/// A load-balanced map while the test kills an engine: every task's result
/// arrives; a direct apply to the dead engine fails at once.
pub(crate) async fn lb_kill(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::Client;
    let mut rc = Client::connect(&line, password).await?;
    let ids = rc.wait_for_engines(3, Duration::from_secs(60)).await?;
    let victim = ids[0];
    println!("VICTIM {}", rc.engine_pid(victim).unwrap_or(0));
    println!("MAPPING");
    let squares = rc
        .load_balanced_view()
        .map_sync(slow_square, (0..300u64).map(|x| (x, 10u64)))
        .await?;
    let right = right_squares(&squares);
    println!("LBKILL {right} RIGHT");
    let started = std::time::Instant::now();
    let dead = rc.view([victim])?.apply_sync(square, (2u64,)).await;
    let how = match &dead {
        Err(parallel::client::ClientError::EngineDied(_)) => "died".to_owned(),
        Err(e) => format!("failed otherwise: {e}"),
        Ok(_) => "answered".to_owned(),
    };
    println!("DEADAPPLY {how} in {} ms", started.elapsed().as_millis());
    rc.close().await;
    Ok(())
}

/// 200 slow tasks on 2 engines, all aborted at once: those that had not
/// started fail as aborted, the others give their squares; nothing is
/// outstanding after, and aborting finished tasks aborts nothing;
/// `Client::wait` says false at once and true once all are back.
pub(crate) async fn lb_abort(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::{Client, ClientError};
    let mut rc = Client::connect(&line, password).await?;
    rc.wait_for_engines(2, Duration::from_secs(60)).await?;
    let all = rc
        .load_balanced_view()
        .map(slow_square, (0..200u64).map(|x| (x, 20u64)))
        .await?;
    let ids = all.msg_ids().to_vec();
    let at_once = rc.wait(&ids, Duration::ZERO).await?;
    let aborted = all.abort().await?;
    println!("ABORTED {}", aborted.len());
    let waited = rc.wait(&ids, Duration::from_secs(60)).await?;
    println!("WAITED {at_once} {waited}");
    let squares = all.get_timeout(Duration::from_secs(60)).await?;
    let right = right_squares(&squares);
    let failed_aborted = squares
        .iter()
        .enumerate()
        .filter(|(i, r)| matches!(r, Err(ClientError::Aborted)) && aborted.contains(&ids[*i]))
        .count();
    println!(
        "LBABORT {right} right {failed_aborted} aborted {} outstanding",
        rc.outstanding().len()
    );
    println!("AGAIN {}", rc.abort(&ids).await?.len());
    rc.close().await;
    Ok(())
}

/// Which engine process runs it, after `ms` milliseconds.
#[parallel::remote]
fn engine_process(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// Where a scheduler puts tasks: 6 short tasks one after another (ROTATE),
/// then one long task and 4 short ones while it runs (AVOID: the long one's
/// engine, then the short ones' engines).
pub(crate) async fn placements(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::Client;
    let mut rc = Client::connect(&line, password).await?;
    rc.wait_for_engines(3, Duration::from_secs(60)).await?;
    let mut lb = rc.load_balanced_view();
    let mut seq = Vec::new();
    for _ in 0..6 {
        seq.push(lb.apply_sync(engine_process, (0u64,)).await?);
    }
    println!("ROTATE {seq:?}");
    let long = lb.apply(engine_process, (1500u64,)).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut short = Vec::new();
    for _ in 0..4 {
        short.push(lb.apply_sync(engine_process, (0u64,)).await?);
    }
    println!("AVOID {} {short:?}", long.get().await?);
    rc.close().await;
    Ok(())
}

/// Opens an engine set, maps `square` over 0..6 through the head, prints
/// `SET <id>`, then stays its owner until its standard input closes.
pub(crate) async fn hub_owner(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::Client;
    let mut rc = Client::connect(&line, password).await?;
    rc.wait_for_engines(2, Duration::from_secs(60)).await?;
    let squares = rc
        .load_balanced_view()
        .map_sync(square, (0..6u64).map(|x| (x,)))
        .await?;
    println!("OWNER {} RIGHT", right_squares(&squares));
    println!("SET {}", rc.id());
    stdin_closed().await;
    rc.close().await;
    Ok(())
}

/// Prints its two engines' numbers, then, once two other engines serve it
/// (the test replaces the node while the head is down), theirs.
pub(crate) async fn renumber(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::Client;
    let mut rc = Client::connect(&line, password).await?;
    let first = rc.wait_for_engines(2, Duration::from_secs(60)).await?;
    println!("FIRST {first:?}");
    let after = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Ok(ids) = rc.ids().await
                && ids.len() == 2
                && ids.iter().all(|id| !first.contains(id))
            {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await?;
    println!("AFTER {after:?}");
    rc.close().await;
    Ok(())
}

/// Another client of engine set `set`: what the hub says of tasks 0..6 (and
/// 99, never submitted), their results, a refused submit, purges.
pub(crate) async fn hub_reader(
    line: JoinLine,
    password: Password,
    set: parallel::client::EngineSetId,
) -> Result<(), Box<dyn Error>> {
    use parallel::client::{Client, ClientError};
    let mut rc = Client::attach(&line, password, set).await?;
    let status = rc.result_status(&[0, 1, 2, 3, 4, 5, 99]).await?;
    println!(
        "STATUS completed {:?} pending {:?} unknown {:?}",
        status.completed, status.pending, status.unknown
    );
    let squares = rc
        .get_result::<u64>(&[0, 1, 2, 3, 4, 5], Duration::from_secs(30))
        .await?;
    println!("RESULTS {} RIGHT", right_squares(&squares));
    let refused = rc.load_balanced_view().apply(square, (3u64,)).await;
    println!(
        "SUBMIT NOT_OWNER {}",
        matches!(refused, Err(ClientError::NotOwner(_)))
    );
    println!("PURGED {:?}", rc.purge_results(&[0, 1]).await?);
    let after = rc.result_status(&[0, 1, 2]).await?;
    println!(
        "AFTER completed {:?} unknown {:?}",
        after.completed, after.unknown
    );
    let gone = rc.get_result::<u64>(&[1], Duration::from_secs(5)).await?;
    println!(
        "GONE {}",
        matches!(gone[..], [Err(ClientError::UnknownTask(1))])
    );
    println!("PURGED_ALL {:?}", rc.purge_all_results().await?);
    let pids: Vec<String> = rc
        .ids()
        .await?
        .iter()
        .filter_map(|id| rc.engine_pid(*id))
        .map(|pid| pid.to_string())
        .collect();
    println!("PIDS {}", pids.join(","));
    rc.shutdown(true).await?;
    println!("SHUTDOWN");
    Ok(())
}

/// Twice `x`, saying so with `parallel::print!`.
#[parallel::remote]
fn chatty(x: u64) -> u64 {
    parallel::print!("doubling {x}");
    x * 2
}

/// When it started and ended (ms since the Unix epoch) and where, after
/// `ms` milliseconds.
#[parallel::remote]
fn timed(ms: u64) -> (u64, u64, u32) {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let start = now();
    std::thread::sleep(Duration::from_millis(ms));
    (start, now(), std::process::id())
}

/// Dependencies on 2 engines: after, follow, success only or not, an
/// unknown dependency, a timeout that fires; then a task with no retries
/// whose engine the test kills (`KILL <pid>`); tasks on one target engine,
/// and on the dead one.
pub(crate) async fn dependencies(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::{Client, ClientError};
    let mut rc = Client::connect(&line, password).await?;
    let engines = rc.wait_for_engines(2, Duration::from_secs(60)).await?;
    let mut told = rc.load_balanced_view().apply(chatty, (21u64,)).await?;
    let answered = told.wait(Duration::from_secs(30)).await;
    let meta = told.metadata().pop().flatten().ok_or("no metadata")?;
    let ordered =
        meta.submitted <= meta.received && meta.started.is_some_and(|s| Some(s) <= meta.completed);
    println!(
        "META {answered} {} {ordered} {:?}",
        meta.engine.is_some_and(|e| engines.contains(&e)),
        meta.printed
    );
    let direct = rc.view(vec![engines[1]])?.apply(chatty, (1u64,));
    let direct_meta = loop {
        if let Some(m) = direct.metadata().pop().flatten() {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("DIRECT_META {}", direct_meta.engine == Some(engines[1]));
    let first = rc.load_balanced_view().apply(timed, (400u64,)).await?;
    let ids = first.msg_ids().to_vec();
    let after = rc
        .load_balanced_view()
        .after(&ids)
        .apply(timed, (0u64,))
        .await?;
    let follow = rc
        .load_balanced_view()
        .follow(&ids)
        .apply(timed, (0u64,))
        .await?;
    let (first, after, follow) = (first.get().await?, after.get().await?, follow.get().await?);
    println!("AFTER {}", after.0 >= first.1);
    println!("FOLLOW {} {}", follow.0 >= first.1, follow.2 == first.2);

    let bad = rc
        .load_balanced_view()
        .apply(square_but_13, (13u64,))
        .await?;
    let bad_ids = bad.msg_ids().to_vec();
    let strict = rc
        .load_balanced_view()
        .after(&bad_ids)
        .apply(square, (2u64,))
        .await?;
    let lenient = rc
        .load_balanced_view()
        .after(&bad_ids)
        .success_only(false)
        .apply(square, (3u64,))
        .await?;
    let unknown = rc
        .load_balanced_view()
        .after(&[999_999])
        .apply(square, (4u64,))
        .await?;
    let impossible =
        |r: &Result<u64, ClientError>| matches!(r, Err(ClientError::ImpossibleDependency(_)));
    println!(
        "IMPOSSIBLE {} {} {}",
        impossible(&strict.get().await),
        lenient.get().await.ok() == Some(9),
        impossible(&unknown.get().await)
    );
    let _ = bad.get().await;

    let long = rc.load_balanced_view().apply(timed, (3000u64,)).await?;
    let started = std::time::Instant::now();
    let waits = rc
        .load_balanced_view()
        .after(long.msg_ids())
        .timeout(Duration::from_millis(300))
        .apply(square, (5u64,))
        .await?;
    let timed_out = matches!(waits.get().await, Err(ClientError::DependencyTimeout));
    println!(
        "TIMEOUT {timed_out} {}",
        started.elapsed() < Duration::from_millis(2500)
    );
    let _ = long.get().await?;

    let once = rc
        .load_balanced_view()
        .retries(0)
        .apply(engine_process, (5000u64,))
        .await?;
    let holder = loop {
        let status = rc.queue_status().await?;
        if let Some(e) = status.engines.iter().find(|e| e.queued > 0) {
            break e.engine;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let survivor = if holder == engines[0] {
        engines[1]
    } else {
        engines[0]
    };
    println!("KILL {}", rc.engine_pid(holder).unwrap_or(0));
    let died = once.get_timeout(Duration::from_secs(30)).await;
    println!(
        "NO_RETRY {}",
        matches!(&died, Err(ClientError::EngineDied(why)) if why.contains("retries"))
    );
    let on_one = rc
        .load_balanced_view()
        .targets(vec![survivor])?
        .map_sync(engine_process, (0..6).map(|_| (0u64,)))
        .await?;
    let want = rc.engine_pid(survivor);
    println!(
        "TARGETS {}",
        on_one.iter().all(|pid| pid.as_ref().ok() == want.as_ref())
    );
    let orphan = rc
        .load_balanced_view()
        .targets(vec![holder])?
        .apply(square, (6u64,))
        .await?;
    let orphan = orphan.get_timeout(Duration::from_secs(30)).await;
    println!(
        "GONE_TARGET {}",
        matches!(orphan, Err(ClientError::ImpossibleDependency(_)))
    );
    rc.close().await;
    Ok(())
}

/// Whether this is process `pid` (a `depend` predicate).
#[parallel::remote]
fn is_process(pid: u32) -> bool {
    std::process::id() == pid
}

/// Tasks that require `bigmem` (one node of 3 engines offers it): the
/// engine processes that ran them (`BIGMEM [pids]`); tasks that require a
/// GPU, which no node here offers, are impossible; tasks whose `depend`
/// predicate holds on one engine only run there, and on none fail.
pub(crate) async fn requirements(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::{Client, ClientError};
    let mut rc = Client::connect(&line, password).await?;
    rc.wait_for_engines(3, Duration::from_secs(60)).await?;
    let ran = rc
        .load_balanced_view()
        .require(&["bigmem"])
        .map_sync(engine_process, (0..6).map(|_| (20u64,)))
        .await?;
    let pids: Vec<u32> = ran.into_iter().collect::<Result<_, _>>()?;
    println!("BIGMEM {pids:?}");
    let gpu = rc
        .load_balanced_view()
        .require(&["gpu"])
        .apply_sync(square, (3u64,))
        .await;
    println!(
        "NO_GPU {}",
        matches!(&gpu, Err(ClientError::ImpossibleDependency(why)) if why.contains("--resource"))
    );
    let ids = rc.ids().await?;
    let chosen = rc.engine_pid(ids[1]).ok_or("no pid for engine 1")?;
    let ran = rc
        .load_balanced_view()
        .depend(is_process, (chosen,))?
        .map_sync(engine_process, (0..6).map(|_| (10u64,)))
        .await?;
    let all_there = ran.iter().all(|pid| pid.as_ref().ok() == Some(&chosen));
    let nowhere = rc
        .load_balanced_view()
        .depend(is_process, (1u32,))?
        .apply_sync(square, (4u64,))
        .await;
    println!(
        "DEPEND {all_there} {}",
        matches!(&nowhere, Err(ClientError::ImpossibleDependency(why)) if why.contains("depend"))
    );
    rc.close().await;
    Ok(())
}

/// A load-balanced map of 600 tasks while the test kills and restarts the
/// head (after `MAPPING`); then: the engines kept their numbers, and a task
/// that follows one finished before the restart runs on that task's engine.
pub(crate) async fn lb_head(line: JoinLine, password: Password) -> Result<(), Box<dyn Error>> {
    use parallel::client::Client;
    let mut rc = Client::connect(&line, password).await?;
    let ids = rc.wait_for_engines(3, Duration::from_secs(60)).await?;
    let numbered = |rc: &Client, ids: &[u32]| -> Vec<(u32, Option<u32>)> {
        ids.iter().map(|id| (*id, rc.engine_pid(*id))).collect()
    };
    let before = numbered(&rc, &ids);
    // A bare AsyncResult: nothing drives the session while the head
    // restarts; the client's keeper joins the new head by itself.
    let mut all = rc
        .load_balanced_view()
        .map(slow_square, (0..600u64).map(|x| (x, 5u64)))
        .await?;
    let first = all.msg_ids()[0];
    println!("MAPPING");
    all.wait(Duration::from_secs(120)).await;
    let ran_first = all.metadata()[0].as_ref().and_then(|m| m.engine);
    let squares = all.get().await?;
    println!("LBHEAD {} RIGHT", right_squares(&squares));
    let ids = rc.wait_for_engines(3, Duration::from_secs(60)).await?;
    println!("SAME_NUMBERS {}", numbered(&rc, &ids) == before);
    let followed = rc
        .load_balanced_view()
        .follow(&[first])
        .apply_sync(engine_process, (0u64,))
        .await?;
    let expected = ran_first.and_then(|n| rc.engine_pid(n));
    println!("FOLLOW_AFTER_RESTART {}", Some(followed) == expected);
    rc.close().await;
    Ok(())
}
