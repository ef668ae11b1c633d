//! The hub's queries (the seed's "Querying the Hub"): where tasks stand,
//! their results — for any client of the engine set, about any client's
//! tasks, also after the head was restarted (the head's ledger keeps them)
//! — and purging them.

use std::time::{Duration, Instant};

use crate::cluster::message::{HubQuery, HubRecords, PurgeResults, Purged, Record};
use crate::wire::WireType;

use super::{Client, ClientError};

/// An engine set's id on its head ([`Client::id`]): what another client
/// gives [`Client::attach`]. Printed and parsed as a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineSetId(pub(crate) uuid::Uuid);

impl std::fmt::Display for EngineSetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A string that is no engine set id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an engine set id (a UUID, as Client::id prints it)")]
pub struct BadEngineSetId(String);

impl std::str::FromStr for EngineSetId {
    type Err = BadEngineSetId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse()
            .map(EngineSetId)
            .map_err(|_| BadEngineSetId(s.to_owned()))
    }
}

/// Where tasks stand on the hub (the seed's `result_status` dict).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultStatus {
    /// Submitted, no result yet.
    pub pending: Vec<u64>,
    /// Done: [`Client::get_result`] gives their results.
    pub completed: Vec<u64>,
    /// Not on the hub: never submitted to this engine set, or purged.
    pub unknown: Vec<u64>,
}

/// How long [`Client::get_result`] waits between two looks at tasks not
/// done yet, at most.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

impl Client {
    async fn records(
        &mut self,
        ids: &[u64],
        with_results: bool,
    ) -> Result<Vec<Record>, ClientError> {
        let query = HubQuery {
            pool: self.session.pool(),
            indices: ids.to_vec(),
            with_results,
        };
        match self.session.ask(query).await? {
            HubRecords::Records(records) if records.len() == ids.len() => Ok(records),
            HubRecords::Records(records) => Err(ClientError::Head(format!(
                "it answered {} records for {} tasks",
                records.len(),
                ids.len()
            ))),
            HubRecords::NoSuchSet => Err(ClientError::Refused(format!(
                "the head has no engine set {} any more: its client closed it, or stayed away too long",
                self.session.pool()
            ))),
        }
    }

    /// Where the load-balanced tasks `ids` stand on the hub (any client's
    /// tasks of this engine set).
    pub async fn result_status(&mut self, ids: &[u64]) -> Result<ResultStatus, ClientError> {
        let mut status = ResultStatus::default();
        for (id, record) in ids.iter().zip(self.records(ids, false).await?) {
            match record {
                Record::Pending => status.pending.push(*id),
                Record::Completed(_) => status.completed.push(*id),
                Record::Unknown => status.unknown.push(*id),
            }
        }
        Ok(status)
    }

    /// The results of the load-balanced tasks `ids` from the hub, in the
    /// order of `ids`, waiting up to `timeout` for those not done yet
    /// (else [`ClientError::Timeout`]). Works for tasks any client of this
    /// engine set submitted, and after the head was restarted. A task the
    /// hub does not know is [`ClientError::UnknownTask`] in its place.
    pub async fn get_result<R: WireType>(
        &mut self,
        ids: &[u64],
        timeout: Duration,
    ) -> Result<Vec<Result<R, ClientError>>, ClientError> {
        let since = Instant::now();
        let mut got: Vec<Option<Result<R, ClientError>>> = ids.iter().map(|_| None).collect();
        let mut pause = Duration::from_millis(5);
        loop {
            let (places, asked): (Vec<usize>, Vec<u64>) = got
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_none())
                .map(|(place, _)| (place, ids[place]))
                .unzip();
            if asked.is_empty() {
                return Ok(got.into_iter().flatten().collect());
            }
            for ((place, id), record) in places
                .into_iter()
                .zip(&asked)
                .zip(self.records(&asked, true).await?)
            {
                got[place] = match record {
                    Record::Pending => None,
                    Record::Completed(Some(finished)) => {
                        Some(super::balanced::outcome_into::<R>(finished))
                    }
                    Record::Completed(None) => Some(Err(ClientError::Head(format!(
                        "it sent no result for completed task {id}"
                    )))),
                    Record::Unknown => Some(Err(ClientError::UnknownTask(*id))),
                };
            }
            if got.iter().all(Option::is_some) {
                continue;
            }
            if since.elapsed() >= timeout {
                return Err(ClientError::Timeout(timeout));
            }
            tokio::time::sleep(pause.min(timeout.saturating_sub(since.elapsed()))).await;
            pause = (pause * 2).min(LOOK_AGAIN);
        }
    }

    /// Removes the results of `ids` from the hub and its ledger; they are
    /// [`ResultStatus::unknown`] afterwards (a result the client that
    /// submitted it has not read yet still reaches that client). Tasks not
    /// done are never purged: naming one is [`ClientError::Outstanding`]
    /// and purges nothing. Returns the ones removed (those the hub had).
    pub async fn purge_results(&mut self, ids: &[u64]) -> Result<Vec<u64>, ClientError> {
        self.purge(Some(ids.to_vec())).await
    }

    /// Removes every result of this engine set from the hub and its ledger
    /// (the seed's `purge_results('all')`), as [`Client::purge_results`]
    /// does; returns the ones removed.
    pub async fn purge_all_results(&mut self) -> Result<Vec<u64>, ClientError> {
        self.purge(None).await
    }

    async fn purge(&mut self, indices: Option<Vec<u64>>) -> Result<Vec<u64>, ClientError> {
        let pool = self.session.pool();
        match self.session.ask(PurgeResults { pool, indices }).await? {
            Purged::Purged(ids) => Ok(ids),
            Purged::Outstanding(ids) => Err(ClientError::Outstanding(ids)),
            Purged::NoSuchSet => Err(ClientError::Refused(format!(
                "the head has no engine set {pool} any more"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_set_id_parses_back_from_its_text_and_bad_text_is_refused() {
        let id = EngineSetId(uuid::Uuid::new_v4());
        assert_eq!(id.to_string().parse::<EngineSetId>(), Ok(id));
        let err = "engine-7".parse::<EngineSetId>().unwrap_err();
        assert!(err.to_string().contains("Client::id"), "{err}");
    }
}
