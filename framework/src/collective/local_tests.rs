//! Same-host groups with threads as ranks: every collective against a
//! sequential reference, 1–8 ranks, empty, odd and multi-segment sizes,
//! every dtype; mismatched calls, dead ranks, replaced groups.

use super::*;
use crate::reduce::{ReduceOp, Reducible};

/// A small slot, so a few hundred elements already take several segments.
const TINY_SLOT: usize = 256;

fn pid() -> u32 {
    std::process::id()
}

/// Rank 0 and the ranks that open it, all in this process.
fn group(ranks: usize, slot: usize) -> Vec<LocalGroup> {
    let g0 = LocalGroup::create(&vec![pid(); ranks], slot, Wait::Block).unwrap();
    let path = g0.path().to_owned();
    let slot = g0.slot();
    let mut all = vec![g0];
    for r in 1..ranks {
        all.push(LocalGroup::open(&path, r, ranks, slot, Wait::Block).unwrap());
    }
    all
}

/// Runs `f(rank, group)` on one thread per rank; results in rank order.
fn on_ranks<R: Send>(
    groups: &mut [LocalGroup],
    f: impl Fn(usize, &mut LocalGroup) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter_mut()
            .enumerate()
            .map(|(r, g)| {
                let f = &f;
                s.spawn(move || f(r, g))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn inputs<T: Reducible>(ranks: usize, len: usize, from: impl Fn(u64) -> T) -> Vec<Vec<T>> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..ranks)
        .map(|_| {
            (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    from(x >> 11)
                })
                .collect()
        })
        .collect()
}

fn bits<T: Reducible>(v: &[T]) -> Vec<u64> {
    v.iter().map(|x| x.bits()).collect()
}

fn check_all_reduce<T: Reducible>(op: ReduceOp<T>, from: impl Fn(u64) -> T + Copy) {
    for ranks in 1..=8 {
        for &(len, slot) in &[
            (0, TINY_SLOT),
            (1, TINY_SLOT),
            (7, TINY_SLOT),
            (333, TINY_SLOT),
            (5000, DEFAULT_SLOT),
        ] {
            let data = inputs(ranks, len, from);
            let parts: Vec<&[T]> = data.iter().map(|v| v.as_slice()).collect();
            let expected = bits(&op.fold(&parts).unwrap());
            let mut groups = group(ranks, slot);
            let got = on_ranks(&mut groups, |r, g| {
                let mut mine = data[r].clone();
                block(g.all_reduce(&mut mine, &op)).unwrap();
                bits(&mine)
            });
            for (r, b) in got.iter().enumerate() {
                assert_eq!(b, &expected, "{ranks} ranks, {len} elements, rank {r}");
            }
        }
    }
}

#[test]
fn all_reduce_matches_the_rank_order_fold_for_every_dtype_and_op() {
    check_all_reduce(ReduceOp::Sum, |x| (x as f32) * 1e-7 - 300.0);
    check_all_reduce(ReduceOp::Prod, |x| 1.0 + (x % 1000) as f64 * 1e-4);
    check_all_reduce(ReduceOp::Min, |x| x as i32);
    check_all_reduce(ReduceOp::Max, |x| x as i64);
    check_all_reduce(ReduceOp::Sum, |x| x as i64);
    check_all_reduce(
        ReduceOp::custom(|a: &mut [f64], b: &[f64]| {
            for (a, b) in a.iter_mut().zip(b) {
                *a = *a * 0.5 + b;
            }
        }),
        |x| (x % 4096) as f64,
    );
}

#[test]
fn reduce_gives_the_fold_to_the_root_only() {
    for ranks in 1..=5 {
        for &len in &[0usize, 3, 700] {
            let data = inputs(ranks, len, |x| (x % 1000) as f32 * 0.25);
            let parts: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
            let expected = ReduceOp::Sum.fold(&parts).unwrap();
            let root = ranks - 1;
            let mut groups = group(ranks, TINY_SLOT);
            let got = on_ranks(&mut groups, |r, g| {
                let mut mine = data[r].clone();
                block(g.reduce(&mut mine, &ReduceOp::Sum, root)).unwrap();
                mine
            });
            for (r, v) in got.iter().enumerate() {
                if r == root {
                    assert_eq!(bits(v), bits(&expected));
                } else {
                    assert_eq!(v, &data[r], "rank {r} keeps its buffer");
                }
            }
        }
    }
}

