//! Groups of peers that are not a fork tree: separate processes that join
//! each other's nodes and form a group by name, then run every collective
//! (through shared memory, and over direct QUIC links); a member killed
//! mid-call, or one that drops its group, fails the others.

use std::process::Stdio;
use std::time::{Duration, Instant};

use parallel_integration_tests::netbed::NetBed;
use parallel_integration_tests::{DEADLINE, PASSWORD};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const PEER: &str = env!("CARGO_BIN_EXE_peer");

struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    rank: usize,
    /// How its group runs calls: shared-memory, hierarchical or quic.
    path: String,
}

impl Peer {
    async fn next_line(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("read stdout")
            .expect("the peer is still running")
    }
}

/// Starts one peer and reads its join line.
async fn start_peer(args: &[&str], env: &[(&str, &str)]) -> (Peer, String) {
    start_peer_by(Command::new(PEER), args, env).await
}

/// Starts one peer with `cmd` (the peer binary, or `ip netns exec … peer`).
async fn start_peer_by(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> (Peer, String) {
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .env("PARALLEL_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start a peer");
    let stdout = child.stdout.take().expect("piped");
    let stdin = child.stdin.take();
    let mut peer = Peer {
        child,
        stdin,
        lines: BufReader::new(stdout).lines(),
        rank: usize::MAX,
        path: String::new(),
    };
    let ready = peer.next_line().await;
    let line = ready
        .strip_prefix("READY ")
        .expect("READY <join line>")
        .to_owned();
    (peer, line)
}

/// Hands each peer the others' join lines and reads its `RANK` line.
async fn hand_out(all: &mut [Peer], lines: &[String]) {
    for (i, peer) in all.iter_mut().enumerate() {
        let stdin = peer.stdin.as_mut().expect("stdin");
        for (j, line) in lines.iter().enumerate() {
            if i != j {
                stdin
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .unwrap();
            }
        }
        stdin.flush().await.unwrap();
    }
    for peer in all.iter_mut() {
        let line = peer.next_line().await;
        let mut words = line.strip_prefix("RANK ").unwrap_or("").split_whitespace();
        peer.rank = words
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("expected RANK <r> <path>, got {line}"));
        peer.path = words.next().unwrap_or("").to_owned();
    }
}

/// Starts `n` peers with `args`, hands each the others' join lines, and
/// returns them once each has printed its `RANK` line.
async fn peers(n: usize, args: &[&str], env: &[(&str, &str)]) -> Vec<Peer> {
    let mut all = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..n {
        let (peer, line) = start_peer(args, env).await;
        all.push(peer);
        lines.push(line);
    }
    hand_out(&mut all, &lines).await;
    all
}

/// Reads `count` lines from `peer`.
async fn lines_of(peer: &mut Peer, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(peer.next_line().await);
    }
    out
}

async fn finish(mut all: Vec<Peer>) {
    for p in &mut all {
        p.stdin.take();
    }
    for p in &mut all {
        let status = tokio::time::timeout(DEADLINE, p.child.wait())
            .await
            .expect("the peer exits once its stdin closes")
            .expect("its status");
        assert!(status.success(), "{status}");
    }
}

async fn every_collective(n: usize, len: usize, env: &[(&str, &str)]) {
    let name = format!("every {n} {len} {env:?}");
    let mut all = peers(n, &[&name, &n.to_string(), "every", &len.to_string()], env).await;
    let quic = env
        .iter()
        .any(|&(k, v)| k == parallel::collective::TRANSPORT_VAR && v == "quic");
    for p in &mut all {
        assert_eq!(p.path, if quic { "quic" } else { "shared-memory" });
        let lines = lines_of(p, 7).await;
        for line in &lines {
            assert!(line.starts_with("OK "), "{lines:?}");
        }
    }
    finish(all).await;
}

#[tokio::test]
async fn peers_on_one_machine_share_memory() {
    every_collective(3, 1001, &[]).await;
}

/// Starts one peer per entry of `starts` (how to start it: a command, and
/// where it listens or which host it is told it is on), hands out the join
/// lines, and checks every rank runs every collective on `path`.
async fn every_collective_by(
    name: &str,
    len: usize,
    path: &str,
    starts: Vec<(Command, Vec<(&str, String)>)>,
) {
    let n = starts.len();
    let args = [name, &n.to_string(), "every", &len.to_string()];
    let mut all = Vec::new();
    let mut lines = Vec::new();
    for (cmd, env) in starts {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (peer, line) = start_peer_by(cmd, &args, &env).await;
        lines.push(line);
        all.push(peer);
    }
    hand_out(&mut all, &lines).await;
    for p in &mut all {
        assert_eq!(p.path, path, "rank {}", p.rank);
        let lines = lines_of(p, 7).await;
        for line in &lines {
            assert!(line.starts_with("OK "), "{lines:?}");
        }
    }
    finish(all).await;
}

