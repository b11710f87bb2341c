//! The Redis backend's local deny cache: a key Redis has just denied is
//! answered in this process until its retry moment, for the same or a
//! larger cost, without a call; it is exact, so the same traffic with and
//! without it admits the same requests.
//!
//! Redis calls are counted with `INFO commandstats` (the scripts' `EVALSHA`
//! and `EVAL` calls) on a server each test starts for itself.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use redis::aio::MultiplexedConnection;
use tollgate::{
    Algorithm, Composite, Decision, Error, FailurePolicy, FixedWindow, ManualClock, Plans, Rate, RateLimiter, Redis,
    TokenBucket,
};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::Spec;
use crate::support::proptest_config;
use crate::support::redis_server::{RedisServer, script_calls};

/// A realistic epoch time, for client-time limiters.
const START: Duration = Duration::from_secs(1_700_000_000);

const MICROSECOND: Duration = Duration::from_micros(1);

/// A limiter of `algorithm` on `clock`'s time under `prefix`, its deny
/// cache on or off.
fn limiter<A: Algorithm>(
    algorithm: A,
    connection: &MultiplexedConnection,
    clock: &ManualClock,
    prefix: &str,
    deny_cache: bool,
) -> Redis<A, MultiplexedConnection> {
    Redis::builder(algorithm)
        .prefix(prefix)
        // Generous: the machine running the tests may be busy.
        .timeout(Duration::from_secs(5))
        .client_time(clock.clone())
        .deny_cache(deny_cache)
        .build(connection.clone())
        .unwrap()
}

/// Checks until `key` is denied; the denial.
async fn exhaust(limiter: &impl RateLimiter, key: &str) -> Decision {
    for _ in 0..1_000 {
        let decision = limiter.check(key).await.unwrap();
        if !decision.is_allowed() {
            return decision;
        }
    }
    panic!("{key} was never denied");
}

/// For every algorithm: after a denial with `retry_after` t, checks of the
/// same and of a larger cost are denied without a call until t, each with
/// the `retry_after` Redis itself gives at that moment (a limiter without
/// the cache asks it); at t the check goes to Redis, and passes.
#[tokio::test]
async fn a_denied_key_is_answered_here_until_its_retry_moment_for_the_same_or_a_larger_cost() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    macro_rules! each {
        ($name:ident, $algorithm:ident, $connection:ident) => {{
            let algorithm = <tollgate::$algorithm as Spec>::with_limit(3, Duration::from_secs(1));
            let clock = ManualClock::starting_at(START);
            let prefix = concat!(stringify!($name), ":");
            let cached = limiter(algorithm.clone(), &$connection, &clock, prefix, true);
            // The same keys, asked of Redis every time.
            let asked = limiter(algorithm, &$connection, &clock, prefix, false);
            let denial = exhaust(&cached, "user").await;
            let retry_after = denial.retry_after().unwrap();
            assert!(retry_after > MICROSECOND, "{}: {denial:?}", stringify!($name));

            let calls = script_calls(&mut $connection).await;
            for cost in [1, 2, 3] {
                assert_eq!(cached.check_n("user", cost).await.unwrap(), denial, "{}", stringify!($name));
            }
            clock.advance(retry_after - MICROSECOND);
            let last = cached.check("user").await.unwrap();
            assert_eq!(last.retry_after(), Some(MICROSECOND), "{}", stringify!($name));
            assert_eq!(script_calls(&mut $connection).await, calls, "{}: answered here", stringify!($name));
            assert_eq!(cached.deny_cache_saves(), 4, "{}", stringify!($name));
            let truth = asked.check("user").await.unwrap();
            assert_eq!(last.retry_after(), truth.retry_after(), "{}", stringify!($name));
            assert!(last.remaining() <= truth.remaining(), "{}: {last:?} {truth:?}", stringify!($name));

            clock.advance(MICROSECOND);
            let calls = script_calls(&mut $connection).await;
            assert!(cached.check("user").await.unwrap().is_allowed(), "{}", stringify!($name));
            assert_eq!(script_calls(&mut $connection).await, calls + 1, "{}: asked Redis", stringify!($name));
        }};
    }
    for_each_algorithm!(each, connection);
}

