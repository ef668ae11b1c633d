//! Forming a group: every member starts its member actor and asks each
//! other member's actor to take its `Hello` (retrying until that actor
//! runs), the members are ranked by node id, and the members of one
//! machine map one arena.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::collective::local::{DEFAULT_SLOT, LocalGroup, Wait};
use crate::id::{NodeId, host_key, host_name};
use crate::reduce::{Place, Topology};
use crate::remote::{ActorRef, AskError, Node, RemoteNode};

use super::inbox::{Filed, Key};
use super::member::{GroupMember, Member, OwnMember, member_id};
use super::message::{Arena, Hello};
use super::{FormError, Group, GroupOptions, SETTLE, TICK, Transport};

/// How long `form` waits for one peer to confirm its `Hello` before it
/// goes on and tries again later.
const CONFIRM: Duration = Duration::from_secs(1);

/// The member actor of the group `name` on `peer`'s node, reached over
/// its link.
fn actor_of(name: &str, peer: &RemoteNode) -> ActorRef<GroupMember> {
    ActorRef::remote(member_id(name, peer.id()), peer.link())
}

/// The places of `members`, labelled by host name, or host name and host key
/// where two machines share a name.
fn places(members: &[Member], hosts: &[String]) -> Vec<Place> {
    members
        .iter()
        .zip(hosts)
        .map(|(m, host)| {
            let clash = members
                .iter()
                .zip(hosts)
                .any(|(o, h)| h == host && o.boot != m.boot);
            let label = if clash {
                format!("{host}/{}", m.boot.get(..8).unwrap_or(&m.boot))
            } else {
                host.clone()
            };
            Place::new(label, m.pid)
        })
        .collect()
}

impl Group {
    /// Forms the group `name` of this node and `peers` (every member calls
    /// it with the others), waiting at most [`super::FORM_TIMEOUT`] for all of them.
    pub async fn form(node: &Node, name: &str, peers: &[RemoteNode]) -> Result<Self, FormError> {
        Self::form_with(node, name, peers, GroupOptions::default()).await
    }

