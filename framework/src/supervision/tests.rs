//! Property tests of the plan, after OTP's supervisor test suite: each
//! strategy restarts exactly the predicted set; restart N+1 within the
//! window escalates; transient children restart only after abnormal exits;
//! temporary children never.

use std::time::{Duration, Instant};

use proptest::prelude::{Just, ProptestConfig, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as Gen;

use super::*;

fn restart_type() -> impl Gen<Value = Restart> {
    prop_oneof![
        Just(Restart::Permanent),
        Just(Restart::Transient),
        Just(Restart::Temporary)
    ]
}

fn strategy() -> impl Gen<Value = Strategy> {
    prop_oneof![
        Just(Strategy::OneForOne),
        Just(Strategy::OneForAll),
        Just(Strategy::RestForOne)
    ]
}

fn reason() -> impl Gen<Value = ExitReason> {
    prop_oneof![
        Just(ExitReason::Normal),
        Just(ExitReason::Shutdown),
        Just(ExitReason::Killed),
        Just(ExitReason::NoConnection),
        ".{0,8}".prop_map(ExitReason::Panic),
    ]
}

fn plan_of(s: Strategy, types: &[Restart], max: u32) -> Plan {
    let mut plan = Plan::new(
        s,
        Intensity {
            max_restarts: max,
            within: Duration::from_secs(5),
        },
    );
    for (i, t) in types.iter().enumerate() {
        plan.add(i as u64, *t);
    }
    plan
}

#[test]
fn one_for_all_terminates_the_others_in_reverse_and_restarts_all_in_order() {
    let mut plan = plan_of(Strategy::OneForAll, &[Restart::Permanent; 4], 10);
    let d = plan.exited(1, &ExitReason::Killed, Instant::now());
    assert_eq!(
        d,
        Decision::Restart {
            terminate: vec![3, 2, 0],
            start: vec![0, 1, 2, 3],
            forget: vec![]
        }
    );
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_the_younger_ones() {
    let mut plan = plan_of(Strategy::RestForOne, &[Restart::Permanent; 4], 10);
    let d = plan.exited(1, &ExitReason::Panic("x".into()), Instant::now());
    assert_eq!(
        d,
        Decision::Restart {
            terminate: vec![3, 2],
            start: vec![1, 2, 3],
            forget: vec![]
        }
    );
}

#[test]
fn a_temporary_sibling_terminated_by_one_for_all_is_forgotten() {
    let mut plan = plan_of(
        Strategy::OneForAll,
        &[Restart::Permanent, Restart::Temporary, Restart::Transient],
        10,
    );
    let d = plan.exited(0, &ExitReason::Killed, Instant::now());
    assert_eq!(
        d,
        Decision::Restart {
            terminate: vec![2, 1],
            start: vec![0, 2],
            forget: vec![1]
        }
    );
    assert_eq!(
        plan.children().iter().map(|c| c.key).collect::<Vec<_>>(),
        vec![0, 2]
    );
}

#[test]
fn the_restart_after_max_restarts_within_the_window_escalates() {
    let mut plan = plan_of(
        Strategy::OneForOne,
        &[Restart::Permanent, Restart::Permanent],
        2,
    );
    let t0 = Instant::now();
    assert!(matches!(
        plan.exited(0, &ExitReason::Killed, t0),
        Decision::Restart { .. }
    ));
    assert!(matches!(
        plan.exited(0, &ExitReason::Killed, t0 + Duration::from_secs(1)),
        Decision::Restart { .. }
    ));
    let d = plan.exited(1, &ExitReason::Killed, t0 + Duration::from_secs(2));
    assert_eq!(d, Decision::Escalate { terminate: vec![0] });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_decision_matches_the_strategy(
        s in strategy(),
        types in proptest::collection::vec(restart_type(), 1..7),
        events in proptest::collection::vec((0usize..7, reason(), 0u64..3000), 1..30),
        max in 0u32..5,
    ) {
        let mut plan = plan_of(s, &types, max);
        let mut now = Instant::now();
        let mut window: Vec<Instant> = Vec::new();
        for (pick, why, gap_ms) in events {
            now += Duration::from_millis(gap_ms);
            let before = plan.children().to_vec();
            let running: Vec<&PlannedChild> = before.iter().filter(|c| c.running).collect();
            if running.is_empty() { break; }
            let failed = running[pick % running.len()].clone();
            let at = before.iter().position(|c| c.key == failed.key).unwrap();
            let decision = plan.exited(failed.key, &why, now);
            let should_restart = match failed.restart {
                Restart::Permanent => true,
                Restart::Transient => !why.is_normal(),
                Restart::Temporary => false,
            };
            if !should_restart {
                prop_assert_eq!(&decision, &Decision::Nothing);
                let still_there = plan.children().iter().any(|c| c.key == failed.key);
                prop_assert_eq!(still_there, failed.restart != Restart::Temporary);
                continue;
            }
            window.retain(|t| now.saturating_duration_since(*t) < Duration::from_secs(5));
            window.push(now);
            if window.len() > max as usize {
                let expect: Vec<u64> = before.iter().rev().filter(|c| c.running && c.key != failed.key).map(|c| c.key).collect();
                prop_assert_eq!(decision, Decision::Escalate { terminate: expect });
                break;
            }
            let affected: Vec<&PlannedChild> = match s {
                Strategy::OneForOne => vec![&before[at]],
                Strategy::OneForAll => before.iter().collect(),
                Strategy::RestForOne => before[at..].iter().collect(),
            };
            let terminate: Vec<u64> = affected.iter().rev().filter(|c| c.running && c.key != failed.key).map(|c| c.key).collect();
            let forget: Vec<u64> = affected.iter().filter(|c| c.restart == Restart::Temporary).map(|c| c.key).collect();
            let start: Vec<u64> = affected.iter().filter(|c| c.restart != Restart::Temporary).map(|c| c.key).collect();
            prop_assert_eq!(decision, Decision::Restart { terminate, start: start.clone(), forget: forget.clone() });
            // Temporary children never come back; started ones run.
            for c in plan.children() {
                prop_assert!(!forget.contains(&c.key));
                if start.contains(&c.key) { prop_assert!(c.running); }
            }
        }
    }
}
