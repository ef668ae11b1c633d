//! Where GPU actors run, checked without a GPU: a device host with a fake
//! inventory whose "devices" are plain threads that know their ordinal.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Handler;
use rkyv::{Archive, Deserialize, Serialize};
use tokio::time::timeout;

use crate::actor::{DeviceChoice, DeviceHost, DeviceInfo, ExitReason, PlaceError};
use crate::remote::{Node, SpawnError};
use crate::transport::Password;

use super::*;

const T: Duration = Duration::from_secs(10);

thread_local! {
    /// The fake device this thread is bound to.
    static BOUND: Cell<Option<u32>> = const { Cell::new(None) };
}

/// `n` fake GPUs: one thread each, bound on start.
struct FakeGpus {
    n: u32,
    threads: Mutex<HashMap<u32, actix::Arbiter>>,
}

impl FakeGpus {
    fn new(n: u32) -> Arc<Self> {
        Arc::new(Self {
            n,
            threads: Mutex::new(HashMap::new()),
        })
    }
}

impl DeviceHost for FakeGpus {
    fn devices(&self) -> Vec<DeviceInfo> {
        (0..self.n)
            .map(|ordinal| DeviceInfo {
                ordinal,
                name: "Fake GPU".into(),
                total_bytes: 16 << 30,
            })
            .collect()
    }

    fn arbiter(&self, ordinal: u32) -> Result<actix::ArbiterHandle, String> {
        let mut threads = self.threads.lock().unwrap();
        let arbiter = threads.entry(ordinal).or_insert_with(|| {
            let arbiter = actix::Arbiter::new();
            arbiter.spawn_fn(move || BOUND.set(Some(ordinal)));
            arbiter
        });
        Ok(arbiter.handle())
    }
}

impl Drop for FakeGpus {
    fn drop(&mut self) {
        for arbiter in self.threads.get_mut().unwrap().values() {
            arbiter.stop();
        }
    }
}

#[derive(crate::Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(WhichDevice, Fail), spawn, gpu)]
struct Net;

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = Option<u32>)]
struct WhichDevice;

#[derive(crate::Message, Archive, Serialize, Deserialize)]
#[message(result = ())]
struct Fail;

impl Handler<WhichDevice> for Net {
    type Result = Option<u32>;
    fn handle(&mut self, _: WhichDevice, _: &mut actix::Context<Self>) -> Option<u32> {
        BOUND.get()
    }
}

impl Handler<Fail> for Net {
    type Result = ();
    fn handle(&mut self, _: Fail, _: &mut actix::Context<Self>) {
        panic!("the kernel faulted");
    }
}

async fn node(gpus: Option<u32>) -> Node {
    let mut b = Node::builder()
        .password(Password::new("gpu".into()))
        .allow::<Net>();
    if let Some(n) = gpus {
        b = b.devices(FakeGpus::new(n));
    }
    b.start().await.expect("a node")
}

/// Waits until the supervisor has restarted its child once more.
async fn restarted(events: &mut super::events::EventStream) {
    loop {
        let event = timeout(T, events.recv())
            .await
            .expect("an event in time")
            .expect("the supervisor runs")
            .event;
        if matches!(event, SupervisorEvent::Restarted { .. }) {
            return;
        }
    }
}

