//! A peer of the group tests: starts a node (password from the
//! environment), prints `READY <join line>`, reads the other peers' join
//! lines from stdin (one per line, `N - 1` of them), joins them, forms the
//! group `NAME` and prints `RANK <r> <shared-memory|quic>`.
//!
//! `--listen ADDR:PORT` anywhere in the arguments: listen there (a host of
//! the network test bed listens on its address).
//!
//! `peer NAME N every LEN`: runs every collective and checks its own result
//! against the sequential reference, printing `OK <what> rank <r>` or `BAD`.
//! `peer NAME N stall`: the last rank never calls; the others call
//! `all_reduce` and print `ERR <error>` when it fails (the test kills the
//! staller).
//! `peer NAME N leave`: the last rank drops its group (its process goes on)
//! and prints `LEFT`; the others call `all_reduce` and print `ERR <error>`.

use std::time::Duration;

use parallel::collective::{Group, GroupOptions, ReduceOp, Schedule, Transport};
use parallel::{Node, RemoteNode};
use parallel_integration_tests::{input_f32, input_i64};
use tokio::io::AsyncBufReadExt;

fn report(what: &str, rank: usize, ok: bool) {
    println!("{} {what} rank {rank}", if ok { "OK" } else { "BAD" });
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

async fn every(group: &mut Group, len: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (rank, ranks) = (group.rank(), group.ranks());
    let inputs: Vec<Vec<f32>> = (0..ranks).map(|r| input_f32(r, len)).collect();
    let parts: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let expected = if group.is_shared_memory() {
        ReduceOp::Sum.fold(&parts).unwrap_or_default()
    } else if group.is_hierarchical() {
        // Left fold within each machine, then the leaders' schedule.
        let partials: Vec<Vec<f32>> = group
            .topology()
            .hosts()
            .iter()
            .map(|h| {
                let parts: Vec<&[f32]> = h.iter().map(|&r| inputs[r].as_slice()).collect();
                ReduceOp::Sum.fold(&parts).unwrap_or_default()
            })
            .collect();
        Schedule::allreduce(len, partials.len(), 4)?.reference(&ReduceOp::Sum, &partials)?
    } else {
        group
            .topology()
            .allreduce(len, 4)
            .reference(&ReduceOp::Sum, &inputs)?
    };
    let mut v = input_f32(rank, len);
    group.all_reduce(&mut v, ReduceOp::Sum).await?;
    report("all_reduce", rank, bits(&v) == bits(&expected));
    let root = ranks - 1;
    // reduce is the left fold in rank order on every path.
    let folded = ReduceOp::Sum.fold(&parts).unwrap_or_default();
    let mut r = input_f32(rank, len);
    group.reduce(&mut r, ReduceOp::Sum, root).await?;
    let want = if rank == root { &folded } else { &inputs[rank] };
    report("reduce", rank, bits(&r) == bits(want));
    let mut b = input_i64(rank, len);
    group.broadcast(&mut b, root).await?;
    report("broadcast", rank, b == input_i64(root, len));
    let concat: Vec<i64> = (0..ranks).flat_map(|r| input_i64(r, len)).collect();
    let gathered = group.gather(&input_i64(rank, len), 0).await?;
    report(
        "gather",
        rank,
        gathered == (rank == 0).then(|| concat.clone()),
    );
    let all = group.all_gather(&input_i64(rank, len)).await?;
    report("all_gather", rank, all == concat);
    let send = if rank == root {
        concat.clone()
    } else {
        Vec::new()
    };
    let mut part = vec![0i64; len];
    group.scatter(&send, &mut part, root).await?;
    report("scatter", rank, part == input_i64(rank, len));
    group.barrier().await?;
    report("barrier", rank, true);
    Ok(())
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--listen ADDR`: a host of the network test bed listens on its address.
    let listen = match args.iter().position(|a| a == "--listen") {
        Some(i) => {
            let addr = args.get(i + 1).ok_or("--listen needs ADDR:PORT")?.parse()?;
            args.drain(i..i + 2);
            Some(addr)
        }
        None => None,
    };
    let name = args
        .first()
        .ok_or("usage: peer NAME N every LEN | stall | leave")?;
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).ok_or("N")?;
    let mode = args.get(2).map(String::as_str).unwrap_or("every");
    let len: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1001);
    // ANCHOR: form
    let mut builder = Node::builder();
    if let Some(addr) = listen {
        builder = builder.listen(addr);
    }
    let node = builder.start().await?;
    println!("READY {}", node.join_line());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut peers: Vec<RemoteNode> = Vec::new();
    while peers.len() + 1 < n {
        let line = lines
            .next_line()
            .await?
            .ok_or("stdin closed before every join line")?;
        let join_line = line.trim().parse()?;
        peers.push(tokio::time::timeout(Duration::from_secs(20), node.join(&join_line)).await??);
    }
    // Tests stand several machines up on one with `PEER_HOST`.
    // `PARALLEL_COLLECTIVE_TRANSPORT=quic` forces QUIC on one machine.
    let options = GroupOptions {
        host: std::env::var("PEER_HOST").ok(),
        transport: Transport::from_config(&parallel::Config::from_env()),
        ..GroupOptions::default()
    };
    let mut group = Group::form_with(&node, name, &peers, options).await?;
    // ANCHOR_END: form
    let path = if group.is_shared_memory() {
        "shared-memory"
    } else if group.is_hierarchical() {
        "hierarchical"
    } else {
        "quic"
    };
    println!("RANK {} {path}", group.rank());
    match mode {
        "every" => {
            if let Err(e) = every(&mut group, len).await {
                println!("BAD error rank {} {e}", group.rank());
            }
        }
        "stall" if group.rank() == group.ranks() - 1 => loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
        "leave" if group.rank() == group.ranks() - 1 => {
            drop(group);
            println!("LEFT");
        }
        "stall" | "leave" => {
            let mut v = vec![1.0f32; len];
            match group.all_reduce(&mut v, ReduceOp::Sum).await {
                Ok(()) => println!("UNEXPECTED ok"),
                Err(e) => println!("ERR {e}"),
            }
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    // Stay until the test has read everything (it closes stdin).
    while let Ok(Some(_)) = lines.next_line().await {}
    Ok(())
}
