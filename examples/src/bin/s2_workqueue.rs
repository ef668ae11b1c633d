//! torch-ipc's workqueue example: a named single-writer, many-reader queue;
//! two background workers read file names off it and write the contents
//! back, and the main thread reads the three answers.
//!
//! Run it with `cargo run --release -p parallel-examples --bin s2_workqueue`.

use parallel::WorkQueue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("parallel-s2-wq-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for i in 1..=3 {
        std::fs::write(dir.join(format!("f{i}.txt")), format!("contents of f{i}"))?;
    }

    // ANCHOR: workqueue
    // Create a named workqueue: this handle owns it.
    let q = WorkQueue::<String>::named("my queue");
    // Two background workers open the queue by name and serve it.
    let workers = parallel::map(
        2,
        |dir: &std::path::PathBuf, _| {
            let q = WorkQueue::<String>::named("my queue");
            while let Some(file_name) = q.read() {
                let contents =
                    std::fs::read_to_string(dir.join(&file_name)).unwrap_or_else(|e| e.to_string());
                if q.write(contents).is_err() {
                    break;
                }
            }
        },
        dir.clone(),
    );
    // Write the file names into the workqueue...
    for name in ["f1.txt", "f2.txt", "f3.txt"] {
        q.write(name.to_string())?;
    }
    // ...and read back the three answers.
    for _ in 0..3 {
        println!("{}", q.read().ok_or("the queue closed early")?);
    }
    q.close();
    workers.join()?;
    // ANCHOR_END: workqueue

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
