//! The test program of the GPU tests (feature `cuda`, run on a machine with
//! a GPU): one scenario per first argument, each printing `OK <what>` or
//! `BAD <what> <detail>` lines and exiting 0 when it could run.
//!
//! - `ipc`: a reader pinned to the GPU in a forked child maps a tensor this
//!   process shares; its bits come back exact, and the device memory
//!   returns to its level once the reader lets go.
//! - `owner-killed`: a forked child shares a tensor with a reader pinned in
//!   this process, then is SIGKILLed; the reader's next read is an error.
//! - `all-reduce`: 3 ranks (this process and 2 children) reduce 1, 16 and
//!   64 MiB against a host reference, by sum and by max.
//! - `restart`: a supervised reader in its own process, SIGKILLed, comes
//!   back on the same GPU.

#[cfg(feature = "cuda")]
mod scenarios {
    use std::error::Error;
    use std::time::Duration;

    use actix::Handler;
    use parallel::actor::DeviceChoice;
    use parallel::gpu::{self, Device, DeviceTensor, Exports, GpuOp, IpcTensor, IpcView};
    use parallel::supervision::{ChildSpec, Strategy, Supervisor, SupervisorEvent};
    use parallel::{Actor, ActorRef, Message, Node};
    use rkyv::{Archive, Deserialize, Serialize};
    use tokio::time::timeout;

    type BoxError = Box<dyn Error>;
    const T: Duration = Duration::from_secs(60);
    const MIB: usize = 1 << 20;

    fn report(what: &str, ok: bool, detail: impl std::fmt::Debug) {
        if ok {
            println!("OK {what}");
        } else {
            println!("BAD {what} {detail:?}");
        }
    }

