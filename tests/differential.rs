//! Redis decides exactly like `InMemory`: random sequences of time steps,
//! keys and costs run through both, in client-time mode on one shared
//! `ManualClock`, must give equal outcomes, every `Decision` field included,
//! and every key Redis writes must expire exactly when its state reads as
//! new. `InMemory` runs the pure step, so this holds each Lua script to it.
//! Then the server's own `TIME`, the default, against `InMemory` on a clock
//! read from that `TIME`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::aio::MultiplexedConnection;
use tollgate::{Algorithm, Clock, Decision, InMemory, ManualClock, RateLimiter, Redis};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::Spec;
use crate::support::proptest_config;
use crate::support::redis_server::RedisServer;

/// About now, in µs since the epoch: the scripts see realistic magnitudes.
const START_US: u64 = 1_700_000_000_000_000;

/// What a sequence does.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Moves the clock forward, µs.
    Advance(u64),
    /// Moves the clock back, µs (limiters must not admit more for it).
    Back(u64),
    /// Checks one of three keys at a cost: from 0 (a peek) to one more than
    /// the most the limiter admits (an error on both backends); in the plan
    /// of that index, if one is named (`quotas_differential.rs`).
    Check { key: usize, cost: u64, plan: Option<usize> },
    /// Reserves on one of three keys a slot at most `max_wait` µs away.
    Reserve { key: usize, cost: u64, max_wait: u64 },
}

pub(crate) const KEYS: [&str; 3] = ["alice", "bob", "{carol}"];

/// Sequences for a limiter admitting at most `limit` at once, with period
/// `period_us`, of `plans` plans to name (0: none); clock steps stay below
/// `max_step_us`, so the clock stays below 2^53 µs (exact in Lua) however
/// long the sequence.
pub(crate) fn ops(limit: u64, period_us: u64, max_step_us: u64, plans: usize) -> impl Strategy<Value = Vec<Op>> {
    let step = (2 * period_us).min(max_step_us);
    let plan = if plans == 0 { Just(None).boxed() } else { prop::option::of(0..plans).boxed() };
    let cost = 0..=limit.min(1 << 20) + 1;
    let max_wait = prop_oneof![Just(0), 0..=3 * period_us, Just(u64::MAX)];
    let op = prop_oneof![
        6 => (0..KEYS.len(), cost.clone(), plan).prop_map(|(key, cost, plan)| Op::Check { key, cost, plan }),
        3 => (0..KEYS.len(), cost, max_wait).prop_map(|(key, cost, max_wait)| Op::Reserve { key, cost, max_wait }),
        2 => (0..=1_000_u64.min(step)).prop_map(Op::Advance),
        2 => (0..=step).prop_map(Op::Advance),
        1 => (0..=step).prop_map(Op::Back),
    ];
    proptest::collection::vec(op, 1..60)
}

/// Where the clock starts, past START_US: anywhere in a period, but at most
/// 2^50 µs, so that the clock stays below 2^53 µs (the year 2255), the
/// range the scripts support.
pub(crate) fn offset(period_us: u64) -> std::ops::Range<u64> {
    0..period_us.min(1 << 50)
}

/// One outcome, comparable: the decision, or the error's text.
fn outcome(result: tollgate::Result<Decision>) -> Result<Decision, String> {
    result.map_err(|error| error.to_string())
}

/// The TTL (ms) Redis should hold for a key just written in client-time
/// mode: the decision's reset_after (the time until the state reads as new),
/// rounded up to whole ms, plus the second that client-time mode adds.
fn expected_ttl_ms(decision: &Decision) -> i64 {
    decision.reset_after().as_micros().div_ceil(1_000) as i64 + 1_000
}

/// Both backends of one algorithm, on one clock, as a check in a sequence
/// finds them.
pub(crate) struct Pair<'a, A: Algorithm> {
    pub(crate) runtime: &'a tokio::runtime::Runtime,
    pub(crate) connection: &'a MultiplexedConnection,
    pub(crate) clock: &'a ManualClock,
    pub(crate) memory: &'a InMemory<A, ManualClock>,
    pub(crate) redis: &'a Redis<A, MultiplexedConnection>,
    /// Whether the clock has gone back in this sequence: TTLs are then
    /// measured from the newest time in the state instead.
    pub(crate) went_back: bool,
}