#[actix_rt::test]
async fn a_supervised_gpu_actor_skips_cpu_nodes_and_restarts_on_its_device() {
    let (sup_node, cpu, gpu) = (node(None).await, node(None).await, node(Some(2)).await);
    let to_cpu = timeout(T, sup_node.join(&cpu.join_line()))
        .await
        .unwrap()
        .unwrap();
    timeout(T, sup_node.join(&gpu.join_line()))
        .await
        .unwrap()
        .unwrap();
    // A CPU-only node refuses a GPU actor and says what it has.
    let refused = timeout(T, to_cpu.spawn_on(DeviceChoice::AnyGpu, Net))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refused, SpawnError::NoDevice(ref m) if m.contains("has no GPU")),
        "{refused:?}"
    );

    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(10))
        .child(ChildSpec::remote("net", || Net, RemotePlacement::Any))
        .start(&sup_node);
    let mut events = sup.events();
    assert_eq!(timeout(T, sup.running("net")).await.unwrap(), Ok(gpu.id()));
    let net = sup.child::<Net>("net").unwrap();
    assert_eq!(timeout(T, net.ask(WhichDevice)).await.unwrap(), Ok(Some(0)));

    // Device 0 now holds more actors than device 1: a fresh placement would
    // take device 1, a restart keeps device 0.
    for _ in 0..2 {
        gpu.spawn_on(DeviceChoice::Gpu(0), Net).unwrap();
    }
    let _ = timeout(T, net.ask(Fail)).await.unwrap();
    restarted(&mut events).await;
    assert_eq!(timeout(T, sup.running("net")).await.unwrap(), Ok(gpu.id()));
    assert_eq!(timeout(T, net.ask(WhichDevice)).await.unwrap(), Ok(Some(0)));
    let fresh = gpu.spawn_on(DeviceChoice::AnyGpu, Net).unwrap();
    assert_eq!(
        timeout(T, fresh.ask(WhichDevice)).await.unwrap(),
        Ok(Some(1))
    );
    timeout(T, sup.shutdown()).await.unwrap();
}

#[actix_rt::test]
async fn local_gpu_actors_are_pinned_or_refused_with_what_the_node_has() {
    let gpu = node(Some(2)).await;
    assert_eq!(gpu.devices().len(), 2);
    let err = gpu.spawn_on(DeviceChoice::Gpu(5), Net).unwrap_err();
    assert!(matches!(err, PlaceError::NoSuchDevice { asked: 5, .. }));
    assert!(
        err.to_string()
            .contains("2 GPUs: 0 (Fake GPU, 16 GiB), 1 (Fake GPU, 16 GiB)")
    );

    // A plain spawn never runs it off a device.
    let stray = gpu.spawn(Net);
    let down = timeout(T, stray.watch()).await.unwrap();
    assert!(
        matches!(down.reason, ExitReason::Error(ref m) if m.contains("Node::spawn_on")),
        "{down:?}"
    );

    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(10))
        .child(ChildSpec::pinned("net", || Net, DeviceChoice::Gpu(1)))
        .start(&gpu);
    let mut events = sup.events();
    let net = sup.child::<Net>("net").unwrap();
    assert_eq!(timeout(T, net.ask(WhichDevice)).await.unwrap(), Ok(Some(1)));
    let _ = timeout(T, net.ask(Fail)).await.unwrap();
    restarted(&mut events).await;
    assert_eq!(timeout(T, net.ask(WhichDevice)).await.unwrap(), Ok(Some(1)));
    timeout(T, sup.shutdown()).await.unwrap();

    // Without devices the pinned child's start fails, naming what is there.
    let cpu = node(None).await;
    let sup = Supervisor::new(Strategy::OneForOne)
        .intensity(0, Duration::from_secs(10))
        .child(ChildSpec::pinned("net", || Net, DeviceChoice::AnyGpu))
        .start(&cpu);
    let reason = timeout(T, sup.exited()).await.unwrap();
    assert!(matches!(reason, ExitReason::Error(_)), "{reason:?}");
    let history = sup.history();
    assert!(
        history.iter().any(|e| matches!(
            &e.event,
            SupervisorEvent::Down { reason: ExitReason::Error(m), .. } if m.contains("has no GPU")
        )),
        "{history:?}"
    );
}

/// A pinned actor stops on its device's thread: its exit reason is set (and
/// its supervisor restarts it) a moment before its mailbox closes there. A
/// reference must not take it for alive in between, or its message goes into
/// the closing mailbox and is lost with it.
#[test]
fn an_entry_is_not_alive_once_its_exit_reason_is_set_though_its_mailbox_is_open() {
    let (tx, rx) = actix::dev::channel::channel::<Net>(0);
    let entry = crate::actor::LocalEntry::new(actix::Addr::new(tx), 4);
    assert!(entry.is_alive());
    entry.kill_with(ExitReason::Panic("on its own thread".into()));
    assert!(!entry.is_alive());
    drop(rx);
}
