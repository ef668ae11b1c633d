//! A test bed of hosts on one machine: each host is a Linux network
//! namespace with its own address on a bridge, so processes started in two
//! hosts reach each other only over the network (and para||el sees them as
//! two hosts: its host key includes the network namespace). Links can be
//! slowed or made lossy (`tc netem`), and hosts partitioned from each other
//! (blackhole routes) and healed again. Everything is removed when the bed
//! is dropped, also when a test fails.
//!
//! Making namespaces needs root and `ip` (iproute2); where that is missing,
//! [`NetBed::new`] says why and the tests skip with that message.
//!
//! The kernel keeps one ARP table for all namespaces, 1,024 entries by
//! default (`net.ipv4.neigh.default.gc_thresh3`): a bed of 33 hosts that all
//! talk to each other needs more (33 × 32 = 1,056), and the 1,025th entry
//! fails ("neighbor table overflow" in the kernel log: a QUIC handshake
//! that times out). A bed raises the limits to what its hosts need; it never
//! lowers them, and leaves them raised.

use std::net::Ipv4Addr;
use std::process::Command;

/// One host of a bed.
#[derive(Debug, Clone)]
pub struct BedHost {
    /// Its network namespace.
    pub ns: String,
    /// Its address on the bed's bridge.
    pub addr: Ipv4Addr,
    /// The host end of its link (in the root namespace, on the bridge).
    link: String,
}

/// A bed of hosts; see the module docs.
#[derive(Debug)]
pub struct NetBed {
    bridge: String,
    /// The root namespace's address on the bridge (this test process).
    pub gateway: Ipv4Addr,
    /// The hosts, in order.
    pub hosts: Vec<BedHost>,
    /// Blackhole routes added by [`NetBed::partition`]: (namespace, address).
    cuts: Vec<(String, Ipv4Addr)>,
}

/// The kernel's ARP table limits, for `n` hosts that each talk to all the
/// others (and some room for what runs beside them): raised where they are
/// lower, which the defaults are only from 28 hosts on.
fn room_for_neighbours(n: usize) -> Result<(), String> {
    let needed = n * n + 256;
    for (knob, want) in [("gc_thresh2", needed / 2), ("gc_thresh3", needed)] {
        let path = format!("/proc/sys/net/ipv4/neigh/default/{knob}");
        let now: usize = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if now < want {
            std::fs::write(&path, want.to_string()).map_err(|e| {
                format!("cannot raise the ARP table limit {path} to {want} for {n} hosts: {e}")
            })?;
        }
    }
    Ok(())
}

