//! What a limiter tells the operator [feature `metrics`]: one `trace` event
//! and one count per check, by limiter name and outcome, a latency sample
//! per check, the keys held in memory, the HTTP layer's requests under its
//! policy name, and Redis failures that the failure policy answered.

use std::time::Duration;

use tollgate::{InMemory, ManualClock, Rate, RateLimiter, TokenBucket};
use tracing::Level;

use crate::support::logs::Capture;
use crate::support::metrics::Recorded;

const CHECKS: &str = "tollgate_checks_total";
const DURATION: &str = "tollgate_check_duration_seconds";
const KEYS: &str = "tollgate_memory_keys";
const SAVED: &str = "tollgate_redis_calls_saved_total";

/// A bucket of two, refilled one a second, on a manual clock.
fn two_a_second(clock: &ManualClock) -> InMemory<TokenBucket, ManualClock> {
    InMemory::with_clock(TokenBucket::new(2, Rate::per_second(1)).unwrap(), clock.clone())
}

fn checks(recorded: &Recorded, limiter: &str, outcome: &str) -> Option<u64> {
    recorded.counter(CHECKS, &[("limiter", limiter), ("outcome", outcome)])
}

#[tokio::test]
async fn each_check_is_counted_by_limiter_name_and_outcome_and_timed() {
    let recorded = Recorded::default();
    let _recording = recorded.install();
    let limiter = two_a_second(&ManualClock::new()).named("api");
    for _ in 0..3 {
        let _ = limiter.check("user:1").await.unwrap();
    }
    let _ = limiter.check_n("user:2", 2).await.unwrap();
    let _ = limiter.check_detailed("user:2", 1, None).await.unwrap();
    let _ = limiter.reserve("user:3", 1, Duration::ZERO).await.unwrap();

    assert_eq!(checks(&recorded, "api", "allowed"), Some(4));
    assert_eq!(checks(&recorded, "api", "denied"), Some(2));
    assert_eq!(checks(&recorded, "api", "error"), Some(0));
    assert_eq!(checks(&recorded, "api", "failure_policy"), Some(0));
    let durations = recorded.histogram(DURATION, &[("limiter", "api")]).unwrap();
    assert_eq!(durations.len(), 6, "one sample per check");
    assert!(durations.iter().all(|seconds| (0.0..1.0).contains(seconds)), "{durations:?}");
}

#[test]
fn a_limiter_is_named_after_its_algorithm_unless_named() {
    let recorded = Recorded::default();
    let _recording = recorded.install();
    let limiter = two_a_second(&ManualClock::new());
    assert_eq!(limiter.name(), "token_bucket");
    let _ = limiter.check_sync("k");
    assert_eq!(checks(&recorded, "token_bucket", "allowed"), Some(1));
}

#[test]
fn input_a_limiter_refuses_before_deciding_is_returned_not_counted() {
    let recorded = Recorded::default();
    let _recording = recorded.install();
    let limiter = two_a_second(&ManualClock::new()).named("strict");
    assert!(limiter.check_n_sync("k", 3).is_err(), "more than the bucket holds");
    assert!(limiter.check_detailed_sync("k", 1, Some("gold")).is_err(), "no such plan");
    assert_eq!(checks(&recorded, "strict", "error"), None, "no check was decided, so none was registered");
}

#[test]
fn each_check_is_one_trace_event_with_the_limiter_the_key_and_the_outcome() {
    let logs = Capture::default();
    let _capturing = logs.install();
    let limiter = two_a_second(&ManualClock::new()).named("api");
    for _ in 0..3 {
        let _ = limiter.check_sync("user:1");
    }

    let events: Vec<_> = logs.at(Level::TRACE).into_iter().filter(|event| event.target == "tollgate::check").collect();
    let outcomes: Vec<_> = events.iter().map(|event| event.field("outcome").unwrap()).collect();
    assert_eq!(outcomes, ["allowed", "allowed", "denied"]);
    for event in &events {
        assert_eq!(
            (event.field("limiter"), event.field("key"), event.field("cost")),
            (Some("api"), Some("user:1"), Some("1"))
        );
    }
    assert!(logs.at(Level::DEBUG).is_empty() && logs.at(Level::INFO).is_empty(), "checks are traffic: trace only");
}

/// The capture itself: tracing caches each callsite's interest when a
/// thread first reaches it, and a thread that logs to no one must not leave
/// it cached as "never" for the threads that capture.
#[test]
fn an_event_is_captured_though_a_thread_without_a_capture_reached_it_first() {
    fn log_once() {
        tracing::warn!(target: "observability::capture", "reached");
    }
    let logs = Capture::default();
    let _capturing = logs.install();
    std::thread::spawn(log_once).join().unwrap();
    log_once();

    let events: Vec<_> =
        logs.at(Level::WARN).into_iter().filter(|event| event.target == "observability::capture").collect();
    assert_eq!(events.len(), 1, "this thread's event, not the other's: {events:#?}");
}

#[test]
fn the_keys_gauge_is_set_when_the_store_is_swept() {
    let recorded = Recorded::default();
    let _recording = recorded.install();
    let clock = ManualClock::new();
    let limiter = two_a_second(&clock).named("sessions");
    for n in 0..5 {
        let _ = limiter.check_sync(&format!("user:{n}"));
    }
    assert_eq!(recorded.gauge(KEYS, &[("limiter", "sessions")]), None, "not a scan per check");

    assert_eq!(limiter.cleanup(), 0);
    assert_eq!(recorded.gauge(KEYS, &[("limiter", "sessions")]), Some(5.0));
    clock.advance(Duration::from_secs(2));
    assert_eq!(limiter.cleanup(), 5, "every bucket is full again");
    assert_eq!(recorded.gauge(KEYS, &[("limiter", "sessions")]), Some(0.0));
}

