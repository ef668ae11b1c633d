//! GPU benchmarks, each against a raw CUDA baseline measured in the same
//! run (add `--json` for one JSON object per benchmark on stdout):
//!
//! - `gpu_ipc_64mib_gbps`: a 64 MiB device tensor to a GPU actor in
//!   another process on the same GPU (shared through CUDA IPC, mapped and
//!   copied into the receiver's own memory, one ask), against
//!   `cuMemcpyDtoD` of 64 MiB in one process;
//! - `gpu_host_staged_64mib_gbps`: the same tensor to that actor as a host
//!   tensor over loopback QUIC (device to host, the transport's bulk path,
//!   host to device from the received buffer), against a pinned
//!   `cuMemcpyDtoH` + `cuMemcpyHtoD` of 64 MiB;
//! - `gpu_allreduce_{16,64}mib_gbps`: `gpu::all_reduce` of 2 ranks (this
//!   process and a forked child) sharing the GPU, bytes per second of one
//!   rank's tensor, against `cuMemcpyDtoD` of the same size.
//!
//! Runs only where a GPU is present: `cargo run --release -p
//! parallel-examples --features cuda --bin bench_gpu`; elsewhere it says
//! why and exits 0.

#[cfg(feature = "cuda")]
mod on_gpu {
    use std::error::Error;
    use std::time::{Duration, Instant};

    use actix::Handler;
    use parallel::actor::DeviceChoice;
    use parallel::gpu::{self, Device, DeviceTensor, Exports, GpuOp, IpcTensor};
    use parallel::{Actor, Message, Node, Received, Tensor};
    use parallel_examples::report::{self, Goal, Row, Widths};
    use rkyv::{Archive, Deserialize, Serialize};

    type BoxError = Box<dyn Error>;

    const MIB: usize = 1 << 20;
    const ROUNDS: usize = 10;
    const WIDTHS: Widths = Widths {
        label: 30,
        figure: 9,
        unit: 5,
        ratio: 5,
    };

    /// The receiving GPU actor, in the forked child.
    #[derive(Actor, Archive, Serialize, Deserialize, Default)]
    #[actor(messages(CopyIpc), view(Upload), spawn, gpu)]
    pub struct Sink;

    /// Map a shared tensor and copy it into own device memory.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = Result<u64, String>)]
    pub struct CopyIpc(pub IpcTensor);

    /// A host tensor to put on the device.
    #[derive(Message, Archive, Serialize, Deserialize)]
    #[message(result = Result<u64, String>)]
    pub struct Upload(pub Tensor<f32>);

    impl Handler<CopyIpc> for Sink {
        type Result = actix::MessageResult<CopyIpc>;
        fn handle(&mut self, CopyIpc(t): CopyIpc, _: &mut actix::Context<Self>) -> Self::Result {
            let copy = || -> Result<u64, gpu::GpuError> {
                let device = Device::current()?;
                let own = t.open::<f32>(&device)?.to_device()?;
                device.synchronize()?;
                Ok(own.len() as u64)
            };
            actix::MessageResult(copy().map_err(|e| e.to_string()))
        }
    }

    impl Handler<Upload> for Sink {
        type Result = actix::MessageResult<Upload>;
        fn handle(&mut self, Upload(t): Upload, _: &mut actix::Context<Self>) -> Self::Result {
            let up = || -> Result<u64, gpu::GpuError> {
                Ok(DeviceTensor::from_tensor(&Device::current()?, &t)?.len() as u64)
            };
            actix::MessageResult(up().map_err(|e| e.to_string()))
        }
    }

    impl Handler<Received<Upload>> for Sink {
        type Result = actix::MessageResult<Received<Upload>>;
        fn handle(&mut self, t: Received<Upload>, _: &mut actix::Context<Self>) -> Self::Result {
            // Read in place from the receive buffer: one copy, to the device.
            let up = || -> Result<u64, gpu::GpuError> {
                Ok(DeviceTensor::from_archived(&Device::current()?, &t.0)?.len() as u64)
            };
            actix::MessageResult(up().map_err(|e| e.to_string()))
        }
    }

    /// The child's part: rank 1 of each all_reduce round.
    #[parallel::remote]
    fn reduce_rounds(sizes: Vec<u64>, rounds: u32) {
        let device = Device::open(0).expect("the child's GPU");
        for bytes in sizes {
            let mut t = DeviceTensor::<f32>::zeros(&device, bytes as usize / 4).expect("alloc");
            for _ in 0..=rounds {
                gpu::all_reduce_in_child(&mut t, GpuOp::Sum).expect("all_reduce");
            }
        }
    }

    fn gbps(bytes: usize, took: Duration) -> f64 {
        bytes as f64 / took.as_secs_f64() / 1e9
    }

