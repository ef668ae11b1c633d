//! Groups of nodes in one process, over real QUIC on loopback (and, for a
//! one-machine group, its shared memory): every collective against the
//! reference, mismatched calls, a member going down, forming errors.

use std::time::Duration;

use tokio::time::timeout;

use std::collections::HashSet;
use std::time::Instant;

use super::message::Part;
use super::*;
use crate::reduce::{ReduceOp, Schedule};
use crate::remote::{Node, RemoteNode};
use crate::transport::Password;

const T: Duration = Duration::from_secs(20);

async fn nodes(n: usize) -> Vec<Node> {
    nodes_with(n, crate::transport::TransportConfig::default()).await
}

/// `n` nodes with these transport settings (tight heartbeats set on top).
async fn nodes_with(n: usize, config: crate::transport::TransportConfig) -> Vec<Node> {
    let mut out = Vec::new();
    for _ in 0..n {
        let node = Node::builder()
            .transport(config.clone())
            .password(Password::new("group".into()))
            .heartbeat(Duration::from_millis(100), Duration::from_millis(600))
            .start()
            .await
            .expect("start a node");
        out.push(node);
    }
    out
}

/// Each node's handles on all the others.
async fn mesh(nodes: &[Node]) -> Vec<Vec<RemoteNode>> {
    let mut out = Vec::new();
    for (i, a) in nodes.iter().enumerate() {
        let mut peers = Vec::new();
        for (j, b) in nodes.iter().enumerate() {
            if i != j {
                peers.push(timeout(T, a.join(&b.join_line())).await.unwrap().unwrap());
            }
        }
        out.push(peers);
    }
    out
}

fn quic() -> GroupOptions {
    GroupOptions {
        timeout: T,
        transport: Transport::Quic,
        host: None,
        order: None,
    }
}

/// Forms the group on every node at once; groups in node order.
async fn form(nodes: &[Node], name: &str, options: GroupOptions) -> Vec<Group> {
    let all = vec![options; nodes.len()];
    form_each(nodes, name, all).await
}

/// Forms the group on every node at once, each with its own options.
async fn form_each(nodes: &[Node], name: &str, options: Vec<GroupOptions>) -> Vec<Group> {
    let peers = mesh(nodes).await;
    let tasks: Vec<_> = nodes
        .iter()
        .cloned()
        .zip(peers)
        .zip(options)
        .map(|((node, peers), options)| {
            let name = name.to_owned();
            actix_rt::spawn(async move { Group::form_with(&node, &name, &peers, options).await })
        })
        .collect();
    let mut groups = Vec::new();
    for t in tasks {
        groups.push(timeout(T, t).await.unwrap().unwrap().expect("formed"));
    }
    groups
}

