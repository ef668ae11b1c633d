//! Your first remote actor: this program starts a second process of itself;
//! the two authenticate over QUIC on 127.0.0.1 and exchange typed messages.
//!
//! Run it with `cargo run --release -p parallel-examples --bin ping`.

use parallel::prelude::*;
use parallel_examples::{Worker, one_time_password, role, serve};

// ANCHOR: messages
/// Asks for a greeting back.
#[parallel::message(result = String)]
struct Ping(String);

/// A note that needs no answer (sent with `tell`).
#[parallel::message(result = ())]
struct Note(String);

/// Asks how many notes arrived.
#[parallel::message(result = u64)]
struct CountNotes;
// ANCHOR_END: messages

// ANCHOR: actor
/// The actor the first process spawns, by name, inside the second.
#[parallel::actor(messages(Ping, Note, CountNotes), spawn)]
#[derive(Default)]
struct Ponger {
    notes: u64,
}

impl Handler<Ping> for Ponger {
    type Result = String;
    fn handle(&mut self, Ping(text): Ping, _: &mut Context<Self>) -> String {
        format!("pong to {text:?} from process {}", std::process::id())
    }
}

impl Handler<Note> for Ponger {
    type Result = ();
    fn handle(&mut self, Note(text): Note, _: &mut Context<Self>) {
        self.notes += 1;
        eprintln!("[pong] note {}: {text}", self.notes);
    }
}

impl Handler<CountNotes> for Ponger {
    type Result = u64;
    fn handle(&mut self, _: CountNotes, _: &mut Context<Self>) -> u64 {
        self.notes
    }
}
// ANCHOR_END: actor

// ANCHOR: main
#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if role().is_some() {
        // The second process: a node that lets others spawn a `Ponger` here.
        let node = Node::builder().allow::<Ponger>().start().await?;
        return serve(node).await;
    }

    let password = one_time_password();
    let node = Node::builder()
        .password(Password::new(password.clone()))
        .start()
        .await?;
    println!(
        "[ping] node {} listening at {}",
        node.id(),
        node.join_line()
    );

    let worker = Worker::start("pong", &password).await?;
    println!(
        "[ping] started process {} at {}",
        worker.pid(),
        worker.join_line
    );

    let pong = node.join(&worker.join_line).await?;
    println!(
        "[ping] joined node {}: certificate pinned, password proven",
        pong.id()
    );

    let ponger = pong.spawn(Ponger::default()).await?;
    println!("[ping] spawned a Ponger by name there: {}", ponger.id());

    let reply = ponger.ask(Ping("hello".into())).await?;
    println!("[ping] ask  -> {reply}");

    for i in 1..=3 {
        ponger.tell(Note(format!("note number {i}"))).await?;
        println!("[ping] tell -> note {i}");
    }
    let notes = ponger.ask(CountNotes).await?;
    println!("[ping] ask  -> the Ponger holds {notes} notes");
    assert_eq!(notes, 3);

    worker.stop().await?;
    node.shutdown().await;
    println!("[ping] done");
    Ok(())
}
// ANCHOR_END: main
