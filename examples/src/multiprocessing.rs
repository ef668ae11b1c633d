//! The Python baseline of the pool and view benchmarks: a
//! `multiprocessing.Pool(2)`, run as a script by `python3` when it is there.

/// Python's `multiprocessing.Pool(2)`: (start + first result ms, jobs/s of
/// `map(f, range(n), chunksize=1)`); `None` without python3.
pub fn pool_of_two(n: u64) -> Option<(f64, f64)> {
    let script = std::env::temp_dir().join(format!("multiprocessing-{}.py", std::process::id()));
    let code = format!(
        "import multiprocessing as mp, time\n\
         def f(x):\n    return x\n\
         if __name__ == '__main__':\n    \
         t = time.perf_counter()\n    p = mp.Pool(2)\n    p.map(f, [0], chunksize=1)\n    \
         cold = time.perf_counter() - t\n    \
         t = time.perf_counter()\n    r = p.map(f, range({n}), chunksize=1)\n    \
         rate = {n} / (time.perf_counter() - t)\n    assert len(r) == {n}\n    \
         p.close(); p.join()\n    print(cold * 1000, rate)\n"
    );
    std::fs::write(&script, code).ok()?;
    let out = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .ok();
    let _ = std::fs::remove_file(&script);
    let out = out.filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some((it.next()??, it.next()??))
}
