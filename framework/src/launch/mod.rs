//! Launching processes on other hosts: children started through `ssh`
//! ([`Remote`]), hosts registered with [`addremote`] for [`sfork`], and the
//! calibration kernel that measures each host's speed.

pub(crate) mod calibrate;
pub mod program;
pub(crate) mod sfork;
pub(crate) mod ssh;

pub use program::{Program, ProgramError, ProgramStore, Receiving};
pub use sfork::{addremote, calibrate, remote_cores, remote_speeds, remotes, sfork};
pub use ssh::{Remote, SshHost};