#[cfg(feature = "tower")]
mod middleware {
    use std::convert::Infallible;
    use std::sync::Arc;

    use http::{HeaderName, Request, Response, StatusCode};
    use tollgate::middleware::{KeyExtractor, RateLimitLayer};
    use tower::{Layer, ServiceExt};

    use super::*;

    const REQUESTS: &str = "tollgate_http_requests_total";

    fn requests(recorded: &Recorded, policy: &str, outcome: &str) -> Option<u64> {
        recorded.counter(REQUESTS, &[("policy", policy), ("outcome", outcome)])
    }

    #[tokio::test]
    async fn the_layer_counts_requests_under_its_policy_name_and_the_limiter_its_checks_under_its_own() {
        let recorded = Recorded::default();
        let _recording = recorded.install();
        let limiter = Arc::new(two_a_second(&ManualClock::new()).named("per-key"));
        let api_key = HeaderName::from_static("x-api-key");
        let service = RateLimitLayer::new(limiter, KeyExtractor::header(api_key.clone()))
            .policy_name("api")
            .unwrap()
            .layer(tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
        let keyed = || Request::builder().header(&api_key, "alice").body(()).unwrap();
        let mut statuses = Vec::new();
        for request in [keyed(), keyed(), keyed(), Request::new(())] {
            statuses.push(service.clone().oneshot(request).await.unwrap().status());
        }
        assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS, StatusCode::BAD_REQUEST]);

        assert_eq!(requests(&recorded, "api", "allowed"), Some(2));
        assert_eq!(requests(&recorded, "api", "denied"), Some(1));
        assert_eq!(requests(&recorded, "api", "no_key"), Some(1));
        assert_eq!(requests(&recorded, "api", "error"), Some(0));
        // Each check once, under the limiter's name: none under the policy's.
        assert_eq!(checks(&recorded, "per-key", "allowed"), Some(2));
        assert_eq!(checks(&recorded, "per-key", "denied"), Some(1));
        assert_eq!(checks(&recorded, "api", "allowed"), None);
    }
}

#[cfg(feature = "redis")]
mod redis {
    use tollgate::{CircuitBreaker, Error, FailurePolicy, Redis};

    use super::*;
    use crate::support::redis_server::RedisServer;

    #[tokio::test]
    async fn redis_decisions_failures_the_policy_answered_and_errors_are_told_apart() {
        let Some(mut server) = RedisServer::start() else { return };
        let recorded = Recorded::default();
        let _recording = recorded.install();
        let logs = Capture::default();
        let _capturing = logs.install();
        let url = server.url();
        let connect = |name: &'static str, policy| {
            Redis::builder(TokenBucket::new(1, Rate::per_minute(1)).unwrap())
                .prefix(format!("observability:{name}:"))
                .name(name)
                .failure_policy(policy)
                .circuit_breaker(CircuitBreaker::disabled())
                .timeout(Duration::from_secs(5))
                .connect(&url)
        };
        let open = connect("open", FailurePolicy::Allow).await.unwrap();
        let strict = connect("strict", FailurePolicy::ReturnError).await.unwrap();
        assert_eq!(open.name(), "open");
        assert!(open.check("k").await.unwrap().is_allowed());
        assert!(!open.check("k").await.unwrap().is_allowed());
        assert!(!open.check("k").await.unwrap().is_allowed(), "answered by the deny cache");
        assert_eq!(recorded.counter(SAVED, &[("limiter", "open")]), Some(1), "one Redis call saved");
        assert!(strict.reserve("k", 1, Duration::ZERO).await.unwrap().is_allowed());

        server.stop();
        for _ in 0..10 {
            assert!(open.check("other").await.unwrap().is_allowed(), "the policy allows");
        }
        let error = strict.check("k").await.unwrap_err();
        assert!(matches!(error, Error::Backend { .. } | Error::Timeout(_)), "{error}");

        assert_eq!(checks(&recorded, "open", "allowed"), Some(1));
        assert_eq!(checks(&recorded, "open", "denied"), Some(2), "the cached denial is a denial");
        assert_eq!(checks(&recorded, "open", "failure_policy"), Some(10));
        assert_eq!(checks(&recorded, "strict", "allowed"), Some(1));
        assert_eq!(checks(&recorded, "strict", "error"), Some(1));
        assert_eq!(recorded.histogram(DURATION, &[("limiter", "open")]).map(|samples| samples.len()), Some(13));

        // The policy's answers: the first of each kind of error a warning,
        // the rest at debug. The error returned is the caller's to log.
        let answered = |level| {
            logs.at(level)
                .into_iter()
                .filter(|event| event.target == "tollgate::redis" && event.field("limiter") == Some("open"))
                .collect::<Vec<_>>()
        };
        let (warnings, debugs) = (answered(Level::WARN), answered(Level::DEBUG));
        assert!((1..=2).contains(&warnings.len()), "one per kind of error: {warnings:#?}");
        assert_eq!(warnings.len() + debugs.len(), 10, "one event per failure");
        assert!(warnings.iter().all(|event| event.field("policy") == Some("Allow")), "{warnings:#?}");
        assert!(logs.at(Level::WARN).iter().all(|event| event.field("limiter") != Some("strict")));
        let traced: Vec<_> =
            logs.at(Level::TRACE).into_iter().filter(|event| event.target == "tollgate::check").collect();
        assert_eq!(traced.len(), 15, "every check: {traced:#?}");
    }
}
