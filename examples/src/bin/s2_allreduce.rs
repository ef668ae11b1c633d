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
//! the same on all five (the bits are identical, not just close). Then the
//! parent broadcasts a learning rate, gathers every rank's loss, and all
//! meet at a barrier.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s2_allreduce`.

use parallel::Tensor;
use parallel::collective::{self, ReduceOp};

/// Rank `rank`'s gradients: 1001 values, different on every rank.
fn grads(rank: usize) -> Tensor<f32> {
    Tensor::from_vec(
        (0..1001)
            .map(|i| ((i * 37 + rank * 11) % 101) as f32 * 0.01 * (rank + 1) as f32)
            .collect(),
    )
}

// ANCHOR: add
/// The seed's `function(a, b) return a:add(b) end`: folds `other` into `acc`.
fn add(acc: &mut [f32], other: &[f32]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a += b;
    }
}
// ANCHOR_END: add

/// Rank `rank`'s loss after a step with learning rate `lr`.
fn loss(rank: usize, lr: f64) -> f64 {
    1.0 / (1.0 + rank as f64) * (1.0 - lr)
}

// ANCHOR: child
#[parallel::remote]
fn worker() {
    // The rank the parent gave this child when the group formed (the
    // seed's `ipc.rank`); not `parallel::id()`, which numbers children.
    let rank = collective::rank().expect("rank");
    let mut g = grads(rank);
    collective::all_reduce(&mut g, ReduceOp::custom(add)).expect("all_reduce");
    parallel::print!("reduced norm {:.6}", g.norm());
    // ANCHOR: child_more
    let mut lr = [0.0f64];
    collective::broadcast(&mut lr, 0).expect("broadcast");
    collective::gather(&[loss(rank, lr[0])], 0).expect("gather");
    collective::barrier().expect("barrier");
    // ANCHOR_END: child_more
}
// ANCHOR_END: child

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: parent
    let children = parallel::nfork(4).await?;
    println!("{}", children.topology());
    children.exec(worker, ()).await?;
    // The group of this process (rank 0) and the children, on the backend
    // chosen once: shared memory here, all five on one machine.
    let group = children.communicator().await?;
    println!("{} ranks over {}", group.size(), group.backend_name());
    let mut g = grads(group.rank());
    group.all_reduce(&mut g, ReduceOp::custom(add)).await?;
    parallel::print!("reduced norm {:.6}", g.norm());
    // ANCHOR_END: parent
    // ANCHOR: parent_more
    let mut lr = [0.05f64];
    group.broadcast(&mut lr, 0).await?;
    let losses = group.gather(&[loss(0, lr[0])], 0).await?;
    let losses = losses.ok_or("rank 0 is the root of the gather")?;
    println!("losses of the 5 ranks: {losses:.3?}");
    group.barrier().await?;
    // ANCHOR_END: parent_more
    children.sync().await?;
    Ok(())
}