/// A smaller cost than the one denied may pass, so it goes to Redis, and
/// the admission forgets the denial (its `remaining` is stale now).
#[tokio::test]
async fn a_smaller_cost_goes_to_redis_and_an_admission_forgets_the_denial() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let limiter = limiter(FixedWindow::new(Rate::per_minute(5)).unwrap(), &connection, &clock, "s:", true);
    assert!(limiter.check_n("user", 3).await.unwrap().is_allowed());
    let denial = limiter.check_n("user", 3).await.unwrap();
    assert_eq!((denial.is_allowed(), denial.remaining()), (false, 2));
    assert_eq!(limiter.deny_cache_entries(), 1);

    let calls = script_calls(&mut connection).await;
    let smaller = limiter.check_n("user", 2).await.unwrap();
    assert!(smaller.is_allowed());
    assert_eq!(script_calls(&mut connection).await, calls + 1);
    assert_eq!((limiter.deny_cache_saves(), limiter.deny_cache_entries()), (0, 0));
    // Asked again, Redis says what is left now.
    assert_eq!(limiter.check_n("user", 3).await.unwrap().remaining(), 0);
    assert_eq!(script_calls(&mut connection).await, calls + 2);
}

/// A reset forgets the key's denial in its own process: the next check
/// asks Redis, and passes. A reset by another limiter (another process) is
/// seen only when the denial expires: the documented caveat.
#[tokio::test]
async fn a_reset_forgets_the_denial_here_and_another_processs_reset_is_seen_at_the_retry_moment() {
    let Some(server) = RedisServer::start() else { return };
    let connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let algorithm = TokenBucket::new(2, Rate::per_minute(2)).unwrap();
    let here = limiter(algorithm, &connection, &clock, "r:", true);
    let elsewhere = limiter(algorithm, &connection, &clock, "r:", true);

    let denial = exhaust(&here, "user").await;
    here.reset("user").await.unwrap();
    assert_eq!(here.deny_cache_entries(), 0);
    assert!(here.check("user").await.unwrap().is_allowed());

    let denial_here = exhaust(&here, "user").await;
    elsewhere.reset("user").await.unwrap();
    assert_eq!(here.check("user").await.unwrap(), denial_here, "still answered here");
    clock.advance(denial.retry_after().unwrap());
    let after = here.check("user").await.unwrap();
    assert_eq!((after.is_allowed(), after.remaining()), (true, 1), "Redis, reset: a full bucket less one");
}

/// A denial sent before a reset and answered after it is not cached: the
/// cache is told of the reset before the `DEL` and again after it.
#[tokio::test]
async fn concurrent_checks_and_resets_leave_no_denial_from_before_the_reset() {
    let Some(server) = RedisServer::start() else { return };
    let connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let limiter = limiter(FixedWindow::new(Rate::per_hour(1)).unwrap(), &connection, &clock, "race:", true);
    let truth = self::limiter(FixedWindow::new(Rate::per_hour(1)).unwrap(), &connection, &clock, "race:", false);
    for round in 0..50 {
        let key = format!("user:{round}");
        assert!(limiter.check(&key).await.unwrap().is_allowed());
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (limiter, key) = (limiter.clone(), key.clone());
                tokio::spawn(async move { limiter.check(&key).await.unwrap() })
            })
            .collect();
        limiter.reset(&key).await.unwrap();
        for check in checks {
            let _ = check.await.unwrap();
        }
        // Answered here, the key must be denied by Redis too (a cached answer writes nothing).
        let saves = limiter.deny_cache_saves();
        let decision = limiter.check(&key).await.unwrap();
        if limiter.deny_cache_saves() > saves {
            assert!(!decision.is_allowed());
            let truth = truth.check_n(&key, 0).await.unwrap();
            assert_eq!(truth.remaining(), 0, "round {round}: cached a denial from before the reset");
        }
        limiter.reset(&key).await.unwrap();
    }
}

/// Off, every check asks Redis.
#[tokio::test]
async fn switched_off_every_check_asks_redis() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let limiter = limiter(FixedWindow::new(Rate::per_minute(1)).unwrap(), &connection, &clock, "off:", false);
    let _ = exhaust(&limiter, "user").await;
    let calls = script_calls(&mut connection).await;
    for _ in 0..10 {
        assert!(!limiter.check("user").await.unwrap().is_allowed());
    }
    assert_eq!(script_calls(&mut connection).await, calls + 10);
    assert_eq!((limiter.deny_cache_saves(), limiter.deny_cache_entries()), (0, 0));
}