    /// The median of runs after the first (a warm-up).
    fn median(mut v: Vec<f64>) -> f64 {
        if v.len() > 1 {
            v.remove(0);
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Raw `cuMemcpyDtoD` of `bytes`, GB/s (median of ROUNDS).
    fn raw_dtod(device: &Device, bytes: usize) -> Result<f64, BoxError> {
        let a = DeviceTensor::<u8>::zeros(device, bytes)?;
        let mut b = DeviceTensor::<u8>::zeros(device, bytes)?;
        let runs = (0..=ROUNDS)
            .map(|_| {
                let t = Instant::now();
                b.copy_from(&a).map(|()| gbps(bytes, t.elapsed()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(median(runs))
    }

    /// Raw pinned `cuMemcpyDtoH` + `cuMemcpyHtoD` of `bytes`, GB/s.
    fn raw_staged(device: &Device, bytes: usize) -> Result<f64, BoxError> {
        let stream = device.stream();
        let src = stream.alloc_zeros::<u8>(bytes)?;
        let mut dst = stream.alloc_zeros::<u8>(bytes)?;
        // SAFETY: pinned host memory of `bytes`, written by the copy before it is read.
        let mut pinned = unsafe { device.context().alloc_pinned::<u8>(bytes)? };
        let mut runs = Vec::new();
        for _ in 0..=ROUNDS {
            let t = Instant::now();
            stream.memcpy_dtoh(&src, &mut pinned)?;
            stream.memcpy_htod(&pinned, &mut dst)?;
            stream.synchronize()?;
            runs.push(gbps(bytes, t.elapsed()));
        }
        Ok(median(runs))
    }

    pub async fn run() -> Result<(), BoxError> {
        let json = std::env::args().any(|a| a == "--json");
        match gpu::device_count() {
            Ok(n) if n > 0 => {}
            other => {
                let why = other.map_or_else(|e| e.to_string(), |_| "no GPU".into());
                println!("bench_gpu needs a GPU ({why}): nothing measured");
                return Ok(());
            }
        }
        let device = Device::open(0)?;
        let name = device.name()?;
        report::header(
            json,
            &format!("bench_gpu: {name}; two processes sharing GPU 0, medians of {ROUNDS} rounds"),
        );
        let children = parallel::nfork(1).await?;
        let node = Node::current().ok_or("no node")?;
        let child = children.iter().next().ok_or("no child")?.node().clone();
        let sink = child.spawn_on(DeviceChoice::Gpu(0), Sink).await?;
        let exports = Exports::start(&node, DeviceChoice::Gpu(0))?;
        let mut rows = Vec::new();
        let bytes = 64 * MIB;

        eprintln!("[bench] 64 MiB through CUDA IPC to another process");
        let data = vec![1.5f32; bytes / 4];
        let mut runs = Vec::new();
        for _ in 0..=ROUNDS {
            let t = DeviceTensor::from_host(&device, &data)?;
            let started = Instant::now();
            let shared = exports.share(t).await?;
            sink.ask(CopyIpc(shared)).await??;
            runs.push(gbps(bytes, started.elapsed()));
        }
        rows.push(Row::new(
            [
                "gpu_ipc_64mib_gbps",
                "64 MiB by CUDA IPC",
                "GB/s",
                "cuMemcpyDtoD",
            ],
            Goal::AtLeast(0.8),
            median(runs),
            raw_dtod(&device, bytes)?,
        ));

        eprintln!("[bench] 64 MiB staged through host memory and loopback QUIC");
        let on_gpu = DeviceTensor::from_host(&device, &data)?;
        let mut runs = Vec::new();
        for _ in 0..=ROUNDS {
            let started = Instant::now();
            let host = on_gpu.to_tensor()?;
            sink.ask(Upload(host)).await??;
            runs.push(gbps(bytes, started.elapsed()));
        }
        rows.push(Row::new(
            [
                "gpu_host_staged_64mib_gbps",
                "64 MiB staged via QUIC",
                "GB/s",
                "pinned DtoH+HtoD",
            ],
            Goal::AtLeast(0.5),
            median(runs),
            raw_staged(&device, bytes)?,
        ));

        eprintln!("[bench] all_reduce, 2 ranks sharing the GPU");
        let sizes = [16 * MIB, 64 * MIB];
        children
            .exec(
                reduce_rounds,
                (
                    sizes.iter().map(|&s| s as u64).collect::<Vec<_>>(),
                    ROUNDS as u32,
                ),
            )
            .await?;
        let comm = children.communicator().await?;
        for (size, names) in sizes.iter().zip([
            [
                "gpu_allreduce_16mib_gbps",
                "all_reduce 16 MiB, 2 ranks",
                "GB/s",
                "cuMemcpyDtoD",
            ],
            [
                "gpu_allreduce_64mib_gbps",
                "all_reduce 64 MiB, 2 ranks",
                "GB/s",
                "cuMemcpyDtoD",
            ],
        ]) {
            let mut t = DeviceTensor::<f32>::zeros(&device, size / 4)?;
            let mut runs = Vec::new();
            let mut path = None;
            for _ in 0..=ROUNDS {
                let started = Instant::now();
                path = Some(gpu::all_reduce(&comm, &mut t, GpuOp::Sum).await?);
                runs.push(gbps(*size, started.elapsed()));
            }
            eprintln!("[bench] all_reduce of {} MiB ran over {path:?}", size / MIB);
            rows.push(Row::new(
                names,
                Goal::AtLeast(0.8),
                median(runs),
                raw_dtod(&device, *size)?,
            ));
        }
        children.sync().await?;
        report::print(&rows, json, WIDTHS);
        Ok(())
    }
}

#[cfg(not(feature = "cuda"))]
mod on_gpu {
    pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
        parallel_examples::needs_cuda("bench_gpu");
        Ok(())
    }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    on_gpu::run().await
}
