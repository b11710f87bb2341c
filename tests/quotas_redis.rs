//! Composites and plans on Redis beyond the differential suite: one script
//! call per decision whatever the number of limits, each bounded (SLOWLOG);
//! the key layout; and the failure policies, which answer for every limit.

use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use redis::AsyncCommands;
use tollgate::{
    Algorithm, Composite, Error, FailurePolicy, FixedWindow, Limit, ManualClock, Plans, Rate, RateLimiter, Redis,
    SlidingLog, TokenBucket,
};

use crate::shared_state::{SLOWEST_CALL, script_calls_us, slowlog_everything};
use crate::support::algorithms::for_each_algorithm;
use crate::support::models::Spec;
use crate::support::redis_server::RedisServer;

const START: Duration = Duration::from_secs(1_700_000_000);

fn ten_a_second_and_a_thousand_a_day() -> Composite {
    Composite::new("per-second", TokenBucket::new(10, Rate::per_second(10)).unwrap())
        .unwrap()
        .with("per-day", FixedWindow::new(Rate::per_day(1_000)).unwrap())
        .unwrap()
}

/// Each limit's state is a key `<prefix><name>:<tag>:{<user key>}`, every
/// one in the user key's slot; a plain algorithm's plan keeps the key a lone
/// limiter of it has; a decision is one script call; a reset deletes every
/// key of every plan.
#[tokio::test]
async fn a_composite_keeps_each_limit_in_its_own_key_under_the_users_hash_tag_and_decides_in_one_call() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let plans = Plans::new("api", ten_a_second_and_a_thousand_a_day())
        .unwrap()
        .plan("legacy", TokenBucket::new(5, Rate::per_second(5)).unwrap())
        .unwrap();
    let limiter = Redis::builder(plans).prefix("q:").timeout(Duration::from_secs(5)).build(connection.clone()).unwrap();
    assert_eq!(
        limiter.redis_keys("user:{42}"),
        ["q:per-second:tb:{user:{42}}", "q:per-day:fw:{user:{42}}", "q:tb:{user:{42}}"]
    );
    // What Redis Cluster hashes: from the first `{` to the first `}` after it (the spec's hash tag).
    let hash_tag = |key: &str| {
        let open = key.find('{').unwrap();
        let close = open + 1 + key[open + 1..].find('}').unwrap();
        key[open + 1..close].to_owned()
    };
    let tags: Vec<String> = limiter.redis_keys("a}b").iter().map(|key| hash_tag(key)).collect();
    assert_eq!(tags, ["a", "a", "a"]);

    // The first call of a script loads it (a failed EVALSHA, SCRIPT LOAD, EVALSHA): not counted.
    assert!(limiter.check("warm").await.unwrap().is_allowed());
    slowlog_everything(&mut connection).await;
    assert!(limiter.check("user:{42}").await.unwrap().is_allowed());
    assert_eq!(script_calls_us(&mut connection).await.len(), 1, "one script call for two limits");
    let written: Vec<bool> = {
        let mut written = Vec::new();
        for key in limiter.redis_keys("user:{42}") {
            written.push(connection.exists(&key).await.unwrap());
        }
        written
    };
    assert_eq!(written, [true, true, false]);
    assert!(limiter.check_detailed("user:{42}", 1, Some("legacy")).await.unwrap().decision().is_allowed());
    limiter.reset("user:{42}").await.unwrap();
    for key in limiter.redis_keys("user:{42}") {
        assert!(!connection.exists::<_, bool>(&key).await.unwrap(), "{key} survived the reset");
    }
}

