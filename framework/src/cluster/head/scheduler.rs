//! Which worker (engine) gets the next job: the schedulers of ipyparallel's
//! task scheduler, chosen with `parallel head --scheduler`. Each picks among
//! the workers that have room (credit) for one more job.

/// A scheduling policy (the seed's `TaskScheduler.scheme_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scheduler {
    /// The worker holding the fewest jobs (ties: the one that joined first).
    #[default]
    LeastLoad,
    /// The worker that was given a job least recently: jobs rotate.
    Lru,
    /// A worker at random.
    PlainRandom,
    /// Two workers at random, the less loaded of them.
    TwoBin,
    /// A worker at random, weighted by its free room.
    Weighted,
}

impl std::str::FromStr for Scheduler {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "leastload" => Scheduler::LeastLoad,
            "lru" => Scheduler::Lru,
            "plainrandom" => Scheduler::PlainRandom,
            "twobin" => Scheduler::TwoBin,
            "weighted" => Scheduler::Weighted,
            other => {
                return Err(format!(
                    "unknown scheduler {other:?}: use leastload, lru, plainrandom, twobin or weighted"
                ));
            }
        })
    }
}

/// A worker that may take a job now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// Jobs it may still take.
    pub free: usize,
    /// Jobs it holds.
    pub held: usize,
    /// When it was last given a job (a counter; 0: never).
    pub last: u64,
}

/// A small xorshift generator: the random schedulers need no more.
#[derive(Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % n.max(1) as u64) as usize
    }
}

impl Scheduler {
    /// The index in `c` of the worker that gets the next job, among those
    /// with `free > 0`; `None` when none has room.
    pub(super) fn pick(self, c: &[Candidate], rng: &mut Rng) -> Option<usize> {
        // Called once per job handed out: no allocation.
        let open = || (0..c.len()).filter(|&i| c[i].free > 0);
        let n = open().count();
        if n == 0 {
            return None;
        }
        match self {
            Scheduler::LeastLoad => open().min_by_key(|&i| c[i].held),
            Scheduler::Lru => open().min_by_key(|&i| c[i].last),
            Scheduler::PlainRandom => open().nth(rng.below(n)),
            Scheduler::TwoBin => {
                let a = open().nth(rng.below(n))?;
                let b = open().nth(rng.below(n))?;
                Some(if c[b].held < c[a].held { b } else { a })
            }
            Scheduler::Weighted => {
                let mut at = rng.below(open().map(|i| c[i].free).sum());
                open().find(|&i| {
                    let here = at < c[i].free;
                    at = at.saturating_sub(c[i].free);
                    here
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(n: usize) -> Vec<Candidate> {
        vec![
            Candidate {
                free: 2,
                held: 0,
                last: 0
            };
            n
        ]
    }

    #[test]
    fn leastload_prefers_the_idle_worker() {
        let mut c = idle(3);
        c[0].held = 2;
        c[2].held = 1;
        assert_eq!(Scheduler::LeastLoad.pick(&c, &mut Rng::new(1)), Some(1));
    }

    #[test]
    fn lru_rotates() {
        let mut c = idle(3);
        let mut rng = Rng::new(1);
        let mut order = Vec::new();
        for t in 1..=6 {
            let i = Scheduler::Lru.pick(&c, &mut rng).expect("room");
            c[i].last = t;
            order.push(i);
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn no_worker_with_room_gets_nothing_and_full_ones_are_skipped() {
        let mut c = idle(2);
        c[0].free = 0;
        for s in [
            Scheduler::LeastLoad,
            Scheduler::Lru,
            Scheduler::PlainRandom,
            Scheduler::TwoBin,
            Scheduler::Weighted,
        ] {
            let mut rng = Rng::new(7);
            for _ in 0..50 {
                assert_eq!(s.pick(&c, &mut rng), Some(1), "{s:?}");
            }
            c[1].free = 0;
            assert_eq!(s.pick(&c, &mut rng), None, "{s:?}");
            c[1].free = 2;
        }
    }

    #[test]
    fn random_schedulers_reach_every_worker() {
        for s in [
            Scheduler::PlainRandom,
            Scheduler::TwoBin,
            Scheduler::Weighted,
        ] {
            let c = idle(4);
            let mut rng = Rng::new(42);
            let mut seen = [false; 4];
            for _ in 0..200 {
                seen[s.pick(&c, &mut rng).expect("room")] = true;
            }
            assert_eq!(seen, [true; 4], "{s:?}");
        }
    }

    #[test]
    fn names_parse_and_a_wrong_one_lists_the_right_ones() {
        assert_eq!("lru".parse::<Scheduler>(), Ok(Scheduler::Lru));
        assert_eq!("twobin".parse::<Scheduler>(), Ok(Scheduler::TwoBin));
        let err = "fastest".parse::<Scheduler>().unwrap_err();
        assert!(
            err.contains("leastload, lru, plainrandom, twobin or weighted"),
            "{err}"
        );
    }
}
