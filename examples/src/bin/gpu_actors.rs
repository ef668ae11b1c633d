//! GPU actors across two processes: a reader actor pinned to the GPU in a
//! supervised child process, a device tensor handed to it through CUDA IPC
//! (no copy; the memory is freed once the reader lets go), an all_reduce
//! of device tensors between this process and a forked child, then the
//! reader's process killed with SIGKILL and the reader restarted on the
//! GPU in a new process.
//!
//! Run it with `cargo run --release -p parallel-examples --features cuda
//! --bin gpu_actors`. Without a GPU (or built without the `cuda` feature)
//! it says why and exits 0.

#[cfg(feature = "cuda")]
mod on_gpu {
    use std::error::Error;
    use std::time::Duration;

    use actix::Handler;
    use parallel::actor::DeviceChoice;
    use parallel::gpu::{self, Device, DeviceTensor, Exports, GpuOp, IpcTensor, IpcView};
    use parallel::supervision::{ChildSpec, Strategy, Supervisor, SupervisorEvent};
    use parallel::{Actor, Message, Node};
    use rkyv::{Archive, Deserialize, Serialize};
    use tokio::time::timeout;

    const T: Duration = Duration::from_secs(30);
    /// Elements of the tensors: 4 MiB of f32.
    const N: usize = 1 << 20;

    // ANCHOR: reader
    /// Reads device tensors other processes share; `gpu` pins it to a GPU
    /// for its whole life, `spawn` lets a parent start it in a child.
    #[derive(Actor, Archive, Serialize, Deserialize, Default)]
    #[actor(messages(Take, LetGo, WhichGpu), spawn, gpu)]
    pub struct Reader {
        /// The views it holds (not part of its initial state).
        #[rkyv(with = rkyv::with::Skip)]
        held: Vec<IpcView<f32>>,
    }

    /// Maps a shared tensor and answers its sum; the view is kept.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = Result<f64, String>)]
    pub struct Take(pub IpcTensor);

    impl Handler<Take> for Reader {
        type Result = actix::MessageResult<Take>;
        fn handle(&mut self, Take(shared): Take, _: &mut actix::Context<Self>) -> Self::Result {
            let read = || -> Result<f64, gpu::GpuError> {
                // The GPU this actor is pinned to.
                let device = Device::current()?;
                let view = shared.open::<f32>(&device)?;
                let sum = view.to_host()?.iter().map(|&x| f64::from(x)).sum();
                self.held.push(view);
                Ok(sum)
            };
            actix::MessageResult(read().map_err(|e| e.to_string()))
        }
    }
    // ANCHOR_END: reader

    /// Drops every view it holds; answers how many.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = u32)]
    pub struct LetGo;

    impl Handler<LetGo> for Reader {
        type Result = u32;
        fn handle(&mut self, _: LetGo, _: &mut actix::Context<Self>) -> u32 {
            let n = self.held.len() as u32;
            self.held.clear();
            n
        }
    }

    /// The GPU it runs on and its process.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = (u32, u32))]
    pub struct WhichGpu;

    impl Handler<WhichGpu> for Reader {
        type Result = actix::MessageResult<WhichGpu>;
        fn handle(&mut self, _: WhichGpu, _: &mut actix::Context<Self>) -> Self::Result {
            let gpu = Device::current().map_or(u32::MAX, |d| d.ordinal());
            actix::MessageResult((gpu, std::process::id()))
        }
    }

    // ANCHOR: child
    /// In the forked child: its part of the all_reduce (rank 1 adds 2s).
    #[parallel::remote]
    fn reduce_in_child() {
        let device = Device::open(0).expect("the child's GPU");
        let rank = parallel::collective::rank().expect("rank") as f32;
        let mut t = DeviceTensor::from_host(&device, &vec![rank + 1.0; N]).expect("upload");
        let path = gpu::all_reduce_in_child(&mut t, GpuOp::Sum).expect("all_reduce");
        let first = t.to_host().expect("download")[0];
        parallel::print!("all_reduce over {path:?}: every element is {first}");
    }
    // ANCHOR_END: child