#[test]
fn broadcast_gather_all_gather_and_scatter_move_the_right_elements() {
    for ranks in 1..=8 {
        for &len in &[0usize, 1, 9, 300] {
            let data = inputs(ranks, len, |x| x as i64);
            let root = ranks / 2;
            let concat: Vec<i64> = data.concat();
            let mut groups = group(ranks, TINY_SLOT);
            let got = on_ranks(&mut groups, |r, g| {
                let mut b = data[r].clone();
                block(g.broadcast(&mut b, root)).unwrap();
                let gathered = block(g.gather(&data[r], root)).unwrap();
                let all = block(g.all_gather(&data[r])).unwrap();
                let mut part = vec![0i64; len];
                let send = if r == root {
                    concat.clone()
                } else {
                    Vec::new()
                };
                block(g.scatter(&send, &mut part, root)).unwrap();
                block(g.barrier_call()).unwrap();
                (b, gathered, all, part)
            });
            for (r, (b, gathered, all, part)) in got.into_iter().enumerate() {
                assert_eq!(b, data[root], "broadcast, rank {r} of {ranks}, {len}");
                assert_eq!(gathered, (r == root).then(|| concat.clone()), "gather");
                assert_eq!(all, concat, "all_gather");
                assert_eq!(part, concat[r * len..(r + 1) * len], "scatter");
            }
        }
    }
}

#[test]
fn different_calls_fail_on_every_rank_and_the_group_goes_on() {
    let mut groups = group(3, TINY_SLOT);
    let got = on_ranks(&mut groups, |r, g| {
        let mut v = vec![1.0f32; 4 + usize::from(r == 2)];
        let first = block(g.all_reduce(&mut v, &ReduceOp::Sum));
        let mut w = vec![r as f32; 4];
        let second = block(g.all_reduce(&mut w, &ReduceOp::Sum));
        (first, second, w)
    });
    for (first, second, w) in got {
        assert!(matches!(first, Err(GroupError::Mismatch(ref m)) if m.contains("5 elements")));
        second.unwrap();
        assert_eq!(w, vec![3.0; 4]);
    }
}

#[test]
fn a_bad_scatter_or_root_fails_on_every_rank() {
    let mut groups = group(2, TINY_SLOT);
    let got = on_ranks(&mut groups, |r, g| {
        let mut part = vec![0u8; 3];
        let send = vec![1u8; 5];
        let bad_len = block(g.scatter(&send, &mut part, 0));
        let mut b = vec![0u8; 2];
        let bad_root = block(g.broadcast(&mut b, 7));
        (r, bad_len, bad_root)
    });
    for (_, bad_len, bad_root) in got {
        assert!(matches!(bad_len, Err(GroupError::Mismatch(ref m)) if m.contains("2 × 3")));
        assert!(matches!(bad_root, Err(GroupError::Mismatch(ref m)) if m.contains("root 7")));
    }
}

/// The pid of a process that has ended (and been reaped).
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn a_dead_rank_fails_every_waiting_rank_quickly() {
    let mut pids = vec![pid(); 4];
    pids[2] = dead_pid();
    let g0 = LocalGroup::create(&pids, TINY_SLOT, Wait::Block).unwrap();
    let path = g0.path().to_owned();
    let mut groups = vec![
        g0,
        LocalGroup::open(&path, 1, 4, TINY_SLOT, Wait::Block).unwrap(),
        LocalGroup::open(&path, 3, 4, TINY_SLOT, Wait::Block).unwrap(),
    ];
    let start = Instant::now();
    let got = on_ranks(&mut groups, |_, g| {
        let mut v = vec![1.0f64; 1000];
        let e = block(g.all_reduce(&mut v, &ReduceOp::Sum));
        (e, g.usable())
    });
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    for (e, usable) in got {
        assert_eq!(
            e,
            Err(GroupError::RankDied {
                rank: 2,
                pid: pids[2]
            })
        );
        assert!(!usable);
    }
}

