//! The promise each algorithm makes, checked on what it actually admitted
//! under random traffic, independently of any model.

use std::time::Duration;

use proptest::prelude::*;
use tollgate::{Algorithm, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, SlidingLog, TokenBucket};

/// Requests as (microseconds since the previous one, cost).
fn traffic(max_gap_us: u64, max_cost: u64) -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((prop_oneof![Just(0), 0..=max_gap_us], 1..=max_cost), 1..300)
}

/// Runs `traffic` on one key, each cost cut to `max_cost`; returns each
/// admission as (time µs, cost, wait µs).
fn admitted<A: Algorithm>(algorithm: A, max_cost: u64, start_us: u64, traffic: &[(u64, u64)]) -> Vec<(u64, u64, u64)> {
    let clock = ManualClock::starting_at(Duration::from_micros(start_us));
    let limiter = InMemory::with_clock(algorithm, clock.clone());
    let mut now = start_us;
    let mut admitted = Vec::new();
    for &(gap, cost) in traffic {
        let cost = cost.min(max_cost);
        clock.advance(Duration::from_micros(gap));
        now += gap;
        let decision = limiter.check_n_sync("key", cost).unwrap();
        if decision.is_allowed() {
            admitted.push((now, cost, decision.wait().as_micros() as u64));
        }
    }
    admitted
}

/// Total cost admitted at times in `[from, until)`.
fn admitted_between(admitted: &[(u64, u64, u64)], from: u64, until: u64) -> u64 {
    admitted.iter().filter(|(at, _, _)| (from..until).contains(at)).map(|(_, cost, _)| cost).sum()
}

proptest! {
    #![proptest_config(crate::support::proptest_config(300))]

    #[test]
    fn a_sliding_log_never_admits_more_than_the_amount_in_any_interval_of_one_period(
        amount in 1..=6u64, period in 1..=1_000u64, start in 0..1_000_000u64, traffic in traffic(400, 6)
    ) {
        let algorithm = SlidingLog::new(Rate::new(amount, Duration::from_micros(period))).unwrap();
        let admitted = admitted(algorithm, amount, start, &traffic);
        // The busiest interval starts at an admission.
        for &(from, _, _) in &admitted {
            prop_assert!(admitted_between(&admitted, from, from + period) <= amount);
        }
    }

    #[test]
    fn a_fixed_window_never_admits_more_than_the_amount_in_one_aligned_window(
        amount in 1..=6u64, period in 1..=1_000u64, start in 0..1_000_000u64, traffic in traffic(400, 6)
    ) {
        let algorithm = FixedWindow::new(Rate::new(amount, Duration::from_micros(period))).unwrap();
        let admitted = admitted(algorithm, amount, start, &traffic);
        for &(at, _, _) in &admitted {
            let window_start = at / period * period;
            prop_assert!(admitted_between(&admitted, window_start, window_start + period) <= amount);
        }
    }

    #[test]
    fn a_token_bucket_admits_at_most_its_capacity_plus_the_rate_times_the_elapsed_time(
        capacity in 1..=6u64, amount in 1..=5u64, period in 1..=1_000u64, start in 0..1_000_000u64,
        traffic in traffic(400, 6)
    ) {
        let algorithm = TokenBucket::new(capacity, Rate::new(amount, Duration::from_micros(period))).unwrap();
        let admitted = admitted(algorithm, capacity, start, &traffic);
        for (i, &(from, _, _)) in admitted.iter().enumerate() {
            for &(until, _, _) in &admitted[i..] {
                let total = admitted_between(&admitted, from, until + 1);
                // total ≤ capacity + amount × elapsed / period, without division.
                prop_assert!(total * period <= capacity * period + amount * (until - from));
            }
        }
    }

    #[test]
    fn a_leaky_bucket_never_lets_requests_depart_closer_than_period_over_amount(
        capacity in 1..=6u64, amount in 1..=5u64, period in 1..=1_000u64, start in 0..1_000_000u64,
        traffic in traffic(400, 1)
    ) {
        let algorithm = LeakyBucket::new(capacity, Rate::new(amount, Duration::from_micros(period))).unwrap();
        let admitted = admitted(algorithm, capacity + 1, start, &traffic);
        let departures: Vec<u64> = admitted.iter().map(|(at, _, wait)| at + wait).collect();
        for (i, &first) in departures.iter().enumerate() {
            for (n, &later) in departures[i..].iter().enumerate() {
                // Departures are whole microseconds rounded up from exact slots n × period / amount
                // apart, so they are less than a microsecond short of that, never more.
                prop_assert!((later - first + 1) * amount > n as u64 * period, "{departures:?}");
            }
        }
        prop_assert!(departures.windows(2).all(|pair| pair[0] <= pair[1]));
    }
}
