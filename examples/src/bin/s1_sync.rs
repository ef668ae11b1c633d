//! The seed's `sync()` example (lua---parallel, `seeds/s1-lua-parallel-zeromq.md`):
//!
//! ```lua
//! code = function()
//!      -- do nothing and die
//! end
//! parallel.nfork(1)              -- fork one process
//! parallel.children:exec(code)   -- execute dummy code
//! print(parallel.nchildren)      -- prints: 1
//! parallel.children:sync()       -- wait for all children (here only 1) to die
//! print(parallel.nchildren)      -- prints: 0
//! parallel.nfork(2)              -- fork 2 processes
//! print(parallel.nchildren)      -- prints: 2
//! print(parallel.children[1])    -- prints: nil
//! print(parallel.children[2])    -- prints: table --- current running processes always
//! print(parallel.children[3])    -- prints: table --- exist in children[process.id]
//! ```
//!
//! `parallel::children()` is the table of living children; `by_id(n)` looks
//! one up by its id, which is never reused (numbering goes on after `sync`).
//!
//! Run it with `cargo run --release -p parallel-examples --bin s1_sync`.

// ANCHOR: code
/// Does nothing and dies: the process exits when its function returns.
#[parallel::remote]
fn code() {}
// ANCHOR_END: code

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: sync
    parallel::nfork(1).await?; // fork one process
    parallel::children().exec(code, ()).await?; // execute dummy code
    parallel::print!("nchildren = {}", parallel::nchildren()); // prints: 1
    parallel::children().sync().await?; // wait for all children (here only 1) to die
    parallel::print!("nchildren = {}", parallel::nchildren()); // prints: 0
    parallel::nfork(2).await?; // fork 2 processes
    parallel::print!("nchildren = {}", parallel::nchildren()); // prints: 2

    let children = parallel::children();
    parallel::print!("children[1] = {:?}", children.by_id(1)); // prints: None
    parallel::print!("children[2] = {:?}", children.by_id(2)); // prints: Some(Child #2 ...)
    parallel::print!("children[3] = {:?}", children.by_id(3)); // prints: Some(Child #3 ...)
    // ANCHOR_END: sync

    assert_eq!(parallel::nchildren(), 2);
    assert!(children.by_id(1).is_none());
    assert!(children.by_id(2).is_some() && children.by_id(3).is_some());
    Ok(())
}
