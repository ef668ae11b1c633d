//! Property tests: every schedule, simulated over 1–8 ranks, leaves every
//! result rank with the same bits as the sequential reference.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;

fn bits<T: Reducible>(v: &[T]) -> Vec<u64> {
    v.iter().map(|x| x.bits()).collect()
}

/// Simulates `schedule` and checks every result rank against the reference.
fn check<T: Reducible>(
    schedule: &Schedule,
    op: &ReduceOp<T>,
    inputs: &[Vec<T>],
) -> Result<Vec<T>, TestCaseError> {
    let mut buffers = inputs.to_vec();
    schedule.simulate(op, &mut buffers).unwrap();
    let expected = schedule.reference(op, inputs).unwrap();
    for r in schedule.result_ranks() {
        prop_assert_eq!(
            bits(&buffers[r]),
            bits(&expected),
            "rank {} of {:?}",
            r,
            schedule.algorithm()
        );
    }
    Ok(expected)
}

/// Each schedule shape over one set of inputs.
fn check_all<T: Reducible>(
    op: &ReduceOp<T>,
    inputs: &[Vec<T>],
    order: &[usize],
    places: &[(u8, u32)],
    commutative: bool,
) -> Result<(), TestCaseError> {
    let (n, len) = (inputs.len(), inputs[0].len());
    let topology = Topology::new(
        places
            .iter()
            .map(|&(h, p)| Place::new(format!("h{h}"), p))
            .collect(),
    )
    .unwrap();
    let binary = Tree::binary(n).unwrap();
    let results = [
        check(&Schedule::ring(len, n).unwrap(), op, inputs)?,
        check(&Schedule::ring_over(len, order).unwrap(), op, inputs)?,
        check(&Schedule::tree_allreduce(len, &binary), op, inputs)?,
        check(&Schedule::tree_reduce(len, &binary), op, inputs)?,
        check(&topology.ring(len), op, inputs)?,
        check(&Schedule::tree_allreduce(len, &topology.tree()), op, inputs)?,
        check(
            &Schedule::allreduce(len, n, size_of::<T>()).unwrap(),
            op,
            inputs,
        )?,
    ];
    if commutative {
        // Wrapping integer ops are associative and commutative: every fixed
        // order gives the plain rank-order fold.
        let parts: Vec<&[T]> = inputs.iter().map(Vec::as_slice).collect();
        let plain = bits(&op.fold(&parts).unwrap());
        for result in &results {
            prop_assert_eq!(&bits(result), &plain);
        }
    }
    let broadcast = Schedule::tree_broadcast(len, &topology.tree());
    prop_assert_eq!(
        check(&broadcast, op, inputs)?,
        inputs[topology.tree().root()].clone()
    );
    Ok(())
}

/// Inputs per rank, a ring order and a (host, process) per rank.
type Case<T> = (Vec<Vec<T>>, Vec<usize>, Vec<(u8, u32)>);

fn case<T: Clone + std::fmt::Debug>(
    elem: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Case<T>> {
    (1..=8usize, 0..=37usize).prop_flat_map(move |(n, len)| {
        (
            prop::collection::vec(prop::collection::vec(elem.clone(), len), n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            prop::collection::vec((0..3u8, 0..2u32), n),
        )
    })
}

macro_rules! dtype {
    ($name:ident, $t:ty, $elem:expr, $custom:expr, $integer:expr) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]
            #[test]
            fn $name((inputs, order, places) in case::<$t>($elem), which in 0..5usize) {
                let op: ReduceOp<$t> = match which {
                    0 => ReduceOp::Sum,
                    1 => ReduceOp::Prod,
                    2 => ReduceOp::Min,
                    3 => ReduceOp::Max,
                    _ => ReduceOp::custom(|acc: &mut [$t], other: &[$t]| {
                        for (a, &b) in acc.iter_mut().zip(other) {
                            *a = $custom(*a, b);
                        }
                    }),
                };
                check_all(&op, &inputs, &order, &places, $integer && which < 4)?;
            }
        }
    };
}

