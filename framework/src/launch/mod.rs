//! Launching processes on other hosts: children started through `ssh`
//! ([`Remote`]), hosts registered with [`addremote`] for [`sfork`], the
//! calibration kernel that measures each host's speed, and the tasks of a
//! Slurm step meeting each other ([`slurm()`]).

pub(crate) mod calibrate;
pub(crate) mod handoff;
pub mod program;
pub(crate) mod sfork;
pub mod slurm;
pub(crate) mod ssh;

pub use program::{Program, ProgramError, ProgramStore, Receiving};
pub use sfork::{addremote, calibrate, remote_cores, remote_speeds, remotes, sfork};
pub use slurm::{SlurmError, SlurmOptions, SlurmStep, slurm, slurm_with};
pub use ssh::{Remote, SshHost};
