//! Topology-aware orders: ranks on one host stay together, so the ring and
//! the tree cross the network as few times as possible, and every link is
//! carried by the fastest means available (the seed's "optimal binary tree
//! where each link is the fastest possible communication means").
//!
//! Hosts are ordered by their lowest rank; within a host, ranks of one
//! process are adjacent, processes ordered by their lowest rank. The ring
//! walks host by host (one network hop per host boundary); the tree is a
//! binary tree of host leaders (the lowest rank on each host) over the
//! network, each leader the root of a binary tree of its own host's ranks.
//!
//! ```
//! use parallel::collective::{Link, Place, Topology};
//! let topology = Topology::new(vec![
//!     Place::new("a", 1), Place::new("b", 7), Place::new("a", 1), Place::new("a", 2),
//! ]).unwrap();
//! assert_eq!(topology.ring_order(), vec![0, 2, 3, 1]);
//! assert_eq!(topology.link(0, 2), Link::SameProcess);
//! assert_eq!(topology.link(0, 3), Link::SameHost);
//! assert_eq!(topology.link(0, 1), Link::Network);
//! println!("{topology}");
//! ```

use std::fmt;

use super::schedule::{Algorithm, Schedule, ScheduleError, choose};
use super::tree::Tree;

/// Where a rank runs: a host and a process on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    /// Host name or id; equal strings mean the same machine.
    pub host: String,
    /// Process id on that host.
    pub process: u32,
}

impl Place {
    /// Rank placed in `process` on `host`.
    pub fn new(host: impl Into<String>, process: u32) -> Self {
        Self {
            host: host.into(),
            process,
        }
    }
}

/// How messages between two ranks travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// Same process: a memory copy.
    SameProcess,
    /// Same host, other process: shared memory.
    SameHost,
    /// Other host: QUIC over the network.
    Network,
}

impl Link {
    /// The link between ranks at `a` and `b`.
    pub fn between(a: &Place, b: &Place) -> Self {
        if a.host != b.host {
            Self::Network
        } else if a.process != b.process {
            Self::SameHost
        } else {
            Self::SameProcess
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SameProcess => "same process",
            Self::SameHost => "same host (shared memory)",
            Self::Network => "network (QUIC)",
        })
    }
}

/// Ranks `0..n` with their [`Place`]s, grouped by host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    places: Vec<Place>,
    /// Ranks of each host, leader first, in host order.
    groups: Vec<Vec<usize>>,
}

