//! `Child` and `Children`: the parent's handles on its child processes, with
//! the seed's operations on one child or a whole group.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use crate::actor::Received;
use crate::id::ActorId;
use crate::remote::{Delivery, Mailbox, RemoteCallable, RemoteNode, remote_fn};
use crate::wire::{WireType, decode_owned, encode, type_tag};

use super::error::ProcessError;
use super::launch::Launched;
use super::protocol::{ExecOutcome, ExecRequest, op};
use crate::remote::value::{Payload, open_value, post_value};

/// What the parent has heard from one child and not yet handed out.
pub(crate) struct Inbox {
    pub mailbox: Mailbox,
    yields: u64,
    data: VecDeque<Delivery>,
    pub(crate) collective: VecDeque<Delivery>,
    calibrations: VecDeque<f64>,
    outcome: Option<ExecOutcome>,
    gone: Option<String>,
}

impl Inbox {
    pub(crate) fn new(mailbox: Mailbox) -> Self {
        Self {
            mailbox,
            yields: 0,
            data: VecDeque::new(),
            collective: VecDeque::new(),
            calibrations: VecDeque::new(),
            outcome: None,
            gone: None,
        }
    }

    /// Files one more delivery; notes the child gone when its connection
    /// closed and nothing is left to read.
    pub(crate) async fn pump(&mut self, remote: &RemoteNode) {
        let delivery = match self.mailbox.try_recv() {
            Some(d) => Some(d),
            None if self.gone.is_some() => None,
            None => tokio::select! {
                d = self.mailbox.recv() => d,
                reason = remote.closed() => {
                    // Whatever it posted before it went is already here.
                    let late = self.mailbox.try_recv();
                    if late.is_none() {
                        self.gone = Some(reason.to_string());
                    }
                    late
                }
            },
        };
        let Some(d) = delivery else {
            self.gone
                .get_or_insert_with(|| "its node shut down".to_string());
            return;
        };
        match d.op & !op::SHM {
            op::YIELD => self.yields += 1,
            op::DATA => self.data.push_back(d),
            op::COLLECTIVE => self.collective.push_back(d),
            op::DONE => {
                self.outcome = Some(
                    decode_owned::<ExecOutcome>(&d.payload)
                        .unwrap_or_else(|e| ExecOutcome::Failed(e.to_string())),
                )
            }
            op::CALIBRATED => {
                if let Ok(secs) = decode_owned::<f64>(&d.payload) {
                    self.calibrations.push_back(secs)
                }
            }
            other => tracing::warn!(op = other, "unexpected post from a child ignored"),
        }
    }

    /// The error for a child that cannot yield or send any more.
    pub(crate) fn ended(&self, id: u32) -> Option<ProcessError> {
        if let Some(outcome) = &self.outcome {
            return Some(match outcome {
                ExecOutcome::Failed(message) => ProcessError::Failed {
                    id,
                    message: message.clone(),
                },
                ExecOutcome::Returned(_) => ProcessError::Finished { id },
            });
        }
        self.gone.as_ref().map(|reason| ProcessError::Gone {
            id,
            reason: reason.clone(),
        })
    }
}

pub(crate) struct ChildInner {
    pub id: u32,
    pub pid: u32,
    pub host: String,
    pub ip: String,
    pub same_host: bool,
    pub remote: RemoteNode,
    pub mailbox: ActorId,
    pub inbox: tokio::sync::Mutex<Inbox>,
    pub process: tokio::sync::Mutex<Launched>,
    pub speed: Mutex<f64>,
    pub exited: std::sync::atomic::AtomicBool,
}

/// One child process, as its parent sees it.
#[derive(Clone)]
pub struct Child(pub(crate) Arc<ChildInner>);

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Child #{} (pid {} on {})",
            self.0.id, self.0.pid, self.0.host
        )
    }
}

impl Child {
    /// Its id among this process's children (1, 2, …; stable while it lives).
    pub fn id(&self) -> u32 {
        self.0.id
    }

    /// Its OS process id (on its own host).
    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// The host it runs on.
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// Its IP address.
    pub fn ip(&self) -> &str {
        &self.0.ip
    }

