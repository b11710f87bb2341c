//! The Redis backend against real redis-server processes: the conformance
//! suite, then what only Redis has (key layout, TTLs, script reloads, prefixes,
//! failure policies).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use tollgate::{
    Algorithm, Error, FailurePolicy, FixedWindow, LeakyBucket, Limit, ManualClock, Rate, RateLimiter, Redis,
    SlidingLog, SlidingWindow, TokenBucket,
};

use crate::support::algorithms::{collected, for_each_algorithm};
use crate::support::models::Spec;
use crate::support::redis_server::RedisServer;

mod conformance {
    use crate::support::deployment::{Conformance, Single};

    crate::conformance::conformance_suite!(Single::start().map(Conformance::new));
}

/// A realistic epoch time, for client-time limiters.
const START: Duration = Duration::from_secs(1_700_000_000);

#[tokio::test]
async fn a_key_is_the_prefix_the_algorithm_then_the_user_key_in_braces_holding_the_algorithms_state() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let window = Redis::builder(FixedWindow::new(Rate::per_second(5)).unwrap())
        .timeout(Duration::from_secs(5))
        .connect(&server.url())
        .await
        .unwrap();
    assert_eq!(window.redis_key("user:1"), "tollgate:fw:{user:1}");
    let _ = window.check_n("user:1", 2).await.unwrap();
    // One string: 'f', the window's start (µs) and its count, as big-endian doubles.
    let state: Vec<u8> = redis.get("tollgate:fw:{user:1}").await.unwrap();
    assert_eq!((state.len(), state[0]), (17, b'f'));
    assert_eq!(f64::from_be_bytes(state[9..17].try_into().unwrap()), 2.0);

    let log = Redis::builder(SlidingLog::new(Rate::per_second(5)).unwrap())
        .prefix("log:")
        .timeout(Duration::from_secs(5))
        .build(redis.clone())
        .unwrap();
    assert_eq!(log.redis_key("user:1"), "log:sl:{user:1}");
    let _ = log.check_n("user:1", 3).await.unwrap();
    let _ = log.check_n("user:1", 2).await.unwrap();
    let members: Vec<(String, u64)> = redis.zrange_withscores("log:sl:{user:1}", 0, -1).await.unwrap();
    // One entry per request (two requests in the same µs share one), "<total before>:<cost>".
    assert!(
        matches!(&members[..], [(first, _), (second, _)] if first == "0:3" && second == "3:2")
            || matches!(&members[..], [(only, _)] if only == "0:5"),
        "{members:?}"
    );

    for (bucket, tag, byte) in [
        (Limit::from(TokenBucket::new(5, Rate::per_second(5)).unwrap()), "tb", b't'),
        (Limit::from(LeakyBucket::new(5, Rate::per_second(5)).unwrap()), "lb", b'l'),
    ] {
        let limiter: Arc<dyn RateLimiter> = match bucket {
            Limit::TokenBucket(bucket) => Arc::new(
                Redis::builder(bucket).prefix("b:").timeout(Duration::from_secs(5)).build(redis.clone()).unwrap(),
            ),
            Limit::LeakyBucket(bucket) => Arc::new(
                Redis::builder(bucket).prefix("b:").timeout(Duration::from_secs(5)).build(redis.clone()).unwrap(),
            ),
            _ => unreachable!(),
        };
        let _ = limiter.check("user:1").await.unwrap();
        // The meter: a tag, the debt, when, and the period it was written with.
        let state: Vec<u8> = redis.get(format!("b:{tag}:{{user:1}}")).await.unwrap();
        assert_eq!((state.len(), state[0]), (25, byte));
        assert_eq!(f64::from_be_bytes(state[17..25].try_into().unwrap()), 1_000_000.0);
    }
}

/// `key` is kept as a number inside its object (`OBJECT ENCODING` `int`),
/// and costs what a key of a name as long holding any one integer costs.
async fn held_as_an_integer(redis: &mut redis::aio::MultiplexedConnection, key: &str) {
    let encoding: String = redis::cmd("OBJECT").arg("ENCODING").arg(key).query_async(redis).await.unwrap();
    assert_eq!(encoding, "int");
    let integer_key = "x".repeat(key.len());
    let () = redis.set(&integer_key, 42).await.unwrap();
    let mut memory = Vec::new();
    for key in [key, &integer_key] {
        let bytes: u64 =
            redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query_async(redis).await.unwrap();
        memory.push(bytes);
    }
    assert_eq!(memory[0], memory[1], "{key} against {integer_key}");
}