/// Runs `f` on every member at once; results in the groups' order.
async fn on_all<R: 'static>(
    groups: Vec<Group>,
    f: impl AsyncFn(&mut Group) -> R + Clone + 'static,
) -> Vec<(Group, R)> {
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|mut g| {
            let f = f.clone();
            actix_rt::spawn(async move {
                let r = f(&mut g).await;
                (g, r)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(timeout(T, t).await.expect("in time").expect("no panic"));
    }
    out
}

fn input(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((rank * 7919 + i * 31) % 97) as f32 * 0.37 - 11.0 + rank as f32 * 0.013)
        .collect()
}

fn ints(rank: usize, len: usize) -> Vec<i64> {
    (0..len).map(|i| (rank * 1000 + i) as i64).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// What one member saw of every collective.
#[derive(Debug, PartialEq)]
struct Seen {
    rank: usize,
    all_reduce: Vec<u32>,
    reduced: Vec<u32>,
    broadcast: Vec<i64>,
    gathered: Option<Vec<i64>>,
    all: Vec<i64>,
    part: Vec<i64>,
}

async fn every_collective(g: &mut Group, len: usize) -> Seen {
    let rank = g.rank();
    let ranks = g.ranks();
    let root = ranks - 1;
    let mut v = input(rank, len);
    g.all_reduce(&mut v, ReduceOp::Sum)
        .await
        .expect("all_reduce");
    let mut r = input(rank, len);
    g.reduce(&mut r, ReduceOp::Sum, root).await.expect("reduce");
    let mut b = ints(rank, len);
    g.broadcast(&mut b, root).await.expect("broadcast");
    let gathered = g.gather(&ints(rank, len), 0).await.expect("gather");
    let all = g.all_gather(&ints(rank, len)).await.expect("all_gather");
    let send: Vec<i64> = if rank == root {
        (0..ranks).flat_map(|r| ints(r, len)).collect()
    } else {
        Vec::new()
    };
    let mut part = vec![0i64; len];
    g.scatter(&send, &mut part, root).await.expect("scatter");
    g.barrier().await.expect("barrier");
    Seen {
        rank,
        all_reduce: bits(&v),
        reduced: bits(&r),
        broadcast: b,
        gathered,
        all,
        part,
    }
}

/// How the group's all_reduce combines: the order the reference must use.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    SharedMemory,
    Quic,
    /// Within each machine, then between one leader per machine.
    Hierarchical,
}

/// Left fold within each machine, then the leaders' schedule.
fn hierarchical_reference(topology: &Topology, inputs: &[Vec<f32>], len: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = topology
        .hosts()
        .iter()
        .map(|h| {
            let parts: Vec<&[f32]> = h.iter().map(|&r| inputs[r].as_slice()).collect();
            ReduceOp::Sum.fold(&parts).unwrap()
        })
        .collect();
    Schedule::allreduce(len, partials.len(), 4)
        .unwrap()
        .reference(&ReduceOp::Sum, &partials)
        .unwrap()
}

fn check(seen: &[Seen], topology: &Topology, path: Path, len: usize) {
    let ranks = seen.len();
    let inputs: Vec<Vec<f32>> = (0..ranks).map(|r| input(r, len)).collect();
    let parts: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let shared_memory = path == Path::SharedMemory;
    // reduce is the left fold in rank order on every path.
    let reduced = ReduceOp::Sum.fold(&parts).unwrap();
    let mut expected = if shared_memory {
        reduced.clone()
    } else {
        topology
            .allreduce(len, 4)
            .reference(&ReduceOp::Sum, &inputs)
            .unwrap()
    };
    if path == Path::Hierarchical {
        expected = hierarchical_reference(topology, &inputs, len);
    }
    let concat: Vec<i64> = (0..ranks).flat_map(|r| ints(r, len)).collect();
    for s in seen {
        let r = s.rank;
        assert_eq!(s.all_reduce, bits(&expected), "all_reduce, rank {r}");
        if r == ranks - 1 {
            assert_eq!(s.reduced, bits(&reduced), "reduce at the root");
        } else {
            assert_eq!(
                s.reduced,
                bits(&inputs[r]),
                "reduce keeps rank {r}'s buffer"
            );
        }
        assert_eq!(s.broadcast, ints(ranks - 1, len), "broadcast, rank {r}");
        assert_eq!(
            s.gathered,
            (r == 0).then(|| concat.clone()),
            "gather, rank {r}"
        );
        assert_eq!(s.all, concat, "all_gather, rank {r}");
        assert_eq!(s.part, ints(r, len), "scatter, rank {r}");
    }
}

async fn run_every(n: usize, len: usize, options: GroupOptions, name: &str) {
    let nodes = nodes(n).await;
    let groups = form(&nodes, name, options.clone()).await;
    let shared = groups[0].is_shared_memory();
    assert_eq!(shared, options.transport == Transport::Auto && n > 1);
    let path = if shared {
        Path::SharedMemory
    } else {
        Path::Quic
    };
    check_every(groups, n, len, path).await;
}

async fn check_every(groups: Vec<Group>, n: usize, len: usize, path: Path) {
    let topology = groups[0].topology().clone();
    let mut ranks: Vec<usize> = groups.iter().map(Group::rank).collect();
    ranks.sort();
    assert_eq!(ranks, (0..n).collect::<Vec<_>>());
    let seen: Vec<Seen> = on_all(groups, async move |g: &mut Group| {
        every_collective(g, len).await
    })
    .await
    .into_iter()
    .map(|(_, s)| s)
    .collect();
    check(&seen, &topology, path, len);
}

#[actix_rt::test]
async fn every_collective_over_quic_matches_the_reference() {
    run_every(1, 5, quic(), "g quic 1").await;
    run_every(3, 0, quic(), "g quic 3 empty").await;
    run_every(4, 1001, quic(), "g quic 4").await;
    // Large enough for the ring schedule.
    run_every(3, 200_003, quic(), "g quic ring").await;
    // Chunks of 1.4 MB: each travels in two pieces.
    run_every(2, 700_001, quic(), "g quic ring pieces").await;
}

/// A buffer whose chunks are larger than the largest frame a node takes
/// still reduces over QUIC: its chunks travel in pieces of 1 MiB. (Whole,
/// each 4 MB chunk would be refused by the receiving transport.)
#[actix_rt::test]
async fn chunks_larger_than_a_frame_reduce_over_quic_in_pieces() {
    let config = crate::transport::TransportConfig {
        max_frame: 2 << 20,
        ..Default::default()
    };
    let nodes = nodes_with(2, config).await;
    let len = 2_000_001;
    assert!(len * 4 / 2 > 2 << 20, "a chunk is larger than a frame");
    let groups = form(&nodes, "g pieces", quic()).await;
    let reduced = on_all(groups, async move |g: &mut Group| {
        let mut v = input(g.rank(), len);
        g.all_reduce(&mut v, ReduceOp::Sum).await.map(|()| v)
    })
    .await;
    let want: Vec<f32> = input(0, len)
        .iter()
        .zip(input(1, len))
        .map(|(a, b)| a + b)
        .collect();
    for (g, v) in reduced {
        let v = v.unwrap_or_else(|e| panic!("rank {}: {e}", g.rank()));
        assert!(v == want, "rank {} reduced wrongly", g.rank());
    }
}

#[actix_rt::test]
async fn a_one_machine_group_runs_through_shared_memory() {
    run_every(2, 3001, GroupOptions::default(), "g shm 2").await;
    run_every(3, 7, GroupOptions::default(), "g shm 3").await;
}

#[actix_rt::test]
async fn different_calls_fail_everywhere_and_the_group_goes_on() {
    let nodes = nodes(3).await;
    let groups = form(&nodes, "g mismatch", quic()).await;
    let out = on_all(groups, async |g: &mut Group| {
        let mut v = vec![1.0f32; 4 + usize::from(g.rank() == 1)];
        let first = g.all_reduce(&mut v, ReduceOp::Sum).await;
        let mut w = vec![1.0f32; 4];
        let second = g.all_reduce(&mut w, ReduceOp::Sum).await;
        (first, second, w)
    })
    .await;
    for (_, (first, second, w)) in out {
        assert!(matches!(first, Err(CollectiveError::Mismatch(ref m)) if m.contains("5 elements")));
        second.unwrap();
        assert_eq!(w, vec![3.0; 4]);
    }
}

#[actix_rt::test]
async fn a_member_going_down_fails_the_others_and_breaks_the_group() {
    let nodes = nodes(3).await;
    let groups = form(&nodes, "g down", quic()).await;
    // The member on node 2 never calls; its node shuts down.
    let mut groups = groups;
    let quitter = groups.remove(2);
    let down = nodes[2].clone();
    actix_rt::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        down.shutdown().await;
        drop(quitter);
    });
    let started = Instant::now();
    let out = on_all(groups, async |g: &mut Group| {
        let mut v = vec![1.0f32; 100];
        let first = g.all_reduce(&mut v, ReduceOp::Sum).await;
        let again = g.barrier().await;
        (first, again)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for (_, (first, again)) in out {
        assert!(
            matches!(
                first,
                Err(CollectiveError::RankGone { .. } | CollectiveError::Aborted { .. })
            ),
            "{first:?}"
        );
        assert!(
            matches!(again, Err(CollectiveError::Broken(_))),
            "{again:?}"
        );
    }
}

#[actix_rt::test]
async fn a_member_dropping_its_group_fails_the_others_at_once() {
    let nodes = nodes(3).await;
    let mut groups = form(&nodes, "g leave", quic()).await;
    let leaver = groups.remove(2);
    let gone = leaver.rank();
    let started = Instant::now();
    // Its node keeps running: only its `Leave` tells the others.
    actix_rt::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(leaver);
    });
    let out = on_all(groups, async |g: &mut Group| {
        let mut v = vec![1.0f32; 100];
        g.all_reduce(&mut v, ReduceOp::Sum).await
    })
    .await;
    // Well within the heartbeat timeout: nobody waits for a node to look down.
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let mut saw_leave = false;
    for (g, r) in out {
        // Each learns it from the `Leave`, or from the other's `Abort`.
        let e = r.expect_err("a member left");
        saw_leave |= e.dropped_by(gone);
        assert!(
            e.dropped_by(gone) || matches!(e, CollectiveError::Aborted { .. }),
            "{e:?}"
        );
        assert!(!g.is_usable());
    }
    assert!(saw_leave, "some member saw the `Leave` itself");
}

