//! Every in-memory algorithm agrees with its reference model, decision by
//! decision and field by field, on random traffic over several keys:
//! checks and reservations mixed.

use std::time::Duration;

use proptest::prelude::*;
use tollgate::{Algorithm, Error, InMemory, ManualClock};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::{Model, Spec, Verdict};

pub(crate) const KEYS: [&str; 3] = ["alice", "bob", "carol"];

/// One request: move the clock on, then ask for `cost` on one key, as a
/// check or as a reservation of a slot at most `max_wait` µs away.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) advance_us: u64,
    pub(crate) key: usize,
    pub(crate) cost: u64,
    pub(crate) max_wait: Option<u64>,
}

/// Steps for a limiter of `limit` and `period_us`: costs up to two past the
/// limit (so the errors are exercised too), clock steps within a period and
/// past several, and reservations from no wait at all to a few periods'.
pub(crate) fn steps(limit: u64, period_us: u64) -> impl Strategy<Value = Vec<Step>> {
    let advance = prop_oneof![Just(0), 0..=period_us / 8 + 1, 0..=3 * period_us];
    let max_wait = prop_oneof![2 => Just(None), 1 => Just(Some(0)), 2 => (0..=4 * period_us).prop_map(Some)];
    let step = (advance, 0..KEYS.len(), 0..=limit + 2, max_wait).prop_map(|(advance_us, key, cost, max_wait)| Step {
        advance_us,
        key,
        cost,
        max_wait,
    });
    prop::collection::vec(step, 1..120)
}

/// The suites, benches and examples expand tests/support/algorithms.rs:
/// it must name every algorithm of the crate, in the crate's order, each by
/// its own name.
#[test]
fn the_tests_list_of_algorithms_is_the_crates() {
    let mut listed: Vec<&str> = Vec::new();
    macro_rules! list {
        ($name:ident, $algorithm:ident, $listed:ident) => {
            let algorithm = <tollgate::$algorithm as Spec>::with_limit(2, Duration::from_secs(1));
            assert_eq!(algorithm.name(), stringify!($name), "{}'s name", stringify!($algorithm));
            $listed.push(stringify!($name));
        };
    }
    for_each_algorithm!(list, listed);
    assert_eq!(listed, tollgate::Limit::NAMES);
}

fn run<A: Spec>(algorithm: A, start_us: u64, steps: &[Step]) {
    let clock = ManualClock::starting_at(Duration::from_micros(start_us));
    let limit = algorithm.limit();
    let mut models: Vec<A::Model> = KEYS.iter().map(|_| algorithm.model()).collect();
    let limiter = InMemory::with_clock(algorithm, clock.clone());
    let mut now = start_us;
    for (n, step) in steps.iter().enumerate() {
        clock.advance(Duration::from_micros(step.advance_us));
        now += step.advance_us;
        let got = match step.max_wait {
            None => limiter.check_n_sync(KEYS[step.key], step.cost),
            Some(max_wait) => limiter.reserve_sync(KEYS[step.key], step.cost, Duration::from_micros(max_wait)),
        };
        if step.cost > limit {
            assert!(matches!(got, Err(Error::CostTooHigh { cost, max }) if cost == step.cost && max == limit));
            continue;
        }
        let model = &mut models[step.key];
        let expected = match step.max_wait {
            None => model.decide(now, step.cost),
            Some(max_wait) => model.reserve(now, step.cost, max_wait),
        };
        assert_eq!(Verdict::from(got.unwrap()), expected, "step {n}: {step:?} at {now} µs");
    }
}

macro_rules! matches_its_model {
    ($name:ident, $algorithm:ident) => {
        proptest! {
            #![proptest_config(crate::support::proptest_config(400))]

            #[test]
            fn $name((algorithm, steps) in tollgate::$algorithm::everyday()
                         .prop_flat_map(|a| (Just(a.clone()), steps(a.limit(), a.period_us()))),
                     start in 0..10_000_000_000_000u64) {
                run(algorithm, start, &steps);
            }
        }
    };
}

for_each_algorithm!(matches_its_model);
