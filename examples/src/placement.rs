//! Where a benchmark's processes run while a round trip is measured.
//!
//! A round trip between two processes costs very different times depending
//! on whether the scheduler put them on one CPU or on two: on two, each
//! message also wakes a sleeping CPU, and on a virtual machine that wake-up
//! (an interrupt the hypervisor delivers) can cost more than everything
//! else together (on the 2-core VM these benchmarks were written on: a raw
//! quinn ping takes about 15 µs on one CPU and about 105 µs across two).
//! The scheduler picks anew for every run and for every process, so a
//! figure and its baseline measured in the same run may still have seen
//! different placements (one run here put the raw ping's server beside the
//! client and the engine on the other CPU). [`Placement`] takes the choice
//! away while it lives, in one of two ways: [`Placement::apart`] (this
//! process on one CPU, every process it started on another: what separate
//! cores give) and [`Placement::one_cpu`] (all of them on one CPU: no
//! wake-up crosses CPUs, so the figure says what the software costs).

use std::collections::HashMap;
use std::io;

/// This program's processes held on chosen CPUs, until dropped (then every
/// thread of every process of the tree gets this process's CPUs of
/// before). A process started meanwhile inherits the CPU of the thread
/// that started it.
pub struct Placement {
    before: libc::cpu_set_t,
}

impl Placement {
    /// Every process of this program's tree (this one, every process it
    /// started, and theirs; every thread of each) on the first CPU this
    /// process may run on.
    pub fn one_cpu() -> io::Result<Placement> {
        let before = affinity()?;
        let first = cpus(&before).next().ok_or_else(no_cpu)?;
        set_tree(&only(first), &only(first))?;
        Ok(Placement { before })
    }

    /// This process on the first CPU it may run on, every process it
    /// started (and theirs) on the second. An error where it may run on
    /// one CPU only.
    pub fn apart() -> io::Result<Placement> {
        let before = affinity()?;
        let mut all = cpus(&before);
        let (Some(first), Some(second)) = (all.next(), all.next()) else {
            return Err(io::Error::other(
                "keeping processes apart needs two CPUs; this process may run on one",
            ));
        };
        set_tree(&only(first), &only(second))?;
        Ok(Placement { before })
    }
}

/// `measure` twice: with every process of this program's tree on one CPU,
/// then apart ([`Placement::apart`]); the second is `None` where this
/// process may run on one CPU only (said on standard error).
pub async fn one_cpu_then_apart<T, E: From<io::Error>>(
    mut measure: impl AsyncFnMut() -> Result<T, E>,
) -> Result<(T, Option<T>), E> {
    let one_cpu = {
        let _placed = Placement::one_cpu()?;
        measure().await?
    };
    let apart = match Placement::apart() {
        Ok(_placed) => Some(measure().await?),
        Err(e) => {
            eprintln!("[bench]   no round trips across CPUs: {e}");
            None
        }
    };
    Ok((one_cpu, apart))
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let Err(e) = set_tree(&self.before, &self.before) {
            eprintln!("[bench] could not give the processes their CPUs back: {e}");
        }
    }
}

fn no_cpu() -> io::Error {
    io::Error::other("this process may run on no CPU")
}

/// The CPUs in `set`, ascending.
fn cpus(set: &libc::cpu_set_t) -> impl Iterator<Item = usize> + '_ {
    // SAFETY: `cpu` is below `CPU_SETSIZE`, the bits `set` holds.
    (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
}

/// The set of one CPU.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: all zeroes is the empty set; `cpu` comes from `cpus`, so it
    // is below `CPU_SETSIZE`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// This thread's CPUs.
fn affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: all zeroes is the empty set, and the kernel writes at most
    // the size it is given.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

/// Gives every thread of this process `own`, and every thread of its
/// descendants `others`. A thread or process that ended meanwhile is
/// skipped.
fn set_tree(own: &libc::cpu_set_t, others: &libc::cpu_set_t) -> io::Result<()> {
    let me = std::process::id();
    for pid in tree(me)? {
        let set = if pid == me { own } else { others };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // SAFETY: the kernel reads at most the size it is given.
            let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) };
            let e = io::Error::last_os_error();
            if rc != 0 && e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `root` and its descendants, from `/proc`.
fn tree(root: u32) -> io::Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parent_of(&stat))
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&pid) = out.get(i) {
        out.extend(children.get(&pid).into_iter().flatten().copied());
        i += 1;
    }
    Ok(out)
}

/// The parent's pid in a `/proc/<pid>/stat` line (the field after the
/// state, which follows the command name in parentheses; the name may
/// itself hold spaces and parentheses, hence the last `)`).
fn parent_of(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_follows_a_name_with_spaces_and_parentheses() {
        assert_eq!(parent_of("42 (a (b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("42 (x) R 1 0"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn a_placement_holds_its_cpus_and_dropping_it_gives_them_back() {
        let before = affinity().unwrap();
        let count = |s: &libc::cpu_set_t| unsafe { libc::CPU_COUNT(s) };
        {
            let _placed = Placement::one_cpu().unwrap();
            assert_eq!(count(&affinity().unwrap()), 1);
            // A thread started meanwhile inherits its starter's CPU.
            let inside = std::thread::spawn(move || count(&affinity().unwrap()))
                .join()
                .unwrap();
            assert_eq!(inside, 1);
        }
        assert_eq!(count(&affinity().unwrap()), count(&before));
        if count(&before) >= 2 {
            let mut child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap();
            {
                let _placed = Placement::apart().unwrap();
                let mine = cpus(&affinity().unwrap()).collect::<Vec<_>>();
                let mut theirs: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                let rc = unsafe {
                    libc::sched_getaffinity(
                        child.id() as i32,
                        std::mem::size_of_val(&theirs),
                        &mut theirs,
                    )
                };
                assert_eq!(rc, 0);
                let theirs = cpus(&theirs).collect::<Vec<_>>();
                assert_eq!((mine.len(), theirs.len()), (1, 1));
                assert_ne!(
                    mine, theirs,
                    "the child runs on another CPU than this process"
                );
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
