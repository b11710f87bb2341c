//! The rules every backend keeps, written once as checks that take a
//! [`Backend`], then run against each: `InMemory` here, Redis in
//! `redis_backend.rs` and Redis Cluster in `cluster.rs` through [`conformance_suite!`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::HashMap;
use std::sync::Mutex;

use tollgate::{
    Algorithm, Breakdown, Composite, Error, FixedWindow, InMemory, Limit, ManualClock, Plans, Rate, RateLimiter,
    SlidingLog, TokenBucket,
};

use crate::support::algorithms::{awaited, for_each_algorithm};
use crate::support::models::{EPOCH, Example, MS, Model, SECOND, Spec, Verdict, denied};

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
            a_composite_takes_from_every_limit_or_from_none,
            a_composite_of_mixed_algorithms_is_exact_under_concurrency,
            plans_keep_exact_counts_and_a_key_moves_between_them,
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

// ---------------------------------------------------------------------------
// Composites and plans (issue 11)

/// Each limit's remaining, by name, in a breakdown.
fn remaining_by_limit(breakdown: &Breakdown) -> Vec<(&str, u64)> {
    breakdown.limits().iter().map(|limit| (limit.name().unwrap_or(""), limit.decision().remaining())).collect()
}

/// What `key` has left in each limit now (a peek), in `plan` if named.
async fn remaining_now<'a>(
    limiter: &dyn RateLimiter,
    key: &str,
    plan: Option<&str>,
    breakdown: &'a mut Option<Breakdown>,
) -> Vec<(&'a str, u64)> {
    *breakdown = Some(limiter.check_detailed(key, 0, plan).await.unwrap());
    remaining_by_limit(breakdown.as_ref().unwrap())
}

fn ten_a_second_and_a_thousand_a_day() -> Composite {
    Composite::new("per-second", TokenBucket::new(10, Rate::per_second(10)).unwrap())
        .unwrap()
        .with("per-day", FixedWindow::new(Rate::per_day(1_000)).unwrap())
        .unwrap()
}

/// The example: 100 requests at 10 a second and 1000 a day admit
/// 10, and the day has 990 left, not 900. Denials report the binding limit's
/// wait and the day as it stands.
pub(crate) async fn a_composite_takes_from_every_limit_or_from_none(backend: &impl Backend) {
    let clock = ManualClock::starting_at(START);
    let limiter = backend.limiter(ten_a_second_and_a_thousand_a_day(), &clock).await;
    let mut admitted = 0;
    for _ in 0..100 {
        admitted += u32::from(limiter.check("alice").await.unwrap().is_allowed());
    }
    assert_eq!(admitted, 10);
    let mut now = None;
    assert_eq!(remaining_now(&*limiter, "alice", None, &mut now).await, [("per-second", 0), ("per-day", 990)]);

    let refused = limiter.check_detailed("alice", 1, None).await.unwrap();
    let until_the_next_day = (86_400 - START.as_secs() % 86_400) * SECOND;
    assert_eq!(Verdict::from(refused.decision()), denied(10, 0, 100 * MS, until_the_next_day));
    assert_eq!(refused.binding().name(), Some("per-second"));
    assert!(refused.get("per-day").unwrap().decision().is_allowed(), "the day would admit it: {refused:?}");
    assert_eq!(
        refused.limits().iter().map(|limit| limit.window()).collect::<Vec<_>>(),
        [Some(Duration::from_secs(1)), Some(Duration::from_secs(86_400))]
    );

    // A second later the bucket is full again: ten more, from both.
    clock.advance(Duration::from_secs(1));
    let ten = limiter.check_n("alice", 10).await.unwrap();
    assert_eq!((ten.is_allowed(), ten.limit(), ten.remaining()), (true, 10, 0));
    assert_eq!(remaining_now(&*limiter, "alice", None, &mut now).await, [("per-second", 0), ("per-day", 980)]);
    // The smallest limit is the largest cost: more is an error, from every backend, before any call.
    let error = limiter.check_n("alice", 11).await.unwrap_err();
    assert!(matches!(error, Error::CostTooHigh { cost: 11, max: 10 }), "{error}");
    // And the state is the key's own: another key is untouched; a reset forgets every limit.
    assert_eq!(remaining_now(&*limiter, "bob", None, &mut now).await, [("per-second", 10), ("per-day", 1_000)]);
    limiter.reset("alice").await.unwrap();
    assert_eq!(remaining_now(&*limiter, "alice", None, &mut now).await, [("per-second", 10), ("per-day", 1_000)]);
}

/// Each algorithm's limit of `limit` an hour, as a `Limit`, in the order of `algorithms.rs`.
fn hourly_of_each(limit: u64) -> Vec<Limit> {
    let mut limits = Vec::new();
    macro_rules! push {
        ($name:ident, $algorithm:ident, $limits:ident, $limit:ident) => {
            $limits.push(Limit::from(hourly::<tollgate::$algorithm>($limit)));
        };
    }
    for_each_algorithm!(push, limits, limit);
    limits
}

