//! The seed's smart fork over ssh (lua---parallel,
//! `seeds/s1-lua-parallel-zeromq.md`):
//!
//! ```lua
//! parallel.addremote(...)
//! parallel.calibrate()
//! forked = parallel.sfork(parallel.remotes.cores)
//! for _,forked in ipairs(forked) do
//!    print('id: ' .. forked.id .. ', speed = ' .. forked.speed)
//! end
//! ```
//!
//! Run it with hosts you reach with `ssh HOST` without a password (your keys
//! and `~/.ssh/config`), each with its cores after a colon (default: as many
//! as this machine has), and ssh options after `--`:
//!
//! ```text
//! cargo run --release -p parallel-examples --bin s1_remote -- localhost:4 user@server2:16
//! cargo run --release -p parallel-examples --bin s1_remote -- --ship server3:8 -- -i ~/.ssh/lab
//! ```
//!
//! This program must be at the same path on every host, or `--ship` copies
//! it there (checked by SHA-256). Without hosts it says so and forks two
//! processes on this machine.

use parallel::Remote;

/// `HOST[:CORES]`: the host (`host`, `user@host`, an IPv6 address, or one
/// in brackets when followed by cores: `[::1]:4`) and its cores.
fn parse_host(spec: &str, default_cores: usize) -> (String, usize) {
    let (host, cores) = match spec.rsplit_once(':') {
        Some((host, cores)) if host.ends_with(']') || !host.contains(':') => match cores.parse() {
            Ok(cores) => (host, cores),
            Err(_) => (spec, default_cores),
        },
        _ => (spec, default_cores),
    };
    (host.replace(['[', ']'], ""), cores)
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ssh_args = match args.iter().position(|a| a == "--") {
        Some(i) => args.split_off(i).split_off(1),
        None => Vec::new(),
    };
    let ship = args.iter().any(|a| a == "--ship");
    let hosts: Vec<&String> = args.iter().filter(|a| *a != "--ship").collect();
    if hosts.is_empty() {
        println!(
            "usage: s1_remote [--ship] HOST[:CORES]... [-- SSH-OPTIONS...]\n\
             (hosts you reach with `ssh HOST` without a password; for example `localhost:4`)\n\
             no host given: forking 2 processes on this machine instead"
        );
        let forked = parallel::sfork(2).await?;
        for child in &forked {
            println!(
                "id: {}, host: {}, speed = {}",
                child.id(),
                child.host(),
                child.speed()
            );
        }
        return Ok(());
    }
    let default_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let remotes = hosts.iter().map(|spec| {
        let (host, cores) = parse_host(spec, default_cores);
        let remote = ssh_args
            .iter()
            .fold(Remote::ssh(host).cores(cores), |r, a| r.ssh_arg(a));
        if ship { remote.ship() } else { remote }
    });

    // ANCHOR: addremote
    parallel::addremote(remotes);
    parallel::calibrate().await?; // one process per host measures its speed
    let forked = parallel::sfork(parallel::remote_cores()).await?;
    for child in &forked {
        println!(
            "id: {}, host: {}, speed = {:.3}",
            child.id(),
            child.host(),
            child.speed()
        );
    }
    // ANCHOR_END: addremote

    parallel::close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_host;

    #[test]
    fn host_specs_take_optional_cores() {
        assert_eq!(parse_host("localhost:4", 2), ("localhost".into(), 4));
        assert_eq!(parse_host("u@server", 2), ("u@server".into(), 2));
        assert_eq!(parse_host("::1", 2), ("::1".into(), 2));
        assert_eq!(parse_host("[::1]:3", 2), ("::1".into(), 3));
        assert_eq!(parse_host("u@[::1]:3", 2), ("u@::1".into(), 3));
    }
}
