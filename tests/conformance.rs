//! The rules every backend keeps, written once as checks that take a
//! [`Backend`], then run against each: `InMemory` here, Redis in
//! `redis_backend.rs` and Redis Cluster in `cluster.rs` through [`conformance_suite!`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate::{Algorithm, Error, FixedWindow, InMemory, ManualClock, Rate, RateLimiter};

use crate::support::algorithms::{awaited, for_each_algorithm};
use crate::support::models::{EPOCH, Example, Spec, Verdict};

/// A backend under test: makes limiters that share state with each other and
/// with no limiter made before.
pub(crate) trait Backend {
    /// `count` limiters of `algorithm` over one shared state (on Redis: each on
    /// its own connection, all with one fresh prefix). With `Some(clock)` they
    /// all read `clock`; with `None`, the backend's own time.
    async fn limiters<A: Algorithm>(
        &self,
        algorithm: A,
        clock: Option<ManualClock>,
        count: usize,
    ) -> Vec<Arc<dyn RateLimiter>>;

    /// One limiter of `algorithm` on `clock`.
    async fn limiter<A: Algorithm>(&self, algorithm: A, clock: &ManualClock) -> Arc<dyn RateLimiter> {
        self.limiters(algorithm, Some(clock.clone()), 1).await.remove(0)
    }
}

/// The in-memory backend: `count` handles on one `InMemory`.
pub(crate) struct InMemoryBackend;

impl Backend for InMemoryBackend {
    async fn limiters<A: Algorithm>(
        &self,
        algorithm: A,
        clock: Option<ManualClock>,
        count: usize,
    ) -> Vec<Arc<dyn RateLimiter>> {
        let limiter: Arc<dyn RateLimiter> = match clock {
            Some(clock) => Arc::new(InMemory::with_clock(algorithm, clock)),
            None => Arc::new(InMemory::new(algorithm)),
        };
        vec![limiter; count]
    }
}

/// Defines one `#[tokio::test]` per conformance check, each running it on
/// the backend that `$backend` (an `Option<impl Backend>`, `None` to skip)
/// evaluates to.
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::conformance::conformance_suite!(@tests $backend;
            each_algorithm_decides_to_the_microsecond,
            a_clock_that_goes_back_admits_nothing_extra,
            a_cost_over_the_maximum_is_an_error_and_a_zero_cost_peeks,
            exactly_the_limit_is_admitted_under_concurrency,
            awkward_keys_each_get_their_own_allowance,
            reset_gives_a_key_its_full_allowance_back,
        );
    };
    (@tests $backend:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(backend) = $backend {
                    $crate::conformance::$check(&backend).await;
                }
            }
        )*
    };
}
pub(crate) use conformance_suite;

mod in_memory {
    conformance_suite!(Some(super::InMemoryBackend));
}

/// Where the clocks start: the worked examples' realistic epoch time.
const START: Duration = EPOCH;

/// Runs each of `A`'s worked examples (`Spec::worked_examples`) on one
/// key, every field of every decision to the microsecond.
async fn decides_to_the_microsecond_for<A: Spec>(backend: &impl Backend) {
    for Example { algorithm, start, steps } in A::worked_examples() {
        let clock = ManualClock::starting_at(start);
        let limiter = backend.limiter(algorithm.clone(), &clock).await;
        for (n, &(advance_us, cost, expected)) in steps.iter().enumerate() {
            clock.advance(Duration::from_micros(advance_us));
            let decision = limiter.check_n("user", cost).await.unwrap();
            assert_eq!(Verdict::from(decision), expected, "step {n} of {algorithm:?}");
        }
    }
}

pub(crate) async fn each_algorithm_decides_to_the_microsecond(backend: &impl Backend) {
    for_each_algorithm!(awaited, decides_to_the_microsecond_for, backend);
}

/// An algorithm that admits `limit` at once and refills nothing within
/// the hour: every algorithm can be held to one count.
fn hourly<A: Spec>(limit: u64) -> A {
    A::with_limit(limit, Duration::from_secs(3_600))
}

async fn a_clock_that_goes_back_admits_nothing_extra_for<A: Spec>(backend: &impl Backend) {
    let clock = ManualClock::starting_at(START + Duration::from_secs(7200));
    let algorithm = hourly::<A>(3);
    let limiter = backend.limiter(algorithm.clone(), &clock).await;
    assert!(limiter.check_n("user", 3).await.unwrap().is_allowed());
    clock.set(START);
    let decision = limiter.check("user").await.unwrap();
    assert!(!decision.is_allowed(), "{algorithm:?} admitted more after the clock went back: {decision:?}");
}

pub(crate) async fn a_clock_that_goes_back_admits_nothing_extra(backend: &impl Backend) {
    for_each_algorithm!(awaited, a_clock_that_goes_back_admits_nothing_extra_for, backend);
}