    /// Its relative speed in ]0, 1]: 1 for the fastest (set by `calibrate`).
    pub fn speed(&self) -> f64 {
        *self.0.speed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_speed(&self, speed: f64) {
        *self.0.speed.lock().unwrap_or_else(|e| e.into_inner()) = speed;
    }

    /// True when it shares this machine (large values then travel through shared memory).
    pub fn same_host(&self) -> bool {
        self.0.same_host
    }

    /// Runs the `#[parallel::remote]` function `f` with `args` in the child
    /// (the Rust form of the seed's `exec(code)`). Returns once the request
    /// is sent; the child exits when the function returns.
    pub async fn exec<F, Args>(&self, f: F, args: Args) -> Result<(), ProcessError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let request = exec_request(&f, &args)?;
        self.post_exec(&request).await
    }

    /// A typed error when the child's process is known to be gone.
    fn check_alive(&self) -> Result<(), ProcessError> {
        if self.0.exited.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ProcessError::Gone {
                id: self.0.id,
                reason: "its process has exited".into(),
            });
        }
        if !self.0.remote.is_alive() {
            return Err(ProcessError::Gone {
                id: self.0.id,
                reason: "its connection is closed".into(),
            });
        }
        Ok(())
    }

    async fn post_exec(&self, request: &ExecRequest) -> Result<(), ProcessError> {
        self.check_alive()?;
        self.0
            .remote
            .post(self.0.mailbox, op::EXEC, 0, encode(request)?)
            .await?;
        Ok(())
    }

    /// Waits until the child yields, then hands it `value` (what its
    /// `yield_value` returns). Fails with the panic message if the child's
    /// function panicked, or with [`ProcessError::Finished`] if it returned.
    pub async fn join(&self, value: impl Payload) -> Result<(), ProcessError> {
        let mut inbox = self.0.inbox.lock().await;
        loop {
            if inbox.yields > 0 {
                inbox.yields -= 1;
                break;
            }
            if let Some(e) = inbox.ended(self.0.id) {
                return Err(e);
            }
            inbox.pump(&self.0.remote).await;
        }
        drop(inbox);
        self.check_alive()?;
        post_value(
            &self.0.remote,
            self.0.mailbox,
            op::JOIN,
            &value,
            self.0.same_host,
        )
        .await
        .map_err(|e| ProcessError::from_value(e, self.0.id))
    }

    /// Sends `value` to the child (it reads it with `parent().receive()`).
    /// Large values to a child on this machine go through shared memory.
    pub async fn send(&self, value: impl Payload) -> Result<(), ProcessError> {
        self.check_alive()?;
        post_value(
            &self.0.remote,
            self.0.mailbox,
            op::DATA,
            &value,
            self.0.same_host,
        )
        .await
        .map_err(|e| ProcessError::from_value(e, self.0.id))
    }

    /// The next value the child sent, as a read-only view (`to_owned()` for
    /// an owned copy). Waits for it.
    pub async fn receive<T: WireType>(&self) -> Result<Received<T>, ProcessError> {
        let mut inbox = self.0.inbox.lock().await;
        loop {
            if let Some(d) = inbox.data.pop_front() {
                return open_value::<T>(d).map_err(|e| ProcessError::from_value(e, self.0.id));
            }
            if let Some(e) = inbox.ended(self.0.id) {
                return Err(e);
            }
            inbox.pump(&self.0.remote).await;
        }
    }

    /// Runs the calibration kernel in the child and returns the seconds it took.
    pub(crate) async fn calibration_seconds(&self) -> Result<f64, ProcessError> {
        self.0
            .remote
            .post(self.0.mailbox, op::CALIBRATE, 0, encode(&())?)
            .await?;
        let mut inbox = self.0.inbox.lock().await;
        loop {
            if let Some(secs) = inbox.calibrations.pop_front() {
                return Ok(secs);
            }
            if let Some(e) = inbox.ended(self.0.id) {
                return Err(e);
            }
            inbox.pump(&self.0.remote).await;
        }
    }

    /// Waits until the child process is gone from the OS, then removes it
    /// from [`super::children`].
    pub async fn sync(&self) -> Result<(), ProcessError> {
        let status = self.0.process.lock().await.process.wait().await;
        self.0
            .exited
            .store(true, std::sync::atomic::Ordering::Relaxed);
        super::parent::forget(self.0.id);
        match status {
            Ok(_) => Ok(()),
            Err(e) => Err(ProcessError::Gone {
                id: self.0.id,
                reason: e.to_string(),
            }),
        }
    }

    /// Stops the child in order: closes its standard input (it exits at
    /// once; a child on another host through its ssh session), waits up to
    /// `timeout` for its process to end, then kills it. Removes it from
    /// [`super::children`].
    pub async fn stop(&self, timeout: std::time::Duration) {
        {
            let mut launched = self.0.process.lock().await;
            launched.stdin.take();
            if tokio::time::timeout(timeout, launched.process.wait())
                .await
                .is_ok()
            {
                self.0
                    .exited
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                super::parent::forget(self.0.id);
                return;
            }
        }
        self.kill().await;
    }

    /// Kills the child at once (SIGKILL locally; the ssh session for a child
    /// on another host) and removes it from [`super::children`].
    pub async fn kill(&self) {
        let mut launched = self.0.process.lock().await;
        launched.stdin.take();
        let _ = launched.process.start_kill();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(3), launched.process.wait()).await;
        self.0
            .exited
            .store(true, std::sync::atomic::Ordering::Relaxed);
        super::parent::forget(self.0.id);
    }
}