/// A limiter of `algorithm` on `clock`, writing the compact layout if
/// `compact`, with no deny cache: every check is Redis's.
fn on_clock<A: Algorithm>(
    algorithm: A,
    compact: bool,
    clock: &ManualClock,
    connection: &redis::aio::MultiplexedConnection,
) -> Redis<A, redis::aio::MultiplexedConnection> {
    Redis::builder(algorithm)
        .compact_state(compact)
        .client_time(clock.clone())
        .timeout(Duration::from_secs(5))
        .deny_cache(false)
        .build(connection.clone())
        .unwrap()
}

/// `compact_state`: a fixed window's key holds one integer, the window's
/// start in ms then its count in six digits, which Redis keeps inside the
/// key: the memory of a key holding any one integer.
#[tokio::test]
async fn a_compact_fixed_window_holds_one_integer_and_costs_what_an_integer_key_costs() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let clock = ManualClock::starting_at(START + Duration::from_millis(1_500));
    let window = on_clock(FixedWindow::new(Rate::per_second(5)).unwrap(), true, &clock, &redis);
    let _ = window.check_n("user:1", 2).await.unwrap();
    let key = window.redis_key("user:1");
    let state: String = redis.get(&key).await.unwrap();
    assert_eq!(state, "1700000001000000002", "the window of 1 700 000 001 s, two units");
    held_as_an_integer(&mut redis, &key).await;
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(0 < ttl && ttl <= 1_500, "to the window's end, and a second in client-time mode: {ttl} ms");
}

/// `compact_state`: a sliding window's key holds one integer too, the
/// window's start in ms then its count and the previous window's, three
/// digits each.
#[tokio::test]
async fn a_compact_sliding_window_holds_one_integer_and_costs_what_an_integer_key_costs() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let clock = ManualClock::starting_at(START + Duration::from_millis(1_500));
    let window = on_clock(SlidingWindow::new(Rate::per_second(5)).unwrap(), true, &clock, &redis);
    let key = window.redis_key("user:1");
    let _ = window.check_n("user:1", 2).await.unwrap();
    assert_eq!(redis.get::<_, String>(&key).await.unwrap(), "1700000001000002000", "two units, none before");
    clock.advance(Duration::from_secs(1));
    // Half of the previous window's two still weigh: 5 - 1 - 1.
    assert_eq!(window.check("user:1").await.unwrap().remaining(), 3);
    assert_eq!(redis.get::<_, String>(&key).await.unwrap(), "1700000002000001002", "one unit, two before");
    held_as_an_integer(&mut redis, &key).await;
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(1_000 < ttl && ttl <= 2_500, "to the end of the next window, and a second in client-time mode: {ttl} ms");
}

/// Each sliding window layout is read by a limiter that writes the other,
/// both counts carried over, and the denial the same whichever reads it.
#[tokio::test]
async fn either_sliding_window_layout_is_read_by_a_limiter_writing_the_other() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let limiter = |compact| on_clock(SlidingWindow::new(Rate::per_minute(5)).unwrap(), compact, &clock, &redis);
    let (standard, compact) = (limiter(false), limiter(true));
    let key = standard.redis_key("k");
    assert_eq!(standard.check_n("k", 2).await.unwrap().remaining(), 3);
    assert_eq!(redis.strlen::<_, usize>(&key).await.unwrap(), 25);
    assert_eq!(compact.check_n("k", 1).await.unwrap().remaining(), 2);
    assert_eq!(redis.get::<_, String>(&key).await.unwrap(), "1699999980000003000");
    // The next window, 50 s in: a sixth of the previous three still weigh.
    clock.advance(Duration::from_secs(90));
    assert_eq!(standard.check_n("k", 2).await.unwrap().remaining(), 2);
    assert_eq!(redis.strlen::<_, usize>(&key).await.unwrap(), 25);
    assert_eq!(compact.check_n("k", 1).await.unwrap().remaining(), 1);
    assert_eq!(redis.get::<_, String>(&key).await.unwrap(), "1700000040000003003");
    let (by_standard, by_compact) = (standard.check_n("k", 3).await.unwrap(), compact.check_n("k", 3).await.unwrap());
    assert!(!by_compact.is_allowed());
    assert_eq!(by_standard, by_compact);
}