#[test]
fn a_retired_group_releases_its_waiters() {
    let mut groups = group(2, TINY_SLOT);
    let (g0, rest) = groups.split_first_mut().unwrap();
    let g1 = &mut rest[0];
    std::thread::scope(|s| {
        let waiter = s.spawn(|| block(g1.barrier_call()));
        std::thread::sleep(Duration::from_millis(30));
        g0.retire();
        assert_eq!(waiter.join().unwrap(), Err(GroupError::Retired));
    });
}

#[test]
fn a_rank_that_leaves_releases_the_others() {
    let mut groups = group(3, TINY_SLOT);
    let (g0, rest) = groups.split_first_mut().unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = rest
            .iter_mut()
            .map(|g| s.spawn(move || block(g.barrier_call())))
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        g0.leave();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(GroupError::Left { rank: 0 }));
        }
    });
}

#[test]
fn the_file_goes_after_the_first_barrier_and_bad_opens_are_refused() {
    let mut groups = group(2, TINY_SLOT);
    let path = groups[0].path().to_owned();
    assert!(std::path::Path::new(&path).exists());
    assert!(LocalGroup::open(&path, 2, 2, TINY_SLOT, Wait::Block).is_err());
    assert!(LocalGroup::open(&path, 1, 3, TINY_SLOT, Wait::Block).is_err());
    on_ranks(&mut groups, |_, g| block(g.barrier_call()).unwrap());
    assert!(!std::path::Path::new(&path).exists());
}

#[tokio::test]
async fn a_cooperating_rank_never_holds_the_runtime_thread() {
    let g0 = LocalGroup::create(&[pid(), pid()], TINY_SLOT, Wait::Cooperate).unwrap();
    let mut g1 = LocalGroup::open(g0.path(), 1, 2, TINY_SLOT, Wait::Block).unwrap();
    let mut g0 = g0;
    // A task that asks for the thread again at once, as often as it gets
    // it: while rank 0 waits 100 ms for rank 1, it must run all along (a
    // rank that spun or slept on the thread, even 1 ms at a time, would
    // let it run about once a millisecond).
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let p = polls.clone();
    let busy = tokio::spawn(async move {
        loop {
            tokio::task::yield_now().await;
            p.fetch_add(1, Ordering::Relaxed);
        }
    });
    let other = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut v = vec![2i32; 10];
        block(g1.all_reduce(&mut v, &ReduceOp::Sum)).map(|_| v)
    });
    let mut v = vec![1i32; 10];
    tokio::time::timeout(
        Duration::from_secs(5),
        g0.all_reduce(&mut v, &ReduceOp::Sum),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(v, vec![3; 10]);
    assert_eq!(other.join().unwrap().unwrap(), vec![3; 10]);
    busy.abort();
    let polls = polls.load(Ordering::Relaxed);
    assert!(
        polls >= 2000,
        "the runtime's thread was held: another task ran only {polls} times in 100 ms"
    );
}

#[test]
fn a_rank_that_cannot_map_the_arena_releases_the_others() {
    let mut groups = group(3, TINY_SLOT);
    let path = groups[0].path().to_owned();
    let mut two = groups.split_off(1);
    two.pop(); // rank 2 never maps it
    let g1 = &mut two[0];
    let g0 = &mut groups[0];
    std::thread::scope(|s| {
        let waiters = [
            s.spawn(|| block(g0.barrier_call())),
            s.spawn(|| block(g1.barrier_call())),
        ];
        std::thread::sleep(Duration::from_millis(30));
        LocalGroup::give_up(&path, 2).unwrap();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(GroupError::Left { rank: 2 }));
        }
    });
}