    /// Values whose bits differ everywhere (checks a bit-exact copy).
    fn pattern(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| f32::from_bits((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1e6)
            .collect()
    }

    /// Holds mapped views; pinned to a GPU.
    #[derive(Actor, Archive, Serialize, Deserialize, Default)]
    #[actor(messages(Take, Read, LetGo, WhichGpu), spawn, gpu)]
    pub struct Reader {
        #[rkyv(with = rkyv::with::Skip)]
        held: Vec<IpcView<f32>>,
    }

    /// Maps a shared tensor and keeps the view; answers its bits.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = Result<Vec<u32>, String>)]
    pub struct Take(pub IpcTensor);

    /// Reads the last view again.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = Result<usize, String>)]
    pub struct Read;

    /// Drops every view.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = ())]
    pub struct LetGo;

    /// The GPU it runs on.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = u32)]
    pub struct WhichGpu;

    impl Handler<Take> for Reader {
        type Result = actix::MessageResult<Take>;
        fn handle(&mut self, Take(t): Take, _: &mut actix::Context<Self>) -> Self::Result {
            let take = || -> Result<Vec<u32>, gpu::GpuError> {
                let view = t.open::<f32>(&Device::current()?)?;
                let bits = view.to_host()?.iter().map(|x| x.to_bits()).collect();
                self.held.push(view);
                Ok(bits)
            };
            actix::MessageResult(take().map_err(|e| e.to_string()))
        }
    }

    impl Handler<Read> for Reader {
        type Result = actix::MessageResult<Read>;
        fn handle(&mut self, _: Read, _: &mut actix::Context<Self>) -> Self::Result {
            let read = match self.held.last() {
                Some(view) => view.to_host().map(|v| v.len()).map_err(|e| e.to_string()),
                None => Err("no view held".into()),
            };
            actix::MessageResult(read)
        }
    }

    impl Handler<LetGo> for Reader {
        type Result = ();
        fn handle(&mut self, _: LetGo, _: &mut actix::Context<Self>) {
            self.held.clear();
        }
    }

    impl Handler<WhichGpu> for Reader {
        type Result = u32;
        fn handle(&mut self, _: WhichGpu, _: &mut actix::Context<Self>) -> u32 {
            Device::current().map_or(u32::MAX, |d| d.ordinal())
        }
    }

    pub async fn ipc() -> Result<(), BoxError> {
        let children = parallel::nfork(1).await?;
        let node = Node::current().ok_or("no node")?;
        let child = children.iter().next().ok_or("no child")?.node().clone();
        let reader = child
            .spawn_on(DeviceChoice::Gpu(0), Reader::default())
            .await?;
        let exports = Exports::start(&node, DeviceChoice::Gpu(0))?;
        let device = Device::open(0)?;
        let data = pattern(16 * MIB / 4, 0x5eed);
        let before = device.memory()?.0;
        let shared = exports
            .share(DeviceTensor::from_host(&device, &data)?)
            .await?;
        let bits = reader.ask(Take(shared)).await??;
        let want: Vec<u32> = data.iter().map(|x| x.to_bits()).collect();
        report("ipc round trip is bit-exact", bits == want, bits.len());
        let held = device.memory()?.0;
        report(
            "the shared memory is held",
            held + 8 * MIB <= before,
            (before, held),
        );
        reader.ask(LetGo).await?;
        let mut after = device.memory()?.0;
        for _ in 0..200 {
            if exports.holding().await? == 0 && after + 2 * MIB >= before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            after = device.memory()?.0;
        }
        report(
            "the sender frees once the receiver drops",
            exports.holding().await? == 0 && after + 2 * MIB >= before,
            (before, after),
        );
        children.sync().await?;
        Ok(())
    }

    /// Shares a tensor of its process with a reader; pinned to a GPU.
    #[derive(Actor, Archive, Serialize, Deserialize, Default)]
    #[actor(messages(ShareTo), spawn, gpu)]
    pub struct Sharer {
        #[rkyv(with = rkyv::with::Skip)]
        exports: Option<Exports>,
    }

    /// Share a fresh tensor with this reader; answers once it took it.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = Result<(), String>)]
    pub struct ShareTo(pub ActorRef<Reader>);

    impl Handler<ShareTo> for Sharer {
        type Result = actix::ResponseFuture<Result<(), String>>;
        fn handle(
            &mut self,
            ShareTo(reader): ShareTo,
            _: &mut actix::Context<Self>,
        ) -> Self::Result {
            let prepared = (|| -> Result<(Exports, DeviceTensor<f32>), String> {
                let node = Node::current().ok_or("no node")?;
                if self.exports.is_none() {
                    self.exports = Some(
                        Exports::start(&node, DeviceChoice::Gpu(0)).map_err(|e| e.to_string())?,
                    );
                }
                let exports = self.exports.clone().ok_or("no exporter")?;
                let device = Device::current().map_err(|e| e.to_string())?;
                let t = DeviceTensor::from_host(&device, &pattern(MIB, 7))
                    .map_err(|e| e.to_string())?;
                Ok((exports, t))
            })();
            Box::pin(async move {
                let (exports, t) = prepared?;
                let shared = exports.share(t).await.map_err(|e| e.to_string())?;
                reader
                    .ask(Take(shared))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|_| ())
            })
        }
    }

    pub async fn owner_killed() -> Result<(), BoxError> {
        let node = Node::current().ok_or("no node")?;
        let reader = node.spawn_on(DeviceChoice::Gpu(0), Reader::default())?;
        let children = parallel::nfork(1).await?;
        let child = children.iter().next().ok_or("no child")?;
        let pid = child.pid();
        let sharer = child
            .node()
            .spawn_on(DeviceChoice::Gpu(0), Sharer::default())
            .await?;
        sharer.ask(ShareTo(reader.clone())).await??;
        report(
            "the reader reads while the owner lives",
            reader.ask(Read).await?.is_ok(),
            (),
        );
        // SAFETY: a signal to the child this program forked.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        let mut read = reader.ask(Read).await?;
        for _ in 0..400 {
            if read.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            read = reader.ask(Read).await?;
        }
        report(
            "a read after the owner's death is an error, not a crash",
            matches!(&read, Err(e) if e.contains("gone")),
            &read,
        );
        report(
            "the reader still answers",
            reader.ask(WhichGpu).await? == 0,
            (),
        );
        Ok(())
    }