/// The largest composites the constructors accept, sixteen limits at the
/// edge of exact arithmetic, admitting, denying and peeking: every call is
/// one script call, and none is slow.
#[tokio::test]
async fn every_call_of_the_largest_composites_is_quick() {
    let Some(server) = RedisServer::start() else { return };
    let mut connection = server.connection().await;
    let mut runner = TestRunner::deterministic();
    let mut edges: Vec<Limit> = Vec::new();
    let mut algorithms = 0;
    macro_rules! count {
        ($name:ident, $algorithm:ident, $algorithms:ident) => {
            $algorithms += 1;
        };
    }
    for_each_algorithm!(count, algorithms);
    macro_rules! push {
        ($name:ident, $algorithm:ident, $edges:ident, $runner:ident, $algorithms:ident) => {
            for _ in 0..Composite::MAX_LIMITS / $algorithms {
                let edge = <tollgate::$algorithm as Spec>::at_the_edge().new_tree(&mut $runner).unwrap().current();
                $edges.push(edge.into());
            }
        };
    }
    for_each_algorithm!(push, edges, runner, algorithms);
    let largest =
        Composite::from_limits(edges.into_iter().enumerate().map(|(n, limit)| (format!("l{n}"), limit))).unwrap();
    let clock = ManualClock::starting_at(START);
    let limiter = Redis::builder(largest.clone())
        .client_time(clock.clone())
        .timeout(Duration::from_secs(5))
        .build(connection.clone())
        .unwrap();
    let _ = limiter.check_n("warm", 0).await.unwrap();
    slowlog_everything(&mut connection).await;
    let limit = largest.limit().min(1 << 20);
    for cost in [0, 1, limit, limit, 1, 0, 1, 1] {
        let _ = limiter.check_n("k", cost).await.unwrap();
        clock.advance(Duration::from_millis(1));
    }
    let calls = script_calls_us(&mut connection).await;
    eprintln!("a composite of 16 limits at the edge: script calls (µs), slowest first: {calls:?}");
    assert_eq!(calls.len(), 8, "{calls:?}");
    assert!(calls[0] <= SLOWEST_CALL.as_micros() as u64, "a call took {} µs", calls[0]);
}

/// With Redis down, `Allow` and `Deny` answer for every limit (each its
/// full allowance, or each denied for a second), and `FallbackToMemory`
/// decides the composite in memory, in the plan asked for.
#[tokio::test]
async fn failure_policies_answer_for_every_limit_of_a_composite() {
    let Some(mut server) = RedisServer::start() else { return };
    let connection = server.connection().await;
    let plans = Plans::new("api", ten_a_second_and_a_thousand_a_day())
        .unwrap()
        .plan("minute", Composite::new("per-minute", SlidingLog::new(Rate::per_minute(3)).unwrap()).unwrap())
        .unwrap();
    let limiter = |policy| {
        Redis::builder(plans.clone())
            .failure_policy(policy)
            .timeout(Duration::from_millis(200))
            .build(connection.clone())
            .unwrap()
    };
    let (allow, deny, fallback, error) = (
        limiter(FailurePolicy::Allow),
        limiter(FailurePolicy::Deny),
        limiter(FailurePolicy::FallbackToMemory),
        limiter(FailurePolicy::ReturnError),
    );
    assert!(allow.check("warm").await.unwrap().is_allowed());
    server.stop();

    let allowed = allow.check_detailed("k", 1, None).await.unwrap();
    let full: Vec<_> =
        allowed.limits().iter().map(|limit| (limit.decision().is_allowed(), limit.decision().remaining())).collect();
    assert_eq!(full, [(true, 10), (true, 1_000)]);
    assert_eq!((allowed.decision().limit(), allowed.decision().remaining()), (10, 10));
    let denied = deny.check_detailed("k", 1, None).await.unwrap();
    assert!(
        denied.limits().iter().all(|limit| limit.decision().retry_after() == Some(FailurePolicy::DENY_RETRY_AFTER))
    );
    assert_eq!(denied.decision().retry_after(), Some(FailurePolicy::DENY_RETRY_AFTER));

    let mut admitted = 0;
    for _ in 0..12 {
        admitted += u32::from(fallback.check("k").await.unwrap().is_allowed());
    }
    assert_eq!(admitted, 10, "in memory, as the composite");
    let minute = fallback.check_detailed("k", 3, Some("minute")).await.unwrap();
    assert_eq!((minute.plan(), minute.decision().remaining()), (Some("minute"), 0));
    assert!(matches!(fallback.check_detailed("k", 1, Some("nope")).await, Err(Error::UnknownPlan { .. })));

    let outcome = error.check_detailed("k", 1, None).await;
    assert!(matches!(outcome, Err(Error::Backend { .. } | Error::Timeout(_))), "{outcome:?}");
}