/// Runs `cases` of `strategy`'s algorithms, clock offsets and sequences
/// through an `InMemory` and a `Redis` (client-time mode, a fresh prefix
/// each) on one `ManualClock`, moving the clock as the sequence says and
/// calling `check` for each check of it.
pub(crate) fn alike<A: Algorithm>(
    cases: u32,
    strategy: impl Strategy<Value = (A, u64, Vec<Op>)>,
    source_file: &'static str,
    check: impl Fn(&Pair<'_, A>, usize, &Op) -> Result<(), TestCaseError>,
) {
    let Some(server) = RedisServer::start() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connection = runtime.block_on(server.connection());
    let prefixes = AtomicU64::new(0);
    let config = Config { source_file: Some(source_file), ..proptest_config(cases) };
    let result = TestRunner::new(config).run(&strategy, |(algorithm, offset_us, ops)| {
        let clock = ManualClock::starting_at(Duration::from_micros(START_US + offset_us));
        let memory = InMemory::with_clock(algorithm.clone(), clock.clone());
        let case = prefixes.fetch_add(1, Ordering::Relaxed);
        let redis = Redis::builder(algorithm)
            .prefix(format!("differential:{case}:"))
            // Every other case writes the compact layouts (where an algorithm has one).
            .compact_state(case % 2 == 1)
            .client_time(clock.clone())
            .timeout(Duration::from_secs(5))
            // The scripts are under test, every field exact: not the deny cache (tests/deny_cache.rs).
            .deny_cache(false)
            .build(connection.clone())
            .unwrap();
        let mut pair = Pair {
            runtime: &runtime,
            connection: &connection,
            clock: &clock,
            memory: &memory,
            redis: &redis,
            went_back: false,
        };
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::Advance(us) => clock.advance(Duration::from_micros(us)),
                Op::Back(us) => {
                    clock.set(clock.now().saturating_sub(Duration::from_micros(us)));
                    pair.went_back |= us > 0;
                }
                Op::Check { .. } | Op::Reserve { .. } => check(&pair, n, op)?,
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// Runs `cases` sequences of `strategy`'s algorithms through both backends.
fn decide_alike<A: Spec>(cases: u32, strategy: impl Strategy<Value = (A, u64, Vec<Op>)>) {
    alike(cases, strategy, file!(), |pair, n, op| {
        let (key, cost, expected, written, actual) = match *op {
            Op::Check { key, cost, .. } => {
                let expected = outcome(pair.memory.check_n_sync(KEYS[key], cost));
                let written = Instant::now();
                (key, cost, expected, written, outcome(pair.runtime.block_on(pair.redis.check_n(KEYS[key], cost))))
            }
            Op::Reserve { key, cost, max_wait } => {
                let max_wait = Duration::from_micros(max_wait);
                let expected = outcome(pair.memory.reserve_sync(KEYS[key], cost, max_wait));
                let written = Instant::now();
                let actual = outcome(pair.runtime.block_on(pair.redis.reserve(KEYS[key], cost, max_wait)));
                (key, cost, expected, written, actual)
            }
            _ => return Ok(()),
        };
        prop_assert_eq!(&actual, &expected, "op {} ({:?}) at {:?}", n, op, pair.clock.now());
        // A clock held back measures the TTL from the newest time in the state instead.
        if let Some(decision) = actual.as_ref().ok().filter(|d| d.is_allowed() && cost > 0 && !pair.went_back) {
            check_ttl(pair.runtime, pair.connection, &pair.redis.redis_key(KEYS[key]), decision, written)?;
        }
        Ok(())
    });
}

/// The key expires exactly when the decision says the state reads as new:
/// no later, and no earlier than the real time since the write allows.
pub(crate) fn check_ttl(
    runtime: &tokio::runtime::Runtime,
    connection: &MultiplexedConnection,
    redis_key: &str,
    decision: &Decision,
    written: Instant,
) -> Result<(), TestCaseError> {
    let ttl_ms: i64 = runtime.block_on(redis::cmd("PTTL").arg(redis_key).query_async(&mut connection.clone())).unwrap();
    let expected = expected_ttl_ms(decision);
    let elapsed_ms = written.elapsed().as_millis() as i64 + 1;
    prop_assert!(
        ttl_ms <= expected && ttl_ms >= expected - elapsed_ms,
        "{}: PTTL {} ms, expected {} ms ({} ms elapsed) after {:?}",
        redis_key,
        ttl_ms,
        expected,
        elapsed_ms,
        decision
    );
    Ok(())
}

/// Clock steps that keep 60 of them below 2^53 µs from START_US.
pub(crate) const EVERYDAY_STEP_US: u64 = 1 << 40;

/// Steps up to 2^46 µs: sixty of them stay below 2^53 from START_US.
pub(crate) const HUGE_STEP_US: u64 = 1 << 46;

fn everyday<A: Spec>() -> impl Strategy<Value = (A, u64, Vec<Op>)> {
    A::everyday().prop_flat_map(|algorithm| {
        let (limit, period_us) = (algorithm.limit(), algorithm.period_us());
        (Just(algorithm), offset(period_us), ops(limit, period_us, EVERYDAY_STEP_US, 0))
    })
}

/// Configurations at the edge of what validation allows: scaled state up to
/// 2^53, and `elapsed × amount` far beyond it, which the scripts must never
/// form.
fn at_the_edge<A: Spec>() -> impl Strategy<Value = (A, u64, Vec<Op>)> {
    A::at_the_edge().prop_flat_map(|algorithm| {
        let (limit, period_us) = (algorithm.limit(), algorithm.period_us());
        (Just(algorithm), offset(period_us), ops(limit, period_us, HUGE_STEP_US, 0))
    })
}

/// Redis against `InMemory` with the server's `TIME`: `InMemory` runs on a
/// clock set, before each check, to the middle of two reads of Redis's
/// `TIME` around the check. Counts must agree exactly; durations within
/// the time those reads leave open (summed over the sequence, since each
/// write's time carries into later decisions).
async fn server_time_agrees_with_a_clock_read_from_it<A: Spec>() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let algorithm = A::with_limit(5, Duration::from_secs(3_600));
    let clock = ManualClock::new();
    let memory = InMemory::with_clock(algorithm.clone(), clock.clone());
    let redis =
        Redis::builder(algorithm.clone()).timeout(Duration::from_secs(5)).deny_cache(false).build(connection.clone());
    let redis = redis.unwrap();
    let mut slack_us = 0;
    for (n, cost) in [1, 0, 2, 1, 3, 0, 1, 1, 2, 0].into_iter().enumerate() {
        let before = redis_time_us(&mut connection).await;
        let actual = redis.check_n("user", cost).await.unwrap();
        let after = redis_time_us(&mut connection).await;
        clock.set(Duration::from_micros((before + after) / 2));
        slack_us += (after - before).div_ceil(2) + 1;
        let expected = memory.check_n_sync("user", cost).unwrap();
        let counts = |d: &Decision| (d.is_allowed(), d.limit(), d.remaining());
        assert_eq!(counts(&actual), counts(&expected), "check {n} of {algorithm:?}");
        let durations = |d: &Decision| [d.retry_after().unwrap_or_default(), d.reset_after(), d.wait()];
        for (got, want) in durations(&actual).into_iter().zip(durations(&expected)) {
            let off_us = got.as_micros().abs_diff(want.as_micros());
            assert!(off_us <= u128::from(slack_us), "check {n} of {algorithm:?}: {actual:?} against {expected:?}");
        }
    }
}

async fn redis_time_us(connection: &mut MultiplexedConnection) -> u64 {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query_async(connection).await.unwrap();
    seconds * 1_000_000 + micros
}

macro_rules! decides_like_in_memory {
    ($name:ident, $algorithm:ident) => {
        mod $name {
            use super::*;

            #[test]
            fn on_everyday_configurations() {
                decide_alike(128, everyday::<tollgate::$algorithm>());
            }

            #[test]
            fn at_the_limits_of_exact_arithmetic() {
                decide_alike(64, at_the_edge::<tollgate::$algorithm>());
            }

            #[tokio::test]
            async fn with_the_servers_time() {
                server_time_agrees_with_a_clock_read_from_it::<tollgate::$algorithm>().await;
            }
        }
    };
}

for_each_algorithm!(decides_like_in_memory);

/// Found by the sequences above: a time plus a period past 2^53 µs lost a
/// microsecond in Lua, until the scripts took durations as differences.
#[test]
fn a_retry_after_whose_end_lies_past_2_53_microseconds_is_exact() {
    use tollgate::{FixedWindow, SlidingLog};
    let rate = crate::support::models::rate;
    let period_us = (1 << 53) - 1;
    let log = SlidingLog::new(rate(2, period_us)).unwrap();
    let ops =
        vec![Op::Check { key: 0, cost: 1, plan: None }, Op::Advance(12_345), Op::Check { key: 0, cost: 2, plan: None }];
    decide_alike(1, Just((log, 0, ops.clone())));
    let window = FixedWindow::new(rate(2, 1 << 52)).unwrap();
    decide_alike(1, Just((window, (1 << 52) - START_US % (1 << 52) - 1, ops)));
}

/// Found by the sequences above: the Redis backend capped a reservation's
/// wait at the reach of the largest cost, where the step caps it at the
/// reach of the cost asked for, and denied a slot memory reserved.
#[test]
fn a_reservation_near_2_53_reaches_as_far_in_lua_as_in_memory() {
    let bucket = tollgate::LeakyBucket::new(2, crate::support::models::rate(32_295_612_640_105, 1_235_412_726_253_877));
    let ops = vec![Op::Reserve { key: 0, cost: 1, max_wait: u64::MAX }; 9];
    decide_alike(1, Just((bucket.unwrap(), 0, ops)));
}
