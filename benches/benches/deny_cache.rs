//! The deny cache under a hot spot: 64 tasks hammering 10 exhausted keys
//! (each task one check a millisecond, 64 000 a second offered), and one
//! well-behaved key checked beside them (a check every 2 ms), against a
//! redis-server this bench starts, through the default `ConnectionManager`.
//!
//! - `deny_cache/good_key/<hot>/<on|off>`: criterion's time per check of
//!   the well-behaved key while the hammering runs, with the cache on and
//!   off.
//! - Then, interleaved (off, on, on, off, ...), rounds of a few seconds
//!   each: the Redis script calls per second (`INFO commandstats`, every
//!   call, the well-behaved key's included; and without the well-behaved
//!   key's, each of its checks being one call), the well-behaved key's
//!   latency (median, p99), and the ratios of calls without the cache to
//!   calls with it.
//!
//! Two kinds of hot keys: `AtItsRate`, token buckets of 10 a second, each
//! admitted again as it refills, so that with the cache each is asked of
//! Redis at least twice per refill (the admission, then the denial that is
//! cached), more while the denial's call is in flight; and `Spent`, fixed
//! windows of 600 a minute, denied until the minute ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tollgate::{FixedWindow, Plans, Rate, RateLimiter, Redis, TokenBucket};

use super::redis_server::{RedisServer, script_calls};

const TASKS: usize = 64;
const EXHAUSTED_KEYS: usize = 10;
/// Each hammering task's pace.
const TICK: Duration = Duration::from_millis(1);
/// The well-behaved key's pace.
const GOOD_TICK: Duration = Duration::from_millis(2);
const GOOD_KEY: &str = "well-behaved";
const ROUNDS: usize = 6;
const ROUND: Duration = Duration::from_secs(3);
/// Before each round's measurement: the keys get exhausted, the cache fills.
const SETTLE: Duration = Duration::from_millis(500);

type Limiter = Redis<Plans>;

/// How the hot keys are limited: a token bucket of 10 a second, at its rate
/// (admitted again as it refills, every 100 ms), or a fixed window of 600 a
/// minute, spent (denied until the minute ends).
#[derive(Debug, Clone, Copy)]
enum Hot {
    AtItsRate,
    Spent,
}

/// `hot` for everyone; a million a second for the well-behaved key.
fn plans(hot: Hot) -> Plans {
    let plans = match hot {
        Hot::AtItsRate => Plans::new("exhausted", TokenBucket::new(10, Rate::per_second(10)).unwrap()),
        Hot::Spent => Plans::new("exhausted", FixedWindow::new(Rate::per_minute(600)).unwrap()),
    };
    plans
        .unwrap()
        .plan("generous", TokenBucket::new(1_000_000, Rate::per_second(1_000_000)).unwrap())
        .unwrap()
        .resolve(|key: &str| if key == GOOD_KEY { "generous" } else { "exhausted" })
}

/// The hammering tasks, until [`Load::stop`].
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(runtime: &Runtime, limiter: &Limiter) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..TASKS)
            .map(|task| {
                let (limiter, stop) = (limiter.clone(), Arc::clone(&stop));
                let key = format!("hot:{}", task % EXHAUSTED_KEYS);
                runtime.spawn(async move {
                    let mut ticks = tokio::time::interval(TICK);
                    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    while !stop.load(Ordering::Relaxed) {
                        ticks.tick().await;
                        // A timeout under the uncached load is part of what is measured: ignored.
                        let _ = limiter.check(&key).await;
                    }
                })
            })
            .collect();
        Self { stop, tasks }
    }

    fn stop(self, runtime: &Runtime) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            runtime.block_on(task).unwrap();
        }
    }
}

/// One round under load: script calls per second (all, and those of the
/// exhausted keys), the well-behaved key's latencies, and how many of its
/// checks failed or were refused.
fn round(
    runtime: &Runtime,
    limiter: &Limiter,
    connection: &mut MultiplexedConnection,
) -> ((f64, f64), Vec<Duration>, usize) {
    let load = Load::start(runtime, limiter);
    runtime.block_on(async { tokio::time::sleep(SETTLE).await });
    let stop = Arc::new(AtomicBool::new(false));
    // The well-behaved key's checks sent while the calls are counted.
    let (measuring, counted) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let good = {
        let (limiter, stop) = (limiter.clone(), Arc::clone(&stop));
        let (measuring, counted) = (Arc::clone(&measuring), Arc::clone(&counted));
        runtime.spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0);
            let mut ticks = tokio::time::interval(GOOD_TICK);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                if measuring.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                let started = Instant::now();
                let decision = limiter.check(GOOD_KEY).await;
                latencies.push(started.elapsed());
                failed += usize::from(!decision.is_ok_and(|decision| decision.is_allowed()));
            }
            (latencies, failed)
        })
    };
    let before = runtime.block_on(script_calls(connection));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    runtime.block_on(async { tokio::time::sleep(ROUND).await });
    measuring.store(false, Ordering::Relaxed);
    let calls = runtime.block_on(script_calls(connection)) - before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (latencies, failed) = runtime.block_on(good).unwrap();
    load.stop(runtime);
    // Each of the well-behaved key's checks is one call (admitted: never cached).
    let good_calls = counted.load(Ordering::Relaxed);
    ((calls as f64 / elapsed, calls.saturating_sub(good_calls) as f64 / elapsed), latencies, failed)
}

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * share).round() as usize]
}