/// A reservation of a token or leaky bucket may take a slot ahead, which
/// a cached denial cannot say: it always asks Redis.
#[tokio::test]
async fn reservations_always_ask_redis() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let limiter = limiter(TokenBucket::new(1, Rate::per_second(1)).unwrap(), &connection, &clock, "res:", true);
    let denial = exhaust(&limiter, "user").await;
    // The reserving script's first call loads it: not counted.
    let _ = limiter.reserve("warm", 1, Duration::ZERO).await.unwrap();
    let calls = script_calls(&mut connection).await;
    let reserved = limiter.reserve("user", 1, Duration::from_secs(2)).await.unwrap();
    assert!(reserved.is_allowed());
    assert_eq!(reserved.wait(), denial.retry_after().unwrap());
    assert_eq!(script_calls(&mut connection).await, calls + 1);
    assert_eq!(limiter.deny_cache_saves(), 0);
}

/// What the failure policy answers is not Redis's denial: never cached.
#[tokio::test]
async fn the_failure_policys_denials_are_not_cached() {
    let Some(mut server) = RedisServer::start() else { return };
    let url = server.url();
    server.stop();
    let limiter = Redis::builder(FixedWindow::new(Rate::per_minute(1)).unwrap())
        .failure_policy(FailurePolicy::Deny)
        .connect(&url)
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(!limiter.check("user").await.unwrap().is_allowed());
    }
    assert_eq!((limiter.deny_cache_saves(), limiter.deny_cache_entries()), (0, 0));
}

/// Each plan of a `Plans` limiter is cached apart: a key denied in the free
/// plan is asked of Redis in the pro plan, which admits it.
#[tokio::test]
async fn each_plan_is_cached_apart() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let plans = Plans::new("free", FixedWindow::new(Rate::per_minute(1)).unwrap())
        .unwrap()
        .plan("pro", FixedWindow::new(Rate::per_minute(10)).unwrap())
        .unwrap();
    let limiter = limiter(plans, &connection, &clock, "plans:", true);
    assert!(limiter.check_detailed("user", 1, Some("free")).await.unwrap().decision().is_allowed());
    let denied = limiter.check_detailed("user", 1, Some("free")).await.unwrap();
    assert_eq!((denied.plan(), denied.decision().is_allowed()), (Some("free"), false));

    let calls = script_calls(&mut connection).await;
    assert_eq!(limiter.check_detailed("user", 1, Some("free")).await.unwrap(), denied);
    assert_eq!(limiter.check("user").await.unwrap(), denied.decision(), "the default plan is free");
    assert_eq!(script_calls(&mut connection).await, calls);
    let pro = limiter.check_detailed("user", 1, Some("pro")).await.unwrap();
    assert_eq!((pro.plan(), pro.decision().is_allowed(), pro.decision().remaining()), (Some("pro"), true, 8));
    assert_eq!(script_calls(&mut connection).await, calls + 1);
}

/// A composite's denial is cached until the same request passes every
/// limit: the longest denial. Meanwhile each limit's part is aged: a limit
/// whose own retry moment has come is reported passing, with no more
/// remaining than Redis says.
#[tokio::test]
async fn a_composite_is_denied_until_every_limit_passes_and_its_parts_age() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let composite = Composite::new("per-second", TokenBucket::new(1, Rate::per_second(1)).unwrap())
        .unwrap()
        .with("per-minute", FixedWindow::new(Rate::per_minute(2)).unwrap())
        .unwrap();
    let cached = limiter(composite.clone(), &connection, &clock, "c:", true);
    let asked = limiter(composite, &connection, &clock, "c:", false);
    assert!(cached.check("user").await.unwrap().is_allowed());
    clock.advance(Duration::from_secs(1));
    assert!(cached.check("user").await.unwrap().is_allowed());
    let denied = cached.check_detailed("user", 1, None).await.unwrap();
    let per_second = denied.get("per-second").unwrap().decision();
    assert_eq!(per_second.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(denied.decision().retry_after(), denied.get("per-minute").unwrap().decision().retry_after());

    clock.advance(Duration::from_secs(3));
    let calls = script_calls(&mut connection).await;
    let aged = cached.check_detailed("user", 1, None).await.unwrap();
    assert_eq!(script_calls(&mut connection).await, calls);
    let truth = asked.check_detailed("user", 1, None).await.unwrap();
    assert_eq!(aged.decision().retry_after(), truth.decision().retry_after());
    assert_eq!(aged.get("per-minute"), truth.get("per-minute"));
    let (aged_second, true_second) =
        (aged.get("per-second").unwrap().decision(), truth.get("per-second").unwrap().decision());
    assert!(aged_second.is_allowed() && true_second.is_allowed());
    assert!(aged_second.remaining() <= true_second.remaining());

    clock.advance(truth.decision().retry_after().unwrap());
    assert!(cached.check("user").await.unwrap().is_allowed());
    assert_eq!(script_calls(&mut connection).await, calls + 2);
}

