//! The seed's yield/join examples (lua---parallel,
//! `seeds/s1-lua-parallel-zeromq.md`):
//!
//! ```lua
//! -- child code:
//! code = function()
//!    while true do
//!       print('something')
//!       parallel.yield()
//!    end
//! end
//! c = parallel.fork()
//! c:exec(code)
//!
//! -- parent code
//! for i = 1,10 do
//!     c:join()
//! end
//! -- each time join() is called, it waits for the child to yield, and vice-versa.
//! -- in that example, 'something' only gets printed when the parent joins its child
//! ```
//!
//! and, with a value passed from `join` to `yield` to control branching:
//!
//! ```lua
//! code = function()
//!    while true do
//!       print('something')
//!       m = parallel.yield()
//!       if m == 'break' then break end
//!    end
//! end
//! c = parallel.fork()
//! c:exec(code)
//! c:join('break')
//! ```
//!
//! `yield` is a Rust keyword, hence `parallel::yield_value()`; what it returns
//! has the type of what the parent's `join` passed (`()` for a bare join).
//! The first child never ends by itself: when `main` returns, the process
//! layer closes it (the seed's `parallel.close()`, here automatic).
//!
//! Run it with `cargo run --release -p parallel-examples --bin s1_yield_join`.

// ANCHOR: forever
/// Prints, then waits for its parent to join; forever, until the parent
/// closes it (here when its `main` returns): `yield_value` then fails.
#[parallel::remote]
fn code() {
    for n in 1.. {
        parallel::print!("something ({n})");
        if parallel::yield_value::<()>().is_err() {
            return;
        }
    }
}
// ANCHOR_END: forever

// ANCHOR: branching
/// The same, but `join("break")` ends it.
#[parallel::remote]
fn code_with_break() {
    loop {
        parallel::print!("something");
        let m: String = parallel::yield_value().expect("yield");
        if m == "break" {
            break;
        }
    }
    parallel::print!("told to break: returning, so this process exits");
}
// ANCHOR_END: branching

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: join
    let c = parallel::fork().await?;
    c.exec(code, ()).await?;

    for i in 1..=10 {
        parallel::print!("join {i}");
        c.join(()).await?;
    }
    // ANCHOR_END: join
    // Give the last "something" time to appear before the next part.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    // ANCHOR: join_break
    let c = parallel::fork().await?;
    c.exec(code_with_break, ()).await?;
    c.join("again").await?;
    c.join("break").await?;
    c.sync().await?; // wait until its process is gone
    // ANCHOR_END: join_break
    parallel::print!(
        "child {} is gone; the first child (still waiting in yield) is closed as main returns",
        c.id()
    );
    Ok(())
}
