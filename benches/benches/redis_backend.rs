//! The Redis backend against its own ceiling: checks through one shared
//! `tollgate::Redis` limiter, and, in the same run, the same `EVALSHA` (same
//! script, key and arguments) sent straight through redis-rs, with 1, 16 and
//! 64 concurrent tasks. The difference is what the crate adds: the key's
//! formatting, the timeout, the boxed trait future and reading the reply.
//! Each algorithm of the registry (tests/support/algorithms.rs) is benched,
//! `redis/<algorithm>`, with the script and configuration its limiter sends
//! (`Redis::script_call`), so raw EVALSHA is the crate's own call.
//!
//! The bench starts its own redis-server on a free loopback port (persistence
//! off) and kills it at the end; without a redis-server it skips with a
//! printed reason. Each task checks its own 100 keys in turn; the allowance
//! (a million a second per key) admits every check, so each one writes. After
//! each algorithm it prints the server's own cost from `INFO commandstats`,
//! and the crate's time over raw EVALSHA measured again with the two taking
//! turns round by round, which a busy machine disturbs far less.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use redis::aio::ConnectionManager;
use tokio::runtime::Runtime;
use tollgate::{Algorithm, RateLimiter, Redis};

use super::models::Spec;
use super::redis_server::RedisServer;

/// Concurrent tasks, all sharing one limiter (or one connection).
const TASKS: [usize; 3] = [1, 16, 64];
const KEYS_PER_TASK: usize = 100;
const PREFIX: &str = "bench:";
/// Per key: a million a second, in bursts of a million.
const AMOUNT: u64 = 1_000_000;
const PERIOD: Duration = Duration::from_secs(1);

/// Something that checks a key against Redis, measured the same way whatever
/// it is.
trait Subject: Send + Sync + 'static {
    /// Checks one request for the `n`th key of `task`: whether it was
    /// admitted, or `None` if the call failed (a timeout on a busy machine).
    fn check(&self, task: usize, n: usize) -> impl Future<Output = Option<bool>> + Send;
}

/// The crate, through the `RateLimiter` trait.
struct Tollgate<A: Algorithm> {
    limiter: Redis<A>,
    /// User keys, per task.
    keys: Vec<Vec<String>>,
}

impl<A: Algorithm> Subject for Tollgate<A> {
    async fn check(&self, task: usize, n: usize) -> Option<bool> {
        self.limiter.check(&self.keys[task][n]).await.ok().map(|decision| decision.is_allowed())
    }
}

/// The same script call, straight through redis-rs: Redis keys made in
/// advance, the reply left as bytes (seven big-endian u64s; allowed is the
/// eighth byte).
struct RawEvalsha {
    script: redis::Script,
    connection: ConnectionManager,
    /// `ARGV`, as the limiter sends them for a cost of 1 on the server's clock.
    args: Vec<Vec<u8>>,
    /// Redis keys, per task.
    redis_keys: Vec<Vec<String>>,
}

impl Subject for RawEvalsha {
    async fn check(&self, task: usize, n: usize) -> Option<bool> {
        let reply: Result<Vec<u8>, _> =
            self.script.key(&self.redis_keys[task][n]).arg(&self.args).invoke_async(&mut self.connection.clone()).await;
        reply.ok().map(|reply| reply[7] == 1)
    }
}

/// What a run of checks did.
#[derive(Default)]
struct Tally {
    checked: u64,
    admitted: u64,
    failed: u64,
}

/// `tasks` tasks share `iterations` checks (rounded up to a multiple of
/// `tasks`); the time `iterations` of them took, and what they all did.
async fn run<S: Subject>(subject: &Arc<S>, tasks: usize, iterations: u64) -> (Duration, Tally) {
    let per_task = iterations.div_ceil(tasks as u64);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let subject = Arc::clone(subject);
            tokio::spawn(async move {
                let (mut admitted, mut failed) = (0, 0);
                for n in 0..per_task {
                    match subject.check(task, n as usize % KEYS_PER_TASK).await {
                        Some(allowed) => admitted += u64::from(allowed),
                        None => failed += 1,
                    }
                }
                (admitted, failed)
            })
        })
        .collect();
    let mut tally = Tally { checked: per_task * tasks as u64, ..Tally::default() };
    for handle in handles {
        let (admitted, failed) = handle.await.expect("a bench task does not panic");
        tally.admitted += admitted;
        tally.failed += failed;
    }
    // Scaled to exactly `iterations` checks.
    (start.elapsed().mul_f64(iterations as f64 / tally.checked as f64), tally)
}

fn user_keys() -> Vec<Vec<String>> {
    let most_tasks = TASKS.into_iter().max().unwrap_or(1);
    (0..most_tasks).map(|task| (0..KEYS_PER_TASK).map(|n| format!("task{task}:{n}")).collect()).collect()
}

