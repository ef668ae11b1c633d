//! What a node agent reports for the dashboard ([`NodeUsage`]): the CPU and
//! memory its processes (agent and workers) use, its GPUs, its supervisors'
//! children (incarnations, restarts, last exits) and its deepest mailboxes.
//!
//! CPU and memory are read from Linux's `/proc`; elsewhere they are `None`.

use std::time::Instant;

use rkyv::{Archive, Deserialize, Serialize};

use crate::supervision::{StampedEvent, SupervisorEvent};

/// One child of a supervisor, as the dashboard shows it.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ChildRow {
    /// Its name in the supervisor's spec.
    pub name: String,
    /// Its process, when it runs one.
    pub pid: Option<u32>,
    /// How many times it has been started (1: never restarted).
    pub incarnation: u64,
    /// `running` or `down`.
    pub state: String,
    /// Why it last stopped, if it did.
    pub last_exit: Option<String>,
}

/// One supervisor of a node agent: the workers of one pool.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SupervisorRow {
    /// The pool whose workers it supervises.
    pub pool: String,
    /// Whether it gave up (too many restarts within its window).
    pub gave_up: bool,
    /// Its children.
    pub children: Vec<ChildRow>,
}

/// An actor's mailbox, as the dashboard shows it.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    /// The actor's id.
    pub actor: String,
    /// Its type's name.
    pub name: String,
    /// Messages from other nodes waiting in it.
    pub queued: u64,
}

impl MailboxRow {
    /// The `limit` deepest mailboxes of `node`.
    pub fn deepest(node: &crate::remote::Node, limit: usize) -> Vec<MailboxRow> {
        node.deepest_mailboxes(limit)
            .into_iter()
            .map(|(id, name, queued)| MailboxRow {
                actor: id.to_string(),
                name: name.to_owned(),
                queued: queued as u64,
            })
            .collect()
    }
}

/// What one node agent reports (see the module docs).
#[derive(Archive, Serialize, Deserialize, serde::Serialize, Debug, Clone, Default, PartialEq)]
pub struct NodeUsage {
    /// CPU used by the agent and its workers since its last report, in
    /// percent of one core.
    pub cpu_percent: Option<f32>,
    /// Resident memory of the agent and its workers.
    pub rss_bytes: Option<u64>,
    /// Its GPUs.
    pub gpus: Vec<super::gpus::GpuRow>,
    /// Its supervisors.
    pub supervisors: Vec<SupervisorRow>,
    /// Its deepest mailboxes.
    pub mailboxes: Vec<MailboxRow>,
    /// Workers it restarted since it started (pools that closed included).
    pub restarts: u64,
}

/// Restarts a supervisor reported: the restarts in its kept history, or,
/// when older ones were dropped from it, what the children's newest
/// incarnations add up to (each child's count starts at 1).
pub fn restarts(history: &[StampedEvent]) -> u64 {
    let mut newest: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut seen = 0;
    for e in history {
        if let SupervisorEvent::Restarted {
            name, incarnation, ..
        } = &e.event
        {
            seen += 1;
            newest.insert(name, *incarnation);
        }
    }
    let by_incarnation: u64 = newest.values().map(|i| i.saturating_sub(1)).sum();
    seen.max(by_incarnation)
}

/// The children named `names` as a supervisor's reports describe them;
/// `pids` gives the process of each child that runs one now.
pub fn children(names: &[String], history: &[StampedEvent], pids: &[Option<u32>]) -> Vec<ChildRow> {
    names
        .iter()
        .zip(pids)
        .map(|(name, pid)| {
            let mut incarnation = 1;
            let mut last_exit = None;
            let mut down = false;
            for event in history {
                match &event.event {
                    SupervisorEvent::Restarted {
                        name: n,
                        incarnation: i,
                        ..
                    } if n == name => {
                        incarnation = *i;
                        down = false;
                    }
                    SupervisorEvent::Down {
                        name: n, reason, ..
                    } if n == name => {
                        last_exit = Some(reason.to_string());
                        down = true;
                    }
                    SupervisorEvent::GaveUp => down = true,
                    _ => {}
                }
            }
            ChildRow {
                name: name.clone(),
                pid: *pid,
                incarnation,
                state: if down || pid.is_none() {
                    "down"
                } else {
                    "running"
                }
                .to_owned(),
                last_exit,
            }
        })
        .collect()
}

