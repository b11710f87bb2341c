//! The promise each algorithm makes (`Spec::keeps_its_promise`), checked on
//! what it actually admitted under random traffic, independently of any
//! model.

use std::time::Duration;

use proptest::prelude::*;
use tollgate::{Algorithm, InMemory, ManualClock};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::Spec;

/// Requests as (microseconds since the previous one, cost), for a limiter
/// of `limit` and `period_us`.
fn traffic(limit: u64, period_us: u64) -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((prop_oneof![Just(0), 0..=period_us / 2 + 1], 1..=limit), 1..300)
}

/// Runs `traffic` on one key; returns each admission as (time µs, cost, wait µs).
fn admitted<A: Spec>(algorithm: A, start_us: u64, traffic: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
    let clock = ManualClock::starting_at(Duration::from_micros(start_us));
    let limiter = InMemory::with_clock(algorithm, clock.clone());
    let mut now = start_us;
    let mut admitted = Vec::new();
    for &(gap, cost) in traffic {
        clock.advance(Duration::from_micros(gap));
        now += gap;
        let decision = limiter.check_n_sync("key", cost).unwrap();
        if decision.is_allowed() {
            admitted.push((now, cost, decision.wait().as_micros() as u64));
        }
    }
    admitted
}

macro_rules! keeps_its_promise {
    ($name:ident, $algorithm:ident) => {
        proptest! {
            #![proptest_config(crate::support::proptest_config(300))]

            #[test]
            fn $name((algorithm, traffic) in tollgate::$algorithm::everyday()
                         .prop_flat_map(|a| (Just(a.clone()), traffic(a.limit(), a.period_us()))),
                     start in 0..1_000_000u64) {
                let admitted = admitted(algorithm.clone(), start, &traffic);
                if let Err(broken) = algorithm.keeps_its_promise(&admitted) {
                    return Err(TestCaseError::fail(format!("{algorithm:?}: {broken}")));
                }
            }
        }
    };
}

for_each_algorithm!(keeps_its_promise);