dtype!(
    i32_every_rank_equals_reference,
    i32,
    prop_oneof![-9i32..9, any::<i32>()],
    |a: i32, b: i32| a.wrapping_mul(3).wrapping_add(b),
    true
);
dtype!(
    i64_every_rank_equals_reference,
    i64,
    prop_oneof![-9i64..9, any::<i64>()],
    |a: i64, b: i64| a.wrapping_mul(3).wrapping_sub(b),
    true
);
dtype!(
    f32_every_rank_equals_reference,
    f32,
    prop_oneof![4 => -1e3f32..1e3, 1 => any::<f32>()],
    |a: f32, b: f32| a * 0.5 + b,
    false
);
dtype!(
    f64_every_rank_equals_reference,
    f64,
    prop_oneof![4 => -1e3f64..1e3, 1 => any::<f64>()],
    |a: f64, b: f64| a * 0.5 + b,
    false
);

proptest! {
    #[test]
    fn chunks_cover_the_buffer(len in 0..1000usize, n in 1..=8usize) {
        let chunks = chunk_bounds(len, n);
        prop_assert_eq!(chunks.len(), n);
        prop_assert_eq!(chunks[0].start, 0);
        prop_assert_eq!(chunks[n - 1].end, len);
        for pair in chunks.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
            prop_assert!(pair[0].len() >= pair[1].len() && pair[0].len() <= pair[1].len() + 1);
        }
    }

    #[test]
    fn ring_sends_each_chunk_n_minus_1_times_per_phase(
        order in (1..=8usize).prop_flat_map(|n| Just((0..n).collect::<Vec<_>>()).prop_shuffle()),
        len in 0..50usize,
    ) {
        let n = order.len();
        let ring = Schedule::ring_over(len, &order).unwrap();
        prop_assert_eq!(ring.steps().len(), 2 * (n - 1));
        let next = |r: usize| order[(order.iter().position(|&x| x == r).unwrap() + 1) % n];
        let mut sent = vec![[0usize; 2]; n];
        for step in ring.steps() {
            let (phase, action) = match step.phase {
                Phase::ReduceScatter => (0, Action::ReduceIncomingFirst),
                Phase::AllGather => (1, Action::Copy),
                other => return Err(TestCaseError::fail(format!("{other:?} in a ring"))),
            };
            let mut senders: Vec<_> = step.transfers.iter().map(|t| t.from).collect();
            let mut receivers: Vec<_> = step.transfers.iter().map(|t| t.to).collect();
            senders.sort();
            receivers.sort();
            prop_assert_eq!(&senders, &(0..n).collect::<Vec<_>>());
            prop_assert_eq!(&receivers, &senders);
            for t in &step.transfers {
                prop_assert_eq!(t.to, next(t.from));
                prop_assert_eq!(t.action, action);
                sent[t.chunk][phase] += 1;
            }
        }
        prop_assert!(sent.iter().all(|&s| s == [n - 1, n - 1]));
    }

    #[test]
    fn tree_sends_once_up_and_once_down(n in 1..=64usize) {
        let tree = Tree::binary(n).unwrap();
        let schedule = Schedule::tree_allreduce(3, &tree);
        prop_assert_eq!(schedule.steps().len(), 2 * tree.height());
        prop_assert_eq!(tree.height(), n.ilog2() as usize);
        let mut up = vec![0; n];
        let mut down = vec![0; n];
        for step in schedule.steps() {
            for t in &step.transfers {
                match step.phase {
                    Phase::Reduce => { up[t.from] += 1; prop_assert_eq!(Some(t.to), tree.parent(t.from)); }
                    Phase::Broadcast => { down[t.to] += 1; prop_assert_eq!(Some(t.from), tree.parent(t.to)); }
                    _ => return Err(TestCaseError::fail("ring phase in a tree")),
                }
            }
        }
        for r in 0..n {
            let expected = usize::from(r != tree.root());
            prop_assert_eq!((up[r], down[r]), (expected, expected));
        }
    }
}