    /// [`Group::form`] with options.
    pub async fn form_with(
        node: &Node,
        name: &str,
        peers: &[RemoteNode],
        options: GroupOptions,
    ) -> Result<Self, FormError> {
        let me = node.id();
        let mut seen = HashSet::new();
        for p in peers {
            if p.id() == me {
                return Err(FormError::Peers(format!(
                    "{me} is this node; list only the other members as peers"
                )));
            }
            if !seen.insert(p.id()) {
                return Err(FormError::Peers(format!("{} is listed twice", p.id())));
            }
        }
        let own = OwnMember::start(node, name, peers.len() + 1).await?;
        let inbox = own.inbox.clone();
        let my_host = options.host.clone().unwrap_or_else(host_key);
        let hello = Hello {
            node: me,
            pid: std::process::id(),
            host: host_name(),
            boot: my_host.clone(),
        };
        let deadline = Instant::now() + options.timeout;
        let mut unsent: Vec<&RemoteNode> = peers.iter().collect();
        let mut down_since: HashMap<NodeId, Instant> = HashMap::new();
        loop {
            // Enabled before the asks, so a hello that comes meanwhile wakes the wait below.
            let changed = inbox.changed();
            let mut still = Vec::new();
            for p in unsent {
                let to = actor_of(name, p);
                match tokio::time::timeout(CONFIRM, to.ask(hello.clone())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(AskError::Encode(e))) => return Err(e.into()),
                    // Its actor does not run yet (it has not called
                    // `form`), or it is slow to confirm: try again (one
                    // slow peer holds up no other). A peer that seems down
                    // is checked below.
                    _ => still.push(p),
                }
            }
            unsent = still;
            let heard = {
                let filing = inbox.lock();
                peers.iter().all(|p| filing.hellos.contains_key(&p.id()))
            };
            if unsent.is_empty() && heard {
                break;
            }
            // A connection that lost to the other direction's (two nodes
            // that joined each other at once) is replaced within moments.
            for p in peers {
                if p.is_alive() {
                    down_since.remove(&p.id());
                } else if down_since
                    .entry(p.id())
                    .or_insert_with(Instant::now)
                    .elapsed()
                    > SETTLE
                {
                    return Err(FormError::PeerGone(p.id()));
                }
            }
            if Instant::now() >= deadline {
                let filing = inbox.lock();
                let missing = peers
                    .iter()
                    .map(RemoteNode::id)
                    .filter(|n| {
                        !filing.hellos.contains_key(n) || unsent.iter().any(|p| p.id() == *n)
                    })
                    .collect();
                return Err(FormError::Timeout {
                    name: name.to_owned(),
                    missing,
                    secs: options.timeout.as_secs(),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
        }
        let mut hellos = std::mem::take(&mut inbox.lock().hellos);
        let mut all: Vec<(Member, String)> = vec![(
            Member {
                node: me,
                remote: None,
                actor: None,
                pid: std::process::id(),
                boot: my_host,
            },
            host_name(),
        )];
        for p in peers {
            let (pid, host, boot) = hellos.remove(&p.id()).unwrap_or_default();
            all.push((
                Member {
                    node: p.id(),
                    remote: Some(p.clone()),
                    actor: Some(actor_of(name, p)),
                    pid,
                    boot,
                },
                host,
            ));
        }
        match &options.order {
            None => all.sort_by_key(|(m, _)| m.node),
            Some(order) => {
                let mut listed: Vec<NodeId> = order.clone();
                listed.sort();
                let mut members: Vec<NodeId> = all.iter().map(|(m, _)| m.node).collect();
                members.sort();
                if listed != members {
                    return Err(FormError::Peers(format!(
                        "the order {order:?} must list this node and every peer exactly once"
                    )));
                }
                all.sort_by_key(|(m, _)| order.iter().position(|n| *n == m.node));
            }
        }
        let (members, hosts): (Vec<Member>, Vec<String>) = all.into_iter().unzip();
        let rank = members.iter().position(|m| m.node == me).unwrap_or(0);
        let topology =
            Topology::new(places(&members, &hosts)).map_err(|e| FormError::Peers(e.to_string()))?;
        let mut group = Group {
            name: name.to_owned(),
            rank,
            members,
            topology,
            own,
            local: None,
            host_local: None,
            hierarchical: false,
            call: 0,
            broken: None,
        };
        let one_machine = group
            .members
            .iter()
            .all(|m| !m.boot.is_empty() && m.boot == group.members[0].boot);
        let ranks = group.members.len();
        if options.transport == Transport::Auto && one_machine && ranks > 1 {
            let all: Vec<usize> = (0..ranks).collect();
            group.local = Some(group.make_arena(&all, deadline).await?);
        } else if options.transport == Transport::Auto && !one_machine {
            // Several machines: the members of each share an arena, and
            // all_reduce goes through it to one leader per machine.
            let hosts = group.topology.hosts().to_vec();
            group.hierarchical = hosts.iter().any(|h| h.len() > 1);
            if let Some(mine) = hosts.iter().find(|h| h.contains(&group.rank))
                && mine.len() > 1
            {
                group.host_local = Some(group.make_arena(mine, deadline).await?);
            }
        }
        Ok(group)
    }

    /// Rank 0 makes the one-machine arena and tells the others; they map it.
    /// The first of `ranks` makes an arena for `ranks` and tells the
    /// others, which map it.
    pub(super) async fn make_arena(
        &mut self,
        ranks: &[usize],
        deadline: Instant,
    ) -> Result<LocalGroup, FormError> {
        let leader = ranks[0];
        if self.rank == leader {
            let pids: Vec<u32> = ranks.iter().map(|&r| self.members[r].pid).collect();
            let local = LocalGroup::create(&pids, DEFAULT_SLOT, Wait::Cooperate)?;
            let arena = Arena {
                from: self.rank as u32,
                path: local.path().to_owned(),
                slot: local.slot() as u64,
            };
            for &r in &ranks[1..] {
                let m = &self.members[r];
                if let Some(actor) = &m.actor {
                    actor.ask(arena.clone()).await.map_err(|e| match e {
                        AskError::Encode(e) => FormError::Encode(e),
                        _ => FormError::PeerGone(m.node),
                    })?;
                }
            }
            return Ok(local);
        }
        let index = ranks.iter().position(|&r| r == self.rank).unwrap_or(0);
        let inbox = self.own.inbox.clone();
        loop {
            let changed = inbox.changed();
            let (arena, closed) = {
                let mut filing = inbox.lock();
                (filing.pending.remove(&(Key::Arena, leader)), filing.closed)
            };
            if let Some(Filed::Arena { path, slot }) = arena {
                let slot = usize::try_from(slot).unwrap_or(0);
                return Ok(LocalGroup::open(
                    &path,
                    index,
                    ranks.len(),
                    slot,
                    Wait::Cooperate,
                )?);
            }
            if closed {
                return Err(FormError::PeerGone(self.members[leader].node));
            }
            if Instant::now() >= deadline {
                return Err(FormError::Timeout {
                    name: self.name.clone(),
                    missing: vec![self.members[leader].node],
                    secs: 0,
                });
            }
            let _ = tokio::time::timeout(TICK, changed).await;
        }
    }
}