#[actix_rt::test]
async fn forming_without_every_member_times_out_and_bad_peers_are_refused() {
    let nodes = nodes(2).await;
    let peers = mesh(&nodes).await;
    let options = GroupOptions {
        timeout: Duration::from_millis(300),
        transport: Transport::Quic,
        host: None,
        order: None,
    };
    let e = Group::form_with(&nodes[0], "g alone", &peers[0], options.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(e, FormError::Timeout { ref missing, .. } if missing == &[nodes[1].id()]),
        "{e}"
    );
    let twice = vec![peers[0][0].clone(), peers[0][0].clone()];
    let e = Group::form_with(&nodes[0], "g twice", &twice, options.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, FormError::Peers(_)), "{e}");
}

/// Members told they run on machines `hosts` (in node order).
fn on_hosts(hosts: &[&str]) -> Vec<GroupOptions> {
    hosts
        .iter()
        .map(|h| GroupOptions {
            timeout: T,
            transport: Transport::Auto,
            host: Some((*h).to_owned()),
            order: None,
        })
        .collect()
}

#[actix_rt::test]
async fn members_on_several_machines_reduce_within_each_then_between_leaders() {
    for (hosts, len) in [
        (&["a", "b", "a", "b", "a"][..], 10_001),
        (&["a", "a", "b"][..], 3),
        (&["x", "y"][..], 100),
    ] {
        let nodes = nodes(hosts.len()).await;
        let groups = form_each(&nodes, &format!("g mixed {hosts:?}"), on_hosts(hosts)).await;
        assert!(groups.iter().all(|g| !g.is_shared_memory()));
        let topology = groups[0].topology();
        assert_eq!(
            topology.hosts().len(),
            hosts.iter().collect::<HashSet<_>>().len()
        );
        let path = if topology.hosts().iter().any(|h| h.len() > 1) {
            Path::Hierarchical
        } else {
            Path::Quic
        };
        check_every(groups, hosts.len(), len, path).await;
    }
}

