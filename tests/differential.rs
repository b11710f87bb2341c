//! Redis decides exactly like `InMemory`: random sequences of time steps,
//! keys and costs run through both, in client-time mode on one shared
//! `ManualClock`, must give equal outcomes, every `Decision` field included.
//! `InMemory` runs the pure step, so this holds each Lua script to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tollgate::{
    Algorithm, Clock, Decision, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, RateLimiter, Redis, SlidingLog,
    TokenBucket,
};

use crate::support::proptest_config;
use crate::support::redis_server::RedisServer;

/// About now, in µs since the epoch: the scripts see realistic magnitudes.
const START_US: u64 = 1_700_000_000_000_000;

/// What a sequence does.
#[derive(Debug, Clone)]
enum Op {
    /// Moves the clock forward, µs.
    Advance(u64),
    /// Moves the clock back, µs (limiters must not admit more for it).
    Back(u64),
    /// Checks one of three keys at a cost: from 0 (a peek) to one more than
    /// the most the limiter admits (an error on both backends).
    Check { key: usize, cost: u64 },
}

const KEYS: [&str; 3] = ["alice", "bob", "{carol}"];

/// Sequences for a limiter admitting at most `max_cost` at once, with period
/// `period_us`; clock steps stay below `max_step_us`, so the clock stays
/// below 2^53 µs (exact in Lua) however long the sequence.
fn ops(max_cost: u64, period_us: u64, max_step_us: u64) -> impl Strategy<Value = Vec<Op>> {
    let step = (2 * period_us).min(max_step_us);
    let op = prop_oneof![
        6 => (0..KEYS.len(), 0..=max_cost + 1).prop_map(|(key, cost)| Op::Check { key, cost }),
        2 => (0..=1_000_u64.min(step)).prop_map(Op::Advance),
        2 => (0..=step).prop_map(Op::Advance),
        1 => (0..=step).prop_map(Op::Back),
    ];
    proptest::collection::vec(op, 1..60)
}

/// Periods from one µs to 20 s, whole seconds and odd µs alike.
fn period_us() -> impl Strategy<Value = u64> {
    prop_oneof![1..=1_000_u64, 1_000..=20_000_000_u64, (1..=20_u64).prop_map(|s| s * 1_000_000)]
}

/// Where the clock starts, past START_US: anywhere in a period, but at most
/// 2^50 µs, so that the clock stays below 2^53 µs (the year 2255), the
/// range the scripts support.
fn offset(period_us: u64) -> std::ops::Range<u64> {
    0..period_us.min(1 << 50)
}

/// Limits of everyday size.
fn small() -> impl Strategy<Value = u64> {
    1..=12_u64
}

fn rate(amount: u64, period_us: u64) -> Rate {
    Rate::new(amount, Duration::from_micros(period_us))
}

/// One outcome, comparable: the decision, or the error's text.
fn outcome(result: tollgate::Result<Decision>) -> Result<Decision, String> {
    result.map_err(|error| error.to_string())
}