fn exec_request<F: RemoteCallable<Args>, Args: WireType>(
    f: &F,
    args: &Args,
) -> Result<ExecRequest, ProcessError> {
    let name = f.remote_name();
    if remote_fn(type_tag(name)).is_none() {
        return Err(ProcessError::Misuse(format!(
            "function {name} is not registered: mark it #[parallel::remote] so a child process can run it"
        )));
    }
    Ok(ExecRequest {
        name: name.to_string(),
        args: encode(args)?.to_vec(),
    })
}

/// A group of children: every operation applies to each, in child order.
#[derive(Clone, Debug, Default)]
pub struct Children(pub(crate) Vec<Child>);

impl Deref for Children {
    type Target = [Child];
    fn deref(&self) -> &[Child] {
        &self.0
    }
}

impl IntoIterator for Children {
    type Item = Child;
    type IntoIter = std::vec::IntoIter<Child>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Children {
    type Item = &'a Child;
    type IntoIter = std::slice::Iter<'a, Child>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Child> for Children {
    fn from_iter<I: IntoIterator<Item = Child>>(iter: I) -> Self {
        Children(iter.into_iter().collect())
    }
}

impl Children {
    /// The child with this id, if it is in the group.
    pub fn by_id(&self, id: u32) -> Option<&Child> {
        self.0.iter().find(|c| c.id() == id)
    }

    /// Runs `f(args)` in every child.
    pub async fn exec<F, Args>(&self, f: F, args: Args) -> Result<(), ProcessError>
    where
        F: RemoteCallable<Args>,
        Args: WireType,
    {
        let request = exec_request(&f, &args)?;
        join_all(&self.0, |c| c.post_exec(&request))
            .await
            .map(|_| ())
    }

    /// Joins every child with the same value.
    pub async fn join<P: Payload + Copy>(&self, value: P) -> Result<(), ProcessError> {
        join_all(&self.0, |c| c.join(value)).await.map(|_| ())
    }

    /// Sends the same value to every child.
    pub async fn send<P: Payload + Copy>(&self, value: P) -> Result<(), ProcessError> {
        join_all(&self.0, |c| c.send(value)).await.map(|_| ())
    }

    /// One value from each child, in child order.
    pub async fn receive<T: WireType>(&self) -> Result<Vec<Received<T>>, ProcessError> {
        join_all(&self.0, |c| c.receive::<T>()).await
    }

    /// Waits until every child process is gone, then removes them from [`super::children`].
    pub async fn sync(&self) -> Result<(), ProcessError> {
        join_all(&self.0, |c| c.sync()).await.map(|_| ())
    }
}

/// Runs `f` on every child concurrently (each child's waits overlap) and
/// returns the results in child order, or the first error.
async fn join_all<'a, R: 'a, Fut>(
    children: &'a [Child],
    f: impl Fn(&'a Child) -> Fut,
) -> Result<Vec<R>, ProcessError>
where
    Fut: std::future::Future<Output = Result<R, ProcessError>> + 'a,
{
    let mut pending: Vec<_> = children.iter().map(|c| Some(Box::pin(f(c)))).collect();
    let mut results: Vec<Option<Result<R, ProcessError>>> =
        (0..children.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => {
                        *result = Some(r);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    let mut out = Vec::with_capacity(results.len());
    for r in results.into_iter().flatten() {
        out.push(r?);
    }
    Ok(out)
}
