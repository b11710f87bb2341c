//! Every in-memory algorithm agrees with its reference model, decision by
//! decision and field by field, on random traffic over several keys.

use std::time::Duration;

use proptest::prelude::*;
use tollgate::{Algorithm, Error, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, SlidingLog, TokenBucket};

use crate::support::models::{FixedWindowModel, LeakyBucketModel, Model, SlidingLogModel, TokenBucketModel, Verdict};

const KEYS: [&str; 3] = ["alice", "bob", "carol"];

/// One request: move the clock on, then ask for `cost` on one key.
#[derive(Debug, Clone)]
struct Step {
    advance_us: u64,
    key: usize,
    cost: u64,
}

fn steps(period_us: u64, max_cost: u64) -> impl Strategy<Value = Vec<Step>> {
    let advance = prop_oneof![Just(0), 0..=period_us / 8 + 1, 0..=3 * period_us];
    // Costs up to two past the maximum, so the errors are exercised too.
    let step =
        (advance, 0..KEYS.len(), 0..=max_cost + 2).prop_map(|(advance_us, key, cost)| Step { advance_us, key, cost });
    prop::collection::vec(step, 1..120)
}

/// Periods that divide evenly, and ones that leave a fraction per request.
fn period_us() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1), Just(1_000), Just(1_000_000), Just(7), 1..=3_000_000u64]
}

fn run<A: Algorithm, M: Model>(algorithm: A, max_cost: u64, start_us: u64, steps: &[Step], model: impl Fn() -> M) {
    let clock = ManualClock::starting_at(Duration::from_micros(start_us));
    let limiter = InMemory::with_clock(algorithm, clock.clone());
    let mut models: Vec<M> = KEYS.iter().map(|_| model()).collect();
    let mut now = start_us;
    for (n, step) in steps.iter().enumerate() {
        clock.advance(Duration::from_micros(step.advance_us));
        now += step.advance_us;
        let got = limiter.check_n_sync(KEYS[step.key], step.cost);
        if step.cost > max_cost {
            assert!(matches!(got, Err(Error::CostTooHigh { cost, max }) if cost == step.cost && max == max_cost));
            continue;
        }
        let expected = models[step.key].decide(now, step.cost);
        assert_eq!(Verdict::from(got.unwrap()), expected, "step {n}: {step:?} at {now} µs");
    }
}

proptest! {
    #![proptest_config(crate::support::proptest_config(400))]

    #[test]
    fn fixed_window_matches_its_model(amount in 1..=8u64, period in period_us(), start in 0..10_000_000_000_000u64,
                                      steps in steps(3_000_000, 8)) {
        let algorithm = FixedWindow::new(Rate::new(amount, Duration::from_micros(period))).unwrap();
        run(algorithm, amount, start, &steps, || FixedWindowModel::new(amount, period));
    }

    #[test]
    fn sliding_log_matches_its_model(amount in 1..=8u64, period in period_us(), start in 0..10_000_000_000_000u64,
                                     steps in steps(3_000_000, 8)) {
        let algorithm = SlidingLog::new(Rate::new(amount, Duration::from_micros(period))).unwrap();
        run(algorithm, amount, start, &steps, || SlidingLogModel::new(amount, period));
    }

    #[test]
    fn token_bucket_matches_its_model(capacity in 1..=8u64, amount in 1..=7u64, period in period_us(),
                                      start in 0..10_000_000_000_000u64, steps in steps(3_000_000, 8)) {
        let algorithm = TokenBucket::new(capacity, Rate::new(amount, Duration::from_micros(period))).unwrap();
        run(algorithm, capacity, start, &steps, || TokenBucketModel::new(capacity, amount, period));
    }

    #[test]
    fn leaky_bucket_matches_its_model(capacity in 1..=8u64, amount in 1..=7u64, period in period_us(),
                                      start in 0..10_000_000_000_000u64, steps in steps(3_000_000, 9)) {
        let algorithm = LeakyBucket::new(capacity, Rate::new(amount, Duration::from_micros(period))).unwrap();
        run(algorithm, capacity + 1, start, &steps, || LeakyBucketModel::new(capacity, amount, period));
    }
}
