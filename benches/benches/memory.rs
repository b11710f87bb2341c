//! The in-memory store, per algorithm (each of the registry in
//! tests/support/algorithms.rs, configured through its `Spec`), against
//! governor's keyed limiter with the same rate and the same key type
//! (`String`).
//!
//! Groups (each check is one element of throughput):
//!
//! - `memory/hot_key`: one key, an allowance far above the check rate, so
//!   every check is admitted (the write path).
//! - `memory/hot_key_denied`: one key, two at once then one request an hour,
//!   so every check after the second is denied (the read-only path).
//! - `memory/100k_keys_held`: 100 000 keys checked in turn, with an allowance
//!   that admits every check yet keeps every key held, so the store never
//!   sweeps a key and creates it again.
//! - `memory/100k_keys_refilled`: 100 000 keys checked in turn, with an
//!   allowance that admits every check and is full again long before the key
//!   comes round: tollgate's sweeps forget the keys between visits and each
//!   check creates its key again; governor keeps them (it forgets keys only
//!   when told to, with `retain_recent`).
//! - `memory/contended`: two threads on one key, admitted.
//!
//! `sync` is `InMemory::check_sync`; `async` is `RateLimiter::check` through an
//! `&dyn RateLimiter`, polled once with a no-op waker (an in-memory check never
//! waits), so it measures exactly what the trait adds: boxing the future and
//! one dynamic call, with no runtime in the way. Each bench prints the share of
//! checks admitted, and how many keys tollgate still holds at the end, so the
//! path it claims to measure is checked.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use governor::{DefaultKeyedRateLimiter, Quota};
use tollgate::{Algorithm, Clock, InMemory, MonotonicClock, Rate, RateLimiter};

use super::models::Spec;

/// Distinct keys in `memory/100k_keys_*`.
const KEYS: usize = 100_000;

/// One configuration, given to every algorithm (through its
/// [`Spec::try_new`]) and to governor.
#[derive(Clone, Copy)]
struct Allowance {
    /// What a bucket admits at once (governor's burst; a leaky bucket's
    /// capacity is one less, for the request departing now).
    capacity: u64,
    rate: Rate,
    /// A log keeps one entry per admitted request for a period
    /// ([`Spec::STATE_GROWS_WITH_AMOUNT`]), so where the shared rate would
    /// grow its logs without bound it gets this one.
    log_rate: Rate,
}

/// 100 million a second, bursts of 1 000: a hot key is always admitted.
/// A sliding log holds at most 1 000 entries.
const HOT: Allowance = Allowance {
    capacity: 1_000,
    rate: Rate::new(1_000, Duration::from_micros(10)),
    log_rate: Rate::new(1_000, Duration::from_micros(10)),
};

/// Two at once, then one an hour: every check after the second is denied.
/// (Two, because a leaky bucket admits at least its one waiting place and
/// the request departing now.)
const DENIED: Allowance = Allowance { capacity: 2, rate: Rate::per_hour(1), log_rate: Rate::per_hour(1) };

/// 65 536 per 10 hours with bursts of 65 536: one check is 0.55 s of
/// allowance, far longer than a pass over the keys takes (100 000 checks, a
/// few tens of ms), so no key ever drains back to full and the store never
/// sweeps a key and allocates it again; and a key is admitted for far longer
/// than a run. The sliding log gets 1 024 a second: each key stays held with a
/// log of a few dozen entries.
const MANY_KEYS: Allowance = Allowance {
    capacity: 65_536,
    rate: Rate::new(65_536, Duration::from_secs(36_000)),
    log_rate: Rate::new(1_024, Duration::from_secs(1)),
};

/// One a 100 µs, in bursts of two (the least a leaky bucket admits at
/// once): a key's allowance is full again 100 µs after a check, and a pass
/// over the keys takes milliseconds, so every check is admitted and tollgate
/// forgets each key before it comes round. The windows and the log forget it
/// after one or two periods too.
const REFILLED: Allowance = Allowance {
    capacity: 2,
    rate: Rate::new(1, Duration::from_micros(100)),
    log_rate: Rate::new(1, Duration::from_micros(100)),
};

/// Something that checks a key, measured the same way whatever it is.
trait Subject: Sync {
    /// Checks one request for `key`; whether it was admitted. A `&String`,
    /// not a `&str`, because governor's keyed check takes a `&K`.
    #[allow(clippy::ptr_arg)]
    fn check(&self, key: &String) -> bool;

    /// How many keys tollgate holds; `None` for governor.
    fn held(&self) -> Option<usize> {
        None
    }
}

struct CheckSync<A: Algorithm>(InMemory<A>);

impl<A: Algorithm> Subject for CheckSync<A> {
    #[inline]
    fn check(&self, key: &String) -> bool {
        // black_box the whole decision, so that no field of it goes uncomputed.
        black_box(self.0.check_sync(key)).is_allowed()
    }

