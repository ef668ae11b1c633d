//! The test parent for work queues across processes: owns a queue, forks
//! children that open it by name, and runs one scenario, named by the first
//! argument, printing what it sees.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parallel::{WorkQueue, fork, nfork};

/// How long any one step of a scenario may take.
const STEP: Duration = Duration::from_secs(60);

/// A reader child: hands every item back to the owner, then tells the
/// parent how many it read.
#[parallel::remote]
fn echo(name: String) {
    let q = WorkQueue::<u64>::named(&name);
    let mut read = 0u64;
    while let Some(item) = q.read() {
        q.write(item).expect("write the item back");
        read += 1;
    }
    parallel::parent()
        .expect("a child has a parent")
        .send(&read)
        .expect("send the count");
}

/// A reader child that only counts what it reads (taking `prefetch` items
/// per round trip), then tells the parent how many.
#[parallel::remote]
fn counter(name: String, prefetch: u64) {
    let q = WorkQueue::<u64>::named(&name).with_prefetch(prefetch as usize);
    let mut read = 0u64;
    while q.read().is_some() {
        read += 1;
    }
    parallel::parent()
        .expect("a child has a parent")
        .send(&read)
        .expect("send the count");
}

/// A reader child that says it is ready, then waits in `read` until it is
/// killed.
#[parallel::remote]
fn doomed(name: String) {
    let q = WorkQueue::<u64>::named(&name);
    parallel::parent()
        .expect("a child has a parent")
        .send("ready")
        .expect("say ready");
    let item = q.read();
    println!("UNEXPECTED the doomed reader read {item:?}");
}

/// A reader child that reads `take` items, tells the parent how many it
/// read, then works on them until it is killed (it never reads again).
#[parallel::remote]
fn stalled(name: String, take: u64) {
    let q = WorkQueue::<u64>::named(&name);
    let mut read = 0u64;
    while read < take && q.read().is_some() {
        read += 1;
    }
    parallel::parent()
        .expect("a child has a parent")
        .send(&read)
        .expect("send the count");
    std::thread::sleep(STEP * 2);
    println!("UNEXPECTED the stalled reader was not killed");
}

/// Runs `f` on a thread of its own (it blocks) and waits for it, at most [`STEP`].
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Box<dyn std::error::Error>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    Ok(tokio::time::timeout(STEP, rx)
        .await
        .map_err(|_| "a blocking step took too long")??)
}

/// Writes `0..items` on one thread and reads as many answers on another;
/// prints how many were lost and duplicated.
async fn round_trip(q: Arc<WorkQueue<u64>>, items: u64) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let writer = {
        let q = q.clone();
        blocking(move || {
            for i in 0..items {
                q.write(i).expect("the owner writes");
            }
        })
    };
    let reader = {
        let q = q.clone();
        blocking(move || read_back(&q, items))
    };
    let (wrote, read) = tokio::join!(writer, reader);
    wrote?;
    let (seen, dup) = read?;
    let secs = start.elapsed().as_secs_f64();
    let lost = (0..items).filter(|i| !seen.contains(i)).count();
    println!("LOST {lost} DUP {dup}");
    println!("ROUND TRIPS PER S {:.0}", items as f64 / secs);
    Ok(())
}

/// Reads up to `items` items (fewer if the queue closes): the distinct
/// ones and how many came twice.
fn read_back(q: &WorkQueue<u64>, items: u64) -> (HashSet<u64>, u64) {
    let mut seen = HashSet::new();
    let mut dup = 0u64;
    for _ in 0..items {
        match q.read() {
            Some(item) if !seen.insert(item) => dup += 1,
            Some(_) => {}
            None => break,
        }
    }
    (seen, dup)
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("");
    match scenario {
        "many" => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
            let items: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
            let name = "wq many";
            let q = Arc::new(WorkQueue::<u64>::with_capacity(name, 256));
            let children = nfork(n).await?;
            children.exec(echo, (name.to_string(),)).await?;
            round_trip(q.clone(), items).await?;
            q.close();
            let counts = tokio::time::timeout(STEP, children.receive::<u64>()).await??;
            let counts: Vec<u64> = counts.iter().map(|c| c.to_native()).collect();
            println!("COUNTS {counts:?} SUM {}", counts.iter().sum::<u64>());
            tokio::time::timeout(STEP, children.sync()).await??;
        }
        "kill" => {
            let items: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
            let name = "wq kill";
            let q = Arc::new(WorkQueue::<u64>::named(name));
            let victim = tokio::time::timeout(STEP, fork()).await??;
            victim.exec(doomed, (name.to_string(),)).await?;
            let ready = tokio::time::timeout(STEP, victim.receive::<String>()).await??;
            println!("VICTIM {}", ready.as_str());
            // Let its read reach the parent and wait there, then kill it
            // and write at once: the first items may be handed to it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::time::timeout(STEP, victim.kill()).await?;
            println!("KILLED");
            let reader = tokio::time::timeout(STEP, fork()).await??;
            reader.exec(echo, (name.to_string(),)).await?;
            round_trip(q.clone(), items).await?;
            q.close();
            let count = tokio::time::timeout(STEP, reader.receive::<u64>()).await??;
            println!("COUNTS [{}] SUM {}", count.to_native(), count.to_native());
            tokio::time::timeout(STEP, reader.sync()).await??;
        }
        "kill-holding" => {
            let items: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
            let name = "wq kill holding";
            let q = Arc::new(WorkQueue::<u64>::named(name));
            for i in 0..items {
                q.write(i).expect("the owner writes");
            }
            let victim = tokio::time::timeout(STEP, fork()).await??;
            victim.exec(stalled, (name.to_string(), 3u64)).await?;
            let read = tokio::time::timeout(STEP, victim.receive::<u64>()).await??;
            println!("VICTIM read {}", read.to_native());
            tokio::time::timeout(STEP, victim.kill()).await?;
            println!("KILLED");
            // The victim read 3 items and holds more (asked ahead): none of
            // it was acknowledged, so all of it goes to the next reader.
            let reader = tokio::time::timeout(STEP, fork()).await??;
            reader.exec(echo, (name.to_string(),)).await?;
            let (seen, dup) = {
                let q = q.clone();
                blocking(move || read_back(&q, items)).await?
            };
            let lost = (0..items).filter(|i| !seen.contains(i)).count();
            println!("LOST {lost} DUP {dup}");
            q.close();
            let count = tokio::time::timeout(STEP, reader.receive::<u64>()).await??;
            println!("COUNTS [{}] SUM {}", count.to_native(), count.to_native());
            tokio::time::timeout(STEP, reader.sync()).await??;
        }
        "readers" => {
            let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
            let items: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
            let prefetch: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
            let name = "wq readers";
            let q = WorkQueue::<u64>::named(name);
            let children = nfork(n).await?;
            children.exec(counter, (name.to_string(), prefetch)).await?;
            let start = Instant::now();
            blocking(move || {
                for i in 0..items {
                    q.write(i).expect("the owner writes");
                }
            })
            .await?;
            let counts = tokio::time::timeout(STEP, children.receive::<u64>()).await??;
            let secs = start.elapsed().as_secs_f64();
            let counts: Vec<u64> = counts.iter().map(|c| c.to_native()).collect();
            println!("COUNTS {counts:?} SUM {}", counts.iter().sum::<u64>());
            println!("ITEMS PER S {:.0}", items as f64 / secs);
            tokio::time::timeout(STEP, children.sync()).await??;
        }
        other => return Err(format!("unknown scenario {other:?}").into()),
    }
    Ok(())
}
