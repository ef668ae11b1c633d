//! The collective group of a Slurm step in one call: the tasks meet
//! ([`crate::launch::slurm()`]) and form their group, rank `r` being Slurm's
//! task `r`.

use crate::launch::{SlurmError, SlurmOptions, SlurmStep};

use super::group::{FormError, Group, GroupOptions};

/// A Slurm step's task with its group.
pub struct SlurmGroup {
    /// The task's place in the step (its node, the other tasks' nodes).
    pub step: SlurmStep,
    /// The step's collective group.
    pub group: Group,
}

/// Why a step's group could not form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlurmGroupError {
    /// The tasks could not meet.
    #[error(transparent)]
    Meet(#[from] SlurmError),
    /// They met, but the group did not form.
    #[error(transparent)]
    Form(#[from] FormError),
}

/// Every task of the Slurm step calls this (`srun -n 4 prog`): it returns
/// once the step's group has formed. Its ranks are Slurm's
/// (`SLURM_PROCID`); the group takes shared memory between the tasks of
/// one machine and QUIC between machines, as any group does.
pub async fn slurm_group() -> Result<SlurmGroup, SlurmGroupError> {
    slurm_group_with(SlurmOptions::default()).await
}

/// [`slurm_group`] with rendezvous options.
pub async fn slurm_group_with(options: SlurmOptions) -> Result<SlurmGroup, SlurmGroupError> {
    let step = crate::launch::slurm_with(options).await?;
    // The group's ranks are Slurm's: the members in task order.
    let mut order: Vec<_> = step.peers.iter().map(|p| p.id()).collect();
    order.insert(step.rank, step.node.id());
    let options = GroupOptions {
        order: Some(order),
        ..GroupOptions::default()
    };
    let group = Group::form_with(&step.node, &step.name, &step.peers, options).await?;
    Ok(SlurmGroup { step, group })
}
