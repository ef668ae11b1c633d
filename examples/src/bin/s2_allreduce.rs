//! torch-ipc's tree allreduce: every process holds its own gradients, and
//! after the collective every process holds the sum of all of them.
//!
//! ```lua
//! local grads = torch.randn(1000) * ipc.rank
//! tree.allReduce(grads, function(a, b) return a:add(b) end)
//! ```
//!
//! Here the parent is rank 0 and its 4 children ranks 1..4; each starts with
//! a different tensor, and every rank prints the norm of the reduced one:
//! the same on all five (the bits are identical, not just close).
//!
//! Run it with `cargo run --release -p parallel-examples --bin s2_allreduce`.

use parallel::Tensor;
use parallel::collective::ReduceOp;

/// Rank `rank`'s gradients: 1001 values, different on every rank.
fn grads(rank: u32) -> Tensor<f32> {
    Tensor::from_vec(
        (0..1001)
            .map(|i| ((i * 37 + rank as usize * 11) % 101) as f32 * 0.01 * (rank + 1) as f32)
            .collect(),
    )
}

// ANCHOR: child
#[parallel::remote]
fn worker() {
    let mut g = grads(parallel::id());
    parallel::collective::all_reduce(&mut g, ReduceOp::Sum).expect("all_reduce");
    parallel::print!("reduced norm {:.6}", g.norm());
}
// ANCHOR_END: child

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: parent
    let children = parallel::nfork(4).await?;
    children.exec(worker, ()).await?;
    let mut g = grads(0);
    children.all_reduce(&mut g, ReduceOp::Sum).await?;
    parallel::print!("reduced norm {:.6}", g.norm());
    // ANCHOR_END: parent
    children.sync().await?;
    Ok(())
}