#[actix_rt::test]
async fn a_machine_whose_leader_goes_down_fails_its_members() {
    let nodes = nodes(4).await;
    let mut groups = form_each(&nodes, "g leader down", on_hosts(&["a", "a", "b", "b"])).await;
    // The leader of one machine never calls; its node shuts down.
    let leaders = groups[0].topology().leaders();
    let quitter = groups
        .iter()
        .position(|g| leaders.contains(&g.rank()))
        .unwrap();
    let quitter_group = groups.remove(quitter);
    let down = nodes[quitter].clone();
    actix_rt::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        down.shutdown().await;
        drop(quitter_group);
    });
    let out = on_all(groups, async |g: &mut Group| {
        let mut v = vec![1.0f32; 1000];
        g.all_reduce(&mut v, ReduceOp::Sum).await
    })
    .await;
    for (_, r) in out {
        assert!(r.is_err(), "{r:?}");
    }
}

#[actix_rt::test]
async fn each_member_is_an_actor_under_an_id_derived_from_the_name_and_its_node() {
    let nodes = nodes(2).await;
    let groups = form(&nodes, "g actor", quic()).await;
    for node in &nodes {
        let id = member::member_id("g actor", node.id());
        let entry = node.0.registry.get(id).expect("a member actor runs");
        assert_eq!(entry.name(), "parallel::collective::GroupMember");
        // Another group's member actor on the same node has another id.
        assert_ne!(id, member::member_id("g other", node.id()));
    }
    assert_ne!(
        member::member_id("g actor", nodes[0].id()),
        member::member_id("g actor", nodes[1].id())
    );
    // Dropping the groups stops their actors.
    drop(groups);
    for node in &nodes {
        let id = member::member_id("g actor", node.id());
        assert!(node.0.registry.get(id).is_none());
    }
}

#[actix_rt::test]
async fn a_name_is_taken_on_a_node_until_its_group_is_dropped() {
    let nodes = nodes(1).await;
    let alone = || Group::form_with(&nodes[0], "g taken", &[], quic());
    let first = timeout(T, alone()).await.unwrap().expect("formed");
    let again = timeout(T, alone()).await.unwrap();
    assert!(
        matches!(again, Err(FormError::NameInUse(ref n)) if n == "g taken"),
        "{again:?}"
    );
    drop(first);
    let mut second = timeout(T, alone()).await.unwrap().expect("formed again");
    let mut v = vec![2.5f32; 3];
    timeout(T, second.all_reduce(&mut v, ReduceOp::Sum))
        .await
        .unwrap()
        .expect("all_reduce of one member");
    assert_eq!(v, vec![2.5; 3]);
}

