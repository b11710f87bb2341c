//! The rules every backend keeps, written once as checks that take a
//! [`Backend`], then run against each: `InMemory` here, Redis in
//! `redis_backend.rs` and Redis Cluster in `cluster.rs` through [`conformance_suite!`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate::{
    Algorithm, Decision, Error, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, RateLimiter, SlidingLog,
    TokenBucket,
};

use crate::support::algorithms::{awaited, for_each_algorithm};
use crate::support::models::{Model, Spec, Verdict};

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
            checks_and_reservations_see_the_slots_reserved_ahead,
        );
        #[cfg(feature = "acquire")]
        $crate::conformance::conformance_suite!(@tests $backend;
            acquire_waits_for_slots_that_keep_the_promise,
            acquire_within_too_short_a_wait_reserves_nothing,
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

/// A realistic epoch time at the start of a second, so windows are easy to read.
const START: Duration = Duration::from_secs(1_700_000_000);
const MS: u64 = 1_000;
const SECOND: u64 = 1_000_000;

/// A decision as its six fields, durations in µs.
type Fields = (bool, u64, u64, u64, u64, u64);

fn fields(decision: Decision) -> Fields {
    let micros = |duration: Duration| duration.as_micros() as u64;
    (
        decision.is_allowed(),
        decision.limit(),
        decision.remaining(),
        decision.retry_after().map_or(0, micros),
        micros(decision.reset_after()),
        micros(decision.wait()),
    )
}

const fn allowed(limit: u64, remaining: u64, reset_after_us: u64, wait_us: u64) -> Fields {
    (true, limit, remaining, 0, reset_after_us, wait_us)
}

const fn denied(limit: u64, remaining: u64, retry_after_us: u64, reset_after_us: u64) -> Fields {
    (false, limit, remaining, retry_after_us, reset_after_us, 0)
}

/// Runs `(advance_us, cost, expected)` steps on one key, from `start`.
async fn expect_steps<A: Algorithm>(
    backend: &impl Backend,
    algorithm: A,
    start: Duration,
    steps: &[(u64, u64, Fields)],
) {
    let clock = ManualClock::starting_at(start);
    let limiter = backend.limiter(algorithm.clone(), &clock).await;
    for (n, &(advance_us, cost, expected)) in steps.iter().enumerate() {
        clock.advance(Duration::from_micros(advance_us));
        let decision = limiter.check_n("user", cost).await.unwrap();
        assert_eq!(fields(decision), expected, "step {n} of {algorithm:?}");
    }
}

pub(crate) async fn each_algorithm_decides_to_the_microsecond(backend: &impl Backend) {
    let quarter_past = START + Duration::from_millis(250);
    let three_per_second = FixedWindow::new(Rate::per_second(3)).unwrap();
    expect_steps(
        backend,
        three_per_second,
        quarter_past,
        &[
            (0, 1, allowed(3, 2, 750 * MS, 0)),
            (0, 2, allowed(3, 0, 750 * MS, 0)),
            (500 * MS, 1, denied(3, 0, 250 * MS, 250 * MS)),
            (0, 0, allowed(3, 0, 250 * MS, 0)),
            (250 * MS, 3, allowed(3, 0, SECOND, 0)),
        ],
    )
    .await;

    let two_in_any_second = SlidingLog::new(Rate::per_second(2)).unwrap();
    expect_steps(
        backend,
        two_in_any_second,
        START,
        &[
            (0, 1, allowed(2, 1, SECOND, 0)),
            (400 * MS, 1, allowed(2, 0, SECOND, 0)),
            (500 * MS, 1, denied(2, 0, 100 * MS, 500 * MS)),
            // The first entry has left; two more need the second to leave too.
            (100 * MS, 2, denied(2, 1, 400 * MS, 400 * MS)),
            (0, 1, allowed(2, 0, SECOND, 0)),
            (0, 0, allowed(2, 0, SECOND, 0)),
        ],
    )
    .await;

    let ten_a_second_bursts_of_three = TokenBucket::new(3, Rate::per_second(10)).unwrap();
    expect_steps(
        backend,
        ten_a_second_bursts_of_three,
        START,
        &[
            (0, 3, allowed(3, 0, 300 * MS, 0)),
            (50 * MS, 1, denied(3, 0, 50 * MS, 250 * MS)),
            (50 * MS, 1, allowed(3, 0, 300 * MS, 0)),
            (0, 0, allowed(3, 0, 300 * MS, 0)),
            (SECOND, 0, allowed(3, 3, 0, 0)),
        ],
    )
    .await;

    // A token every 333 333.3 µs: waits are rounded up, never down.
    let three_a_second = TokenBucket::new(1, Rate::per_second(3)).unwrap();
    expect_steps(
        backend,
        three_a_second,
        START,
        &[
            (0, 1, allowed(1, 0, 333_334, 0)),
            (0, 1, denied(1, 0, 333_334, 333_334)),
            (333_333, 1, denied(1, 0, 1, 1)),
            (1, 1, allowed(1, 0, 333_334, 0)),
        ],
    )
    .await;

    let queue_of_two_ten_a_second = LeakyBucket::new(2, Rate::per_second(10)).unwrap();
    expect_steps(
        backend,
        queue_of_two_ten_a_second,
        START,
        &[
            (0, 1, allowed(3, 2, 100 * MS, 0)),
            (0, 1, allowed(3, 1, 200 * MS, 100 * MS)),
            (0, 1, allowed(3, 0, 300 * MS, 200 * MS)),
            (0, 1, denied(3, 0, 100 * MS, 300 * MS)),
            (150 * MS, 1, allowed(3, 0, 250 * MS, 150 * MS)),
            (0, 0, allowed(3, 0, 250 * MS, 0)),
        ],
    )
    .await;
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

/// Reservations on one key at one instant: the token and leaky buckets take
/// slots one after another, and a check or a reservation after them counts
/// them as taken; the algorithms that reserve nothing ahead decide as a
/// check does.
async fn checks_and_reservations_see_the_slots_reserved_ahead_for<A: Spec>(backend: &impl Backend) {
    let clock = ManualClock::starting_at(START);
    let algorithm = hourly::<A>(2);
    let limiter = backend.limiter(algorithm.clone(), &clock).await;
    let hour = Duration::from_secs(3_600);
    let mut model = algorithm.model();
    let now = START.as_micros() as u64;
    for (cost, max_wait) in [(2, Duration::ZERO), (1, hour), (1, hour), (1, Duration::ZERO), (1, 2 * hour)] {
        let decision = limiter.reserve("user", cost, max_wait).await.unwrap();
        let expected = model.reserve(now, cost, max_wait.as_micros() as u64);
        assert_eq!(Verdict::from(decision), expected, "{algorithm:?}: {cost} within {max_wait:?}");
    }
    let check = limiter.check("user").await.unwrap();
    assert_eq!(Verdict::from(check), model.decide(now, 1), "{algorithm:?}");
    assert_eq!(check.remaining(), 0, "{algorithm:?}");
}

pub(crate) async fn checks_and_reservations_see_the_slots_reserved_ahead(backend: &impl Backend) {
    for_each_algorithm!(awaited, checks_and_reservations_see_the_slots_reserved_ahead_for, backend);
}

/// Twelve permits among four tasks, each on its own limiter (on Redis, its
/// own connection): each resolves, at a slot that, with all the others,
/// keeps the algorithm's promise. Real time: three a (300 ms) period.
#[cfg(feature = "acquire")]
async fn acquire_waits_for_slots_that_keep_the_promise_for<A: Spec>(backend: &impl Backend) {
    let algorithm = A::with_limit(3, Duration::from_millis(300));
    let limiters = backend.limiters(algorithm.clone(), None, 4).await;
    let tasks: Vec<_> = limiters
        .into_iter()
        .map(|limiter| {
            tokio::spawn(async move {
                let mut slots = Vec::new();
                for _ in 0..3 {
                    let permit = limiter.acquire("one key", 1).await.unwrap();
                    assert!(permit.waited() < Duration::from_secs(10));
                    slots.push(permit.granted_at().as_micros() as u64);
                }
                slots
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        admitted.extend(task.await.unwrap().into_iter().map(|slot| (slot, 1, 0)));
    }
    admitted.sort_unstable();
    assert_eq!(admitted.len(), 12);
    algorithm.keeps_its_promise(&admitted).unwrap_or_else(|broken| panic!("{algorithm:?}: {broken}: {admitted:?}"));
    // Twelve of three a period need three more periods than the first three.
    assert!(admitted[11].0 - admitted[0].0 >= 600_000, "{algorithm:?}: {admitted:?}");
}

#[cfg(feature = "acquire")]
pub(crate) async fn acquire_waits_for_slots_that_keep_the_promise(backend: &impl Backend) {
    for_each_algorithm!(awaited, acquire_waits_for_slots_that_keep_the_promise_for, backend);
}

/// After the limit is taken, a wait of a second is too short for the next
/// unit of an hourly limit: `TooLong`, with at least the wait a check
/// reports, and nothing changed.
#[cfg(feature = "acquire")]
async fn acquire_within_too_short_a_wait_reserves_nothing_for<A: Spec>(backend: &impl Backend) {
    let clock = ManualClock::starting_at(START);
    let algorithm = hourly::<A>(2);
    let limiter = backend.limiter(algorithm.clone(), &clock).await;
    assert!(limiter.acquire_within("user", 2, Duration::ZERO).await.unwrap().is_ok(), "{algorithm:?}");
    let before = limiter.check_n("user", 0).await.unwrap();
    let retry_after = limiter.check("user").await.unwrap().retry_after().unwrap();
    let too_long = limiter.acquire_within("user", 1, Duration::from_secs(1)).await.unwrap().unwrap_err();
    assert!(too_long.wait() >= retry_after, "{algorithm:?}: {too_long:?}, a check says {retry_after:?}");
    assert_eq!(limiter.check_n("user", 0).await.unwrap(), before, "{algorithm:?}: the state changed");
}

#[cfg(feature = "acquire")]
pub(crate) async fn acquire_within_too_short_a_wait_reserves_nothing(backend: &impl Backend) {
    for_each_algorithm!(awaited, acquire_within_too_short_a_wait_reserves_nothing_for, backend);
}
