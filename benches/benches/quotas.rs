//! What composites and plans cost against one algorithm alone.
//!
//! - `quotas/memory/<subject>`: `InMemory::check_sync` on one hot key, every
//!   check admitted (the write path): a token bucket alone; composites of it
//!   and a fixed window, and of one limit of each algorithm of the registry
//!   (tests/support/algorithms.rs; `composite_of_each`); plans of two
//!   such composites picked by a resolver; and `check_detailed_sync` on the
//!   composite of two (the path that builds each limit's figures).
//! - `quotas/redis/<subject>`: the Redis server's own time per script call
//!   (`INFO commandstats`), calls sent 64 at a time through a `Redis`
//!   limiter, 10 000 keys in turn, every check admitted; then interleaved
//!   rounds, each subject's time divided by the token bucket's alone in the
//!   same round, medians printed.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use tollgate::{Algorithm, Composite, FixedWindow, InMemory, Limit, Plans, Rate, TokenBucket};

use super::models::Spec;

/// Far above any check rate: every check is admitted.
const HOT: Rate = Rate::new(1_000, Duration::from_micros(10));

fn bucket() -> TokenBucket {
    TokenBucket::new(1_000, HOT).unwrap()
}

fn bucket_and_window() -> Composite {
    Composite::new("burst", bucket()).unwrap().with("window", FixedWindow::new(HOT).unwrap()).unwrap()
}

/// One limit of each algorithm, named after it, each admitting 1 000 at
/// once at the `HOT` rate.
fn one_of_each() -> Composite {
    let mut limits: Vec<(&str, Limit)> = Vec::new();
    macro_rules! push {
        ($name:ident, $algorithm:ident, $limits:ident) => {
            let limit = <tollgate::$algorithm as Spec>::try_new(1_000, HOT).unwrap();
            $limits.push((limit.name(), limit.into()));
        };
    }
    crate::algorithms::for_each_algorithm!(push, limits);
    Composite::from_limits(limits).unwrap()
}

fn two_plans() -> Plans {
    Plans::new("free", bucket_and_window())
        .unwrap()
        .plan("pro", bucket_and_window())
        .unwrap()
        .resolve(|key: &str| if key.starts_with("pro") { "pro" } else { "free" })
}

pub(crate) fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("quotas/memory");
    group.throughput(Throughput::Elements(1));
    let key = "pro:user:42";
    let alone = InMemory::new(bucket());
    group.bench_function(BenchmarkId::from_parameter("token_bucket"), |b| b.iter(|| alone.check_sync(black_box(key))));
    let two = InMemory::new(bucket_and_window());
    group.bench_function(BenchmarkId::from_parameter("composite_of_2"), |b| b.iter(|| two.check_sync(black_box(key))));
    let each = InMemory::new(one_of_each());
    group.bench_function(BenchmarkId::from_parameter("composite_of_each"), |b| {
        b.iter(|| each.check_sync(black_box(key)))
    });
    let plans = InMemory::new(two_plans());
    group.bench_function(BenchmarkId::from_parameter("plans_of_2"), |b| b.iter(|| plans.check_sync(black_box(key))));
    group.bench_function(BenchmarkId::from_parameter("composite_of_2_detailed"), |b| {
        b.iter(|| two.check_detailed_sync(black_box(key), 1, None).unwrap())
    });
    group.finish();
    for (name, admitted) in [("composite_of_2", two.check_sync(key)), ("composite_of_each", each.check_sync(key))] {
        assert!(admitted.is_allowed(), "{name}: the bench meant to measure admissions");
    }

    #[cfg(feature = "redis")]
    redis::benches(c);
}

#[cfg(feature = "redis")]
mod redis {
    use std::time::Duration;

    use ::redis::aio::MultiplexedConnection;
    use criterion::{BenchmarkId, Criterion, Throughput};
    use tokio::runtime::Runtime;
    use tokio::task::JoinSet;
    use tollgate::{Algorithm, RateLimiter, Redis};

    use super::{bucket, bucket_and_window, one_of_each};
    use crate::redis_server::RedisServer;

    const KEYS: usize = 10_000;
    const BATCH: u64 = 64;
    const ROUNDS: usize = 11;
    const ROUND_CALLS: u64 = 6_400;

