//! One picture of the cluster as the head sees it ([`ClusterView`]): what
//! the dashboard draws (as JSON) and what `/metrics` exposes (as
//! Prometheus text, [`ClusterView::to_prometheus`]).

use std::fmt::Write as _;

use serde::Serialize;

use super::activity::{RatePoint, StreamJob};
use super::gpus::GpuRow;
use super::message::{JobTotals, PoolRow};
use super::usage::{MailboxRow, SupervisorRow};

/// Serializes a value by its `Display` form (ids).
pub(crate) fn display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// The head itself.
#[derive(Clone, Debug, Serialize)]
pub struct HeadView {
    /// Its node.
    #[serde(serialize_with = "display")]
    pub node: crate::id::NodeId,
    /// The line nodes and pools join with.
    pub join_line: String,
    /// Seconds since it started.
    pub uptime_s: f64,
    /// CPU of its process since the last view, percent of one core.
    pub cpu_percent: Option<f32>,
    /// Resident memory of its process.
    pub rss_bytes: Option<u64>,
    /// Peers its transport declared dead after missed heartbeats.
    pub heartbeat_timeouts: u64,
}

/// One worker, as its node shows it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    /// Its actor.
    #[serde(serialize_with = "display")]
    pub worker: crate::id::ActorId,
    /// Its pool.
    pub pool: uuid::Uuid,
    /// The worker type it runs.
    pub kind: String,
    /// Jobs it holds now (running or waiting on it).
    pub holding: u64,
    /// Jobs it finished.
    pub completed: u64,
}

/// One node agent.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    /// Its node.
    #[serde(serialize_with = "display")]
    pub node: crate::id::NodeId,
    /// Its host name.
    pub host: String,
    /// Where its connection to the head comes from.
    pub address: Option<String>,
    /// Its transport's incarnation (a restarted agent has a new one).
    pub incarnation: Option<u64>,
    /// `up`, or `unreachable` when it did not answer in time.
    pub state: String,
    /// CPU of the agent and its workers, percent of one core.
    pub cpu_percent: Option<f32>,
    /// Resident memory of the agent and its workers.
    pub rss_bytes: Option<u64>,
    /// Workers it runs per pool.
    pub workers_per_pool: u32,
    /// Its GPUs.
    pub gpus: Vec<GpuRow>,
    /// Its workers connected to the head.
    pub workers: Vec<WorkerView>,
    /// Its supervisors (one per pool).
    pub supervisors: Vec<SupervisorRow>,
    /// Its deepest mailboxes.
    pub mailboxes: Vec<MailboxRow>,
    /// Workers it restarted since it started.
    pub restarts: u64,
}

/// A job among the slowest recent ones.
#[derive(Clone, Debug, Serialize)]
pub struct SlowJob {
    /// Its pool.
    pub pool: uuid::Uuid,
    /// Its index.
    pub job: u64,
    /// The worker that ran it.
    #[serde(serialize_with = "display")]
    pub worker: crate::id::ActorId,
    /// That worker's label.
    pub label: String,
    /// How long it ran.
    pub ms: f64,
    /// Whether it gave an output.
    pub ok: bool,
}

impl From<StreamJob> for SlowJob {
    fn from(j: StreamJob) -> Self {
        Self {
            ms: j.took_us() as f64 / 1000.0,
            pool: j.pool,
            job: j.job,
            worker: j.worker,
            label: j.label,
            ok: j.ok,
        }
    }
}

/// One connection of the head's transport.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// The peer's node.
    #[serde(serialize_with = "display")]
    pub node: crate::id::NodeId,
    /// Where its packets come from.
    pub address: String,
    /// Frames the head sent it.
    pub frames_sent: u64,
    /// UDP bytes sent to it.
    pub bytes_sent: u64,
    /// UDP bytes received from it.
    pub bytes_received: u64,
    /// Round-trip time now.
    pub rtt_ms: f64,
    /// Packets lost (and sent again).
    pub lost_packets: u64,
}

impl PeerView {
    /// The view of `peer`.
    pub fn of(peer: &crate::transport::Peer) -> Self {
        let t = peer.traffic();
        Self {
            node: peer.node(),
            address: peer.remote_addr().to_string(),
            frames_sent: t.frames_sent,
            bytes_sent: t.bytes_sent,
            bytes_received: t.bytes_received,
            rtt_ms: t.rtt.as_secs_f64() * 1000.0,
            lost_packets: t.lost_packets,
        }
    }
}

