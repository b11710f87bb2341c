//! Redis state is shared with strangers: a rolling deploy runs the old and
//! the new configuration side by side, limiters of other algorithms share a
//! prefix, and anything may have been written to a key by hand. Whatever a
//! key holds, a limiter never answers with a wait or TTL longer than it can
//! itself produce, a `remaining` outside `0..=limit`, more than its own
//! limit, a wrapped number or a panic; it answers state it cannot read with
//! `Error::InvalidState`, whatever its failure policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tollgate::{
    Decision, Error, FailurePolicy, FixedWindow, LeakyBucket, ManualClock, Rate, RateLimiter, Redis, SlidingLog,
    TokenBucket,
};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::{Model, Spec, Verdict};
use crate::support::proptest_config;
use crate::support::redis_server::RedisServer;

const START: Duration = Duration::from_secs(1_700_000_000);
const HOUR: Duration = Duration::from_secs(3_600);

async fn limiter<A: Spec>(
    connection: &MultiplexedConnection,
    algorithm: A,
    clock: Option<&ManualClock>,
) -> Redis<A, MultiplexedConnection> {
    let mut builder = Redis::builder(algorithm).timeout(Duration::from_secs(5));
    if let Some(clock) = clock {
        builder = builder.client_time(clock.clone());
    }
    builder.build(connection.clone()).unwrap()
}

async fn pttl(connection: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(connection).await.unwrap()
}

// ---------------------------------------------------------------------------
// The defects of the issue, as they were found

/// A deploy that changes a fixed window from 10 a second to 100 an hour
/// used to read the 1 s window's index as an hour's, far in the future, and
/// locked the key out for about 200 000 years.
#[tokio::test]
async fn changing_a_windows_period_never_locks_a_key_out_for_longer_than_the_new_window() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let ten_a_second = limiter(&connection, FixedWindow::new(Rate::per_second(10)).unwrap(), None).await;
    let hundred_an_hour = limiter(&connection, FixedWindow::new(Rate::per_hour(100)).unwrap(), None).await;
    assert!(ten_a_second.check_n("alice", 1).await.unwrap().is_allowed());
    // The one of the 1 s window was admitted in this hour: it counts.
    let ninety_nine = hundred_an_hour.check_n("alice", 99).await.unwrap();
    assert!(ninety_nine.is_allowed(), "{ninety_nine:?}");
    assert_eq!(ninety_nine.remaining(), 0);
    let denied = hundred_an_hour.check("alice").await.unwrap();
    assert!(!denied.is_allowed());
    assert!(denied.retry_after().unwrap() <= HOUR, "{denied:?}");
    assert!(denied.reset_after() <= HOUR, "{denied:?}");
    let ttl = pttl(&mut connection, &hundred_an_hour.redis_key("alice")).await;
    assert!(0 < ttl && ttl <= 3_600_000, "PTTL {ttl} ms");

    // The same in client-time mode, and an hour later the key is free again.
    let clock = ManualClock::starting_at(START + Duration::from_millis(1_500));
    let ten_a_second = limiter(&connection, FixedWindow::new(Rate::per_second(10)).unwrap(), Some(&clock)).await;
    let hundred_an_hour = limiter(&connection, FixedWindow::new(Rate::per_hour(100)).unwrap(), Some(&clock)).await;
    assert!(ten_a_second.check_n("carol", 1).await.unwrap().is_allowed());
    assert!(hundred_an_hour.check_n("carol", 99).await.unwrap().is_allowed());
    assert!(!hundred_an_hour.check("carol").await.unwrap().is_allowed());
    clock.advance(HOUR);
    assert!(hundred_an_hour.check_n("carol", 100).await.unwrap().is_allowed());
}