    /// A limiter to measure, as a trait object so that subjects of different
    /// algorithms share one list.
    struct Subject {
        name: &'static str,
        limiter: std::sync::Arc<dyn RateLimiter>,
    }

    fn subject<A: Algorithm>(name: &'static str, algorithm: A, connection: &MultiplexedConnection) -> Subject {
        // A generous timeout: the machine is shared, and a timed-out check would end the bench.
        let limiter = Redis::builder(algorithm)
            .prefix(format!("bench:{name}:"))
            .timeout(Duration::from_secs(5))
            .build(connection.clone())
            .unwrap();
        Subject { name, limiter: std::sync::Arc::new(limiter) }
    }

    /// The server's own time for `calls` checks, from key `first` on.
    async fn server_time(
        subject: &Subject,
        connection: &mut MultiplexedConnection,
        first: usize,
        calls: u64,
    ) -> Duration {
        let () = ::redis::cmd("CONFIG").arg("RESETSTAT").query_async(connection).await.unwrap();
        let mut sent = 0;
        while sent < calls {
            let mut batch = JoinSet::new();
            for n in 0..BATCH.min(calls - sent) {
                let limiter = std::sync::Arc::clone(&subject.limiter);
                let key = format!("user:{:06}", (first + (sent + n) as usize) % KEYS);
                batch.spawn(async move { limiter.check(&key).await.unwrap().is_allowed() });
            }
            while let Some(admitted) = batch.join_next().await {
                assert!(admitted.unwrap(), "{}: the bench meant to measure admissions", subject.name);
            }
            sent += BATCH;
        }
        let info: String = ::redis::cmd("INFO").arg("commandstats").query_async(connection).await.unwrap();
        let usec = info
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
            .and_then(|stats| stats.split(',').find_map(|field| field.strip_prefix("usec=")))
            .and_then(|usec| usec.parse().ok())
            .unwrap_or(0);
        Duration::from_micros(usec)
    }

    pub(super) fn benches(c: &mut Criterion) {
        let Some(server) = RedisServer::start() else { return };
        let runtime = Runtime::new().unwrap();
        let mut connection = runtime.block_on(server.connection());
        let subjects = [
            subject("token_bucket", bucket(), &connection),
            subject("composite_of_2", bucket_and_window(), &connection),
            subject("composite_of_each", one_of_each(), &connection),
        ];
        for subject in &subjects {
            // Loads the script.
            let _ = runtime.block_on(subject.limiter.check("warm")).unwrap();
        }

        let mut group = c.benchmark_group("quotas/redis");
        group.throughput(Throughput::Elements(1));
        let mut measured = false;
        for subject in &subjects {
            group.bench_function(BenchmarkId::from_parameter(subject.name), |b| {
                measured = true;
                let mut first = 0;
                b.iter_custom(|calls| {
                    first += calls as usize;
                    runtime.block_on(server_time(subject, &mut connection.clone(), first, calls))
                })
            });
        }
        group.finish();
        if !measured {
            return; // filtered out
        }

        let mut per_call = vec![Vec::new(); subjects.len()];
        for round in 0..ROUNDS {
            for offset in 0..subjects.len() {
                let index = (round + offset) % subjects.len();
                let time = runtime.block_on(server_time(&subjects[index], &mut connection, round * 7, ROUND_CALLS));
                per_call[index].push(time.as_secs_f64() * 1e6 / ROUND_CALLS as f64);
            }
        }
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        eprintln!("quotas/redis, interleaved ({ROUNDS} rounds of {ROUND_CALLS} calls; server µs per call, median):");
        for (index, subject) in subjects.iter().enumerate() {
            let mut ratios: Vec<f64> = (0..ROUNDS).map(|round| per_call[index][round] / per_call[0][round]).collect();
            let (us, ratio) = (median(&mut per_call[index].clone()), median(&mut ratios));
            let (low, high) = (ratios[0], ratios[ROUNDS - 1]);
            eprintln!(
                "  {:<16} {us:>6.2} µs   {ratio:.2}× the token bucket alone (rounds: {low:.2} to {high:.2})",
                subject.name
            );
        }
    }
}
