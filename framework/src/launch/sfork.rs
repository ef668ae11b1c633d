//! The seed's smart fork: `addremote` registers hosts with their cores,
//! `calibrate` measures each host's speed, and `sfork(n)` spreads `n`
//! processes over them.
//!
//! ```ignore
//! parallel::addremote([
//!     Remote::ssh("server1.org").cores(8),
//!     Remote::ssh("server2.org").cores(16),
//!     Remote::ssh("server3.org").cores(4),
//! ]);
//! let children = parallel::sfork(16).await?; // 6 + 6 + 4 processes
//! ```

use std::sync::{Mutex, MutexGuard};

use super::ssh::{Remote, is_loopback};
use crate::process::{Children, ForkError, Placement, ProcessError, Tree};

/// A registered host and its speed in ]0, 1] (1 until `calibrate` measures it).
struct Registered {
    remote: Remote,
    speed: f64,
}

/// The hosts registered with `addremote`, kept in their context.
#[derive(Default)]
struct Hosts(Mutex<Vec<Registered>>);

fn hosts(ctx: &Tree) -> std::sync::Arc<Hosts> {
    ctx.extension(Hosts::default)
}

fn lock(hosts: &Hosts) -> MutexGuard<'_, Vec<Registered>> {
    hosts.0.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tree {
    /// Registers the hosts [`Tree::sfork`] spreads processes over, each
    /// with its cores (`Remote::ssh("server1.org").cores(8)`); replaces any
    /// earlier list. Call it before the first fork when a host is another
    /// machine: the tree's node then listens on every interface, not only
    /// on loopback.
    pub fn addremote(&self, remotes: impl IntoIterator<Item = Remote>) {
        let hosts = hosts(self);
        let mut registered = lock(&hosts);
        *registered = remotes
            .into_iter()
            .map(|remote| Registered { remote, speed: 1.0 })
            .collect();
        if registered
            .iter()
            .any(|h| !is_loopback(h.remote.host().hostname()))
        {
            self.expect_other_hosts();
        }
    }

    /// The hosts registered with [`Tree::addremote`].
    pub fn remotes(&self) -> Vec<Remote> {
        lock(&hosts(self))
            .iter()
            .map(|h| h.remote.clone())
            .collect()
    }

    /// The cores of all registered hosts together (the seed's `parallel.remotes.cores`).
    pub fn remote_cores(&self) -> usize {
        lock(&hosts(self))
            .iter()
            .map(|h| h.remote.host().cores)
            .sum()
    }

    /// The speed `calibrate` measured for each registered host, in
    /// [`Tree::remotes`] order: in ]0, 1], 1 for the fastest (all 1
    /// before calibration).
    pub fn remote_speeds(&self) -> Vec<f64> {
        lock(&hosts(self)).iter().map(|h| h.speed).collect()
    }

    /// Starts `n` processes spread over the hosts registered with
    /// [`Tree::addremote`]: round robin, each host capped at its cores, a
    /// slower host (after [`Tree::calibrate`]) getting a turn less often.
    /// Past the total of cores it keeps going round (more processes than
    /// cores) and logs a warning. With no host registered, forks `n`
    /// processes on this machine. Each child's [`crate::Child::speed`] is
    /// its host's speed.
    pub async fn sfork(&self, n: usize) -> Result<Children, ForkError> {
        let Some((placements, speeds)) = plan(self, n) else {
            return self.nfork(n).await;
        };
        let children = self.nfork(placements).await?;
        for (child, speed) in children.iter().zip(speeds) {
            child.set_speed(speed);
        }
        Ok(children)
    }

    /// Runs the calibration kernel in every child and sets each child's
    /// [`crate::Child::speed`]: 1 for the fastest, the ratio of times for
    /// the others. When hosts are registered with [`Tree::addremote`] and
    /// there are no children yet, first measures each host (one process per
    /// host, stopped afterwards) so that [`Tree::sfork`] spreads by speed
    /// and the children it starts report their host's speed.
    pub async fn calibrate(&self) -> Result<Children, ProcessError> {
        if self.nchildren() == 0 {
            calibrate_hosts(self).await?;
        }
        let all = self.children();
        let mut times = Vec::new();
        for child in &all {
            times.push(child.calibration_seconds().await?);
        }
        let speeds = super::calibrate::relative_speeds(&times);
        for (child, speed) in all.iter().zip(speeds) {
            child.set_speed(speed);
        }
        Ok(all)
    }
}

/// Registers the hosts `sfork` spreads processes over (the default
/// context's; see [`Tree::addremote`]).
pub fn addremote(remotes: impl IntoIterator<Item = Remote>) {
    Tree::global().addremote(remotes)
}

/// The hosts registered with [`addremote`].
pub fn remotes() -> Vec<Remote> {
    Tree::global().remotes()
}

/// The cores of all registered hosts together (the seed's `parallel.remotes.cores`).
pub fn remote_cores() -> usize {
    Tree::global().remote_cores()
}

/// The speed `calibrate` measured for each registered host, in [`remotes`]
/// order: in ]0, 1], 1 for the fastest (all 1 before calibration).
pub fn remote_speeds() -> Vec<f64> {
    Tree::global().remote_speeds()
}

/// Starts `n` processes spread over the hosts registered with
/// [`addremote`] (see [`Tree::sfork`]).
pub async fn sfork(n: usize) -> Result<Children, ForkError> {
    Tree::global().sfork(n).await
}

/// Measures the children's (or the registered hosts') speeds (see
/// [`Tree::calibrate`]).
pub async fn calibrate() -> Result<Children, ProcessError> {
    Tree::global().calibrate().await
}

