//! A task of the Slurm test: started by `srun -n N`, it forms the step's
//! group with `parallel::collective::slurm_group`, checks its rank against
//! `SLURM_PROCID`, runs an all_reduce of `[rank + 1]` and prints
//! `TASK <rank> OF <n> SUM <sum> PATH <shared-memory|hierarchical|quic>`.

use parallel::collective::{ReduceOp, slurm_group};

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: slurm
    let mut step = slurm_group().await?;
    // Slurm's own rank for this task, as the program's environment shows it.
    let procid: usize = parallel::config::environment()
        .slurm
        .as_ref()
        .ok_or("not started by Slurm")?
        .procid
        .parse()?;
    if step.group.rank() != procid || step.step.rank != procid {
        return Err(format!(
            "group rank {} and step rank {} differ from SLURM_PROCID {procid}",
            step.group.rank(),
            step.step.rank
        )
        .into());
    }
    let mut v = [step.group.rank() as f64 + 1.0];
    step.group.all_reduce(&mut v, ReduceOp::Sum).await?;
    // ANCHOR_END: slurm
    let path = if step.group.is_shared_memory() {
        "shared-memory"
    } else if step.group.is_hierarchical() {
        "hierarchical"
    } else {
        "quic"
    };
    println!(
        "TASK {} OF {} SUM {} PATH {path}",
        step.group.rank(),
        step.group.ranks(),
        v[0]
    );
    step.group.barrier().await?;
    Ok(())
}