/// Lowering a limit used to report `remaining` as 18446744073709551547: the
/// script answered -69, cast to u64.
#[tokio::test]
async fn lowering_a_limit_leaves_nothing_remaining_never_a_wrapped_number() {
    let Some(server) = RedisServer::start() else { return };
    let connection = server.connection().await;
    let clock = ManualClock::starting_at(START);

    let hundred = limiter(&connection, TokenBucket::new(100, Rate::per_hour(100)).unwrap(), Some(&clock)).await;
    let ten = limiter(&connection, TokenBucket::new(10, Rate::per_hour(10)).unwrap(), Some(&clock)).await;
    assert!(hundred.check_n("bob", 80).await.unwrap().is_allowed());
    let peek = ten.check_n("bob", 0).await.unwrap();
    assert_eq!((peek.remaining(), peek.limit()), (0, 10), "80 used of a bucket of 10: none left");
    let denied = ten.check("bob").await.unwrap();
    assert_eq!(denied.retry_after(), Some(Duration::from_secs(360)), "one token of 10 an hour");
    assert_eq!(denied.reset_after(), HOUR, "the new bucket refills from empty");

    let hundred = limiter(&connection, FixedWindow::new(Rate::per_hour(100)).unwrap(), Some(&clock)).await;
    let ten = limiter(&connection, FixedWindow::new(Rate::per_hour(10)).unwrap(), Some(&clock)).await;
    assert!(hundred.check_n("bob", 80).await.unwrap().is_allowed());
    let peek = ten.check_n("bob", 0).await.unwrap();
    assert_eq!((peek.remaining(), peek.limit()), (0, 10));
    assert!(!ten.check("bob").await.unwrap().is_allowed());
}

/// A leaky bucket and a token bucket under one prefix used to share a
/// meter; a fixed window's TTL used to expire a bucket's state.
#[tokio::test]
async fn algorithms_under_one_prefix_never_touch_each_others_state() {
    let Some(server) = RedisServer::start() else { return };
    let connection = server.connection().await;
    let leaky = limiter(&connection, LeakyBucket::new(1, Rate::per_second(1)).unwrap(), None).await;
    let token = limiter(&connection, TokenBucket::new(10, Rate::per_hour(10)).unwrap(), None).await;
    assert!(leaky.check("bob").await.unwrap().is_allowed());
    assert_eq!(token.check_n("bob", 0).await.unwrap().remaining(), 10);

    let bucket = limiter(&connection, TokenBucket::new(5, Rate::per_hour(5)).unwrap(), None).await;
    let window = limiter(&connection, FixedWindow::new(Rate::new(5, Duration::from_millis(100))).unwrap(), None).await;
    assert!(bucket.check_n("alice", 5).await.unwrap().is_allowed());
    assert!(window.check("alice").await.unwrap().is_allowed());
    // Long past the window's TTL, the bucket still remembers its five.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!bucket.check("alice").await.unwrap().is_allowed());
    assert_ne!(bucket.redis_key("alice"), window.redis_key("alice"));
}

/// A key of the wrong Redis type used to be a backend error, which
/// `FailurePolicy::Allow` turned into 20 admitted out of a limit of 5.
#[tokio::test]
async fn a_key_of_another_type_is_an_invalid_state_error_under_every_policy() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    for policy in
        [FailurePolicy::ReturnError, FailurePolicy::Allow, FailurePolicy::Deny, FailurePolicy::FallbackToMemory]
    {
        let bucket = Redis::builder(TokenBucket::new(5, Rate::per_hour(5)).unwrap())
            .failure_policy(policy)
            .timeout(Duration::from_secs(5))
            .build(connection.clone())
            .unwrap();
        let key = bucket.redis_key("mallory");
        let () = connection.del(&key).await.unwrap();
        let () = connection.hset(&key, "debt", 0).await.unwrap();
        for _ in 0..20 {
            let outcome = bucket.check("mallory").await;
            assert!(
                matches!(&outcome, Err(Error::InvalidState { key: k, .. }) if *k == key),
                "{policy:?}: {outcome:?}"
            );
        }
        // reset deletes it, and the key starts afresh.
        bucket.reset("mallory").await.unwrap();
        assert!(bucket.check_n("mallory", 5).await.unwrap().is_allowed());
    }
}

