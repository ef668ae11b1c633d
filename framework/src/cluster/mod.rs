//! s4's cluster: a head, node agents and workers, each an actor addressed
//! by id, over the authenticated QUIC transport.
//!
//! - The **head** ([`head::HeadActor`], id [`head::head_id`]) keeps the
//!   directory of node agents, workers and pools, schedules each pool's
//!   jobs on its workers, stores the pools' programs, and writes every
//!   accepted job, unread result and update to its [`ledger`] (redb), so a
//!   head started again on the same data directory goes on where it was.
//! - A **node agent** ([`agent::AgentActor`]) joins the head, fetches the
//!   programs of the pools (once per SHA-256, verified) and runs their
//!   workers under a supervisor of its own.
//! - A **worker** ([`worker::WorkerActor`]) is a process of the pool
//!   owner's program in worker role: `#[parallel::main]` hands over to the
//!   registered worker type.
//! - A **pool** ([`crate::pool::Pool`]) owns its results through a
//!   [`head::PoolOwner`] actor in its program.
//!
//! Start them with the `parallel` command (`parallel head`, `parallel
//! node`) or with [`start_head`], [`start_node`], [`start_head_node`].
//! Whoever has the cluster password can run code on its nodes; restrict
//! the programs with [`HeadOptions::allow_programs`] (`--allow-binary`).

pub mod activity;
pub mod agent;
mod control;
pub mod dashboard;
pub mod engine;
pub mod gpus;
pub mod head;
pub mod ledger;
pub mod message;
mod report;
pub mod session;
mod start;
pub mod usage;
pub mod view;
pub mod worker;

pub use control::{ControlError, NODE_PID_FILE, status, stop_head, stop_local_node};
pub use dashboard::{DEFAULT_DASHBOARD_PORT, DashboardError, DashboardInfo, DashboardOptions};
pub use head::Scheduler;
pub use message::StatusReport;
pub use start::{
    DEFAULT_HEAD_CONNECTIONS, DEFAULT_PORT, HeadHandle, HeadOptions, JOIN_LINE_FILE, NodeHandle,
    NodeOptions, StartClusterError, default_data_dir, is_head_running, is_node_running, start_head,
    start_head_node, start_node,
};