pub(crate) fn benches(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else { return };
    let runtime = Runtime::new().unwrap();
    let mut connection = runtime.block_on(server.connection());
    let limiter = |hot: Hot, on: bool| {
        // A timeout of a second: the uncached load queues up on a busy machine, and its latency is measured.
        let builder = Redis::builder(plans(hot))
            .prefix(format!("{hot:?}:{}:", if on { "cached" } else { "uncached" }))
            .timeout(Duration::from_secs(1))
            .deny_cache(on);
        runtime.block_on(builder.connect(&server.url())).unwrap()
    };

    let mut group = c.benchmark_group("deny_cache");
    group.throughput(Throughput::Elements(1));
    let mut measured = false;
    for hot in [Hot::AtItsRate, Hot::Spent] {
        for (name, on) in [("off", false), ("on", true)] {
            let limiter = limiter(hot, on);
            let load = Load::start(&runtime, &limiter);
            group.bench_function(BenchmarkId::new(format!("good_key/{hot:?}"), name), |b| {
                measured = true;
                b.iter_custom(|checks| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        for _ in 0..checks {
                            let _ = limiter.check(GOOD_KEY).await;
                        }
                        started.elapsed()
                    })
                })
            });
            load.stop(&runtime);
        }
    }
    group.finish();
    if !measured {
        return; // filtered out
    }
    for hot in [Hot::AtItsRate, Hot::Spent] {
        compare(&runtime, &mut connection, hot, [limiter(hot, false), limiter(hot, true)]);
    }
}

/// The interleaved comparison of the limiters without and with the cache.
fn compare(runtime: &Runtime, connection: &mut MultiplexedConnection, hot: Hot, limiters: [Limiter; 2]) {
    let (mut calls, mut latencies, mut failed) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()], [0, 0]);
    for round_number in 0..ROUNDS {
        // off, on, on, off, off, on, ...: neither goes first every time.
        let order = if round_number % 2 == 0 { [0, 1] } else { [1, 0] };
        for variant in order {
            let (per_second, mut good, failures) = round(runtime, &limiters[variant], connection);
            calls[variant].push(per_second);
            failed[variant] += failures;
            latencies[variant].append(&mut good);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    eprintln!(
        "deny_cache, hot keys {hot:?}: {TASKS} tasks on {EXHAUSTED_KEYS} keys (one check per task per {TICK:?}), \
         one well-behaved key (one check per {GOOD_TICK:?}); {ROUNDS} interleaved rounds of {ROUND:?} each:"
    );
    let mut medians = [0.0; 2];
    let mut hot_medians = [0.0; 2];
    for (variant, name) in ["off", "on"].iter().enumerate() {
        medians[variant] = median(&mut calls[variant].iter().map(|&(all, _)| all).collect());
        hot_medians[variant] = median(&mut calls[variant].iter().map(|&(_, hot)| hot).collect());
        latencies[variant].sort();
        let good = &latencies[variant];
        eprintln!(
            "  cache {name:<3}  {:>8.0} Redis script calls/s, {:>8.0} of them for the exhausted keys (median \
             rounds)   well-behaved key: median {:>8.1?}, p99 {:>8.1?} ({} checks, {} failed or refused)",
            medians[variant],
            hot_medians[variant],
            percentile(good, 0.5),
            percentile(good, 0.99),
            good.len(),
            failed[variant]
        );
    }
    // Fewer than one call a second (a spent window): say so rather than divide by it.
    let hot_ratio = if hot_medians[1] >= 1.0 {
        format!("{:.1}×", hot_medians[0] / hot_medians[1])
    } else {
        format!("over {:.0}× (under one call a second with the cache)", hot_medians[0])
    };
    eprintln!(
        "  Redis calls/s without the cache ÷ with it: {:.1}× in all, {hot_ratio} for the exhausted keys; saved by \
         the cache: {} calls",
        medians[0] / medians[1],
        limiters[1].deny_cache_saves()
    );
}