/// Clock ticks of user and system time in a `/proc/<pid>/stat` line.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    // The command name, in parentheses, may hold spaces: fields count from
    // the last ')'. After it: state (3), ... utime (14), stime (15).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident pages in a `/proc/<pid>/statm` line.
pub fn statm_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// CPU ticks and resident bytes of process `pid`, from `/proc`.
fn process(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some((stat_ticks(&stat)?, statm_pages(&statm)? * page))
}

/// Measures the CPU of a set of processes between two samples.
#[derive(Debug, Default)]
pub struct CpuMeter {
    last: Option<(Instant, u64)>,
}

impl CpuMeter {
    /// The CPU (percent of one core, since the last sample) and resident
    /// bytes of `pids` together; `None` where `/proc` cannot tell (not
    /// Linux), and no CPU figure on the first sample.
    pub fn sample(&mut self, pids: &[u32]) -> (Option<f32>, Option<u64>) {
        let read: Vec<(u64, u64)> = pids.iter().filter_map(|p| process(*p)).collect();
        if read.is_empty() {
            return (None, None);
        }
        let ticks: u64 = read.iter().map(|(t, _)| t).sum();
        let rss: u64 = read.iter().map(|(_, r)| r).sum();
        let now = Instant::now();
        // SAFETY: sysconf only reads a system constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu = self.last.and_then(|(at, before)| {
            let secs = now.duration_since(at).as_secs_f64();
            // A worker that was restarted in between takes its ticks away.
            (secs > 0.0).then(|| (ticks.saturating_sub(before) as f64 / hz / secs * 100.0) as f32)
        });
        self.last = Some((now, ticks));
        (cpu, Some(rss))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::actor::ExitReason;
    use crate::id::ActorId;

    #[test]
    fn ticks_are_read_after_a_command_name_with_spaces() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 0 0";
        assert_eq!(stat_ticks(stat), Some(300));
        assert_eq!(stat_ticks("garbage"), None);
        assert_eq!(statm_pages("1000 250 100 10 0 300 0"), Some(250));
        assert_eq!(statm_pages(""), None);
    }

    #[test]
    fn this_process_is_measured() {
        let mut meter = CpuMeter::default();
        let me = std::process::id();
        let (cpu, rss) = meter.sample(&[me]);
        assert!(cpu.is_none(), "no CPU figure from one sample");
        assert!(rss.is_some_and(|r| r > 1 << 20), "{rss:?}");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let (cpu, _) = meter.sample(&[me]);
        assert!(cpu.is_some_and(|c| c >= 0.0), "{cpu:?}");
        assert_eq!(meter.sample(&[u32::MAX - 1]), (None, None));
    }

    fn event(seq: u64, event: SupervisorEvent) -> StampedEvent {
        StampedEvent {
            seq,
            at: SystemTime::now(),
            since_start: Duration::from_millis(seq),
            event,
        }
    }

    #[test]
    fn children_show_their_incarnation_and_last_exit() {
        let id = ActorId::new();
        let history = vec![
            event(
                1,
                SupervisorEvent::Down {
                    name: "worker 1".into(),
                    id,
                    reason: ExitReason::Killed,
                },
            ),
            event(
                2,
                SupervisorEvent::Restarted {
                    name: "worker 1".into(),
                    id,
                    incarnation: 2,
                },
            ),
        ];
        let names = vec!["worker 0".to_owned(), "worker 1".to_owned()];
        let rows = children(&names, &history, &[Some(10), Some(11)]);
        assert_eq!(rows[0].incarnation, 1);
        assert_eq!(rows[0].last_exit, None);
        assert_eq!(rows[0].state, "running");
        assert_eq!(rows[1].incarnation, 2);
        assert_eq!(
            rows[1].last_exit.as_deref(),
            Some(ExitReason::Killed.to_string().as_str())
        );
        assert_eq!(rows[1].state, "running");
        let rows = children(&names, &history[..1], &[Some(10), None]);
        assert_eq!(rows[1].state, "down");
        assert_eq!(restarts(&history), 1);
        // Older restarts dropped from the history still count through the
        // newest incarnation.
        let late = vec![event(
            300,
            SupervisorEvent::Restarted {
                name: "worker 0".into(),
                id,
                incarnation: 5,
            },
        )];
        assert_eq!(restarts(&late), 4);
    }
}
