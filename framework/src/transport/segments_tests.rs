//! The pool lends, the receiver reads in place and hands back, the next
//! payload reuses the same pages; no reference opens twice.

use super::*;
use crate::actor::Tensor;
use crate::transport::shm;
use crate::wire::decode;

fn tensor(n: usize, v: f32) -> Tensor<f32> {
    Tensor::full(&[n], v)
}

/// The line of `/proc/self/maps` whose range holds `addr`.
fn maps_line(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .find(|l| {
            let range = l.split(' ').next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
            );
            (a..b).contains(&addr)
        })
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_handed_back_segment_is_reused_and_read_in_place() {
    let pool = SegmentPool::new();
    let first = pool.write(&tensor(100_000, 1.5)).unwrap();
    assert_ne!(first.lease, 0, "the pool fell back to a fresh file");
    let m = shm::open(&first, u64::MAX).unwrap();
    let view = decode::<Tensor<f32>>(&m).unwrap();
    assert!(view.as_slice().iter().all(|&x| x == 1.5));
    // The receiver's bytes are the segment's own pages, mapped, not a copy.
    let line = maps_line(view.as_slice().as_ptr() as usize);
    assert!(line.ends_with(&first.path), "{line}");
    assert_eq!(pool.stats().lent, 1);
    drop(m);
    assert_eq!(pool.stats().lent, 0, "dropping the view hands it back");

    let second = pool.write(&tensor(100_000, 2.5)).unwrap();
    assert_eq!(second.path, first.path, "a fresh segment instead of reuse");
    assert_ne!(second.lease, first.lease);
    let m = shm::open(&second, u64::MAX).unwrap();
    let view = decode::<Tensor<f32>>(&m).unwrap();
    assert!(view.as_slice().iter().all(|&x| x == 2.5));
    assert_eq!(pool.stats().segments, 1);
    // The segment stays after the receive (its sender owns it).
    assert!(std::path::Path::new(&second.path).exists());
}

#[test]
fn a_reference_opens_once_and_a_stale_one_not_at_all() {
    let pool = SegmentPool::new();
    let r = pool.write(&tensor(1000, 1.0)).unwrap();
    let m = shm::open(&r, u64::MAX).unwrap();
    assert!(matches!(shm::open(&r, u64::MAX), Err(ShmError::NotLent(_))));
    // Handing it back on the sender's side now frees nothing the receiver holds.
    shm::discard(&r);
    assert_eq!(pool.stats().lent, 1);
    drop(m);
    // Lent again under a new lease: the old reference no longer opens it.
    let again = pool.write(&tensor(1000, 3.0)).unwrap();
    assert_eq!(again.path, r.path);
    assert!(matches!(shm::open(&r, u64::MAX), Err(ShmError::NotLent(_))));
    shm::discard(&r);
    assert_eq!(pool.stats().lent, 1, "a stale discard freed a lent segment");
    let m = shm::open(&again, u64::MAX).unwrap();
    assert!(
        decode::<Tensor<f32>>(&m)
            .unwrap()
            .as_slice()
            .iter()
            .all(|&x| x == 3.0)
    );
}

#[test]
fn a_discarded_reference_frees_its_segment() {
    let pool = SegmentPool::new();
    let r = pool.write(&tensor(1000, 1.0)).unwrap();
    shm::discard(&r);
    assert_eq!(pool.stats().lent, 0);
    assert!(matches!(shm::open(&r, u64::MAX), Err(ShmError::NotLent(_))));
    assert_eq!(pool.write(&tensor(10, 1.0)).unwrap().path, r.path);
}