/// Runs `ip args…`; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetBed {
    /// Makes `n` hosts (at most 250) on a fresh bridge, in a subnet of
    /// 198.18.0.0/15 (the range set aside for network tests), or says why
    /// it cannot (not root, no `ip`, no namespaces).
    pub fn new(n: usize) -> Result<NetBed, String> {
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("the network test bed needs root (network namespaces)".into());
        }
        let n = n.clamp(1, 250);
        room_for_neighbours(n)?;
        // A random tag names the bed (its bridge, links and namespaces) and
        // picks its /24; one that another bed holds is skipped (the bridge
        // name exists, or the subnet is routed already).
        let (tag, a, b, mut bed) = (0..32)
            .find_map(|_| {
                let id = parallel::NodeId::new().to_bytes();
                let tag = u32::from(u16::from_le_bytes([id[0], id[1]])) % 0xffff;
                let subnet = tag % 510;
                let (a, b) = (18 + (subnet / 255) as u8, (subnet % 255) as u8);
                let routed = Command::new("ip")
                    .args(["-4", "route", "show", &format!("198.{a}.{b}.0/24")])
                    .output()
                    .map(|o| !o.stdout.is_empty())
                    .unwrap_or(false);
                let bridge = format!("pbb{tag:04x}");
                if routed || ip(&["link", "add", &bridge, "type", "bridge"]).is_err() {
                    return None;
                }
                let bed = NetBed {
                    bridge,
                    gateway: Ipv4Addr::new(198, a, b, 254),
                    hosts: Vec::new(),
                    cuts: Vec::new(),
                };
                Some((tag, a, b, bed))
            })
            .ok_or("no free bridge name and subnet for the test bed after 32 tries")?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", bed.gateway),
            "dev",
            &bed.bridge,
        ])?;
        ip(&["link", "set", &bed.bridge, "up"])?;
        for i in 0..n {
            let host = BedHost {
                ns: format!("pbn{tag:04x}h{i}"),
                addr: Ipv4Addr::new(198, a, b, i as u8 + 1),
                link: format!("pbv{tag:04x}h{i}"),
            };
            let inner = format!("pbi{tag:04x}h{i}");
            ip(&["netns", "add", &host.ns])?;
            bed.hosts.push(host.clone());
            ip(&[
                "link", "add", &host.link, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &host.ns])?;
            ip(&["link", "set", &host.link, "master", &bed.bridge])?;
            ip(&["link", "set", &host.link, "up"])?;
            let ns = host.ns.as_str();
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", &inner, "name", "eth0"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(bed)
    }

    /// A command that runs `program` in host `i`'s namespace.
    pub fn command(&self, i: usize, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].ns, program]);
        cmd
    }

    /// Cuts every host of `left` off from every host of `right`, both ways
    /// (each keeps its link to this process and to the others).
    pub fn partition(&mut self, left: &[usize], right: &[usize]) -> Result<(), String> {
        for (&x, &y) in left.iter().flat_map(|x| right.iter().map(move |y| (x, y))) {
            for (from, to) in [(x, y), (y, x)] {
                let (ns, addr) = (self.hosts[from].ns.clone(), self.hosts[to].addr);
                ip(&[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "blackhole",
                    &format!("{addr}/32"),
                ])?;
                self.cuts.push((ns, addr));
            }
        }
        Ok(())
    }

    /// Cuts host `i` off from this process and every other host.
    pub fn isolate(&mut self, i: usize) -> Result<(), String> {
        ip(&["link", "set", &self.hosts[i].link, "down"])
    }

    /// Undoes every partition and isolation.
    pub fn heal(&mut self) -> Result<(), String> {
        for (ns, addr) in std::mem::take(&mut self.cuts) {
            ip(&[
                "-n",
                &ns,
                "route",
                "del",
                "blackhole",
                &format!("{addr}/32"),
            ])?;
        }
        for host in &self.hosts {
            ip(&["link", "set", &host.link, "up"])?;
        }
        Ok(())
    }

    /// Delays every packet host `i` sends by `delay_ms` and drops
    /// `loss_pct` % of them (`tc netem`; 0, 0 removes it).
    pub fn netem(&self, i: usize, delay_ms: u32, loss_pct: f32) -> Result<(), String> {
        let ns = &self.hosts[i].ns;
        let _ = Command::new("tc")
            .args(["-n", ns, "qdisc", "del", "dev", "eth0", "root"])
            .output();
        if delay_ms == 0 && loss_pct == 0.0 {
            return Ok(());
        }
        let out = Command::new("tc")
            .args(["-n", ns, "qdisc", "add", "dev", "eth0", "root", "netem"])
            .args([
                "delay",
                &format!("{delay_ms}ms"),
                "loss",
                &format!("{loss_pct}%"),
            ])
            .output()
            .map_err(|e| format!("cannot run `tc` (install iproute2): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tc netem failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for NetBed {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of the link, and with it the
        // other end; then the bridge.
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.ns]);
            let _ = ip(&["link", "del", &host.link]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A bed of `n` hosts, or `None` after printing why the test is skipped.
pub fn bed_or_skip(n: usize, test: &str) -> Option<NetBed> {
    match NetBed::new(n) {
        Ok(bed) => Some(bed),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}