/// Each fixed window layout is read by a limiter that writes the other, so
/// a deploy that turns `compact_state` on (or off) carries every count over.
#[tokio::test]
async fn either_fixed_window_layout_is_read_by_a_limiter_writing_the_other() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let limiter = |compact| on_clock(FixedWindow::new(Rate::per_minute(5)).unwrap(), compact, &clock, &redis);
    let (standard, compact) = (limiter(false), limiter(true));
    let key = standard.redis_key("k");
    assert_eq!(standard.check_n("k", 2).await.unwrap().remaining(), 3);
    assert_eq!(redis.strlen::<_, usize>(&key).await.unwrap(), 17);
    assert_eq!(compact.check_n("k", 1).await.unwrap().remaining(), 2);
    assert_eq!(redis.get::<_, String>(&key).await.unwrap(), "1699999980000000003");
    assert_eq!(standard.check_n("k", 2).await.unwrap().remaining(), 0);
    assert_eq!(redis.strlen::<_, usize>(&key).await.unwrap(), 17);
    let denied = compact.check("k").await.unwrap();
    assert!(!denied.is_allowed());
    assert_eq!(denied.retry_after(), Some(Duration::from_secs(40)), "the minute from 1 699 999 980 s");
}

/// Where the compact layout cannot hold a counter's state, a compact
/// limiter writes the standard one: a window that does not start on a whole
/// millisecond, or counts past the layout's digits (a million for the fixed
/// window; a thousand, in the window or the one before, for the sliding
/// window).
#[tokio::test]
async fn a_compact_counter_writes_the_standard_layout_where_the_compact_cannot_hold_it() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let clock = ManualClock::starting_at(START + Duration::from_micros(2_500));
    // Windows of 1.5 ms: this one starts at ...002 500 µs.
    let short = Rate::new(10, Duration::from_micros(1_500));
    let fixed = on_clock(FixedWindow::new(short).unwrap(), true, &clock, &redis);
    assert!(fixed.check("k").await.unwrap().is_allowed());
    assert_eq!(redis.strlen::<_, usize>(fixed.redis_key("k")).await.unwrap(), 17);
    let sliding = on_clock(SlidingWindow::new(short).unwrap(), true, &clock, &redis);
    assert!(sliding.check("k").await.unwrap().is_allowed());
    assert_eq!(redis.strlen::<_, usize>(sliding.redis_key("k")).await.unwrap(), 25);

    let fixed = on_clock(FixedWindow::new(Rate::per_hour(3_000_000)).unwrap(), true, &clock, &redis);
    let key = fixed.redis_key("j");
    assert_eq!(fixed.check_n("j", 999_999).await.unwrap().remaining(), 2_000_001);
    assert!(redis.get::<_, String>(&key).await.unwrap().ends_with("999999"));
    assert_eq!(fixed.check_n("j", 1).await.unwrap().remaining(), 2_000_000);
    assert_eq!(redis.strlen::<_, usize>(&key).await.unwrap(), 17, "a count of a million");
    assert_eq!(fixed.check_n("j", 0).await.unwrap().remaining(), 2_000_000);

    let sliding = on_clock(SlidingWindow::new(Rate::per_hour(3_000)).unwrap(), true, &clock, &redis);
    let key = sliding.redis_key("j");
    assert_eq!(sliding.check_n("j", 999).await.unwrap().remaining(), 2_001);
    assert!(redis.get::<_, String>(&key).await.unwrap().ends_with("999000"));
    assert_eq!(sliding.check_n("j", 1).await.unwrap().remaining(), 2_000);
    assert_eq!(redis.strlen::<_, usize>(&key).await.unwrap(), 25, "a count of a thousand");
    // The next window's first unit, with a thousand in the window before.
    clock.advance(Duration::from_secs(3_600));
    assert!(sliding.check("j").await.unwrap().is_allowed());
    assert_eq!(redis.strlen::<_, usize>(&key).await.unwrap(), 25, "a thousand before");
}

