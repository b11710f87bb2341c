//! The promise each algorithm makes (`Spec::keeps_its_promise`), checked on
//! what it actually admitted under random traffic, independently of any
//! model: checks admitted when they are made, reservations at their slots.

use std::time::Duration;

use proptest::prelude::*;
use tollgate::{Algorithm, InMemory, ManualClock};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::Spec;

/// Requests as (microseconds since the previous one, cost, the longest a
/// reservation may wait or `None` for a check), for a limiter of `limit`
/// and `period_us`.
fn traffic(limit: u64, period_us: u64) -> impl Strategy<Value = Vec<(u64, u64, Option<u64>)>> {
    let max_wait = prop_oneof![Just(None), (0..=3 * period_us).prop_map(Some)];
    prop::collection::vec((prop_oneof![Just(0), 0..=period_us / 2 + 1], 1..=limit, max_wait), 1..300)
}

/// Runs `traffic` on one key; returns each admission as (time µs, cost,
/// wait µs): a reservation's time is its slot, and a leaky bucket's
/// request departs after its wait.
fn admitted<A: Spec>(algorithm: A, start_us: u64, traffic: &[(u64, u64, Option<u64>)]) -> Vec<(u64, u64, u64)> {
    let clock = ManualClock::starting_at(Duration::from_micros(start_us));
    let limiter = InMemory::with_clock(algorithm, clock.clone());
    let mut now = start_us;
    let mut admitted = Vec::new();
    for &(gap, cost, max_wait) in traffic {
        clock.advance(Duration::from_micros(gap));
        now += gap;
        let decision = match max_wait {
            None => limiter.check_n_sync("key", cost).unwrap(),
            Some(max_wait) => limiter.reserve_sync("key", cost, Duration::from_micros(max_wait)).unwrap(),
        };
        if decision.is_allowed() {
            // Every wait is a time the request may not go before: where it goes.
            admitted.push((now + decision.wait().as_micros() as u64, cost, 0));
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
