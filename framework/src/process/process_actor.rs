//! A child process's actor: its id is the child's address for every
//! message of its parent (see [`super::message`]).

use std::sync::Arc;
use std::sync::mpsc::Sender;

use actix::Handler;

use crate::actor::Received;
use crate::remote::value::Incoming;

use super::message::{
    Calibrate, CollectiveDown, CollectiveMsg, Credit, Exec, Joined, Stop, ToChild,
};

/// A child process's actor: its id is the child's address for every
/// message of its parent (see [`super::message`]). It files values and
/// collective posts for the function's thread, runs the function on
/// `Exec`, and the calibration kernel on `Calibrate`.
#[derive(crate::Actor)]
#[actor(
    messages(Exec, Calibrate, CollectiveDown, Credit, Stop),
    view(Joined, ToChild),
    name = "parallel::process::ProcessActor"
)]
pub struct ProcessActor {
    pub(super) joins: Sender<Incoming>,
    pub(super) data: Sender<Incoming>,
    pub(super) collective: Sender<CollectiveMsg>,
    pub(super) credits: Arc<tokio::sync::Semaphore>,
    /// Where the function is handed to run, once (by `serve`).
    pub(super) exec: Option<tokio::sync::oneshot::Sender<Exec>>,
    /// Where a stop request goes (to `serve`, which ends the process).
    pub(super) stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Handler<Stop> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: Stop, _: &mut actix::Context<Self>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Handler<Exec> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Exec, _: &mut actix::Context<Self>) {
        match self.exec.take() {
            Some(run) => {
                let _ = run.send(msg);
            }
            None => tracing::warn!(
                function = msg.name,
                "a second exec was ignored: a child runs one function"
            ),
        }
    }
}

impl Handler<Calibrate> for ProcessActor {
    type Result = actix::ResponseFuture<f64>;
    fn handle(&mut self, _: Calibrate, _: &mut actix::Context<Self>) -> Self::Result {
        Box::pin(async {
            tokio::task::spawn_blocking(super::calibrate::kernel_seconds)
                .await
                .unwrap_or(f64::NAN)
        })
    }
}

impl Handler<CollectiveDown> for ProcessActor {
    type Result = ();
    fn handle(&mut self, CollectiveDown(msg): CollectiveDown, _: &mut actix::Context<Self>) {
        let _ = self.collective.send(msg);
    }
}

impl Handler<Credit> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Credit, _: &mut actix::Context<Self>) {
        self.credits.add_permits(msg.n as usize);
    }
}

impl Handler<Joined> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Joined, _: &mut actix::Context<Self>) {
        let _ = self.joins.send(Incoming::owned(msg.value));
    }
}

impl Handler<Received<Joined>> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Received<Joined>, _: &mut actix::Context<Self>) {
        let _ = self.joins.send(Incoming::received(msg, |m| &m.value));
    }
}

impl Handler<ToChild> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: ToChild, _: &mut actix::Context<Self>) {
        let _ = self.data.send(Incoming::owned(msg.value));
    }
}

impl Handler<Received<ToChild>> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Received<ToChild>, _: &mut actix::Context<Self>) {
        let _ = self.data.send(Incoming::received(msg, |m| &m.value));
    }
}