pub(crate) fn benches(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut bench = Bench { c, runtime: &runtime, server: &server };
    macro_rules! bench {
        ($name:ident, $algorithm:ident, $bench:ident) => {
            $bench.algorithm(<tollgate::$algorithm as Spec>::with_limit(AMOUNT, PERIOD));
        };
    }
    crate::algorithms::for_each_algorithm!(bench, bench);
}

struct Bench<'a> {
    c: &'a mut Criterion,
    runtime: &'a Runtime,
    server: &'a RedisServer,
}

impl Bench<'_> {
    /// Benches `algorithm` through the crate and through raw EVALSHA of the
    /// script and configuration the limiter itself sends
    /// ([`Redis::script_call`]).
    fn algorithm<A: Algorithm>(&mut self, algorithm: A) {
        let runtime = self.runtime;
        let url = self.server.url();
        let name = algorithm.name();
        let limiter = runtime.block_on(Redis::builder(algorithm).prefix(PREFIX).connect(&url)).expect("connects");
        let call = limiter.script_call();
        let (source, args) = (call.source, call.args);
        let keys = user_keys();
        let redis_keys = keys.iter().map(|keys| keys.iter().map(|key| limiter.redis_key(key)).collect()).collect();
        let client = redis::Client::open(url).unwrap();
        let connection = runtime.block_on(ConnectionManager::new(client)).expect("connects");
        let raw = Arc::new(RawEvalsha { script: redis::Script::new(source), connection, args, redis_keys });
        let tollgate = Arc::new(Tollgate { limiter, keys });
        let mut statistics = runtime.block_on(self.server.connection());
        runtime.block_on(redis::cmd("CONFIG").arg("RESETSTAT").exec_async(&mut statistics)).unwrap();

        let mut group = self.c.benchmark_group(format!("redis/{name}"));
        group.throughput(Throughput::Elements(1));
        let mut measured = false;
        for tasks in TASKS {
            measured |= measure(&mut group, runtime, BenchmarkId::new("tollgate", tasks), &tollgate, tasks);
            measured |= measure(&mut group, runtime, BenchmarkId::new("raw_evalsha", tasks), &raw, tasks);
        }
        group.finish();
        if !measured {
            return; // filtered out
        }
        for tasks in TASKS {
            let ratio = runtime.block_on(interleaved(&tollgate, &raw, tasks));
            eprintln!(
                "redis/{name}: {tasks} tasks, interleaved: tollgate takes {ratio:.3}x the time of raw EVALSHA \
                 (median of {ROUNDS} rounds of {ROUND_CHECKS} checks through each)"
            );
        }

        let info: String =
            runtime.block_on(redis::cmd("INFO").arg("commandstats").query_async(&mut statistics)).unwrap();
        for line in info.lines().filter(|line| line.starts_with("cmdstat_evalsha") || line.starts_with("cmdstat_eval:"))
        {
            eprintln!("redis/{name}: {line}");
        }
    }
}

/// Rounds of the interleaved comparison, and checks through each subject per round.
const ROUNDS: usize = 15;
const ROUND_CHECKS: u64 = 3_000;

/// The median, over rounds, of the time `tollgate` takes for a round of
/// checks divided by the time `raw` takes for the same, the two taking turns
/// to go first: criterion measures them seconds apart, and on a busy machine
/// that alone moves each by ±25%.
async fn interleaved<A: Algorithm>(tollgate: &Arc<Tollgate<A>>, raw: &Arc<RawEvalsha>, tasks: usize) -> f64 {
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (ours, theirs) = if round % 2 == 0 {
            let ours = run(tollgate, tasks, ROUND_CHECKS).await.0;
            (ours, run(raw, tasks, ROUND_CHECKS).await.0)
        } else {
            let theirs = run(raw, tasks, ROUND_CHECKS).await.0;
            (run(tollgate, tasks, ROUND_CHECKS).await.0, theirs)
        };
        ratios.push(ours.as_secs_f64() / theirs.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

/// Runs one criterion bench; whether it ran (a filter may skip it).
fn measure<S: Subject>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    id: BenchmarkId,
    subject: &Arc<S>,
    tasks: usize,
) -> bool {
    let mut total = Tally::default();
    group.bench_function(id, |b| {
        b.iter_custom(|iterations| {
            let (elapsed, tally) = runtime.block_on(run(subject, tasks, iterations));
            total.checked += tally.checked;
            total.admitted += tally.admitted;
            total.failed += tally.failed;
            elapsed
        })
    });
    if total.checked > 0 {
        let share = 100.0 * total.admitted as f64 / total.checked as f64;
        eprintln!("{tasks} tasks: {share:.1}% of checks admitted, {} of {} failed", total.failed, total.checked);
    }
    total.checked > 0
}