/// The cluster as the head sees it (see the module docs).
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// The head.
    pub head: HeadView,
    /// Node agents, by host.
    pub nodes: Vec<NodeView>,
    /// Pools.
    pub pools: Vec<PoolRow>,
    /// Jobs per second over the last minutes (empty when the head records
    /// no activity).
    pub rates: Vec<RatePoint>,
    /// Recent jobs, oldest first.
    pub stream: Vec<StreamJob>,
    /// The slowest recent jobs, slowest first.
    pub slowest: Vec<SlowJob>,
    /// Totals.
    pub totals: JobTotals,
    /// The head's connections.
    pub peers: Vec<PeerView>,
    /// The head process's deepest mailboxes.
    pub mailboxes: Vec<MailboxRow>,
}

/// A label value, escaped for the Prometheus text format.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes Prometheus text: one family at a time.
struct Exposition(String);

impl Exposition {
    /// Starts a family: its help and type.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one sample per row.
    fn rows<T>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        rows: &[T],
        sample: impl Fn(&T) -> (Vec<(&'static str, String)>, f64),
    ) {
        self.family(name, kind, help);
        for row in rows {
            let (labels, value) = sample(row);
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &labels, value);
        }
    }
}

impl ClusterView {
    /// The view as Prometheus text (format 0.0.4): counters end in
    /// `_total`, units are seconds and bytes, pools are labelled by `pool`
    /// and `kind`, nodes by `node` and `host`, connections by `peer`.
    pub fn to_prometheus(&self) -> String {
        let mut out = Exposition(String::with_capacity(4096));
        let t = self.totals;
        let head_wide: [(&str, &str, &str, u64); 5] = [
            (
                "parallel_jobs_submitted_total",
                "counter",
                "Jobs the head accepted since it started.",
                t.submitted,
            ),
            (
                "parallel_jobs_started_total",
                "counter",
                "Jobs handed to workers, each try counted.",
                t.started,
            ),
            (
                "parallel_jobs_done_total",
                "counter",
                "Results the head took, failures included.",
                t.done,
            ),
            (
                "parallel_jobs_failed_total",
                "counter",
                "Results that are failures (panics, invalid jobs, jobs whose workers kept dying, aborts).",
                t.failed,
            ),
            (
                "parallel_job_retries_total",
                "counter",
                "Jobs handed out again because their worker went down.",
                t.retries,
            ),
        ];
        for (name, kind, help, value) in head_wide {
            out.family(name, kind, help);
            out.sample(name, &[], value as f64);
        }
        out.family("parallel_jobs_lost", "gauge", "Jobs accepted that are neither queued, running nor done, over every open pool: must be 0.");
        out.sample("parallel_jobs_lost", &[], t.lost as f64);
        let pool = |p: &PoolRow| vec![("pool", p.pool.to_string()), ("kind", p.kind.clone())];
        let pools = &self.pools;
        out.rows(
            "parallel_pool_jobs_submitted_total",
            "counter",
            "Jobs the open pool's head accepted (with those restored from its ledger).",
            pools,
            |p| (pool(p), p.submitted as f64),
        );
        out.rows(
            "parallel_pool_jobs_done_total",
            "counter",
            "Results of the open pool, failures included.",
            pools,
            |p| (pool(p), p.done as f64),
        );
        out.rows(
            "parallel_pool_jobs_failed_total",
            "counter",
            "Failed results of the open pool.",
            pools,
            |p| (pool(p), p.failed as f64),
        );
        out.rows(
            "parallel_pool_jobs_lost",
            "gauge",
            "Jobs of the open pool that are neither queued, running nor done: must be 0.",
            pools,
            |p| (pool(p), p.lost as f64),
        );
        out.rows(
            "parallel_pool_jobs_queued",
            "gauge",
            "Jobs waiting for a worker (or for their dependencies).",
            pools,
            |p| (pool(p), p.queued as f64),
        );
        out.rows(
            "parallel_pool_jobs_running",
            "gauge",
            "Jobs handed to workers and not back yet.",
            pools,
            |p| (pool(p), p.running as f64),
        );
        out.rows(
            "parallel_pool_results_unread",
            "gauge",
            "Results the pool's owner has not read yet.",
            pools,
            |p| (pool(p), p.unread as f64),
        );
        out.rows(
            "parallel_pool_queue_bytes",
            "gauge",
            "Bytes of queued and running jobs.",
            pools,
            |p| (pool(p), p.queued_bytes as f64),
        );
        out.rows(
            "parallel_pool_workers",
            "gauge",
            "Workers connected to the pool.",
            pools,
            |p| (pool(p), f64::from(p.workers)),
        );
        out.family(
            "parallel_heartbeat_timeouts_total",
            "counter",
            "Peers the head declared dead because their heartbeats stopped.",
        );
        out.sample(
            "parallel_heartbeat_timeouts_total",
            &[],
            self.head.heartbeat_timeouts as f64,
        );
        out.family("parallel_nodes", "gauge", "Node agents joined to the head.");
        out.sample("parallel_nodes", &[], self.nodes.len() as f64);
        let node = |n: &NodeView| vec![("node", n.node.to_string()), ("host", n.host.clone())];
        let nodes = &self.nodes;
        out.rows(
            "parallel_node_up",
            "gauge",
            "1 when the node agent answered the head in time.",
            nodes,
            |n| (node(n), if n.state == "up" { 1.0 } else { 0.0 }),
        );
        out.rows(
            "parallel_node_workers",
            "gauge",
            "Workers of the node connected to the head.",
            nodes,
            |n| (node(n), n.workers.len() as f64),
        );
        let measured: Vec<NodeView> = nodes
            .iter()
            .filter(|n| n.cpu_percent.is_some())
            .cloned()
            .collect();
        out.rows(
            "parallel_node_cpu_ratio",
            "gauge",
            "CPU used by the node agent and its workers, in cores.",
            &measured,
            |n| (node(n), f64::from(n.cpu_percent.unwrap_or(0.0)) / 100.0),
        );
        let measured: Vec<NodeView> = nodes
            .iter()
            .filter(|n| n.rss_bytes.is_some())
            .cloned()
            .collect();
        out.rows(
            "parallel_node_resident_memory_bytes",
            "gauge",
            "Resident memory of the node agent and its workers.",
            &measured,
            |n| (node(n), n.rss_bytes.unwrap_or(0) as f64),
        );
        out.rows(
            "parallel_worker_restarts_total",
            "counter",
            "Worker processes the node agent restarted (since it started).",
            nodes,
            |n| (node(n), n.restarts as f64),
        );
        let gpus: Vec<GpuRow> = nodes.iter().flat_map(|n| n.gpus.iter().cloned()).collect();
        let gpu = |g: &GpuRow| {
            vec![
                ("host", g.host.clone()),
                ("gpu", g.id.clone()),
                ("name", g.name.clone()),
            ]
        };
        out.rows(
            "parallel_gpu_memory_used_bytes",
            "gauge",
            "GPU memory in use.",
            &gpus,
            |g| (gpu(g), (g.used_mib << 20) as f64),
        );
        out.rows(
            "parallel_gpu_memory_total_bytes",
            "gauge",
            "GPU memory.",
            &gpus,
            |g| (gpu(g), (g.total_mib << 20) as f64),
        );
        let peer =
            |p: &PeerView| vec![("peer", p.node.to_string()), ("address", p.address.clone())];
        let peers = &self.peers;
        out.rows(
            "parallel_peer_frames_sent_total",
            "counter",
            "Frames (messages, replies) the head sent to the peer.",
            peers,
            |p| (peer(p), p.frames_sent as f64),
        );
        out.rows(
            "parallel_peer_sent_bytes_total",
            "counter",
            "UDP bytes the head sent to the peer.",
            peers,
            |p| (peer(p), p.bytes_sent as f64),
        );
        out.rows(
            "parallel_peer_received_bytes_total",
            "counter",
            "UDP bytes the head received from the peer.",
            peers,
            |p| (peer(p), p.bytes_received as f64),
        );
        out.rows(
            "parallel_peer_lost_packets_total",
            "counter",
            "Packets to the peer that QUIC declared lost.",
            peers,
            |p| (peer(p), p.lost_packets as f64),
        );
        out.rows(
            "parallel_peer_rtt_seconds",
            "gauge",
            "Round-trip time to the peer.",
            peers,
            |p| (peer(p), p.rtt_ms / 1000.0),
        );
        if let Some(rss) = self.head.rss_bytes {
            out.family(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory of the head's process.",
            );
            out.sample("process_resident_memory_bytes", &[], rss as f64);
        }
        out.0
    }
}

#[cfg(test)]
mod tests;