    pub async fn run() -> Result<(), Box<dyn Error>> {
        match gpu::device_count() {
            Ok(n) if n > 0 => {}
            Ok(_) => {
                println!(
                    "the CUDA driver sees no GPU here: nothing to show; run this on a GPU machine"
                );
                return Ok(());
            }
            Err(e) => {
                println!("no GPU here ({e}): nothing to show; run this on a GPU machine");
                return Ok(());
            }
        }
        let children = parallel::nfork(1).await?;
        let node = Node::current().ok_or("the fork started no node")?;

        // ANCHOR: supervise
        // The reader lives in a process of its own, pinned to a GPU there.
        let sup = Supervisor::new(Strategy::OneForOne)
            .intensity(3, Duration::from_secs(30))
            .child(ChildSpec::process("reader", Reader::default))
            .start(&node);
        let mut events = sup.events();
        timeout(T, sup.running("reader")).await??;
        let reader = sup
            .child::<Reader>("reader")
            .ok_or("no child named reader")?
            .with_timeout(T)
            .with_retry(300, Duration::from_millis(100));
        let (gpu, pid) = reader.ask(WhichGpu).await?;
        println!("the reader runs on GPU {gpu} in process {pid}");
        // ANCHOR_END: supervise

        // ANCHOR: share
        let exports = Exports::start(&node, DeviceChoice::AnyGpu)?;
        let device = Device::open(0)?;
        let data: Vec<f32> = (0..N).map(|i| (i % 1000) as f32).collect();
        let expected: f64 = data.iter().map(|&x| f64::from(x)).sum();
        let tensor = DeviceTensor::from_host(&device, &data)?;
        let shared = exports.share(tensor).await?;
        let sum = reader.ask(Take(shared)).await??;
        println!("the reader mapped 4 MiB through CUDA IPC: sum {sum} (expected {expected})");
        if sum != expected {
            return Err("the shared tensor read back wrong".into());
        }
        println!("the exporter holds {} share(s)", exports.holding().await?);
        reader.ask(LetGo).await?;
        // The view's release reaches the exporter as a message.
        let mut holding = exports.holding().await?;
        for _ in 0..100 {
            if holding == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            holding = exports.holding().await?;
        }
        println!("the reader let go: the exporter holds {holding} share(s), its memory is freed");
        // ANCHOR_END: share

        // ANCHOR: all_reduce
        children.exec(reduce_in_child, ()).await?;
        let comm = children.communicator().await?;
        let mut t = DeviceTensor::from_host(&device, &vec![1.0f32; N])?;
        let path = gpu::all_reduce(&comm, &mut t, GpuOp::Sum).await?;
        let reduced = t.to_host()?;
        println!(
            "all_reduce over {path:?}: every element is {} (expected 3)",
            reduced[0]
        );
        if reduced.iter().any(|&x| x != 3.0) {
            return Err("the all_reduce gave a wrong element".into());
        }
        children.sync().await?;
        // ANCHOR_END: all_reduce

        // ANCHOR: kill
        // SAFETY: sends a signal to the reader's process, which this program started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        loop {
            let event = timeout(T, events.recv()).await??.event;
            if let SupervisorEvent::Restarted { incarnation, .. } = event {
                println!("the reader was restarted (incarnation {incarnation})");
                break;
            }
        }
        let (gpu, new_pid) = reader.ask(WhichGpu).await?;
        println!("the reader runs again on GPU {gpu}, in process {new_pid} (was {pid})");
        // ANCHOR_END: kill
        sup.shutdown().await;
        Ok(())
    }
}

#[cfg(not(feature = "cuda"))]
mod on_gpu {
    pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
        parallel_examples::needs_cuda("gpu_actors");
        Ok(())
    }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    on_gpu::run().await
}