/// 100 tasks over 8 limiters (on Redis, 8 connections) race on one key of
/// composites of three algorithms, each algorithm binding in turn, with
/// costs of 1 to 3: every limit ends having given exactly the cost that
/// was admitted (a denial from any one limit took nothing from the others),
/// and the binding limit gave all it could, less what no request fitted.
pub(crate) async fn a_composite_of_mixed_algorithms_is_exact_under_concurrency(backend: &impl Backend) {
    let (binding, more, most) = (hourly_of_each(40), hourly_of_each(60), hourly_of_each(80));
    let algorithms = binding.len();
    for first in 0..algorithms {
        align_to_an_hourly_window().await;
        let composite = Composite::new("binding", binding[first])
            .unwrap()
            .with("more", more[(first + 1) % algorithms])
            .unwrap()
            .with("most", most[(first + 2) % algorithms])
            .unwrap();
        let limiters = backend.limiters(composite.clone(), None, 8).await;
        let tasks: Vec<_> = (0..100_u64)
            .map(|task| {
                let limiter = Arc::clone(&limiters[task as usize % limiters.len()]);
                let cost = task % 3 + 1;
                tokio::spawn(async move {
                    if limiter.check_n("one key", cost).await.unwrap().is_allowed() { cost } else { 0 }
                })
            })
            .collect();
        let mut taken = 0;
        for task in tasks {
            taken += task.await.unwrap();
        }
        let mut now = None;
        let remaining = remaining_now(&*limiters[0], "one key", None, &mut now).await;
        assert_eq!(remaining, [("binding", 40 - taken), ("more", 60 - taken), ("most", 80 - taken)], "{composite:?}");
        assert!(taken > 40 - 3, "{taken} taken of 40 by costs of 1 to 3: {composite:?}");
    }
}

/// Two plans of a composite each, chosen by a lookup of the key's customer
/// (which the test changes: a move), or by the caller: exact counts in each
/// plan, and a key that moves keeps its usage in the limits the plans share
/// (the same name and algorithm), finds the limits only the new plan has
/// afresh, and finds the ones it left as it left them when it comes back.
pub(crate) async fn plans_keep_exact_counts_and_a_key_moves_between_them(backend: &impl Backend) {
    let free = Composite::new("per-second", TokenBucket::new(5, Rate::per_second(5)).unwrap())
        .unwrap()
        .with("per-day", FixedWindow::new(Rate::per_day(100)).unwrap())
        .unwrap();
    let pro = Composite::new("per-second", TokenBucket::new(20, Rate::per_second(20)).unwrap())
        .unwrap()
        .with("per-day", FixedWindow::new(Rate::per_day(1_000)).unwrap())
        .unwrap()
        .with("per-minute", SlidingLog::new(Rate::per_minute(300)).unwrap())
        .unwrap();
    let customers: Arc<Mutex<HashMap<String, &'static str>>> =
        Arc::new(Mutex::new([("alice".to_owned(), "free"), ("bob".to_owned(), "pro")].into()));
    let lookup = Arc::clone(&customers);
    let plans = Plans::new("free", free)
        .unwrap()
        .plan("pro", pro)
        .unwrap()
        .resolve(move |key: &str| lookup.lock().unwrap().get(key).copied().unwrap_or("free"));
    let clock = ManualClock::starting_at(START);
    let limiter = backend.limiter(plans, &clock).await;
    let burst = async |key: &str, requests: u32| {
        let mut admitted = 0;
        for _ in 0..requests {
            admitted += u32::from(limiter.check(key).await.unwrap().is_allowed());
        }
        admitted
    };
    let mut now = None;

    assert_eq!(burst("alice", 10).await, 5);
    assert_eq!(remaining_now(&*limiter, "alice", None, &mut now).await, [("per-second", 0), ("per-day", 95)]);
    assert_eq!(now.as_ref().unwrap().plan(), Some("free"));
    assert_eq!(burst("bob", 30).await, 20);
    let bob = [("per-second", 0), ("per-day", 980), ("per-minute", 280)];
    assert_eq!(remaining_now(&*limiter, "bob", None, &mut now).await, bob);
    assert_eq!(now.as_ref().unwrap().plan(), Some("pro"));

    // alice upgrades: her five tokens stay taken (of 20 now), her day's five stay counted (of 1000).
    customers.lock().unwrap().insert("alice".to_owned(), "pro");
    let upgraded = [("per-second", 15), ("per-day", 995), ("per-minute", 300)];
    assert_eq!(remaining_now(&*limiter, "alice", None, &mut now).await, upgraded);
    assert_eq!(now.as_ref().unwrap().decision().limit(), 20);
    assert_eq!(burst("alice", 20).await, 15);

    // Half a second later she is back on free. The 20 tokens taken as of pro's last write
    // count as free's whole bucket of 5, which has refilled at free's 5 a second since: 2.5.
    clock.advance(Duration::from_millis(500));
    customers.lock().unwrap().insert("alice".to_owned(), "free");
    assert_eq!(remaining_now(&*limiter, "alice", None, &mut now).await, [("per-second", 2), ("per-day", 80)]);
    let denied = limiter.check_n("alice", 3).await.unwrap();
    assert_eq!(denied.retry_after(), Some(Duration::from_millis(100)), "half a token to go, at 5 a second");
    // Pro's per-minute limit, which free does not have, was left as it was: back on pro, it counts.
    clock.advance(Duration::from_secs(10));
    let back = limiter.check_detailed("alice", 0, Some("pro")).await.unwrap();
    assert_eq!(remaining_by_limit(&back), [("per-second", 20), ("per-day", 980), ("per-minute", 285)]);
    // The caller names the plan; the resolver is not asked. A plan there is not is an error.
    let carol = limiter.check_detailed("carol", 7, Some("pro")).await.unwrap();
    assert_eq!((carol.plan(), carol.decision().remaining()), (Some("pro"), 13));
    let error = limiter.check_detailed("carol", 1, Some("gold")).await.unwrap_err();
    assert!(matches!(&error, Error::UnknownPlan { plan } if plan == "gold"), "{error}");
    // Costs are checked against the plan's own limit.
    assert!(matches!(limiter.check_n("alice", 6).await, Err(Error::CostTooHigh { cost: 6, max: 5 })));
    // bob was never touched by any of it.
    assert_eq!(
        remaining_now(&*limiter, "bob", None, &mut now).await,
        [("per-second", 20), ("per-day", 980), ("per-minute", 280)]
    );
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