/// Memory stays bounded under key churn: never more entries than the
/// capacity; a denial finding its shard full of live ones is not cached,
/// and expired ones make room.
#[tokio::test]
async fn the_cache_holds_at_most_its_capacity_under_key_churn() {
    let Some(server) = RedisServer::start() else { return };
    let connection = server.connection().await;
    let clock = ManualClock::starting_at(START);
    let limiter = Redis::builder(FixedWindow::new(Rate::per_minute(1)).unwrap())
        .prefix("churn:")
        .timeout(Duration::from_secs(5))
        .client_time(clock.clone())
        .deny_cache_capacity(64)
        .build(connection.clone())
        .unwrap();
    for round in 0..3 {
        for n in 0..400 {
            let key = format!("user:{round}:{n}");
            assert!(limiter.check(&key).await.unwrap().is_allowed());
            assert!(!limiter.check(&key).await.unwrap().is_allowed());
            assert!(limiter.deny_cache_entries() <= 64, "round {round}, key {n}");
        }
        let saves = limiter.deny_cache_saves();
        let mut answered_here = 0;
        for n in 0..400 {
            assert!(!limiter.check(&format!("user:{round}:{n}")).await.unwrap().is_allowed());
            answered_here += 1;
        }
        let cached = limiter.deny_cache_saves() - saves;
        assert!(cached > 0 && cached <= 64, "round {round}: {cached} of {answered_here} answered here");
        clock.advance(Duration::from_secs(60));
    }
    let zero = Redis::builder(FixedWindow::new(Rate::per_minute(1)).unwrap()).deny_cache_capacity(0);
    assert!(matches!(zero.build(connection.clone()), Err(Error::InvalidConfig(_))));
    let off = Redis::builder(FixedWindow::new(Rate::per_minute(1)).unwrap()).deny_cache(false).deny_cache_capacity(0);
    assert!(off.build(connection).is_ok());
}

/// What a sequence does to two limiters, one with the cache and one
/// without, on one clock.
#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Back(u64),
    Check { key: usize, cost: u64 },
    Reset { key: usize },
}

const KEYS: [&str; 3] = ["alice", "bob", "{carol}"];

fn ops(limit: u64, period_us: u64) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        8 => (0..KEYS.len(), 0..=limit + 1).prop_map(|(key, cost)| Op::Check { key, cost }),
        1 => (0..KEYS.len()).prop_map(|key| Op::Reset { key }),
        3 => (0..=period_us / 4).prop_map(Op::Advance),
        1 => (0..=2 * period_us).prop_map(Op::Advance),
        1 => (0..=period_us / 2).prop_map(Op::Back),
    ];
    proptest::collection::vec(op, 1..80)
}

/// The same random traffic through a limiter with the cache and one
/// without (their own prefixes, one clock) admits exactly the same
/// requests. A denial from the cache never says to retry later than Redis,
/// nor promises more remaining; for the cost it was cached for, it says
/// Redis's own `retry_after` (unless the clock went back); for a larger
/// cost, that smaller cost's, which is sooner than Redis's.
fn never_admits_more<A: Algorithm>(
    algorithm: A,
    period_us: u64,
    runtime: &tokio::runtime::Runtime,
    connection: &MultiplexedConnection,
) {
    let limit = algorithm.limit().min(4);
    let mut runner = TestRunner::new(proptest_config(24));
    // Prefixes unique across every run on the server: a state left by another run, written at a later time,
    // would be a clock gone back.
    static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let case = &CASE;
    let answered_here = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&ops(limit, period_us), |ops| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let clock = ManualClock::starting_at(START);
        let cached = limiter(algorithm.clone(), connection, &clock, &format!("on{n}:"), true);
        let asked = limiter(algorithm.clone(), connection, &clock, &format!("off{n}:"), false);
        let mut went_back = false;
        // The cost each key's cached denial was for, and the cache's answers so far.
        let (mut denied_cost, mut saves) = ([None; KEYS.len()], 0);
        for op in ops {
            match op {
                Op::Advance(us) => clock.advance(Duration::from_micros(us)),
                Op::Back(us) => {
                    clock.set(clock_now(&clock).saturating_sub(Duration::from_micros(us)));
                    went_back |= us > 0;
                }
                Op::Reset { key } => {
                    runtime.block_on(cached.reset(KEYS[key])).unwrap();
                    runtime.block_on(asked.reset(KEYS[key])).unwrap();
                    denied_cost[key] = None;
                }
                Op::Check { key, cost } => {
                    let with = runtime.block_on(cached.check_n(KEYS[key], cost));
                    let without = runtime.block_on(asked.check_n(KEYS[key], cost));
                    let (with, without) = match (with, without) {
                        (Ok(with), Ok(without)) => (with, without),
                        (Err(with), Err(without)) => {
                            prop_assert_eq!(with.to_string(), without.to_string());
                            continue;
                        }
                        (with, without) => return Err(TestCaseError::fail(format!("{with:?} / {without:?}"))),
                    };
                    prop_assert_eq!(with.is_allowed(), without.is_allowed(), "{:?} / {:?}", with, without);
                    prop_assert!(with.remaining() <= without.remaining(), "{:?} / {:?}", with, without);
                    prop_assert!(with.retry_after() <= without.retry_after(), "{:?} / {:?}", with, without);
                    let answered_here = cached.deny_cache_saves() > saves;
                    saves = cached.deny_cache_saves();
                    if !answered_here {
                        prop_assert_eq!(with, without, "asked of Redis, both");
                        denied_cost[key] = (!with.is_allowed()).then_some(cost);
                    } else if denied_cost[key] == Some(cost) && !went_back {
                        // The same cost as the denial held: its own retry moment, exactly.
                        prop_assert_eq!(with.retry_after(), without.retry_after());
                    }
                    if with.is_allowed() && cost > 0 {
                        denied_cost[key] = None;
                    }
                }
            }
        }
        answered_here.fetch_add(saves, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{}: {error}", std::any::type_name::<A>());
    }
    let answered_here = answered_here.into_inner();
    assert!(answered_here > 0, "{}: the cache answered no check", std::any::type_name::<A>());
}