proptest! {
    #[test]
    fn programs_partition_the_steps(n in 1..=8usize, len in 0..20usize, tree in any::<bool>()) {
        let schedule = if tree {
            Schedule::tree_allreduce(len, &Tree::binary(n).unwrap())
        } else {
            Schedule::ring(len, n).unwrap()
        };
        let (mut sends, mut receives) = (Vec::new(), Vec::new());
        for rank in 0..n {
            for s in schedule.program(rank) {
                prop_assert_eq!(s.phase, schedule.steps()[s.step].phase);
                prop_assert!(s.sends.iter().all(|t| t.from == rank));
                prop_assert!(s.receives.iter().all(|t| t.to == rank));
                sends.extend(s.sends.iter().map(|&t| (s.step, t)));
                receives.extend(s.receives.iter().map(|&t| (s.step, t)));
            }
        }
        let mut all: Vec<_> = schedule
            .steps()
            .iter()
            .enumerate()
            .flat_map(|(i, step)| step.transfers.iter().map(move |&t| (i, t)))
            .collect();
        let key = |(i, t): &(usize, Transfer)| (*i, t.from, t.to, t.chunk);
        for list in [&mut sends, &mut receives, &mut all] {
            list.sort_by_key(key);
        }
        prop_assert_eq!(&sends, &all);
        prop_assert_eq!(&receives, &all);
    }
}

#[test]
fn float_sum_order_is_fixed_not_rank_order() {
    // 1e16 + 1 + 1 + -1e16 depends on the order; the schedule's order is the
    // reference's, on every rank.
    let inputs = vec![vec![1e16f64; 4], vec![1.0; 4], vec![1.0; 4], vec![-1e16; 4]];
    let ring = Schedule::ring(4, 4).unwrap();
    let mut buffers = inputs.clone();
    ring.simulate(&ReduceOp::Sum, &mut buffers).unwrap();
    let expected = ring.reference(&ReduceOp::Sum, &inputs).unwrap();
    assert!(buffers.iter().all(|b| b == &expected));
    // Chunk c folds from rank c around the ring: 1e16 + 1 + 1 - 1e16 = 0
    // (each 1 is lost), 1 + 1 - 1e16 + 1e16 = 2, 1 - 1e16 + 1e16 + 1 = 1,
    // -1e16 + 1e16 + 1 + 1 = 2.
    assert_eq!(expected, vec![0.0, 2.0, 1.0, 2.0]);
}

#[test]
fn errors_say_what_is_wrong() {
    assert_eq!(Schedule::ring(3, 0), Err(ScheduleError::NoRanks));
    assert!(matches!(
        Schedule::ring_over(3, &[0, 0, 2]),
        Err(ScheduleError::NotAPermutation { .. })
    ));
    assert!(matches!(
        Tree::from_children(0, vec![vec![1], vec![0]]),
        Err(ScheduleError::NotATree { .. })
    ));
    assert!(matches!(
        Tree::from_children(0, vec![vec![], vec![2], vec![1]]),
        Err(ScheduleError::NotATree { .. })
    ));
    let ring = Schedule::ring(3, 2).unwrap();
    assert_eq!(
        ring.simulate(&ReduceOp::Sum, &mut [vec![1i32; 3]]),
        Err(ScheduleError::Ranks {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        ring.simulate(&ReduceOp::Sum, &mut [vec![1i32; 3], vec![1; 2]]),
        Err(ScheduleError::Length {
            rank: 1,
            expected: 3,
            got: 2
        })
    );
}

#[test]
fn choose_prefers_the_tree_for_small_buffers_on_three_or_more_ranks() {
    for n in 3..=8 {
        assert_eq!(choose(4096, n), Algorithm::Tree, "n = {n}");
        assert_eq!(choose(1 << 20, n), Algorithm::Ring, "n = {n}");
    }
    assert_eq!(choose(0, 2), Algorithm::Ring);
    assert_eq!(choose(0, 1), Algorithm::Ring);
}
