//! The README's demo: the seed's "simple complete example" (lua---parallel,
//! `seeds/s1-lua-parallel-zeromq.md`; `s1_complete` is the same program
//! written line for line next to the Lua).
//!
//! The parent forks four processes of this program, runs `worker` in each,
//! and for 1,000 rounds joins them, sends each a named 100×100 tensor and
//! collects their replies; then it tells them to stop and waits until they
//! are gone. Workers print on the first round only; the parent prints a
//! summary, with the norm each worker computed, and checks every reply.
//!
//! Run it with `cargo run --release -p parallel-examples --bin demo`.

use std::time::Instant;

use parallel::Tensor;

const WORKERS: usize = 4;
const ROUNDS: usize = 1_000;

/// `{name='my variable', data=torch.randn(100,100)}`.
#[parallel::wire]
struct Object {
    name: String,
    data: Tensor<f32>,
}

/// Each worker's reply: the seed's 'this is my response', with the norm it read.
#[parallel::wire]
struct Response {
    text: String,
    norm: f64,
}

/// Runs in every child: waits for a join, receives the object, answers.
#[parallel::remote]
fn worker() {
    parallel::print!(
        "Im a worker, my ID is: {} and my IP: {}",
        parallel::id(),
        parallel::ip()
    );
    let parent = parallel::parent().expect("a worker runs in a child");
    for round in 0.. {
        let m: String = parallel::yield_value().expect("yield");
        if m == "break" {
            break;
        }
        let t = parent.receive::<Object>().expect("receive");
        let norm = t.data.norm();
        if round == 0 {
            parallel::print!(
                "received {:?} with norm {norm:.4} (printing only once)",
                t.name.as_str()
            );
        }
        let reply = Response {
            text: "this is my response".into(),
            norm,
        };
        parent.send(&reply).expect("send");
    }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    parallel::print!("Im the parent, my ID is: {}", parallel::id());
    let start = Instant::now();
    let children = parallel::nfork(WORKERS).await?;
    children.exec(worker, ()).await?;
    let forked = start.elapsed();

    let t = Object {
        name: "my variable".into(),
        data: randn(&[100, 100], 1),
    };
    let norm = t.data.norm();
    parallel::print!("transmitting object with norm: {norm:.4}");

    let rounds = Instant::now();
    let mut replies = 0;
    for _ in 0..ROUNDS {
        children.join("").await?;
        children.send(&t).await?;
        for r in children.receive::<Response>().await? {
            if r.text.as_str() != "this is my response" || (r.norm.to_native() - norm).abs() > 1e-6
            {
                return Err(format!("unexpected reply {:?} / {}", r.text.as_str(), r.norm).into());
            }
            replies += 1;
        }
    }
    let rounds = rounds.elapsed();
    parallel::print!("transmitted data to all children");

    children.join("break").await?;
    children.sync().await?;
    parallel::print!("all processes terminated");

    let bytes = ROUNDS * WORKERS * t.data.len() * size_of::<f32>();
    println!();
    println!("summary:");
    println!(
        "  forked {WORKERS} processes of this program and ran `worker` in each: {:.1} ms",
        forked.as_secs_f64() * 1e3
    );
    println!(
        "  {ROUNDS} rounds of join + send + receive: {replies} replies, all with norm {norm:.4}, in {:.0} ms ({:.0} µs a round, {:.1} MB of tensors sent)",
        rounds.as_secs_f64() * 1e3,
        rounds.as_secs_f64() * 1e6 / ROUNDS as f64,
        bytes as f64 / 1e6
    );
    println!(
        "  children left: {} (every worker returned on \"break\" and its process is gone)",
        parallel::nchildren()
    );
    Ok(())
}

/// `torch.randn`: standard normal samples, deterministic for a seed
/// (Box–Muller over a xorshift64* generator).
fn randn(shape: &[usize], seed: u64) -> Tensor<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
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