fn clock_now(clock: &ManualClock) -> Duration {
    tollgate::Clock::now(clock)
}

#[test]
fn the_same_traffic_with_and_without_the_cache_admits_exactly_the_same_requests() {
    let Some(server) = RedisServer::start() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let connection = runtime.block_on(server.connection());
    let period = Duration::from_secs(1);
    let period_us = period.as_micros() as u64;
    macro_rules! each {
        ($name:ident, $algorithm:ident, $runtime:ident, $connection:ident) => {
            never_admits_more(
                <tollgate::$algorithm as Spec>::with_limit(3, period),
                period_us,
                &$runtime,
                &$connection,
            );
        };
    }
    for_each_algorithm!(each, runtime, connection);
    let composite = Composite::new("fast", TokenBucket::new(2, Rate::per_second(2)).unwrap())
        .unwrap()
        .with("slow", FixedWindow::new(Rate::new(3, 3 * period)).unwrap())
        .unwrap();
    never_admits_more(composite.clone(), period_us, &runtime, &connection);
    // Each key on its own plan: a key that changes plan is the deploy caveat of docs/redis.md.
    let plans = Plans::new("free", composite)
        .unwrap()
        .plan("pro", TokenBucket::new(4, Rate::per_second(4)).unwrap())
        .unwrap()
        .resolve(|key: &str| if key == "bob" { "pro" } else { "free" });
    never_admits_more(plans, period_us, &runtime, &connection);
}

/// On a Redis Cluster the limiter runs the same code: a denied key, on
/// whichever master, is answered here until its retry moment.
#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_cluster_limiter_answers_denials_here_too() {
    let Some(cluster) = crate::support::cluster::Cluster::start().await else { return };
    let clock = ManualClock::starting_at(START);
    let limiter = Redis::builder(FixedWindow::new(Rate::per_minute(1)).unwrap())
        .prefix("dc:")
        .timeout(Duration::from_secs(5))
        .client_time(clock.clone())
        .connect_cluster(cluster.urls())
        .await
        .unwrap();
    let keys: Vec<String> = (0..12).map(|n| format!("user:{n}")).collect();
    let mut denials = Vec::new();
    for key in &keys {
        assert!(limiter.check(key).await.unwrap().is_allowed());
        denials.push(limiter.check(key).await.unwrap());
    }
    let mut calls = 0;
    for master in cluster.masters().await {
        calls += script_calls(&mut cluster.node(master).await.unwrap()).await;
    }
    for (key, denial) in keys.iter().zip(&denials) {
        assert!(!denial.is_allowed());
        assert_eq!(limiter.check(key).await.unwrap(), *denial);
    }
    let mut calls_after = 0;
    for master in cluster.masters().await {
        calls_after += script_calls(&mut cluster.node(master).await.unwrap()).await;
    }
    assert_eq!((calls_after, limiter.deny_cache_saves()), (calls, keys.len() as u64));
    clock.advance(denials[0].retry_after().unwrap());
    assert!(limiter.check(&keys[0]).await.unwrap().is_allowed());
}