/// Where `sfork(n)` puts each process and the speed it gets; `None` when no
/// host is registered.
fn plan(ctx: &Tree, n: usize) -> Option<(Vec<Placement>, Vec<f64>)> {
    let hosts = hosts(ctx);
    let hosts = lock(&hosts);
    if hosts.is_empty() {
        return None;
    }
    let shape: Vec<(usize, f64)> = hosts
        .iter()
        .map(|h| (h.remote.host().cores, h.speed))
        .collect();
    let total: usize = shape.iter().map(|(cores, _)| cores).sum();
    if n > total {
        tracing::warn!(
            processes = n,
            cores = total,
            "sfork starts more processes than the registered hosts have cores"
        );
    }
    let order = spread(n, &shape);
    let placements = order
        .iter()
        .map(|&i| hosts[i].remote.host().placement())
        .collect();
    let speeds = order.iter().map(|&i| hosts[i].speed).collect();
    Some((placements, speeds))
}

/// Which host each of `n` processes goes to, as indices into `hosts`
/// (`(cores, speed)` each): rounds over the hosts in order, where a host
/// earns its speed in credit every round and takes a process for each whole
/// credit (speed 1: every round; 0.5: every other round) while it has a free
/// core. Once every core is taken, the rounds go on without the caps.
pub(crate) fn spread(n: usize, hosts: &[(usize, f64)]) -> Vec<usize> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let fastest = hosts
        .iter()
        .map(|&(_, s)| s)
        .filter(|s| s.is_finite() && *s > 0.0)
        .fold(0.0, f64::max);
    // Relative speeds, floored so a very slow host still gets turns.
    let speeds: Vec<f64> = hosts
        .iter()
        .map(|&(_, s)| {
            if fastest > 0.0 && s.is_finite() && s > 0.0 {
                (s / fastest).max(0.01)
            } else {
                1.0
            }
        })
        .collect();
    let total_cores: usize = hosts.iter().map(|&(c, _)| c).sum();
    let mut counts = vec![0usize; hosts.len()];
    let mut credit = vec![0.0f64; hosts.len()];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        for (i, &(cores, _)) in hosts.iter().enumerate() {
            if order.len() == n {
                break;
            }
            credit[i] += speeds[i];
            let room = counts[i] < cores || order.len() >= total_cores;
            if credit[i] >= 1.0 - 1e-9 && room {
                credit[i] -= 1.0;
                counts[i] += 1;
                order.push(i);
            } else if !room {
                // A full host keeps no more than one turn in hand.
                credit[i] = credit[i].min(1.0);
            }
        }
    }
    order
}

/// Measures each registered host: starts one process per host, runs the
/// calibration kernel there three times (keeping the best), stops the
/// processes and records each host's speed (1 for the fastest).
async fn calibrate_hosts(ctx: &Tree) -> Result<(), ProcessError> {
    let placements: Vec<Placement> = lock(&hosts(ctx))
        .iter()
        .map(|h| h.remote.host().placement())
        .collect();
    if placements.is_empty() {
        return Ok(());
    }
    let probes = ctx.nfork(placements).await?;
    let mut seconds = Vec::with_capacity(probes.len());
    let mut failure = None;
    for probe in &probes {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            match probe.calibration_seconds().await {
                Ok(secs) => best = best.min(secs),
                Err(e) => {
                    failure.get_or_insert(e);
                    break;
                }
            }
        }
        seconds.push(best);
    }
    for probe in &probes {
        probe.kill().await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let speeds = super::calibrate::relative_speeds(&seconds);
    let hosts = hosts(ctx);
    let mut hosts = lock(&hosts);
    for (host, speed) in hosts.iter_mut().zip(speeds) {
        host.speed = speed;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(order: &[usize], hosts: usize) -> Vec<usize> {
        let mut counts = vec![0; hosts];
        for &i in order {
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn the_seeds_sixteen_over_8_16_4_cores_gives_6_6_4() {
        let order = spread(16, &[(8, 1.0), (16, 1.0), (4, 1.0)]);
        assert_eq!(counts(&order, 3), [6, 6, 4]);
        // Round robin: the first round visits every host in order.
        assert_eq!(&order[..3], &[0, 1, 2]);
    }

    #[test]
    fn equal_speeds_give_plain_round_robin() {
        let order = spread(7, &[(10, 1.0), (10, 1.0)]);
        assert_eq!(order, [0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn a_host_of_half_speed_gets_a_turn_every_other_round() {
        let order = spread(6, &[(10, 1.0), (10, 0.5)]);
        assert_eq!(order, [0, 0, 1, 0, 0, 1]);
        assert_eq!(counts(&spread(30, &[(100, 1.0), (100, 0.5)]), 2), [20, 10]);
    }

    #[test]
    fn caps_hold_even_for_the_fastest_host() {
        // The fast host is full after 2; the slow one takes the rest.
        assert_eq!(counts(&spread(6, &[(2, 1.0), (8, 0.25)]), 2), [2, 4]);
    }

    #[test]
    fn past_the_total_of_cores_it_keeps_going_round() {
        assert_eq!(counts(&spread(10, &[(2, 1.0), (3, 1.0)]), 2), [5, 5]);
        assert_eq!(counts(&spread(8, &[(1, 1.0), (1, 0.5)]), 2), [5, 3]);
    }

    #[test]
    fn speeds_are_taken_relative_to_the_fastest() {
        assert_eq!(
            spread(6, &[(10, 0.4), (10, 0.2)]),
            spread(6, &[(10, 1.0), (10, 0.5)])
        );
        assert_eq!(counts(&spread(4, &[(4, f64::NAN), (4, 0.0)]), 2), [2, 2]);
        assert!(spread(3, &[]).is_empty());
    }
}
