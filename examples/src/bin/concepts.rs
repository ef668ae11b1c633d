//! The names of things in a process tree, printed: the parent's node and
//! parent actor, each child's number (`parallel::id()`), process actor and
//! node, and each rank of a collective — which is a position in the group
//! a call is made on, not a child's number. After one child came and went,
//! the next two children are numbers 2 and 3; in a group that lists them in
//! the other order, number 3 is rank 1 and number 2 is rank 2.
//!
//! Run it with `cargo run --release -p parallel-examples --bin concepts`.

use std::time::Duration;

use parallel::{ActorId, Children, Tree, collective};

// ANCHOR: child
/// What a child knows about itself.
#[parallel::wire]
#[derive(Debug)]
struct Me {
    /// Its number among its parent's children (`parallel::id()`).
    number: u32,
    /// The tree's parent actor, which all its messages to the parent go to.
    parent_actor: ActorId,
    /// Its rank in the collective below.
    rank: u32,
}

/// Finds its rank with an `all_gather`: every rank contributes its number,
/// and the result is in rank order.
#[parallel::remote]
fn who_am_i() -> Me {
    let number = parallel::id();
    let parent = parallel::parent().expect("a child has a parent");
    let numbers = collective::all_gather(&[number]).expect("all_gather");
    let rank = numbers.iter().position(|&n| n == number).expect("mine") as u32;
    Me {
        number,
        parent_actor: parent.actor_id(),
        rank,
    }
}
// ANCHOR_END: child

/// Does nothing: its process ends at once.
#[parallel::remote]
fn nothing() {}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: numbers
    // The top process is number 0 and has no parent.
    assert_eq!(parallel::id(), 0);
    assert!(parallel::parent().is_none());
    // One child comes and goes: it was number 1, and numbers are not reused.
    let first = parallel::fork().await?;
    first.exec(nothing, ()).await?;
    first.sync().await?;
    let children = parallel::nfork(2).await?; // numbers 2 and 3
    // ANCHOR_END: numbers

    // ANCHOR: where
    let tree = Tree::global();
    let node = tree.node().ok_or("the first fork starts the tree's node")?;
    let parent_actor = tree.parent_id().ok_or("and its parent actor")?;
    println!(
        "parent: number {}, node {}, parent actor {parent_actor}",
        parallel::id(),
        node.id()
    );
    for child in &children {
        println!(
            "child number {}: process actor {}, node {}, pid {} on {}",
            child.id(),
            child.actor_id(),
            child.node().id(),
            child.pid(),
            child.host()
        );
    }
    // ANCHOR_END: where

    // ANCHOR: root
    // Every forked child is owned by the tree's root supervisor, which
    // reported the end of child #1.
    let root = tree
        .root()
        .ok_or("the first fork starts the root supervisor")?;
    let mut reports = root.events(); // the kept reports first, then new ones
    let first = tokio::time::timeout(Duration::from_secs(10), reports.recv()).await??;
    println!("root supervisor: {first}"); // child #1 ... is down: stopped normally
    // ANCHOR_END: root

    // ANCHOR: ranks
    // A group of the two children, listed in the other order: [#3, #2].
    let group: Children = children.iter().rev().cloned().collect();
    let running = group.exec(who_am_i, ()).await?;
    // Rank 0 is the parent; ranks 1.. are the children in the group's order.
    let numbers = group.all_gather(&[parallel::id()]).await?;
    println!("numbers by rank: {numbers:?}"); // [0, 3, 2]
    for me in running.results().await? {
        println!(
            "child number {} is rank {}; it talks to parent actor {}",
            me.number, me.rank, me.parent_actor
        );
        assert_eq!(me.parent_actor, parent_actor);
    }
    // ANCHOR_END: ranks
    assert_eq!(numbers, [0, 3, 2]);
    Ok(())
}
