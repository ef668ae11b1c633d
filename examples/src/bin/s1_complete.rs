//! The seed's "simple complete example" (lua---parallel,
//! `seeds/s1-lua-parallel-zeromq.md`), line for line:
//!
//! ```lua
//! function worker()
//!    parallel.print('Im a worker, my ID is: ' .. parallel.id .. ' and my IP: ' .. parallel.ip)
//!    while true do
//!       m = parallel.yield()
//!       if m == 'break' then break end
//!       local t = parallel.parent:receive()
//!       parallel.print('received object with norm: ', t.data:norm())
//!       parallel.parent:send('this is my response')
//!    end
//! end
//! function parent()
//!    parallel.print('Im the parent, my ID is: ' .. parallel.id)
//!    parallel.nfork(4)
//!    parallel.children:exec(worker)
//!    t = {name='my variable', data=torch.randn(100,100)}
//!    parallel.print('transmitting object with norm: ', t.data:norm())
//!    for i = 1,1000 do
//!       parallel.children:join()
//!       parallel.children:send(t)
//!       replies = parallel.children:receive()
//!    end
//!    parallel.print('transmitted data to all children')
//!    parallel.children:join('break')
//!    parallel.print('all processes terminated')
//! end
//! ok,err = pcall(parent)
//! if not ok then print(err) parallel.close() end
//! ```
//!
//! Differences: the worker is a `#[parallel::remote]` function (a child is
//! this same program started again, so it has the function compiled in),
//! `receive` hands back a read-only view of the bytes that arrived, and there
//! is no `pcall`/`close`: `#[parallel::main]` closes every child however
//! `main` ends. To keep the output readable the workers print on the first
//! round and every 100th, not on all 1,000.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s1_complete`.

use parallel::Tensor;
use rkyv::{Archive, Deserialize, Serialize};

const ROUNDS: usize = 1_000;

// ANCHOR: object
/// The seed's `{name='my variable', data=torch.randn(100,100)}`: any type
/// with rkyv's derives can be sent; a tensor travels as a binary copy.
#[derive(Archive, Serialize, Deserialize)]
struct Object {
    name: String,
    data: Tensor<f32>,
}
// ANCHOR_END: object

// ANCHOR: worker
/// The code every child runs (the seed's `worker`).
#[parallel::remote]
fn worker() {
    parallel::print!(
        "Im a worker, my ID is: {} and my IP: {}",
        parallel::id(),
        parallel::ip()
    );
    let parent = parallel::parent().expect("a worker runs in a child");
    for round in 0.. {
        // yield = allow parent to terminate me
        let m: String = parallel::yield_value().expect("yield");
        if m == "break" {
            break;
        }
        // receive data: a read-only view of the bytes that arrived
        let t = parent.receive::<Object>().expect("receive");
        if round % 100 == 0 {
            parallel::print!(
                "round {round}: received {:?} with norm: {:.4}",
                t.name.as_str(),
                t.data.norm()
            );
        }
        // send some data back
        parent.send("this is my response").expect("send");
    }
}
// ANCHOR_END: worker

// ANCHOR: parent
#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    parallel::print!("Im the parent, my ID is: {}", parallel::id());

    // fork N processes, and exec the worker code in each
    let children = parallel::nfork(4).await?;
    children.exec(worker, ()).await?;

    // create a complex object to send to workers
    let t = Object {
        name: "my variable".into(),
        data: randn(&[100, 100], 1),
    };

    // transmit object to each worker
    parallel::print!("transmitting object with norm: {:.4}", t.data.norm());
    for _ in 0..ROUNDS {
        children.join("").await?;
        children.send(&t).await?;
        let replies = children.receive::<String>().await?;
        assert!(replies.iter().all(|r| r.as_str() == "this is my response"));
    }
    parallel::print!("transmitted data to all children");

    // sync/terminate when all workers are done
    children.join("break").await?;
    parallel::print!("all processes terminated");
    Ok(())
}
// ANCHOR_END: parent

// ANCHOR: randn
/// `torch.randn`: a tensor of standard normal samples, deterministic for a
/// seed (Box–Muller over a xorshift64* generator).
fn randn(shape: &[usize], seed: u64) -> Tensor<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64 // in ]0, 1[
    };
    let len = shape.iter().product();
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        let (r, theta) = (
            (-2.0 * uniform().ln()).sqrt(),
            std::f64::consts::TAU * uniform(),
        );
        data.push((r * theta.cos()) as f32);
        data.push((r * theta.sin()) as f32);
    }
    data.truncate(len);
    Tensor::new(shape, data).expect("the data fills the shape")
}
// ANCHOR_END: randn