/// The largest cost the sliding log accepts used to write a million
/// members and stall Redis for over two seconds.
#[tokio::test]
async fn the_largest_sliding_log_cost_is_one_entry_and_one_quick_call() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let log = SlidingLog::new(Rate::new(1 << 20, Duration::from_micros(1 << 40))).unwrap();
    let limiter = Redis::builder(log).timeout(Duration::from_secs(5)).build(connection.clone()).unwrap();
    let started = Instant::now();
    assert!(limiter.check_n("k", 1 << 20).await.unwrap().is_allowed());
    assert!(!limiter.check("k").await.unwrap().is_allowed());
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let entries: u64 = connection.zcard(limiter.redis_key("k")).await.unwrap();
    assert_eq!(entries, 1);
}

// ---------------------------------------------------------------------------
// Any configuration after any other

/// Random traffic through configuration `A` (checks and reservations), then
/// checks through `B`, on one key of one Redis, in client-time mode. If `A`
/// and `B` are the same algorithm, `B` decides exactly as its model does
/// after the history `A`'s model recorded (`Spec::model_after`: usage
/// carried over, slots reserved ahead carried whole); if not, exactly as on
/// a new key. Either way, within `B`'s own bounds, and past them by no more
/// than the slots `A` reserved ahead take to drain.
fn after_another_configuration<A: Spec, B: Spec>(cases: u32) {
    let Some(server) = RedisServer::start() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connection = runtime.block_on(server.connection());
    let prefixes = AtomicU64::new(0);
    let traffic = |limit: u64, period_us: u64, reserving: bool| {
        let gap = prop_oneof![Just(0), 0..=period_us / 4 + 1, 0..=2 * period_us];
        let max_wait = if reserving {
            prop_oneof![Just(None), (0..=2 * period_us).prop_map(Some)].boxed()
        } else {
            Just(None).boxed()
        };
        prop::collection::vec((gap, 0..=limit + 1, max_wait), 0..30)
    };
    let strategy = (A::everyday(), B::everyday()).prop_flat_map(move |(a, b)| {
        let (ta, tb) = (traffic(a.limit(), a.period_us(), true), traffic(b.limit(), b.period_us(), false));
        (Just(a), Just(b), ta, tb)
    });
    let config = Config { source_file: Some(file!()), ..proptest_config(cases) };
    let result = TestRunner::new(config).run(&strategy, |(a, b, through_a, through_b)| {
        let clock = ManualClock::starting_at(START);
        let case = prefixes.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("pairs:{case}:");
        // The scripts are under test, every field exact: not the deny cache (tests/deny_cache.rs).
        // Each writes the standard or the compact layout (where its algorithm has one), in turn:
        // each reads the other's.
        let first = Redis::builder(a.clone())
            .prefix(&prefix)
            .compact_state(case % 2 == 1)
            .client_time(clock.clone())
            .deny_cache(false)
            .timeout(Duration::from_secs(5));
        let then = Redis::builder(b.clone())
            .prefix(&prefix)
            .compact_state(case / 2 % 2 == 1)
            .client_time(clock.clone())
            .deny_cache(false)
            .timeout(Duration::from_secs(5));
        let (first, then) = (first.build(connection.clone()), then.build(connection.clone()));
        let (first, then) = (first.unwrap(), then.unwrap());
        let mut model_a = a.model();
        let mut now = START.as_micros() as u64;
        for &(gap, cost, max_wait) in &through_a {
            clock.advance(Duration::from_micros(gap));
            now += gap;
            let decided = match max_wait {
                None => runtime.block_on(first.check_n("user", cost)),
                Some(max_wait) => runtime.block_on(first.reserve("user", cost, Duration::from_micros(max_wait))),
            };
            // An error is a cost too high, which changes nothing.
            if let Ok(decision) = decided {
                let expected = match max_wait {
                    None => model_a.decide(now, cost),
                    Some(max_wait) => model_a.reserve(now, cost, max_wait),
                };
                prop_assert_eq!(Verdict::from(decision), expected);
            }
        }
        // The same algorithm carries the usage over; another never sees it.
        let mut model_b = match (&model_a as &dyn std::any::Any).downcast_ref::<B::Model>() {
            Some(written) => b.model_after(written),
            None => b.model(),
        };
        let reserved_ahead_us = b.reserved_ahead_us(&model_b);
        for (n, &(gap, cost, _)) in through_b.iter().enumerate() {
            clock.advance(Duration::from_micros(gap));
            now += gap;
            let outcome = runtime.block_on(then.check_n("user", cost));
            if cost > b.limit() {
                prop_assert!(matches!(outcome, Err(Error::CostTooHigh { .. })), "{:?}", outcome);
                continue;
            }
            let decision = outcome.map_err(|error| TestCaseError::fail(error.to_string()))?;
            within_bounds(&b, &decision, reserved_ahead_us).map_err(TestCaseError::fail)?;
            prop_assert_eq!(Verdict::from(decision), model_b.decide(now, cost), "check {} of {:?} after {:?}", n, b, a);
            if decision.is_allowed() && cost > 0 {
                // What this write set, in client-time mode: one second more than the state lasts.
                let key = then.redis_key("user");
                let ttl_ms: i64 =
                    runtime.block_on(redis::cmd("PTTL").arg(&key).query_async(&mut connection.clone())).unwrap();
                let longest_ms = (b.longest_wait_us() + reserved_ahead_us).div_ceil(1_000) as i64;
                prop_assert!(ttl_ms <= longest_ms + 1_000, "PTTL {} ms", ttl_ms);
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// `decision` is one `algorithm` could make, waiting at most its own
/// longest wait plus `reserved_ahead_us` (what another configuration
/// reserved ahead and this one carried over).
fn within_bounds<A: Spec>(algorithm: &A, decision: &Decision, reserved_ahead_us: u64) -> Result<(), String> {
    let longest = Duration::from_micros(algorithm.longest_wait_us() + reserved_ahead_us);
    let durations = [decision.retry_after().unwrap_or_default(), decision.reset_after(), decision.wait()];
    if decision.limit() != algorithm.limit() || decision.remaining() > decision.limit() {
        return Err(format!("{decision:?} of {algorithm:?}"));
    }
    if durations.iter().any(|duration| *duration > longest) {
        return Err(format!("{decision:?} waits longer than {longest:?}, the most {algorithm:?} can"));
    }
    Ok(())
}

macro_rules! after_each_algorithm {
    ($name:ident, $algorithm:ident, $first:ident) => {
        #[test]
        fn $name() {
            after_another_configuration::<tollgate::$first, tollgate::$algorithm>(24);
        }
    };
}

macro_rules! then_each_algorithm {
    ($name:ident, $algorithm:ident) => {
        mod $name {
            use super::*;
            for_each_algorithm!(after_each_algorithm, $algorithm);
        }
    };
}

mod any_configuration_after {
    use super::*;
    for_each_algorithm!(then_each_algorithm);
}

// ---------------------------------------------------------------------------
// Garbage in a key

/// A string state as the scripts write one: a tag byte, then big-endian doubles.
fn packed(tag: u8, numbers: &[f64]) -> Vec<u8> {
    let mut bytes = vec![tag];
    for number in numbers {
        bytes.extend_from_slice(&number.to_be_bytes());
    }
    bytes
}

/// What a hand, another program or an older version may leave in a key
/// where an algorithm whose state tag is `tag` and holds `fields` numbers
/// looks: each written with `write`, then checked.
fn garbage(tag: u8, fields: usize) -> Vec<(&'static str, Garbage)> {
    let good = vec![1.0; fields];
    let with = |at: usize, value: f64| {
        let mut numbers = good.clone();
        numbers[at] = value;
        Garbage::String(packed(tag, &numbers))
    };
    let mut cases = vec![
        ("a number", Garbage::String(b"12".to_vec())),
        ("text", Garbage::String(b"hello, world".to_vec())),
        ("an empty string", Garbage::String(Vec::new())),
        ("another algorithm's tag", Garbage::String(packed(if tag == b'f' { b't' } else { b'f' }, &good))),
        ("a state one byte short", Garbage::String(packed(tag, &good)[..1 + 8 * fields - 1].to_vec())),
        ("a hash", Garbage::Hash),
        ("a list", Garbage::List),
        ("a set", Garbage::Set),
        ("a sorted set", Garbage::SortedSet("1:1")),
    ];
    if tag == b'f' || tag == b'w' {
        // Digits that are not a counter's compact layout, <start ms><counts in 6 digits>.
        cases.extend(
            [
                ("six digits", "123456"),
                ("twenty digits", "12345678901234567890"),
                ("a start past 2^53 µs", "9007199254741000001"),
                ("a sign", "-1700000001000000002"),
                ("a decimal point", "1700000001000.000002"),
                ("a space", " 1700000001000000002"),
                ("hexadecimal", "0x17000000010000002"),
                ("an exponent", "17000000010000e0002"),
            ]
            .map(|(what, text)| (what, Garbage::String(text.as_bytes().to_vec()))),
        );
    }
    for at in 0..fields {
        cases.extend([
            ("a negative number", with(at, -1.0)),
            ("a number above 2^53", with(at, 2f64.powi(60))),
            ("a fraction", with(at, 0.5)),
            ("infinity", with(at, f64::INFINITY)),
            ("NaN", with(at, f64::NAN)),
        ]);
    }
    cases
}

/// For the sliding log, whose state is a sorted set.
fn log_garbage() -> Vec<(&'static str, Garbage)> {
    vec![
        ("a string", Garbage::String(b"12".to_vec())),
        ("a hash", Garbage::Hash),
        ("a member that is not <total>:<cost>", Garbage::SortedSet("hello")),
        ("a negative cost", Garbage::SortedSet("1:-1")),
        ("a zero cost", Garbage::SortedSet("1:0")),
        ("a total above 2^48", Garbage::SortedSet("300000000000000:1")),
        ("a total above 2^53", Garbage::SortedSet("90071992547409930:1")),
    ]
}

#[derive(Debug, Clone)]
enum Garbage {
    String(Vec<u8>),
    Hash,
    List,
    Set,
    /// One member, scored now.
    SortedSet(&'static str),
}

async fn write(connection: &mut MultiplexedConnection, key: &str, garbage: &Garbage) {
    let () = connection.del(key).await.unwrap();
    match garbage {
        Garbage::String(bytes) => connection.set(key, bytes.as_slice()).await.unwrap(),
        Garbage::Hash => connection.hset(key, "debt", 1).await.unwrap(),
        Garbage::List => connection.rpush(key, 1).await.unwrap(),
        Garbage::Set => connection.sadd(key, 1).await.unwrap(),
        Garbage::SortedSet(member) => {
            let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
            connection.zadd(key, *member, now_us as f64).await.unwrap()
        }
    }
}

/// The garbage to try on `key`, found from the state a real check wrote
/// there: a string state's tag and length, or a sorted set.
async fn garbage_for(connection: &mut MultiplexedConnection, key: &str) -> Vec<(&'static str, Garbage)> {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(connection).await.unwrap();
    match kind.as_str() {
        "string" => {
            let state: Vec<u8> = connection.get(key).await.unwrap();
            assert_eq!((state.len() - 1) % 8, 0, "a tag, then doubles: {state:?}");
            garbage(state[0], (state.len() - 1) / 8)
        }
        "zset" => log_garbage(),
        other => panic!("a state of Redis type {other}: add its garbage here"),
    }
}

/// Every kind of garbage, under every policy: an `InvalidState` error
/// naming the key, never a decision, never a panic; and nothing written.
async fn garbage_is_an_error<A: Spec>() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let algorithm = A::with_limit(5, HOUR);
    let real = Redis::builder(algorithm.clone()).timeout(Duration::from_secs(5)).build(connection.clone()).unwrap();
    assert!(real.check("mallory").await.unwrap().is_allowed());
    let key = real.redis_key("mallory");
    let cases = garbage_for(&mut connection, &key).await;
    for policy in [FailurePolicy::ReturnError, FailurePolicy::Allow, FailurePolicy::FallbackToMemory] {
        let limiter: Arc<dyn RateLimiter> = Arc::new(
            Redis::builder(algorithm.clone())
                .failure_policy(policy)
                .timeout(Duration::from_secs(5))
                .build(connection.clone())
                .unwrap(),
        );
        for (what, garbage) in &cases {
            write(&mut connection, &key, garbage).await;
            for cost in [0, 1] {
                let outcome = limiter.check_n("mallory", cost).await;
                assert!(
                    matches!(&outcome, Err(Error::InvalidState { key: k, .. }) if *k == key),
                    "{algorithm:?}, {policy:?}, {what}, cost {cost}: {outcome:?}"
                );
            }
            let (kind, ttl): (String, i64) =
                redis::pipe().cmd("TYPE").arg(&key).cmd("PTTL").arg(&key).query_async(&mut connection).await.unwrap();
            assert_ne!(kind, "none", "{what}: the key was deleted");
            assert_eq!(ttl, -1, "{what}: the key was written");
        }
    }
}

macro_rules! garbage_in_a_key {
    ($name:ident, $algorithm:ident) => {
        #[tokio::test]
        async fn $name() {
            garbage_is_an_error::<tollgate::$algorithm>().await;
        }
    };
}

mod garbage_in_a_key_is_an_invalid_state_error {
    use super::*;
    for_each_algorithm!(garbage_in_a_key);
}

// ---------------------------------------------------------------------------
// Every call's cost to Redis is bounded

/// The longest any one script call may run on Redis here: the goal is about
/// a millisecond; the bound is generous for a loaded 2-core machine.
pub(crate) const SLOWEST_CALL: Duration = Duration::from_millis(20);

/// The durations (µs) of the script calls Redis's SLOWLOG recorded since it
/// was last reset, longest first.
pub(crate) async fn script_calls_us(connection: &mut MultiplexedConnection) -> Vec<u64> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(connection).await.unwrap();
    let mut durations: Vec<u64> = entries
        .iter()
        .filter_map(|entry| match entry {
            redis::Value::Array(fields) => match (&fields[2], &fields[3]) {
                (redis::Value::Int(us), redis::Value::Array(args))
                    if matches!(args.first(), Some(redis::Value::BulkString(name)) if name.eq_ignore_ascii_case(b"evalsha") || name.eq_ignore_ascii_case(b"eval")) =>
                {
                    Some(*us as u64)
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    durations.sort_unstable_by(|a, b| b.cmp(a));
    durations
}

pub(crate) async fn slowlog_everything(connection: &mut MultiplexedConnection) {
    let () =
        redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(0).query_async(connection).await.unwrap();
    let () = redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(100_000).query_async(connection).await.unwrap();
    let () = redis::cmd("SLOWLOG").arg("RESET").query_async(connection).await.unwrap();
}

/// Admissions, denials, peeks and reservations of every algorithm, at
/// everyday sizes and at the largest configurations the constructors accept.
async fn every_call_is_quick<A: Spec>() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    slowlog_everything(&mut connection).await;
    let mut runner = TestRunner::deterministic();
    let largest = A::at_the_edge().new_tree(&mut runner).unwrap().current();
    for algorithm in [A::with_limit(5, HOUR), largest] {
        let limiter =
            Redis::builder(algorithm.clone()).timeout(Duration::from_secs(5)).build(connection.clone()).unwrap();
        let limit = algorithm.limit().min(1 << 20);
        for cost in [0, 1, limit, limit, 1, 0] {
            let _ = limiter.check_n("k", cost).await.unwrap();
        }
        // Reservations far ahead, and one past the reach.
        for max_wait in [HOUR, 1_000 * HOUR, Duration::MAX] {
            let _ = limiter.reserve("k", limit, max_wait).await.unwrap();
        }
    }
    let calls = script_calls_us(&mut connection).await;
    eprintln!("{}: slowest script calls (µs): {:?}", A::with_limit(5, HOUR).name(), &calls[..calls.len().min(5)]);
    assert!(calls.len() >= 12, "{calls:?}");
    assert!(calls[0] <= SLOWEST_CALL.as_micros() as u64, "a call took {} µs", calls[0]);
}

macro_rules! every_call_is_quick {
    ($name:ident, $algorithm:ident) => {
        #[tokio::test]
        async fn $name() {
            every_call_is_quick::<tollgate::$algorithm>().await;
        }
    };
}

mod every_script_call_is_quick {
    use super::*;
    for_each_algorithm!(every_call_is_quick);
}

/// The sliding log's worst cases: a full log of 2^20 requests of cost 1
/// (built by the server itself, in one call), then the largest cost denied
/// (a bisection over a million entries), then a million entries leaving the
/// window at once and a write after it (which removes only 64 of them).
/// Prints the figures docs/redis.md quotes, and MEMORY USAGE of the key.
#[tokio::test]
async fn a_sliding_log_of_a_million_entries_costs_each_call_little() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let amount = SlidingLog::MAX_AMOUNT;
    let clock = ManualClock::starting_at(START);
    let limiter = Redis::builder(SlidingLog::new(Rate::new(amount, HOUR)).unwrap())
        .client_time(clock.clone())
        .timeout(Duration::from_secs(30))
        .build(connection.clone())
        .unwrap();
    let key = limiter.redis_key("k");
    // Entry n at START + n µs, members "<n>:1": what a million admissions of cost 1 write.
    let fill_source = "for n = tonumber(ARGV[2]), tonumber(ARGV[3]) - 1 do \
                  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + n, string.format('%d:1', n)) \
                end \
                redis.call('PEXPIRE', KEYS[1], 86400000)";
    let start_us = START.as_micros() as u64;
    for from in (0..amount).step_by(1 << 14) {
        let mut fill = redis::cmd("EVAL");
        fill.arg(fill_source).arg(1).arg(&key).arg(start_us).arg(from).arg(from + (1 << 14));
        let () = fill.query_async(&mut connection).await.unwrap();
    }
    let bytes: u64 =
        redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query_async(&mut connection).await.unwrap();
    slowlog_everything(&mut connection).await;

    clock.advance(Duration::from_micros(amount));
    let peek = limiter.check_n("k", 0).await.unwrap();
    assert_eq!(peek.remaining(), 0);
    let denied = limiter.check_n("k", amount).await.unwrap();
    // All of them must leave: the newest does an hour after it was admitted.
    assert_eq!(denied.retry_after(), Some(HOUR - Duration::from_micros(amount) + Duration::from_micros(amount - 1)));
    let denied_one = limiter.check("k").await.unwrap();
    assert_eq!(denied_one.retry_after(), Some(HOUR - Duration::from_micros(amount)));
    clock.advance(HOUR);
    assert!(limiter.check("k").await.unwrap().is_allowed());
    let entries: u64 = connection.zcard(&key).await.unwrap();
    assert_eq!(entries, amount - 64 + 1, "a write removes 64 old entries, no more");

    let calls = script_calls_us(&mut connection).await;
    eprintln!(
        "sliding log of {amount} entries: MEMORY USAGE {bytes} bytes ({:.1} per entry); script calls (µs): {calls:?}",
        bytes as f64 / amount as f64
    );
    assert!(calls.len() >= 4, "{calls:?}");
    assert!(calls[0] <= SLOWEST_CALL.as_micros() as u64, "a call took {} µs", calls[0]);
}