impl Topology {
    /// Groups ranks by host; `places[r]` is rank `r`'s place.
    pub fn new(places: Vec<Place>) -> Result<Self, ScheduleError> {
        if places.is_empty() {
            return Err(ScheduleError::NoRanks);
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (rank, place) in places.iter().enumerate() {
            match groups.iter_mut().find(|g| places[g[0]].host == place.host) {
                Some(group) => group.push(rank),
                None => groups.push(vec![rank]),
            }
        }
        for group in &mut groups {
            // Stable: processes in order of their lowest rank, ranks ascending.
            let first = |p: u32| group.iter().position(|&r| places[r].process == p);
            let mut keyed: Vec<_> = group
                .iter()
                .map(|&r| (first(places[r].process), r))
                .collect();
            keyed.sort();
            *group = keyed.into_iter().map(|(_, r)| r).collect();
        }
        Ok(Self { places, groups })
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.places.len()
    }

    /// Where `rank` runs.
    pub fn place(&self, rank: usize) -> &Place {
        &self.places[rank]
    }

    /// The ranks of each host in host order, the host's leader first.
    pub fn hosts(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// One leader per host (its lowest rank), in host order.
    pub fn leaders(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g[0]).collect()
    }

    /// The link between ranks `a` and `b`.
    pub fn link(&self, a: usize, b: usize) -> Link {
        Link::between(&self.places[a], &self.places[b])
    }

    /// Ring order: host after host, each host's ranks adjacent.
    pub fn ring_order(&self) -> Vec<usize> {
        self.groups.concat()
    }

    /// The topology-aware tree: rooted at the first host's leader; a rank's
    /// children are first its host-local children (binary heap over the
    /// host's ranks), then, for a leader, its child leaders (binary heap
    /// over the leaders). Crosses the network `hosts − 1` times, the least
    /// possible.
    pub fn tree(&self) -> Tree {
        let mut children = vec![Vec::new(); self.ranks()];
        let heap = |children: &mut Vec<Vec<usize>>, ranks: &[usize]| {
            for (i, &r) in ranks.iter().enumerate() {
                children[r].extend(ranks.iter().skip(2 * i + 1).take(2));
            }
        };
        for group in &self.groups {
            heap(&mut children, group);
        }
        heap(&mut children, &self.leaders());
        Tree::from_children(self.groups[0][0], children)
            .expect("host heaps joined by a leader heap form a tree")
    }

    /// Allreduce of `len` elements of `elem_bytes` bytes, ring or tree as
    /// [`choose`] picks, over this topology's ring order or tree.
    pub fn allreduce(&self, len: usize, elem_bytes: usize) -> Schedule {
        match choose(len.saturating_mul(elem_bytes), self.ranks()) {
            Algorithm::Ring => self.ring(len),
            Algorithm::Tree => Schedule::tree_allreduce(len, &self.tree()),
        }
    }

    /// Ring allreduce of `len` elements over [`Topology::ring_order`].
    pub fn ring(&self, len: usize) -> Schedule {
        Schedule::ring_over(len, &self.ring_order()).expect("the ring order is a permutation")
    }

    fn write_subtree(
        &self,
        f: &mut fmt::Formatter<'_>,
        tree: &Tree,
        rank: usize,
        prefix: &str,
    ) -> fmt::Result {
        let kids = tree.children(rank);
        for (i, &c) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let place = self.place(c);
            writeln!(
                f,
                "{prefix}{} rank {c} ({} pid {}) via {}",
                if last { "└─" } else { "├─" },
                place.host,
                place.process,
                self.link(rank, c)
            )?;
            let deeper = format!("{prefix}{}", if last { "   " } else { "│  " });
            self.write_subtree(f, tree, c, &deeper)?;
        }
        Ok(())
    }
}