#[test]
fn while_every_segment_is_lent_a_payload_takes_a_fresh_file() {
    let pool = SegmentPool::new();
    let lent: Vec<ShmRef> = (0..MAX_SEGMENTS)
        .map(|i| pool.write(&tensor(1000, i as f32)).unwrap())
        .collect();
    assert!(lent.iter().all(|r| r.lease != 0));
    let paths: std::collections::HashSet<_> = lent.iter().map(|r| &r.path).collect();
    assert_eq!(paths.len(), MAX_SEGMENTS);
    let fresh = pool.write(&tensor(1000, 9.0)).unwrap();
    assert_eq!(fresh.lease, 0);
    assert!(!paths.contains(&fresh.path));
    let m = shm::open(&fresh, u64::MAX).unwrap();
    assert_eq!(decode::<Tensor<f32>>(&m).unwrap().as_slice()[0], 9.0);
    // One handed back: the pool lends it again.
    shm::discard(&lent[3]);
    assert_eq!(pool.write(&tensor(1000, 1.0)).unwrap().path, lent[3].path);
}

#[test]
fn a_bigger_payload_retires_a_free_segment_too_small_when_the_pool_is_full() {
    let pool = SegmentPool::new();
    for i in 0..MAX_SEGMENTS {
        let r = pool.write(&tensor(1000, i as f32)).unwrap();
        // Each lent at once, so each is a segment of its own.
        std::mem::forget(shm::open(&r, u64::MAX).unwrap());
    }
    assert_eq!(pool.stats().lent, MAX_SEGMENTS);
    let segments = pool.segments.lock().unwrap().clone();
    // Hand two back (as their receivers would).
    for s in &segments[..2] {
        s.lease().store(FREE, Ordering::Release);
    }
    let retired = segments[0].path().to_owned();
    drop(segments);
    let big = pool.write(&tensor(ROOM_STEP, 4.0)).unwrap();
    assert_ne!(big.lease, 0);
    let stats = pool.stats();
    assert_eq!(stats.segments, MAX_SEGMENTS);
    assert_eq!(stats.lent, MAX_SEGMENTS - 1);
    assert!(stats.room > MAX_SEGMENTS * ROOM_STEP);
    assert!(!std::path::Path::new(&retired).exists());
    assert_ne!(big.path, retired);
}

#[test]
fn dropping_the_pool_removes_its_files() {
    let pool = SegmentPool::new();
    let a = pool.write(&tensor(1000, 1.0)).unwrap();
    let b = pool.write(&tensor(1000, 1.0)).unwrap();
    let m = shm::open(&b, u64::MAX).unwrap();
    drop(pool);
    assert!(!std::path::Path::new(&a.path).exists());
    assert!(!std::path::Path::new(&b.path).exists());
    // A receiver still holding a view keeps reading it.
    assert_eq!(decode::<Tensor<f32>>(&m).unwrap().as_slice()[999], 1.0);
}

#[test]
fn a_segment_holds_the_bytes_encode_gives() {
    let pool = SegmentPool::new();
    let value = (String::from("name"), vec![1u64, 2, 3], tensor(77, 0.25));
    let r = pool.write(&value).unwrap();
    let m = shm::open(&r, u64::MAX).unwrap();
    assert_eq!(&m[..], &crate::wire::encode(&value).unwrap()[..]);
    assert_eq!(m.as_ptr() as usize % 4096, 0);
    assert!(matches!(
        shm::open(&r, 10),
        Err(ShmError::TooLarge { .. } | ShmError::NotLent(_))
    ));
}