/// Peers told they run on machines `hosts` (one per peer): the ranks on
/// one "machine" share its arena, the machines' leaders talk over QUIC.
async fn every_collective_on_hosts(hosts: &[&str], len: usize) {
    let starts = hosts
        .iter()
        .map(|h| (Command::new(PEER), vec![("PEER_HOST", h.to_string())]))
        .collect();
    every_collective_by(
        &format!("hosts {hosts:?} {len}"),
        len,
        "hierarchical",
        starts,
    )
    .await;
}

/// `n` peers on the bed's hosts in turn, each listening on its host's address.
fn on_bed(bed: &NetBed, n: usize) -> Vec<(Command, Vec<(&'static str, String)>)> {
    (0..n)
        .map(|i| {
            let host = &bed.hosts[i % bed.hosts.len()];
            let mut cmd = bed.command(i % bed.hosts.len(), PEER);
            cmd.args(["--listen", &format!("{}:0", host.addr)]);
            (cmd, Vec::new())
        })
        .collect()
}

#[tokio::test]
async fn peers_on_two_machines_reduce_within_each_then_between_leaders() {
    every_collective_on_hosts(&["a", "b", "a", "b"], 30_001).await;
}

/// On the network test bed: 8 peers on 4 hosts (2 each), nothing told
/// about hosts. The framework must see 4 machines (the host key includes
/// the network namespace): shared memory within each, QUIC between the
/// leaders — the hierarchical path, checked against its reference.
#[tokio::test]
async fn peers_on_four_bed_hosts_take_the_hierarchical_path() {
    let Some(bed) = parallel_integration_tests::netbed::bed_or_skip(
        4,
        "peers_on_four_bed_hosts_take_the_hierarchical_path",
    ) else {
        return;
    };
    every_collective_by("bed 8", 30_001, "hierarchical", on_bed(&bed, 8)).await;
    drop(bed);
}

/// On the network test bed, one host's link slow (20 ms) and lossy (2 %):
/// the collectives still agree with the reference (QUIC retransmits).
#[tokio::test]
async fn peers_on_bed_hosts_over_a_slow_lossy_link_still_agree() {
    let Some(bed) = parallel_integration_tests::netbed::bed_or_skip(
        3,
        "peers_on_bed_hosts_over_a_slow_lossy_link_still_agree",
    ) else {
        return;
    };
    if let Err(why) = bed.netem(1, 20, 2.0) {
        // A kernel without the netem queueing discipline (sch_netem).
        eprintln!("SKIPPED peers_on_bed_hosts_over_a_slow_lossy_link_still_agree: {why}");
        return;
    }
    // One process per host: direct QUIC links.
    every_collective_by("lossy 3", 20_001, "quic", on_bed(&bed, 3)).await;
    drop(bed);
}

#[tokio::test]
async fn peers_over_quic_links() {
    let quic = [(parallel::collective::TRANSPORT_VAR, "quic")];
    every_collective(2, 0, &quic).await;
    every_collective(4, 20_001, &quic).await;
}

/// Kills the last rank while the others wait for it in `all_reduce`: both
/// survivors fail within `bound` of the kill.
async fn a_killed_member_fails_the_others(env: &[(&str, &str)], bound: Duration) {
    let name = format!("stall {env:?}");
    let mut all = peers(3, &[&name, "3", "stall", "1000"], env).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let staller = all.iter().position(|p| p.rank == 2).expect("a rank 2");
    let mut staller = all.remove(staller);
    staller.child.start_kill().expect("SIGKILL the staller");
    let killed = Instant::now();
    for p in &mut all {
        let line = p.next_line().await;
        assert!(line.starts_with("ERR "), "{line}");
        assert!(line.contains("rank 2"), "{line}");
    }
    let took = killed.elapsed();
    assert!(took < bound, "{took:?}");
    let _ = staller.child.wait().await;
    finish(all).await;
}

#[tokio::test]
async fn a_member_killed_mid_allreduce_fails_the_others_through_shared_memory() {
    a_killed_member_fails_the_others(&[], Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_member_killed_mid_allreduce_fails_the_others_over_quic() {
    // The transport's heartbeat timeout is 1.5 s.
    let quic = [(parallel::collective::TRANSPORT_VAR, "quic")];
    a_killed_member_fails_the_others(&quic, Duration::from_secs(4)).await;
}

#[tokio::test]
async fn a_member_dropping_its_group_fails_the_others_over_quic() {
    let quic = [(parallel::collective::TRANSPORT_VAR, "quic")];
    let mut all = peers(3, &["leave quic", "3", "leave", "1000"], &quic).await;
    let leaver = all.iter().position(|p| p.rank == 2).expect("a rank 2");
    let mut leaver = all.remove(leaver);
    assert_eq!(leaver.next_line().await, "LEFT");
    let left = Instant::now();
    for p in &mut all {
        let line = p.next_line().await;
        assert!(line.starts_with("ERR "), "{line}");
        assert!(line.contains("rank 2"), "{line}");
        assert!(line.contains("dropped the group"), "{line}");
    }
    // Its process still runs: the others learn it from its `Leave`, not
    // from the transport's heartbeat timeout (1.5 s).
    let took = left.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    all.push(leaver);
    finish(all).await;
}