/// Ranks that all run on one host and in more than one process share one
/// shared-memory arena (no tree or ring is needed): the host and each rank's
/// process are listed. Otherwise the tree, each link labelled, then the
/// ring's links:
///
/// ```text
/// tree over 3 ranks on 2 hosts:
/// rank 0 (a pid 1) root
/// ├─ rank 2 (a pid 2) via same host (shared memory)
/// └─ rank 1 (b pid 7) via network (QUIC)
/// ring:
///   0 → 2 via same host (shared memory)
///   2 → 1 via network (QUIC)
///   1 → 0 via network (QUIC)
/// ```
impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let processes = |g: &[usize]| {
            let mut p: Vec<u32> = g.iter().map(|&r| self.places[r].process).collect();
            p.sort_unstable();
            p.dedup();
            p.len()
        };
        if let [only] = self.groups.as_slice()
            && processes(only) > 1
        {
            write!(
                f,
                "{} ranks on one host ({}), every link through one shared-memory arena:",
                self.ranks(),
                self.places[0].host
            )?;
            for (rank, place) in self.places.iter().enumerate() {
                write!(f, "\n  rank {rank}: pid {}", place.process)?;
            }
            return Ok(());
        }
        let tree = self.tree();
        let root = tree.root();
        writeln!(
            f,
            "tree over {} ranks on {} hosts:",
            self.ranks(),
            self.groups.len()
        )?;
        let place = self.place(root);
        writeln!(f, "rank {root} ({} pid {}) root", place.host, place.process)?;
        self.write_subtree(f, &tree, root, "")?;
        write!(f, "ring:")?;
        let order = self.ring_order();
        if order.len() == 1 {
            return write!(f, " rank {root} alone");
        }
        for (i, &a) in order.iter().enumerate() {
            let b = order[(i + 1) % order.len()];
            write!(f, "\n  {a} → {b} via {}", self.link(a, b))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(places: &[(&str, u32)]) -> Topology {
        Topology::new(places.iter().map(|&(h, p)| Place::new(h, p)).collect()).unwrap()
    }

    #[test]
    fn ranks_of_a_host_are_adjacent() {
        let t = topo(&[("a", 1), ("b", 5), ("a", 2), ("c", 9), ("b", 5), ("a", 1)]);
        assert_eq!(t.hosts(), &[vec![0, 5, 2], vec![1, 4], vec![3]]);
        assert_eq!(t.leaders(), vec![0, 1, 3]);
        assert_eq!(t.ring_order(), vec![0, 5, 2, 1, 4, 3]);
        let order = t.ring_order();
        let network = (0..order.len())
            .filter(|&i| t.link(order[i], order[(i + 1) % order.len()]) == Link::Network)
            .count();
        assert_eq!(network, 3, "one network hop per host boundary");
    }

    #[test]
    fn tree_has_one_leader_per_host_and_crosses_the_network_least() {
        let t = topo(&[("a", 1), ("b", 5), ("a", 2), ("c", 9), ("b", 5), ("a", 1)]);
        let tree = t.tree();
        assert_eq!(tree.root(), 0);
        assert_eq!(tree.children(0), &[5, 2, 1, 3]);
        assert_eq!(tree.children(1), &[4]);
        let mut network = 0;
        for r in 0..t.ranks() {
            if let Some(p) = tree.parent(r)
                && t.link(p, r) == Link::Network
            {
                network += 1;
                assert!(t.leaders().contains(&r) && t.leaders().contains(&p));
            }
        }
        assert_eq!(network, 2);
    }

    #[test]
    fn single_host_has_no_network_link() {
        let t = topo(&[("a", 1), ("a", 1), ("a", 2), ("a", 2), ("a", 3)]);
        assert_eq!(t.hosts().len(), 1);
        let tree = t.tree();
        assert_eq!(tree, Tree::binary(5).unwrap());
        assert!(!t.to_string().contains("network"));
        assert_eq!(
            t.to_string(),
            "5 ranks on one host (a), every link through one shared-memory arena:\n  \
             rank 0: pid 1\n  rank 1: pid 1\n  rank 2: pid 2\n  rank 3: pid 2\n  rank 4: pid 3"
        );
        let one_process = topo(&[("a", 1), ("a", 1)]);
        assert!(
            one_process
                .to_string()
                .contains("rank 1 (a pid 1) via same process")
        );
    }

    #[test]
    fn display_labels_every_link() {
        let t = topo(&[("a", 1), ("b", 7), ("a", 2)]);
        let text = t.to_string();
        let expected = "tree over 3 ranks on 2 hosts:\n\
                        rank 0 (a pid 1) root\n\
                        ├─ rank 2 (a pid 2) via same host (shared memory)\n\
                        └─ rank 1 (b pid 7) via network (QUIC)\n\
                        ring:\n  0 → 2 via same host (shared memory)\n  \
                        2 → 1 via network (QUIC)\n  1 → 0 via network (QUIC)";
        assert_eq!(text, expected);
        assert_eq!(
            topo(&[("x", 1)]).to_string().lines().last(),
            Some("ring: rank 0 alone")
        );
        assert_eq!(Topology::new(vec![]), Err(ScheduleError::NoRanks));
    }

    #[test]
    fn topology_schedules_follow_the_grouping() {
        let t = topo(&[("a", 1), ("b", 5), ("a", 2), ("b", 6)]);
        let ring = t.ring(100);
        assert_eq!(ring.steps()[0].transfers[0].to, 2);
        assert_eq!(t.allreduce(4, 4).algorithm(), Algorithm::Tree);
        assert_eq!(t.allreduce(1 << 20, 4).algorithm(), Algorithm::Ring);
    }
}