/// The sliding log writes its numbers as text of its own: every digit
/// exact past 2^31, where a 32-bit Redis's `%d` would stop, and a time's
/// low digits padded (scores of ...000 000 123 µs, running totals from 2^31).
#[tokio::test]
async fn the_sliding_log_writes_times_and_totals_past_2_to_the_31_digit_for_digit() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let (most, minute) = (1 << 20, Duration::from_secs(60));
    // 2 048 windows of the most a window admits take the running total to 2^31.
    let last_us = 1_700_000_000_000_123;
    let clock = ManualClock::starting_at(Duration::from_micros(last_us) - minute * 2048);
    let log = Redis::builder(SlidingLog::new(Rate::new(most, minute)).unwrap())
        .client_time(clock.clone())
        .timeout(Duration::from_secs(5))
        .build(redis.clone())
        .unwrap();
    for _ in 0..2048 {
        assert!(log.check_n("user", most).await.unwrap().is_allowed());
        clock.advance(minute);
    }
    assert!(log.check_n("user", 5).await.unwrap().is_allowed());
    clock.advance(Duration::from_micros(1));
    assert!(log.check_n("user", 1).await.unwrap().is_allowed());
    let entries: Vec<(String, String)> = redis::cmd("ZRANGE")
        .arg(log.redis_key("user"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .unwrap();
    let expected = [("2147483648:5", "1700000000000123"), ("2147483653:1", "1700000000000124")];
    assert_eq!(entries, expected.map(|(member, score)| (member.to_owned(), score.to_owned())));
}

#[tokio::test]
async fn different_prefixes_never_share_state_and_braces_in_a_prefix_are_rejected() {
    let Some(server) = RedisServer::start() else { return };
    let connection = server.connection().await;
    let limiter = |prefix: &str| {
        Redis::builder(FixedWindow::new(Rate::per_hour(1)).unwrap())
            .prefix(prefix)
            .timeout(Duration::from_secs(5))
            .build(connection.clone())
    };
    let (first, second) = (limiter("first:").unwrap(), limiter("second:").unwrap());
    assert!(first.check("user").await.unwrap().is_allowed());
    assert!(!first.check("user").await.unwrap().is_allowed());
    assert!(second.check("user").await.unwrap().is_allowed());
    for bad in ["a{", "}", "{x}"] {
        assert!(matches!(limiter(bad), Err(Error::InvalidConfig(_))), "prefix {bad:?}");
    }
}

#[tokio::test]
async fn a_cost_too_high_is_an_error_before_any_call_to_redis() {
    let Some(mut server) = RedisServer::start() else { return };
    let limiter = Redis::builder(TokenBucket::new(3, Rate::per_second(1)).unwrap())
        .failure_policy(FailurePolicy::Allow)
        .connect(&server.url())
        .await
        .unwrap();
    server.stop();
    // Even with Redis gone and a policy that allows, a cost that can never fit errs.
    assert!(matches!(limiter.check_n("user", 4).await, Err(Error::CostTooHigh { cost: 4, max: 3 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_mid_run_fails_no_call() {
    let Some(server) = RedisServer::start() else { return };
    let mut admin = server.connection().await;
    let limiter = Redis::builder(TokenBucket::new(400, Rate::per_hour(1)).unwrap())
        .timeout(Duration::from_secs(5))
        .connect(&server.url())
        .await
        .unwrap();
    let flusher = tokio::spawn(async move {
        for _ in 0..50 {
            let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut admin).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..100 {
                    let decision = limiter.check(&format!("key {}", task % 2)).await.expect("no call fails");
                    admitted += u32::from(decision.is_allowed());
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    flusher.await.unwrap();
    assert_eq!(admitted, 800, "two keys of 400 tokens, 400 requests each");
    assert!(!limiter.check("key 0").await.unwrap().is_allowed());
}

/// A limiter of each algorithm under `prefix` (each under its own), made by
/// its constructor from `capacity` and `rate` (see `Spec::try_new`).
async fn limiters_of_each_algorithm(url: &str, prefix: &str, capacity: u64, rate: Rate) -> Vec<Arc<dyn RateLimiter>> {
    async fn connect<A: Spec>(capacity: u64, rate: Rate, url: &str, prefix: &str) -> Arc<dyn RateLimiter> {
        let algorithm = A::try_new(capacity, rate).unwrap();
        let prefix = format!("{prefix}{}:", algorithm.name());
        Arc::new(Redis::builder(algorithm).prefix(prefix).timeout(Duration::from_secs(5)).connect(url).await.unwrap())
    }
    let mut limiters = Vec::new();
    for_each_algorithm!(collected, limiters, connect, capacity, rate, url, prefix);
    limiters
}

/// Every key under `pattern`.
async fn keys_matching(redis: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_2_500_keys_of_each_algorithm_every_key_has_a_ttl_no_longer_than_needed_and_then_is_gone() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    // Long enough that a slow run on a loaded machine writes all its keys
    // before the first expires.
    let period = Duration::from_secs(10);
    // One unit a period: a window of one, a bucket that takes a period to
    // refill (or drain) the unit. Every key lives at most as long as its
    // admission's reset_after says, a period or two.
    let limiters = limiters_of_each_algorithm(&server.url(), "ttl:", 10, Rate::new(1, period)).await;
    // Start early in a fixed window, so that none ends within the run.
    let into_window = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() % period.as_micros();
    let into_window = Duration::from_micros(into_window as u64);
    if into_window > Duration::from_secs(2) {
        tokio::time::sleep(period - into_window + Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    // 2 500 keys per algorithm, checked by 25 tasks each, pipelined on one connection.
    let count = limiters.len();
    let tasks: Vec<_> = (0..25 * count)
        .map(|task| {
            let limiter = Arc::clone(&limiters[task % count]);
            tokio::spawn(async move {
                let mut longest = Duration::ZERO;
                for key in (task / count..2_500).step_by(25) {
                    let decision = limiter.check(&key.to_string()).await.unwrap();
                    assert!(decision.is_allowed());
                    longest = longest.max(decision.reset_after());
                }
                // A peek at a key never seen writes nothing.
                assert!(limiter.check_n("peeked", 0).await.unwrap().is_allowed());
                longest
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for task in tasks {
        longest = longest.max(task.await.unwrap());
    }
    let keys = keys_matching(&mut redis, "ttl:*").await;
    assert_eq!(keys.len(), 2_500 * count);
    let mut pipeline = redis::pipe();
    for key in &keys {
        pipeline.pttl(key);
    }
    let ttls_ms: Vec<i64> = pipeline.query_async(&mut redis).await.unwrap();
    // PTTL is -1 for a key without a TTL (and -2 for a key gone).
    let longest_ms = longest.as_micros().div_ceil(1_000) as i64;
    assert!(longest <= 2 * period, "a reset_after of {longest:?}");
    for (key, ttl_ms) in keys.iter().zip(ttls_ms) {
        assert!((1..=longest_ms).contains(&ttl_ms), "{key} has a TTL of {ttl_ms} ms, not 1..={longest_ms}");
    }
    eprintln!("{} keys checked and their TTLs read in {:?}", keys.len(), started.elapsed());

    tokio::time::sleep(longest + Duration::from_millis(50)).await;
    assert_eq!(keys_matching(&mut redis, "ttl:*").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_denial_and_a_peek_write_nothing() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    for limiter in limiters_of_each_algorithm(&server.url(), "quiet:", 10, Rate::per_hour(10)).await {
        let _ = limiter.check_n("user", 10).await.unwrap();
        let key = keys_matching(&mut redis, "quiet:*").await.pop().unwrap();
        let () = redis.pexpire(&key, 7_200_000).await.unwrap();
        assert!(!limiter.check("user").await.unwrap().is_allowed());
        assert!(limiter.check_n("user", 0).await.unwrap().is_allowed());
        let ttl_ms: i64 = redis.pttl(&key).await.unwrap();
        assert!(ttl_ms > 7_000_000, "{key}: the TTL was rewritten to {ttl_ms} ms");
        let () = redis.del(&key).await.unwrap();
    }
}

#[tokio::test]
async fn a_sliding_log_admits_large_costs_in_one_entry_each() {
    let Some(server) = RedisServer::start() else { return };
    let mut redis = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let amount = 10_000;
    let limiter = Redis::builder(SlidingLog::new(Rate::per_second(amount)).unwrap())
        .client_time(clock.clone())
        .timeout(Duration::from_secs(5))
        .build(redis.clone())
        .unwrap();
    assert!(limiter.check_n("user", amount - 1).await.unwrap().is_allowed());
    assert!(limiter.check_n("user", 1).await.unwrap().is_allowed());
    assert!(!limiter.check_n("user", 1).await.unwrap().is_allowed());
    for _ in 0..5 {
        clock.advance(Duration::from_millis(600));
        let _ = limiter.check_n("user", amount / 2).await.unwrap();
        let entries: u64 = redis.zcard(limiter.redis_key("user")).await.unwrap();
        // One entry per request, whatever its cost.
        assert!(entries <= 3, "{entries} entries");
    }
}

/// The failure policy cases share this: a limiter of 1 per hour with a
/// 100 ms timeout on a server that is then stopped, checked, and restarted.
async fn with_redis_down(policy: FailurePolicy, expect_while_down: impl Fn(&str, Result<tollgate::Decision, Error>)) {
    let Some(mut server) = RedisServer::start() else { return };
    let timeout = Duration::from_millis(100);
    let limiter = Redis::builder(FixedWindow::new(Rate::per_hour(1)).unwrap())
        .prefix(format!("{policy:?}:"))
        .timeout(timeout)
        .failure_policy(policy)
        .connect(&server.url())
        .await
        .unwrap();
    // Warm up: the first call loads the script. On a loaded machine it may
    // time out and still run, so each try takes a fresh key.
    let mut warm_up = 0;
    while !limiter.check(&format!("before {warm_up}")).await.is_ok_and(|decision| decision.is_allowed()) {
        warm_up += 1;
        assert!(warm_up < 20, "{policy:?}: Redis never answered in time before the stop");
    }

    server.stop();
    let mut elapsed_each = Vec::new();
    for attempt in 0..10 {
        let started = Instant::now();
        let outcome = limiter.check("during").await;
        let elapsed = started.elapsed();
        elapsed_each.push(elapsed);
        // The timeout, plus scheduling slack for a 2-core machine running other tests.
        assert!(elapsed < timeout + Duration::from_millis(250), "{policy:?}: attempt {attempt} took {elapsed:?}");
        expect_while_down(&format!("{policy:?}, attempt {attempt}"), outcome);
    }
    elapsed_each.sort();
    eprintln!(
        "{policy:?}: with Redis down, 10 checks took {:?} to {:?}, median {:?} (timeout {timeout:?})",
        elapsed_each[0], elapsed_each[9], elapsed_each[5]
    );

    server.restart();
    let restarted = Instant::now();
    // The same limiter, not rebuilt: its connection manager reconnects by itself.
    // A check that timed out may still have run on Redis: a fresh key per try.
    let key = loop {
        let key = format!("after {:?}", restarted.elapsed());
        let outcome = limiter.check(&key).await;
        let written: bool = server.connection().await.exists(limiter.redis_key(&key)).await.unwrap();
        if written && outcome.is_ok_and(|decision| decision.is_allowed()) {
            break key;
        }
        assert!(restarted.elapsed() < Duration::from_secs(10), "{policy:?}: no recovery within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("{policy:?}: checks reached Redis again {:?} after it restarted", restarted.elapsed());
    assert!(!limiter.check(&key).await.unwrap().is_allowed(), "{policy:?}: the state is Redis's again");
}

#[tokio::test]
async fn return_error_fails_within_the_timeout_and_recovers() {
    with_redis_down(FailurePolicy::ReturnError, |attempt, outcome| {
        let error = outcome.unwrap_err();
        assert!(
            matches!(error, Error::Backend { .. } | Error::Timeout(_) | Error::Unavailable { .. }),
            "{attempt}: {error}"
        );
    })
    .await;
}

#[tokio::test]
async fn allow_admits_within_the_timeout_and_recovers() {
    with_redis_down(FailurePolicy::Allow, |attempt, outcome| {
        let decision = outcome.unwrap();
        assert!(decision.is_allowed(), "{attempt}");
        assert_eq!((decision.limit(), decision.remaining()), (1, 1), "{attempt}");
    })
    .await;
}

#[tokio::test]
async fn deny_denies_within_the_timeout_and_recovers() {
    with_redis_down(FailurePolicy::Deny, |attempt, outcome| {
        let decision = outcome.unwrap();
        assert!(!decision.is_allowed(), "{attempt}");
        assert_eq!(decision.retry_after(), Some(FailurePolicy::DENY_RETRY_AFTER), "{attempt}");
    })
    .await;
}

#[tokio::test]
async fn fallback_to_memory_limits_in_memory_within_the_timeout_and_recovers() {
    let seen = std::sync::atomic::AtomicU32::new(0);
    with_redis_down(FailurePolicy::FallbackToMemory, |attempt, outcome| {
        // The in-memory limiter allows the first check of "during", then denies.
        let first = seen.fetch_add(1, Ordering::Relaxed) == 0;
        assert_eq!(outcome.unwrap().is_allowed(), first, "{attempt}");
    })
    .await;
}

#[tokio::test]
async fn connecting_to_a_server_that_is_not_there_is_an_error_within_seconds() {
    let Some(mut server) = RedisServer::start() else { return };
    server.stop();
    let started = Instant::now();
    let outcome = Redis::builder(FixedWindow::new(Rate::per_second(1)).unwrap()).connect(&server.url()).await;
    let elapsed = started.elapsed();
    assert!(matches!(outcome, Err(Error::Backend { .. })), "{outcome:?}");
    eprintln!("connect to a closed port failed after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn a_limiter_on_a_lazy_connection_starts_while_redis_is_down_and_uses_it_once_up() {
    let Some(mut server) = RedisServer::start() else { return };
    server.stop();
    let client = redis::Client::open(server.url()).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new().set_max_delay(Duration::from_millis(200));
    let connection = redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap();
    let limiter = Redis::builder(FixedWindow::new(Rate::per_hour(1)).unwrap())
        .failure_policy(FailurePolicy::Deny)
        .build(connection)
        .unwrap();
    let started = Instant::now();
    assert!(!limiter.check("user").await.unwrap().is_allowed());
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !limiter.check("user").await.unwrap().is_allowed() {
        assert!(Instant::now() < deadline, "Redis was never used");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!limiter.check("user").await.unwrap().is_allowed());
}

/// A connection on which every `SCRIPT LOAD` is followed by a `SCRIPT FLUSH`:
/// the race that redis-rs's reload alone loses. Counts the `EVAL`s sent.
#[derive(Clone)]
struct FlushingAfterEveryLoad {
    inner: redis::aio::MultiplexedConnection,
    evals: Arc<AtomicU64>,
}

impl redis::aio::ConnectionLike for FlushingAfterEveryLoad {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let name: Vec<Vec<u8>> = cmd
                .args_iter()
                .take(2)
                .map(|arg| match arg {
                    redis::Arg::Simple(bytes) => bytes.to_ascii_uppercase(),
                    _ => Vec::new(),
                })
                .collect();
            if name[0] == b"EVAL" {
                self.evals.fetch_add(1, Ordering::Relaxed);
            }
            let reply = self.inner.req_packed_command(cmd).await;
            if name == [&b"SCRIPT"[..], b"LOAD"] {
                redis::cmd("SCRIPT").arg("FLUSH").exec_async(&mut self.inner).await?;
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

#[tokio::test]
async fn a_flush_between_reload_and_retry_is_answered_with_eval() {
    let Some(server) = RedisServer::start() else { return };
    let evals = Arc::new(AtomicU64::new(0));
    let connection = FlushingAfterEveryLoad { inner: server.connection().await, evals: Arc::clone(&evals) };
    let limiter = Redis::builder(SlidingLog::new(Rate::per_hour(3)).unwrap())
        .timeout(Duration::from_secs(5))
        .build(connection)
        .unwrap();
    // The first check: EVALSHA fails (nothing loaded), the reload is flushed
    // at once, the retried EVALSHA fails too, and EVAL runs the script and
    // caches it; later checks' EVALSHAs find it.
    for remaining in [2, 1, 0] {
        let decision = limiter.check("user").await.expect("no call fails");
        assert_eq!((decision.is_allowed(), decision.remaining()), (true, remaining));
    }
    assert_eq!(evals.load(Ordering::Relaxed), 1);
}
