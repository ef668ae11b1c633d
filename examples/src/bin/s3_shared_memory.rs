//! The s3 seed's example (lua parallel with shared memory,
//! `seeds/s3-lua-parallel-shared-memory.md`): four workers each receive a
//! 100-element storage five times and print its size and first elements.
//!
//! ```lua
//! worker = [[
//!       parallel.print('Im a worker, my ID is: ' .. parallel.id)
//!       t = torch.Storage()
//!       for i = 1,5 do
//!          parallel.receive(parallel.parent, t)
//!          parallel.print('received storage of size ' .. t:size())
//!          parallel.print('first elets: ', t[1], t[2], t[3])
//!          sys.sleep(1)
//!       end
//! ]]
//! parallel.print('Im the parent, my ID is: ' .. parallel.id)
//! nprocesses = 4
//! w = {}
//! for i = 1,nprocesses do
//!    w[i] = parallel.run(worker)
//! end
//! data = torch.Storage(100)
//! for i = 1,100 do
//!    data[i] = i
//! end
//! for i = 1,5 do
//!    for i = 1,nprocesses do
//!       parallel.send(w[i], data)
//!    end
//! end
//! parallel.join(w)
//! parallel.print('all processes terminated')
//! ```
//!
//! Between processes of one machine, payloads of at least the shared-memory
//! threshold (1 MiB by default; `PARALLEL_SHM_THRESHOLD`,
//! `Config::shm_threshold` or `Tree::set_shm_threshold` change it) do not go through the
//! socket: the sender archives the value once into a file in `/dev/shm` and
//! posts only its name; the receiver maps it read-only and reads the tensor in
//! place. A 100-element storage is far below 1 MiB, so this example lowers
//! the threshold to nothing with `set_shm_threshold(0)`: every send below
//! takes the shared-memory path, as in the seed. `parallel.run` is `fork` +
//! `exec`; the seed's `parallel.join(w)` (wait until the workers end) is
//! `sync`. The seed's one-second sleep between receives is left out.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s3_shared_memory`.

use parallel::Tensor;

const ROUNDS: usize = 5;

// ANCHOR: worker
/// Receives `ROUNDS` storages from its parent, reading each in place.
#[parallel::remote]
fn worker() {
    parallel::print!("Im a worker, my ID is: {}", parallel::id());
    let parent = parallel::parent().expect("a worker runs in a child");
    for _ in 0..ROUNDS {
        // A read-only view straight into the shared-memory mapping.
        let t = parent.receive::<Tensor<f64>>().expect("receive");
        let t = t.as_slice();
        parallel::print!("received storage of size {}", t.len());
        parallel::print!("first elets: {} {} {}", t[0], t[1], t[2]);
    }
}
// ANCHOR_END: worker

// ANCHOR: parent
#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every payload from this process, however small, goes through /dev/shm.
    parallel::Tree::global().set_shm_threshold(0);

    parallel::print!("Im the parent, my ID is: {}", parallel::id());

    // dispatch/run each worker in a separate process
    let nprocesses = 4;
    let w = parallel::nfork(nprocesses).await?;
    w.exec(worker, ()).await?;

    // transmit data to each worker
    let data = Tensor::from_vec((1..=100).map(f64::from).collect());
    for _ in 0..ROUNDS {
        for child in &w {
            child.send(&data).await?;
        }
    }

    // sync/terminate when all workers are done
    w.sync().await?;
    parallel::print!("all processes terminated");
    Ok(())
}
// ANCHOR_END: parent