#[actix_rt::test]
async fn what_a_member_sent_before_its_node_went_down_is_still_read() {
    let nodes = nodes(2).await;
    let mut groups = form(&nodes, "g sent then down", quic()).await;
    let (mut g0, g1) = (groups.remove(0), groups.remove(0));
    let (r0, r1) = (g0.rank(), g1.rank());
    // Rank r1 sends its part of call 1, which rank r0 has not read yet,
    // then its node shuts down.
    let data: Vec<i64> = (0..100).collect();
    timeout(
        T,
        g1.post(
            r0,
            Part {
                call: 1,
                ..g1.part(&data)
            },
        ),
    )
    .await
    .unwrap()
    .expect("posted");
    let filed = Instant::now();
    while !g0
        .own
        .inbox
        .lock()
        .pending
        .contains_key(&(inbox::Key::Part(1), r1))
    {
        assert!(filed.elapsed() < T, "the part never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes[1].shutdown().await;
    let down = Instant::now();
    while g0.members[r1]
        .remote
        .as_ref()
        .is_some_and(RemoteNode::is_alive)
    {
        assert!(down.elapsed() < T, "the node never looked down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g0.call = 1;
    let mut out = vec![0i64; 100];
    timeout(T, g0.take_part(r1, &mut out))
        .await
        .unwrap()
        .expect("the part sent before the node went down");
    assert_eq!(out, data);
    // What it never sent is not waited for.
    let gone = timeout(T, g0.take(inbox::Key::Done(1), r1)).await.unwrap();
    assert!(
        matches!(gone, Err(CollectiveError::RankGone { rank, .. }) if rank == r1),
        "{:?}",
        gone.err()
    );
    // A group whose node shut down sends nothing, not even its `Leave`.
    assert!(matches!(g1.reachable(r0), Err(CollectiveError::Broken(_))));
}

#[test]
fn a_part_is_read_in_place_inside_its_message() {
    use crate::actor::Received;
    use crate::wire::{ALIGN, decode_owned, encode};

    let data: Vec<f64> = (0..1001).map(|i| f64::from(i) * 0.5).collect();
    let part = Part {
        from: 1,
        call: 7,
        bytes: std::sync::Arc::from(crate::actor::element_bytes(&data)),
    };
    let buf = encode(&part).unwrap();
    let range = buf.as_ptr_range();
    let view = Received::<Part>::new(buf).unwrap();
    let bytes = view.bytes.as_slice();
    assert!(range.contains(&bytes.as_ptr()), "viewed in place");
    assert_eq!(
        (bytes.as_ptr() as usize - range.start as usize) % ALIGN,
        0,
        "aligned in the message"
    );
    assert_eq!(bytes, crate::actor::element_bytes(&data));
    assert_eq!((view.from.to_native(), view.call.to_native()), (1, 7));
    let owned = decode_owned::<Part>(view.bytes()).unwrap();
    assert_eq!(&*owned.bytes, crate::actor::element_bytes(&data));
}

#[test]
fn a_received_chunk_is_reduced_from_where_it_lies() {
    use super::message::Chunk;
    use crate::actor::{Received, elements_view};
    use crate::wire::encode;

    let data: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
    let chunk = Chunk {
        from: 1,
        call: 3,
        step: 0,
        chunk: 1,
        piece: 0,
        bytes: std::sync::Arc::from(crate::actor::element_bytes(&data)),
    };
    let buf = encode(&chunk).unwrap();
    let range = buf.as_ptr_range();
    let view = Received::<Chunk>::new(buf).unwrap();
    // What the schedule applies: the elements where the message holds
    // them, not a copy (a chunk's bytes start on a 16-byte boundary).
    let incoming = elements_view::<f64>(view.bytes.as_slice()).expect("aligned in the message");
    assert!(
        range.contains(&incoming.as_ptr().cast::<u8>()),
        "viewed in place"
    );
    let mut local = vec![1.0f64; data.len()];
    crate::reduce::Action::ReduceLocalFirst.apply(&ReduceOp::Sum, &mut local, incoming);
    assert!(local.iter().zip(&data).all(|(l, d)| *l == 1.0 + d));
}
