//! [`LoadBalancedView`]: tasks through the head, which hands each one to an
//! engine with room (the pool scheduler: engines that finish sooner get
//! more), records it in its ledger, and runs it again elsewhere when its
//! engine dies before answering.

use std::collections::{BTreeMap, HashSet};

use crate::cluster::engine::Task;
use crate::cluster::message::{Outcome, ResultsRead, Submit, Submitted};
use crate::remote::RemoteCallable;
use crate::wire::{WireType, type_tag};

use super::{Client, ClientError};

/// Tasks per submit.
const BATCH: usize = 256;

/// Tasks on whichever engines have room (see the module docs); made by
/// [`Client::load_balanced_view`].
pub struct LoadBalancedView<'c> {
    client: &'c mut Client,
}

impl<'c> LoadBalancedView<'c> {
    pub(super) fn new(client: &'c mut Client) -> Self {
        Self { client }
    }

    /// Runs `f(args)` on one engine and waits for its result.
    pub async fn apply_sync<F, Args>(&mut self, f: F, args: Args) -> Result<F::Output, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let mut out = self.map_sync(f, [args]).await?;
        out.pop().unwrap_or_else(|| {
            Err(ClientError::Codec {
                what: "read the result",
                reason: "no result came".into(),
            })
        })
    }

    /// Runs `f` on every argument tuple, spread over the engines; each
    /// task's result (or error) in input order.
    pub async fn map_sync<F, Args, I>(
        &mut self,
        f: F,
        args: I,
    ) -> Result<Vec<Result<F::Output, ClientError>>, ClientError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
        I: IntoIterator<Item = Args>,
    {
        let function = type_tag(f.remote_name());
        let base = self.client.next_task;
        let mut tasks = Vec::new();
        for a in args {
            let args =
                crate::wire::encode(&a)
                    .map(|b| b.to_vec())
                    .map_err(|e| ClientError::Codec {
                        what: "encode the arguments",
                        reason: e.to_string(),
                    })?;
            let task = crate::wire::encode(&Task { function, args })
                .map(|b| b.to_vec())
                .map_err(|e| ClientError::Codec {
                    what: "encode the task",
                    reason: e.to_string(),
                })?;
            tasks.push((self.client.next_task, task));
            self.client.next_task += 1;
        }
        let mut outstanding: HashSet<u64> = tasks.iter().map(|(i, _)| *i).collect();
        let session = &mut self.client.session;
        let pool = session.pool();
        for batch in tasks.chunks(BATCH) {
            let submit = Submit {
                pool,
                jobs: batch.to_vec(),
            };
            if let Submitted::Refused(why) = session.ask(submit).await? {
                return Err(ClientError::Refused(why));
            }
        }
        let mut done: BTreeMap<u64, Result<F::Output, ClientError>> = BTreeMap::new();
        while !outstanding.is_empty() {
            let results = session.next_results().await?;
            let mut read = Vec::with_capacity(results.results.len());
            for (index, outcome) in results.results {
                read.push(index);
                if !outstanding.remove(&index) {
                    continue;
                }
                let result = match outcome {
                    Outcome::Output(bytes) => crate::wire::decode_owned::<F::Output>(&bytes)
                        .map_err(|e| ClientError::Codec {
                            what: "decode a task's result",
                            reason: e.to_string(),
                        }),
                    Outcome::Panicked(message) => Err(ClientError::Task(message)),
                    Outcome::Invalid(message) => Err(ClientError::Task(message)),
                    Outcome::Died(message) => Err(ClientError::Task(message)),
                };
                done.insert(index, result);
            }
            session.tell(ResultsRead {
                pool,
                indices: read,
            });
        }
        Ok((base..self.client.next_task)
            .filter_map(|i| done.remove(&i))
            .collect())
    }
}
