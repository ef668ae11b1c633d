//! The head's side of the dashboard: [`Watch`] asks the head for its
//! picture of the cluster — nodes (each agent asked what it uses, with a
//! deadline), workers, pools, activity — which the dashboard completes with
//! what the head's own node knows (connections, mailboxes).

use std::collections::HashMap;
use std::time::Duration;

use actix::Handler;

use crate::cluster::activity::unix_now;
use crate::cluster::message::{JobTotals, PoolRow};
use crate::cluster::usage::NodeUsage;
use crate::cluster::view::{NodeView, SlowJob, WorkerView};
use crate::id::ActorId;

use super::super::message::Usage;
use super::HeadActor;

/// How long the head waits for a node agent's [`Usage`].
pub const USAGE_DEADLINE: Duration = Duration::from_millis(1500);
/// Slowest jobs in a picture.
const SLOWEST: usize = 10;

/// Asks the head for its [`HeadPicture`] (local only: the dashboard runs in
/// the head's process).
pub struct Watch;

impl actix::Message for Watch {
    type Result = HeadPicture;
}

/// What the head knows of the cluster (see the module docs).
#[derive(Debug)]
pub struct HeadPicture {
    /// Node agents, by host (no address and incarnation: the dashboard
    /// adds them from its connections).
    pub nodes: Vec<NodeView>,
    /// Pools.
    pub pools: Vec<PoolRow>,
    /// Jobs per second.
    pub rates: Vec<crate::cluster::activity::RatePoint>,
    /// Recent jobs.
    pub stream: Vec<crate::cluster::activity::StreamJob>,
    /// The slowest recent jobs.
    pub slowest: Vec<SlowJob>,
    /// Totals.
    pub totals: JobTotals,
}

impl Handler<Watch> for HeadActor {
    type Result = actix::ResponseFuture<HeadPicture>;

    fn handle(&mut self, _: Watch, _: &mut actix::Context<Self>) -> Self::Result {
        let mut workers: HashMap<ActorId, Vec<WorkerView>> = HashMap::new();
        for (id, w) in &self.workers {
            let kind = self
                .pools
                .get(&w.pool)
                .map(|p| p.record.kind.clone())
                .unwrap_or_default();
            workers.entry(w.agent).or_default().push(WorkerView {
                worker: *id,
                pool: w.pool,
                kind,
                holding: w.holding.len() as u64,
                completed: w.completed,
            });
        }
        let mut nodes = Vec::with_capacity(self.agents.len());
        let mut asks = Vec::with_capacity(self.agents.len());
        for (id, a) in &self.agents {
            let mut mine = workers.remove(id).unwrap_or_default();
            mine.sort_by_key(|w| (w.pool, w.worker.to_string()));
            nodes.push(NodeView {
                node: a.node,
                host: a.host.clone(),
                address: None,
                incarnation: None,
                state: "unreachable".into(),
                cpu_percent: None,
                rss_bytes: None,
                workers_per_pool: a.workers,
                gpus: Vec::new(),
                workers: mine,
                supervisors: Vec::new(),
                mailboxes: Vec::new(),
                restarts: 0,
            });
            asks.push(a.actor.clone().with_timeout(USAGE_DEADLINE));
        }
        let pools = self.pool_rows();
        let totals = self.job_totals(&pools);
        let now = unix_now();
        let rates = self.activity.rates(now);
        // Workers by what the dashboard calls them: `host / id`.
        let label = |worker: &ActorId| {
            let host = self
                .workers
                .get(worker)
                .and_then(|w| self.agents.get(&w.agent))
                .map_or("gone", |a| a.host.as_str());
            format!("{host} / {}", short_id(worker))
        };
        let stream = self.activity.stream(label);
        let slowest = self
            .activity
            .slowest(SLOWEST, label)
            .into_iter()
            .map(SlowJob::from)
            .collect();
        Box::pin(async move {
            // Every agent at once; one that does not answer in time shows
            // as unreachable.
            let answers: Vec<Option<NodeUsage>> = futures_util::future::join_all(
                asks.into_iter()
                    .map(|agent| async move { agent.ask(Usage).await.ok() }),
            )
            .await;
            for (node, usage) in nodes.iter_mut().zip(answers) {
                if let Some(u) = usage {
                    node.state = "up".into();
                    node.cpu_percent = u.cpu_percent;
                    node.rss_bytes = u.rss_bytes;
                    node.gpus = u.gpus;
                    node.supervisors = u.supervisors;
                    node.mailboxes = u.mailboxes;
                    node.restarts = u.restarts;
                }
            }
            nodes.sort_by(|a, b| (&a.host, a.node).cmp(&(&b.host, b.node)));
            HeadPicture {
                nodes,
                pools,
                rates,
                stream,
                slowest,
                totals,
            }
        })
    }
}

/// The first 8 hex digits of an actor id, as the dashboard shows it.
fn short_id(id: &ActorId) -> String {
    let id = id.to_string();
    let hex = id.strip_prefix("actor-").unwrap_or(&id);
    hex.chars().take(8).collect()
}