#[test]
fn a_cache_reads_later_leases_of_a_segment_through_one_mapping() {
    let (pool, cache) = (SegmentPool::new(), SegmentCache::new());
    let first = pool.write(&tensor(100_000, 1.0)).unwrap();
    let m = cache.open(&first, u64::MAX).unwrap();
    let at = m.as_ptr();
    assert_eq!(decode::<Tensor<f32>>(&m).unwrap().as_slice()[7], 1.0);
    // A reference still opens once through the cache.
    assert!(matches!(
        cache.open(&first, u64::MAX),
        Err(ShmError::NotLent(_))
    ));
    drop(m);
    assert_eq!(pool.stats().lent, 0, "dropping the view hands it back");
    let second = pool.write(&tensor(100_000, 2.0)).unwrap();
    assert_eq!(second.path, first.path);
    let m = cache.open(&second, u64::MAX).unwrap();
    assert_eq!(m.as_ptr(), at, "mapped again instead of read in place");
    assert_eq!(decode::<Tensor<f32>>(&m).unwrap().as_slice()[7], 2.0);
    assert_eq!(cache.len(), 1);
    // A file of its own goes through `shm::open` and leaves nothing cached.
    let own = shm::write(&tensor(10, 3.0)).unwrap();
    assert_eq!(
        decode::<Tensor<f32>>(&cache.open(&own, u64::MAX).unwrap())
            .unwrap()
            .as_slice()[0],
        3.0
    );
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_cache_lets_go_of_removed_segments_and_keeps_a_bounded_number() {
    let cache = SegmentCache::new();
    let old = SegmentPool::new();
    drop(
        cache
            .open(&old.write(&tensor(10, 1.0)).unwrap(), u64::MAX)
            .unwrap(),
    );
    old.clear();
    let pool = SegmentPool::new();
    drop(
        cache
            .open(&pool.write(&tensor(10, 1.0)).unwrap(), u64::MAX)
            .unwrap(),
    );
    assert_eq!(cache.len(), 1, "the removed segment is still mapped");
    // More segments than it keeps, all lent at once.
    let views: Vec<_> = (0..MAX_SEGMENTS)
        .map(|_| {
            cache
                .open(&pool.write(&tensor(10, 2.0)).unwrap(), u64::MAX)
                .unwrap()
        })
        .collect();
    assert_eq!(pool.stats().segments, MAX_SEGMENTS);
    assert!(cache.len() <= CACHED);
    // A view outlives its segment's place in the cache.
    assert!(
        views
            .iter()
            .all(|m| decode::<Tensor<f32>>(m).unwrap().as_slice()[9] == 2.0)
    );
}

#[test]
fn a_cleared_cache_maps_again_and_held_views_stay_readable() {
    let (pool, cache) = (SegmentPool::new(), SegmentCache::new());
    let m = cache
        .open(&pool.write(&tensor(10, 5.0)).unwrap(), u64::MAX)
        .unwrap();
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(decode::<Tensor<f32>>(&m).unwrap().as_slice()[3], 5.0);
    drop(m);
    let again = cache
        .open(&pool.write(&tensor(10, 6.0)).unwrap(), u64::MAX)
        .unwrap();
    assert_eq!(decode::<Tensor<f32>>(&again).unwrap().as_slice()[3], 6.0);
    assert_eq!(cache.len(), 1);
}

#[test]
fn senders_and_receivers_on_many_threads_never_see_a_lent_segment_overwritten() {
    // Four threads share one pool and one cache; each writes values of its
    // own, keeps a few views open while writing more, and checks every view
    // still holds what was written into it when it is dropped.
    let (pool, cache) = (SegmentPool::new(), SegmentCache::new());
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (pool, cache) = (&pool, &cache);
            s.spawn(move || {
                let mut held = std::collections::VecDeque::new();
                for i in 0..200u32 {
                    let v = (t * 1000 + i) as f32;
                    let r = pool.write(&tensor(20_000, v)).unwrap();
                    let m = cache.open(&r, u64::MAX).unwrap();
                    held.push_back((v, m));
                    if held.len() > 2 {
                        let (v, m) = held.pop_front().unwrap();
                        let view = decode::<Tensor<f32>>(&m).unwrap();
                        assert!(view.as_slice().iter().all(|&x| x == v), "overwritten");
                    }
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!(stats.lent, 0, "{stats:?}");
    assert!(stats.segments <= MAX_SEGMENTS);
}

#[test]
fn bytes_archived_already_go_into_a_lent_segment_too() {
    let pool = SegmentPool::new();
    let encoded = crate::wire::encode(&tensor(1000, 7.0)).unwrap();
    let r = pool.write_bytes(&encoded).unwrap();
    assert_ne!(r.lease, 0);
    let m = shm::open(&r, u64::MAX).unwrap();
    assert_eq!(&m[..], &encoded[..]);
    drop(m);
    assert_eq!(pool.write_bytes(&encoded).unwrap().path, r.path);
}