    fn held(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct TraitCheck<A: Algorithm>(InMemory<A>);

impl<A: Algorithm> Subject for TraitCheck<A> {
    #[inline]
    fn check(&self, key: &String) -> bool {
        // black_box the trait object, so that the call stays dynamic.
        let limiter: &dyn RateLimiter = black_box(&self.0);
        black_box(poll_once(limiter.check(key))).is_ok_and(|decision| decision.is_allowed())
    }

    fn held(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Governor(DefaultKeyedRateLimiter<String>);

impl Subject for Governor {
    #[inline]
    fn check(&self, key: &String) -> bool {
        black_box(self.0.check_key(key)).is_ok()
    }
}

/// Polls a future that must be ready at once.
fn poll_once<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("an in-memory check never waits"),
    }
}

fn governor(allowance: Allowance) -> Governor {
    let rate = allowance.rate;
    let per_request = rate.period() / u32::try_from(rate.amount()).expect("a rate governor can express");
    let burst = NonZeroU32::new(u32::try_from(allowance.capacity).unwrap()).unwrap();
    let quota = Quota::with_period(per_request).expect("a non-zero period").allow_burst(burst);
    Governor(DefaultKeyedRateLimiter::keyed(quota))
}

#[derive(Clone, Copy)]
enum Scenario {
    /// Every check on one key.
    OneKey,
    /// Each check on the next of `KEYS` keys, in turn.
    ManyKeys,
    /// Two threads, each checking one shared key.
    Contended,
}

impl Scenario {
    fn run<S: Subject>(
        self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        (path, name): (&str, &str),
        subject: &S,
        keys: &[String],
    ) {
        let id = BenchmarkId::new(path, name);
        let (mut admitted, mut checked) = (0_u64, 0_u64);
        match self {
            Scenario::OneKey => {
                let key = &keys[0];
                group.bench_function(id.clone(), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            admitted += u64::from(subject.check(key));
                        }
                        checked += iters;
                        start.elapsed()
                    })
                });
            }
            Scenario::ManyKeys => {
                let mut next = 0;
                group.bench_function(id.clone(), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            admitted += u64::from(subject.check(&keys[next]));
                            next += 1;
                            if next == keys.len() {
                                next = 0;
                            }
                        }
                        checked += iters;
                        start.elapsed()
                    })
                });
            }
            Scenario::Contended => {
                let key = &keys[0];
                group.bench_function(id.clone(), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        let admitted_by_threads = std::thread::scope(|scope| {
                            let threads: Vec<_> = (0..2)
                                .map(|_| scope.spawn(|| (0..iters).map(|_| u64::from(subject.check(key))).sum::<u64>()))
                                .collect();
                            threads.into_iter().map(|thread| thread.join().unwrap()).sum::<u64>()
                        });
                        let elapsed = start.elapsed();
                        admitted += admitted_by_threads;
                        checked += 2 * iters;
                        elapsed
                    })
                });
            }
        }
        if checked > 0 {
            let share = 100.0 * admitted as f64 / checked as f64;
            let held = subject.held().map_or(String::new(), |held| format!(", {held} keys held at the end"));
            eprintln!("{path}/{name}: {share:.1}% of checks admitted{held}");
        }
    }
}

/// Runs `scenario` on governor and on each algorithm of the registry
/// (tests/support/algorithms.rs), sync and async.
fn each_subject(group: &mut BenchmarkGroup<'_, WallTime>, scenario: Scenario, allowance: Allowance, keys: &[String]) {
    scenario.run(group, ("governor", "keyed"), &governor(allowance), keys);
    macro_rules! each {
        ($name:ident, $algorithm:ident, $group:ident, $scenario:ident, $allowance:ident, $keys:ident) => {
            each_path::<tollgate::$algorithm>($group, $scenario, $allowance, $keys);
        };
    }
    crate::algorithms::for_each_algorithm!(each, group, scenario, allowance, keys);
}

/// Runs `scenario` on algorithm `A` given `allowance`, sync and async.
fn each_path<A: Spec>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    scenario: Scenario,
    allowance: Allowance,
    keys: &[String],
) {
    let rate = if A::STATE_GROWS_WITH_AMOUNT { allowance.log_rate } else { allowance.rate };
    let algorithm = A::try_new(allowance.capacity, rate).expect("a valid allowance");
    let name = algorithm.name();
    scenario.run(group, ("sync", name), &CheckSync(InMemory::new(algorithm.clone())), keys);
    scenario.run(group, ("async", name), &TraitCheck(InMemory::new(algorithm)), keys);
}

/// Keys like an API's: `user:000042`.
fn keys(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("user:{n:06}")).collect()
}

/// What reading the time costs: tollgate's clock, what it is made of, and
/// governor's default clock.
fn clocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory/clock");
    group.throughput(Throughput::Elements(1));
    let monotonic = MonotonicClock::new();
    group.bench_function("tollgate_monotonic", |b| b.iter(|| monotonic.now()));
    group.bench_function("std_instant", |b| b.iter(Instant::now));
    let quanta = governor::clock::QuantaClock::default();
    group.bench_function("governor_quanta", |b| b.iter(|| governor::clock::Clock::now(&quanta)));
    group.finish();
}

pub(crate) fn benches(c: &mut Criterion) {
    clocks(c);
    let keys = keys(KEYS);
    let groups = [
        ("memory/hot_key", Scenario::OneKey, HOT, 1),
        ("memory/hot_key_denied", Scenario::OneKey, DENIED, 1),
        ("memory/100k_keys_held", Scenario::ManyKeys, MANY_KEYS, 1),
        ("memory/100k_keys_refilled", Scenario::ManyKeys, REFILLED, 1),
        ("memory/contended", Scenario::Contended, HOT, 2),
    ];
    for (name, scenario, allowance, checks_per_iteration) in groups {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(checks_per_iteration));
        each_subject(&mut group, scenario, allowance, &keys);
        group.finish();
    }
}
