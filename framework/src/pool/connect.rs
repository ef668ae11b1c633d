//! [`Pool`]: a [`Session`] with a head for a pool of one worker type, and
//! what a pool asks of its head: submits, updates, counts.

use std::marker::PhantomData;

use uuid::Uuid;

use crate::cluster::message::*;
use crate::cluster::session::{Session, SessionError};
use crate::transport::{JoinLine, Password};

use super::{Worker, kind_name};

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The session with the head failed (not reached, lost, program not shipped).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The head refused.
    #[error("the head refused: {0}")]
    Refused(String),
    /// A job, init data or update could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A job failed (in `imap_unordered`; `map` gives each job's error in place).
    #[error(transparent)]
    Job(#[from] super::JobError),
}

/// A pool of workers of type `W` on a cluster (see the [module](super) docs).
pub struct Pool<W: Worker> {
    pub(super) session: Session,
    pub(super) next_index: u64,
    pub(super) progress: bool,
    _worker: PhantomData<fn() -> W>,
}

fn encode<T: crate::wire::WireType>(value: &T, what: &'static str) -> Result<Vec<u8>, PoolError> {
    crate::wire::encode(value)
        .map(|b| b.to_vec())
        .map_err(|e| PoolError::Encode {
            what,
            reason: e.to_string(),
        })
}

impl<W: Worker> Pool<W> {
    /// Joins the head at `line` with `password`, opens a pool of `W`
    /// built from `init` on every worker, and ships this program to the
    /// head if it does not have it yet. Must run inside `#[parallel::main]`.
    pub async fn connect(
        line: &JoinLine,
        password: Password,
        init: W::Init,
    ) -> Result<Self, PoolError> {
        let init = encode(&init, "the init data")?;
        let session = Session::open(line, password, kind_name::<W>(), init)
            .await
            .map_err(|e| match e {
                SessionError::Refused(why) => PoolError::Refused(why),
                other => PoolError::Session(other),
            })?;
        Ok(Pool {
            session,
            next_index: 0,
            progress: true,
            _worker: PhantomData,
        })
    }

    /// Whether `map` and `imap_unordered` show a progress bar (on standard
    /// error, only when it is a terminal; default on).
    pub fn progress(&mut self, show: bool) -> &mut Self {
        self.progress = show;
        self
    }

    /// The pool's id on its head.
    pub fn id(&self) -> Uuid {
        self.session.pool()
    }

    /// Submits jobs (already numbered), again after a reconnect; returns
    /// once the head has them in its ledger.
    pub(super) async fn submit(&mut self, jobs: Vec<(u64, Vec<u8>)>) -> Result<(), PoolError> {
        let msg = Submit {
            pool: self.session.pool(),
            jobs,
            flags: None,
        };
        match self.session.ask(msg).await? {
            Submitted::Accepted => Ok(()),
            Submitted::Refused(why) => Err(PoolError::Refused(why)),
        }
    }

    /// Tells the head these results arrived (it forgets them).
    pub(super) fn acknowledge(&self, indices: Vec<u64>) {
        self.session.tell(ResultsRead {
            pool: self.session.pool(),
            indices,
        });
    }

    /// Sends `update` to every worker of the pool, handled between jobs in
    /// the order sent — workers that join later get it too.
    pub async fn update_workers(&mut self, update: &W::Update) -> Result<(), PoolError> {
        let msg = PushUpdate {
            pool: self.session.pool(),
            update: encode(update, "the update")?,
        };
        match self.session.ask(msg).await? {
            Submitted::Accepted => Ok(()),
            Submitted::Refused(why) => Err(PoolError::Refused(why)),
        }
    }

    /// How many workers run this pool's jobs now.
    pub async fn workers_count(&mut self) -> Result<usize, PoolError> {
        let pool = self.session.pool();
        let report = self.session.ask(Status).await?;
        Ok(report
            .pools
            .iter()
            .find(|p| p.pool == pool)
            .map_or(0, |p| p.workers as usize))
    }

    /// How many node agents the cluster has now.
    pub async fn nodes_count(&mut self) -> Result<usize, PoolError> {
        Ok(self.session.ask(Status).await?.nodes.len())
    }

    /// Closes the pool: queued and running jobs are dropped, its workers
    /// stop. Also done (without waiting) when the pool is dropped.
    pub async fn close(self) {
        self.session.close().await;
    }
}