    fn input(rank: usize, n: usize) -> Vec<f32> {
        // Small integers: sums are exact in f32, whatever the order.
        (0..n).map(|i| ((i * 7 + rank * 13) % 251) as f32).collect()
    }

    fn reference(ranks: usize, n: usize, op: GpuOp) -> Vec<f32> {
        let mut acc = input(0, n);
        for r in 1..ranks {
            for (a, b) in acc.iter_mut().zip(input(r, n)) {
                *a = match op {
                    GpuOp::Sum => *a + b,
                    GpuOp::Max => a.max(b),
                    GpuOp::Min => a.min(b),
                    GpuOp::Prod => *a * b,
                };
            }
        }
        acc
    }

    const SIZES: [usize; 3] = [MIB, 16 * MIB, 64 * MIB];
    const OPS: [GpuOp; 2] = [GpuOp::Sum, GpuOp::Max];

    #[parallel::remote]
    fn reduce_in_child() {
        let device = Device::open(0).expect("a GPU");
        let rank = parallel::collective::rank().expect("rank");
        for bytes in SIZES {
            for op in OPS {
                let n = bytes / 4;
                let mut t = DeviceTensor::from_host(&device, &input(rank, n)).expect("upload");
                let path = gpu::all_reduce_in_child(&mut t, op).expect("all_reduce");
                let ok = t.to_host().expect("download") == reference(3, n, op);
                report(
                    &format!(
                        "all_reduce {op:?} {} MiB rank {rank} over {path:?}",
                        bytes / MIB
                    ),
                    ok,
                    (),
                );
            }
        }
    }

    pub async fn all_reduce() -> Result<(), BoxError> {
        let children = parallel::nfork(2).await?;
        children.exec(reduce_in_child, ()).await?;
        let comm = children.communicator().await?;
        let device = Device::open(0)?;
        for bytes in SIZES {
            for op in OPS {
                let n = bytes / 4;
                let mut t = DeviceTensor::from_host(&device, &input(0, n))?;
                let path = gpu::all_reduce(&comm, &mut t, op).await?;
                let ok = t.to_host()? == reference(3, n, op);
                report(
                    &format!("all_reduce {op:?} {} MiB rank 0 over {path:?}", bytes / MIB),
                    ok,
                    (),
                );
            }
        }
        children.sync().await?;
        Ok(())
    }

    pub async fn restart() -> Result<(), BoxError> {
        let node = Node::current().ok_or("no node")?;
        let sup = Supervisor::new(Strategy::OneForOne)
            .intensity(3, Duration::from_secs(60))
            .child(ChildSpec::process("reader", Reader::default))
            .start(&node);
        let mut events = sup.events();
        timeout(T, sup.running("reader")).await??;
        let reader = sup
            .child::<Reader>("reader")
            .ok_or("no reader")?
            .with_timeout(T)
            .with_retry(600, Duration::from_millis(100));
        let first = reader.ask(WhichGpu).await?;
        let pid = sup.pid_of("reader").ok_or("no pid")?;
        // SAFETY: a signal to the process the supervisor started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        loop {
            if let SupervisorEvent::Restarted { .. } = timeout(T, events.recv()).await??.event {
                break;
            }
        }
        let again = reader.ask(WhichGpu).await?;
        let new_pid = sup.pid_of("reader").unwrap_or(pid);
        report(
            "the restart keeps the device",
            again == first && new_pid != pid,
            (first, again),
        );
        sup.shutdown().await;
        Ok(())
    }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    #[cfg(feature = "cuda")]
    {
        return match scenario.as_str() {
            "ipc" => scenarios::ipc().await,
            "owner-killed" => scenarios::owner_killed().await,
            "all-reduce" => scenarios::all_reduce().await,
            "restart" => scenarios::restart().await,
            other => Err(format!(
                "unknown scenario {other:?}: ipc, owner-killed, all-reduce, restart"
            )
            .into()),
        };
    }
    #[cfg(not(feature = "cuda"))]
    {
        println!("built without the cuda feature: scenario {scenario:?} needs it");
        Ok(())
    }
}
