//! torch-ipc's `map` example: load three files in parallel on background
//! threads, the results back in order.
//!
//! ```lua
//! local t1,t2,t3 = parallel.map(3, function(fileNames, mapid)
//!    return torch.load(fileNames[mapid])
//! end, {'f1.t7', 'f2.t7', 'f3.t7'}):join()
//! ```
//!
//! Run it with `cargo run --release -p parallel-examples --bin s2_map`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Three small files to load.
    let dir = std::env::temp_dir().join(format!("parallel-s2-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let names: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("f{i}.txt"))).collect();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(name, "x".repeat(1000 * (i + 1)))?;
    }

    // ANCHOR: map
    let loaded = parallel::map(
        3,
        |file_names: &Vec<PathBuf>, map_id| {
            std::fs::read_to_string(&file_names[map_id - 1]).map(|s| s.len())
        },
        names.clone(),
    )
    .join()?;
    // ANCHOR_END: map

    for (name, size) in names.iter().zip(&loaded) {
        println!(
            "{}: {} bytes",
            name.display(),
            size.as_ref().map_err(|e| e.to_string())?
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