async fn a_cost_over_the_maximum_is_an_error_and_a_zero_cost_peeks_for<A: Spec>(backend: &impl Backend) {
    let clock = ManualClock::starting_at(START);
    let algorithm = hourly::<A>(3);
    let limiter = backend.limiter(algorithm.clone(), &clock).await;
    let error = limiter.check_n("user", 4).await.unwrap_err();
    assert!(matches!(error, Error::CostTooHigh { cost: 4, max: 3 }), "{algorithm:?}: {error}");
    let peek = limiter.check_n("user", 0).await.unwrap();
    assert_eq!((peek.is_allowed(), peek.remaining()), (true, 3), "{algorithm:?}");
    assert!(limiter.check_n("user", 2).await.unwrap().is_allowed());
    // More than is left is denied and takes nothing; what fits still fits.
    assert!(!limiter.check_n("user", 2).await.unwrap().is_allowed(), "{algorithm:?}");
    assert_eq!(limiter.check_n("user", 0).await.unwrap().remaining(), 1, "{algorithm:?}");
    assert!(limiter.check_n("user", 1).await.unwrap().is_allowed(), "{algorithm:?}");
}

pub(crate) async fn a_cost_over_the_maximum_is_an_error_and_a_zero_cost_peeks(backend: &impl Backend) {
    for_each_algorithm!(awaited, a_cost_over_the_maximum_is_an_error_and_a_zero_cost_peeks_for, backend);
}

/// Waits, if need be, for an hourly window to start, so that a burst of a
/// few seconds stays inside one fixed window.
async fn align_to_an_hourly_window() {
    let into_hour = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 3600.0;
    if into_hour > 3590.0 {
        tokio::time::sleep(Duration::from_secs_f64(3600.5 - into_hour)).await;
    }
}

async fn exactly_the_limit_is_admitted_under_concurrency_for<A: Spec>(backend: &impl Backend) {
    align_to_an_hourly_window().await;
    let algorithm = hourly::<A>(50);
    let limiters = backend.limiters(algorithm.clone(), None, 8).await;
    let tasks: Vec<_> = (0..100)
        .map(|task| {
            let limiter = Arc::clone(&limiters[task % limiters.len()]);
            tokio::spawn(async move { limiter.check("one key").await.unwrap().is_allowed() })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += u32::from(task.await.unwrap());
    }
    assert_eq!(admitted, 50, "{algorithm:?}");
}

pub(crate) async fn exactly_the_limit_is_admitted_under_concurrency(backend: &impl Backend) {
    for_each_algorithm!(awaited, exactly_the_limit_is_admitted_under_concurrency_for, backend);
}

/// User keys that a careless key scheme would mangle or confuse.
pub(crate) fn awkward_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "",
        " ",
        "a b",
        "a",
        "a}",
        "{a}",
        "{",
        "}",
        "{}",
        "}{",
        "a}{b",
        "tollgate:{a}",
        "line\nbreak",
        "tab\there",
        "nul\0byte",
        "ключ",
        "🔑 emoji",
        "*",
        "?",
        "[a]",
    ]
    .iter()
    .map(|key| key.to_string())
    .collect();
    keys.push("k".repeat(10 * 1024));
    keys.push("k".repeat(10 * 1024 - 1) + "}");
    keys
}

pub(crate) async fn awkward_keys_each_get_their_own_allowance(backend: &impl Backend) {
    let clock = ManualClock::starting_at(START);
    let limiter = backend.limiter(FixedWindow::new(Rate::per_hour(2)).unwrap(), &clock).await;
    let keys = awkward_keys();
    for remaining in [1, 0] {
        for key in &keys {
            let decision = limiter.check(key).await.unwrap();
            assert_eq!((decision.is_allowed(), decision.remaining()), (true, remaining), "key {key:?}");
        }
    }
    for key in &keys {
        assert!(!limiter.check(key).await.unwrap().is_allowed(), "key {key:?}");
    }
}

async fn reset_gives_a_key_its_full_allowance_back_for<A: Spec>(backend: &impl Backend) {
    let clock = ManualClock::starting_at(START);
    let algorithm = hourly::<A>(2);
    let limiter = backend.limiter(algorithm.clone(), &clock).await;
    assert!(limiter.check_n("user", 2).await.unwrap().is_allowed());
    assert!(limiter.check_n("other", 2).await.unwrap().is_allowed());
    limiter.reset("user").await.unwrap();
    limiter.reset("never seen").await.unwrap();
    assert_eq!(limiter.check_n("user", 0).await.unwrap().remaining(), 2, "{algorithm:?}");
    assert!(!limiter.check("other").await.unwrap().is_allowed(), "{algorithm:?}");
}

pub(crate) async fn reset_gives_a_key_its_full_allowance_back(backend: &impl Backend) {
    for_each_algorithm!(awaited, reset_gives_a_key_its_full_allowance_back_for, backend);
}
