//! The README's demo: a small cluster of three processes on this machine.
//! Each process runs a node; each spawns a `Counter` actor *by name* on its
//! neighbour (0 → 1 → 2 → 0), sends it numbers, and reports the total.
//!
//! Run it with `cargo run --release -p parallel-examples --bin demo`.

use actix::{Handler, ResponseFuture};
use parallel::{Actor, JoinLine, Message, Node, Password};
use parallel_examples::{Worker, one_time_password, role, serve};
use rkyv::{Archive, Deserialize, Serialize};

/// Adds numbers; the actor each process spawns on its neighbour.
#[derive(Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Add), spawn)]
struct Counter {
    total: u64,
}

/// Adds to a [`Counter`] and answers the new total.
#[derive(Message, Archive, Serialize, Deserialize)]
#[message(result = u64)]
struct Add(u64);

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, Add(n): Add, _: &mut actix::Context<Self>) -> u64 {
        self.total += n;
        self.total
    }
}

/// Lives on every process; told to visit a neighbour, it spawns a `Counter`
/// there and adds `1..=count` to it.
#[derive(Actor, Archive, Serialize, Deserialize, Default)]
#[actor(messages(Visit), spawn)]
struct Visitor;

/// Visit the node at `neighbour` and add `1..=count` to a new counter there.
#[derive(Message, Archive, Serialize, Deserialize)]
#[message(result = Report)]
struct Visit {
    neighbour: JoinLine,
    count: u64,
}

/// What a visit found.
#[derive(Archive, Serialize, Deserialize, Debug)]
struct Report {
    visitor_pid: u32,
    counter_node: String,
    total: u64,
}

impl Handler<Visit> for Visitor {
    type Result = ResponseFuture<Report>;
    fn handle(&mut self, visit: Visit, _: &mut actix::Context<Self>) -> Self::Result {
        Box::pin(async move {
            let fail = |what: String| Report {
                visitor_pid: std::process::id(),
                counter_node: what,
                total: 0,
            };
            let Some(node) = Node::current() else {
                return fail("no node in this process".into());
            };
            let neighbour = match node.join(&visit.neighbour).await {
                Ok(n) => n,
                Err(e) => return fail(format!("join failed: {e}")),
            };
            let counter = match neighbour.spawn(Counter::default()).await {
                Ok(c) => c,
                Err(e) => return fail(format!("spawn failed: {e}")),
            };
            let mut total = 0;
            for n in 1..=visit.count {
                total = counter.ask(Add(n)).await.unwrap_or(0);
            }
            Report {
                visitor_pid: std::process::id(),
                counter_node: neighbour.id().to_string(),
                total,
            }
        })
    }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if role().is_some() {
        let node = Node::builder()
            .allow::<Counter>()
            .allow::<Visitor>()
            .start()
            .await?;
        return serve(node).await;
    }

    let password = one_time_password();
    let node = Node::builder()
        .password(Password::new(password.clone()))
        .allow::<Counter>()
        .start()
        .await?;
    let workers = [
        Worker::start("1", &password).await?,
        Worker::start("2", &password).await?,
    ];
    println!(
        "process 0 (pid {}) started processes 1 and 2 (pids {}, {})",
        std::process::id(),
        workers[0].pid(),
        workers[1].pid()
    );

    let lines = [
        node.join_line(),
        workers[0].join_line.clone(),
        workers[1].join_line.clone(),
    ];
    let mut visitors = vec![node.spawn(Visitor)];
    for worker in &workers {
        let remote = node.join(&worker.join_line).await?;
        visitors.push(remote.spawn(Visitor).await?);
    }

    for (rank, visitor) in visitors.iter().enumerate() {
        let neighbour = (rank + 1) % 3;
        let count = 10 * (rank as u64 + 1);
        let report = visitor
            .ask(Visit {
                neighbour: lines[neighbour].clone(),
                count,
            })
            .await?;
        println!(
            "process {rank} (pid {}) spawned a Counter by name on process {neighbour} ({}), added 1..={count}: total {}",
            report.visitor_pid, report.counter_node, report.total
        );
        if report.total != count * (count + 1) / 2 {
            return Err(format!(
                "process {rank}: expected {}, got {report:?}",
                count * (count + 1) / 2
            )
            .into());
        }
    }

    for worker in workers {
        worker.stop().await?;
    }
    node.shutdown().await;
    println!("all three totals are right; cluster shut down");
    Ok(())
}