/// Runs `cases` sequences from `strategy` through both backends.
fn decide_alike<A: Algorithm>(cases: u32, strategy: impl Strategy<Value = (A, u64, Vec<Op>)>) {
    let Some(server) = RedisServer::start() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connection = runtime.block_on(server.connection());
    let prefixes = AtomicU64::new(0);
    let config = Config { source_file: Some(file!()), ..proptest_config(cases) };
    let result = TestRunner::new(config).run(&strategy, |(algorithm, offset_us, ops)| {
        let clock = ManualClock::starting_at(Duration::from_micros(START_US + offset_us));
        let memory = InMemory::with_clock(algorithm.clone(), clock.clone());
        let redis = Redis::builder(algorithm)
            .prefix(format!("differential:{}:", prefixes.fetch_add(1, Ordering::Relaxed)))
            .client_time(clock.clone())
            .timeout(Duration::from_secs(5))
            .build(connection.clone())
            .unwrap();
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::Advance(us) => clock.advance(Duration::from_micros(us)),
                Op::Back(us) => clock.set(clock.now().saturating_sub(Duration::from_micros(us))),
                Op::Check { key, cost } => {
                    let expected = outcome(memory.check_n_sync(KEYS[key], cost));
                    let actual = outcome(runtime.block_on(redis.check_n(KEYS[key], cost)));
                    prop_assert_eq!(&actual, &expected, "op {} ({:?}) at {:?}", n, op, clock.now());
                }
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// Clock steps that keep 60 of them below 2^53 µs from START_US.
const EVERYDAY_STEP_US: u64 = 1 << 40;

#[test]
fn fixed_window_on_redis_decides_like_in_memory() {
    let strategy = (small(), period_us()).prop_flat_map(|(amount, period_us)| {
        let algorithm = FixedWindow::new(rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(amount, period_us, EVERYDAY_STEP_US))
    });
    decide_alike(128, strategy);
}

#[test]
fn sliding_log_on_redis_decides_like_in_memory() {
    let strategy = (small(), period_us()).prop_flat_map(|(amount, period_us)| {
        let algorithm = SlidingLog::new(rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(amount, period_us, EVERYDAY_STEP_US))
    });
    decide_alike(128, strategy);
}

#[test]
fn token_bucket_on_redis_decides_like_in_memory() {
    let strategy = (small(), small(), period_us()).prop_flat_map(|(capacity, amount, period_us)| {
        let algorithm = TokenBucket::new(capacity, rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(capacity, period_us, EVERYDAY_STEP_US))
    });
    decide_alike(128, strategy);
}

#[test]
fn leaky_bucket_on_redis_decides_like_in_memory() {
    let strategy = (small(), small(), period_us()).prop_flat_map(|(capacity, amount, period_us)| {
        let algorithm = LeakyBucket::new(capacity, rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(capacity + 1, period_us, EVERYDAY_STEP_US))
    });
    decide_alike(128, strategy);
}

/// Steps up to 2^46 µs: sixty of them stay below 2^53 from START_US.
const HUGE_STEP_US: u64 = 1 << 46;

/// Rates at the edge of what validation allows: scaled state up to 2^53, and
/// `elapsed × amount` far beyond it, which the scripts must never form.
#[test]
fn buckets_stay_exact_at_the_limits_of_doubles() {
    let token = (1..=4_u64, 1..=1_u64 << 45, 1_u64 << 40..=1 << 51).prop_flat_map(|(capacity, amount, period_us)| {
        let period_us = period_us.min((1 << 53) / capacity);
        let algorithm = TokenBucket::new(capacity, rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(capacity, period_us, HUGE_STEP_US))
    });
    decide_alike(64, token);
    let leaky = (1..=4_u64, 1..=1_u64 << 45, 1_u64 << 40..=1 << 51).prop_flat_map(|(capacity, amount, period_us)| {
        let period_us = period_us.min((1 << 53) / (capacity + 1));
        let algorithm = LeakyBucket::new(capacity, rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(capacity + 1, period_us, HUGE_STEP_US))
    });
    decide_alike(64, leaky);
}

#[test]
fn windows_and_logs_stay_exact_with_huge_periods_and_amounts() {
    let window = (1..=1_u64 << 53, 1_u64 << 40..=1 << 52).prop_flat_map(|(amount, period_us)| {
        let algorithm = FixedWindow::new(rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(amount.min(1 << 20), period_us, HUGE_STEP_US))
    });
    decide_alike(64, window);
    let log = (1..=64_u64, 1_u64 << 40..=1 << 53).prop_flat_map(|(amount, period_us)| {
        let algorithm = SlidingLog::new(rate(amount, period_us)).unwrap();
        (Just(algorithm), offset(period_us), ops(amount, period_us, HUGE_STEP_US))
    });
    decide_alike(64, log);
}

/// Found by the sequences above: a time plus a period past 2^53 µs lost a
/// microsecond in Lua, until the scripts took durations as differences.
#[test]
fn a_retry_after_whose_end_lies_past_2_53_microseconds_is_exact() {
    let period_us = (1 << 53) - 1;
    let log = SlidingLog::new(rate(2, period_us)).unwrap();
    let ops = vec![Op::Check { key: 0, cost: 1 }, Op::Advance(12_345), Op::Check { key: 0, cost: 2 }];
    decide_alike(1, Just((log, 0, ops.clone())));
    let window = FixedWindow::new(rate(2, 1 << 52)).unwrap();
    decide_alike(1, Just((window, (1 << 52) - START_US % (1 << 52) - 1, ops)));
}
