//! What a decision costs Redis itself: the time the server spends in each
//! script call (`INFO commandstats`, `usec_per_call`), which is the time of
//! the one thread every app server shares, against a floor: the leanest
//! one-key GCRA script (`floor.lua`: TIME, GET, arithmetic, one SET with PX).
//!
//! - `redis_cost/<algorithm>` and `redis_cost/floor`: criterion's time per
//!   element is the server's own time per call (each sample's calls are sent
//!   in pipelines of 64 and the sample returns the server's usec for them).
//! - Then, interleaved (subjects taking turns, round by round, each round
//!   its own `CONFIG RESETSTAT`), each algorithm's cost divided by the
//!   floor's: the ratio the goals are stated in, robust to a busy machine.
//! - Then `MEMORY USAGE` of one key of each algorithm against a string key
//!   holding one integer, with the same key name length.
//!
//! `fixed_window_compact` and `sliding_window_compact` are the counters
//! writing their compact layouts (`RedisBuilder::compact_state`).
//!
//! Every check is admitted (a million a second per key, 10 000 keys in
//! turn), so every call writes.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;
use tollgate::{
    Algorithm, FixedWindow, ManualClock, Rate, RateLimiter, Redis, RedisBuilder, SlidingLog, SlidingWindow,
};

use super::models::Spec;
use super::redis_server::RedisServer;

const KEYS: usize = 10_000;
const PIPELINE: usize = 64;
const AMOUNT: u64 = 1_000_000;
const PERIOD: Duration = Duration::from_secs(1);

/// One script and how to call it on the `n`th key.
struct Subject {
    name: &'static str,
    script: redis::Script,
    keys: Vec<String>,
    /// ARGV after the key.
    args: Vec<Vec<u8>>,
}

impl Subject {
    /// The floor: the simplest GCRA, admitting a million a second.
    fn floor() -> Self {
        let interval_us = PERIOD.as_micros() as u64 / AMOUNT;
        Self {
            name: "floor",
            script: redis::Script::new(include_str!("floor.lua")),
            keys: (0..KEYS).map(|n| format!("tollgate:gc:{{user:{n:06}}}")).collect(),
            args: vec![interval_us.to_string().into_bytes(), (interval_us * AMOUNT).to_string().into_bytes()],
        }
    }

    /// `algorithm`'s own script, exactly as the crate sends it.
    fn of<A: Algorithm>(algorithm: A, connection: &MultiplexedConnection) -> Self {
        Self::built(algorithm.name(), Redis::builder(algorithm), connection)
    }

    /// As [`of`](Self::of), its keys under `prefix`.
    fn under<A: Algorithm>(algorithm: A, prefix: &str, connection: &MultiplexedConnection) -> Self {
        Self::built(algorithm.name(), Redis::builder(algorithm).prefix(prefix), connection)
    }

    /// The script of the limiter `builder` builds, named `name`.
    fn built<A: Algorithm>(name: &'static str, builder: RedisBuilder<A>, connection: &MultiplexedConnection) -> Self {
        let limiter = builder.build(connection.clone()).unwrap();
        let call = limiter.script_call();
        Self {
            name,
            script: redis::Script::new(call.source),
            keys: (0..KEYS).map(|n| limiter.redis_key(&format!("user:{n:06}"))).collect(),
            // The request, a cost of 1 on the server's clock, and the configuration.
            args: call.args,
        }
    }

    /// `calls` calls, from key `first` on, in pipelines; the server's own
    /// time for them.
    async fn server_time(&self, connection: &mut MultiplexedConnection, first: usize, calls: u64) -> Duration {
        let () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(connection).await.unwrap();
        let mut sent = 0;
        while sent < calls {
            let mut pipeline = redis::pipe();
            for n in 0..PIPELINE.min((calls - sent) as usize) {
                let key = &self.keys[(first + sent as usize + n) % KEYS];
                pipeline.cmd("EVALSHA").arg(self.script.get_hash()).arg(1).arg(key).arg(&self.args).ignore();
            }
            let () = pipeline.query_async(connection).await.unwrap();
            sent += PIPELINE as u64;
        }
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(connection).await.unwrap();
        let usec = info
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
            .and_then(|stats| stats.split(',').find_map(|field| field.strip_prefix("usec=")))
            .and_then(|usec| usec.parse().ok())
            .unwrap_or(0);
        Duration::from_micros(usec)
    }
}

fn subjects(connection: &MultiplexedConnection) -> Vec<Subject> {
    let mut subjects = vec![Subject::floor()];
    macro_rules! add {
        ($name:ident, $algorithm:ident, $subjects:ident, $connection:ident) => {
            $subjects.push(Subject::of(<tollgate::$algorithm as Spec>::with_limit(AMOUNT, PERIOD), $connection));
        };
    }
    crate::algorithms::for_each_algorithm!(add, subjects, connection);
    // The counters writing their compact layouts, on keys of their own: on
    // the standard subjects', each would read the other's layout.
    let window = <FixedWindow as Spec>::with_limit(AMOUNT, PERIOD);
    let compact = Redis::builder(window).prefix("compact:").compact_state(true);
    subjects.push(Subject::built("fixed_window_compact", compact, connection));
    let window = <SlidingWindow as Spec>::with_limit(AMOUNT, PERIOD);
    let compact = Redis::builder(window).prefix("compact:").compact_state(true);
    subjects.push(Subject::built("sliding_window_compact", compact, connection));
    subjects
}

/// Rounds of the interleaved comparison, and calls per subject per round.
const ROUNDS: usize = 21;
const ROUND_CALLS: u64 = 20_000;

pub(crate) fn benches(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else { return };
    let runtime = Runtime::new().unwrap();
    let mut connection = runtime.block_on(server.connection());
    let subjects = subjects(&connection);
    for subject in &subjects {
        let _sha: String = runtime.block_on(subject.script.prepare_invoke().load_async(&mut connection)).unwrap();
    }

    let mut group = c.benchmark_group("redis_cost");
    group.throughput(Throughput::Elements(1));
    let mut measured = false;
    for subject in &subjects {
        group.bench_function(BenchmarkId::from_parameter(subject.name), |b| {
            measured = true;
            let mut first = 0;
            b.iter_custom(|calls| {
                first += calls as usize;
                runtime.block_on(subject.server_time(&mut connection.clone(), first, calls))
            })
        });
    }
    group.finish();
    if !measured {
        return; // filtered out
    }

    // Interleaved: each round measures every subject once, starting with a
    // different one, and each ratio is taken within the round.
    let mut per_call = vec![Vec::new(); subjects.len()];
    for round in 0..ROUNDS {
        for offset in 0..subjects.len() {
            let index = (round + offset) % subjects.len();
            let time = runtime.block_on(subjects[index].server_time(&mut connection, round * 7, ROUND_CALLS));
            per_call[index].push(time.as_secs_f64() * 1e6 / ROUND_CALLS as f64);
        }
    }
    eprintln!("redis_cost, interleaved ({ROUNDS} rounds of {ROUND_CALLS} calls each; server µs per call, median):");
    for (index, subject) in subjects.iter().enumerate() {
        let mut ratios: Vec<f64> = (0..ROUNDS).map(|round| per_call[index][round] / per_call[0][round]).collect();
        let (us, ratio) = (median(&mut per_call[index].clone()), median(&mut ratios));
        eprintln!("  {:<22} {us:>6.2} µs   {ratio:.3}× the floor", subject.name);
    }

    sliding_log_by_size(&runtime, &mut connection, &subjects[0]);
    memory_per_key(&runtime, &mut connection);
}

/// The sliding log's cost against the floor's by the entries its log holds
/// when the call reads it. The interleaved figure above is of the logs this
/// machine's pace leaves (a key comes back every 10 000 calls, and its
/// entries stay live a second); these sizes do not depend on it. An hour's
/// window, so nothing expires: each of the 10 000 keys is written `size`
/// times, then the rounds each call a fifth of them once, in turn with the
/// floor and with the script's commands alone (`log_skeleton.lua`, on the
/// keys the script has just written: one entry more).
fn sliding_log_by_size(runtime: &Runtime, connection: &mut MultiplexedConnection, floor: &Subject) {
    const SIZES: [usize; 5] = [0, 1, 2, 8, 32];
    const ROUNDS: usize = 5;
    const ROUND_CALLS: u64 = (KEYS / ROUNDS) as u64;
    eprintln!(
        "redis_cost, the sliding log by the entries a call finds (median of {ROUNDS} rounds of {ROUND_CALLS} calls):"
    );
    for size in SIZES {
        let log = SlidingLog::new(Rate::new(AMOUNT, Duration::from_secs(3600))).unwrap();
        let subject = Subject::under(log, &format!("size{size}:"), connection);
        let _sha: String = runtime.block_on(subject.script.prepare_invoke().load_async(connection)).unwrap();
        for _ in 0..size {
            runtime.block_on(subject.server_time(connection, 0, KEYS as u64));
        }
        // The same keys, as they are, under the script's six commands alone.
        let skeleton = Subject {
            name: "skeleton",
            script: redis::Script::new(include_str!("log_skeleton.lua")),
            keys: subject.keys.clone(),
            args: Vec::new(),
        };
        let _sha: String = runtime.block_on(skeleton.script.prepare_invoke().load_async(connection)).unwrap();
        let (mut log_ratios, mut skeleton_ratios) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let first = round * ROUND_CALLS as usize;
            let floor = runtime.block_on(floor.server_time(connection, first, ROUND_CALLS)).as_secs_f64();
            let log = runtime.block_on(subject.server_time(connection, first, ROUND_CALLS)).as_secs_f64();
            let commands = runtime.block_on(skeleton.server_time(connection, first, ROUND_CALLS)).as_secs_f64();
            log_ratios.push(log / floor);
            skeleton_ratios.push(commands / floor);
        }
        let entries = if size == 1 { "entry" } else { "entries" };
        eprintln!(
            "  {size:>2} {entries:<7}   {:.3}× the floor   (its commands alone, log_skeleton.lua: {:.3}×)",
            median(&mut log_ratios),
            median(&mut skeleton_ratios)
        );
    }
}

/// The middle of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `MEMORY USAGE` of one key of each algorithm (written by one admitted
/// check), against a string key holding one integer, with a key name of the
/// same length.
fn memory_per_key(runtime: &Runtime, connection: &mut MultiplexedConnection) {
    eprintln!("redis_cost, MEMORY USAGE (SAMPLES 0) of one key, user key \"user:042000\":");
    // A time of today's size: the compact layout writes the window's start in ms.
    let clock = ManualClock::starting_at(Duration::from_secs(1_700_000_000));
    macro_rules! measure {
        ($name:ident, $algorithm:ident, $runtime:ident, $connection:ident, $clock:ident) => {
            measure!($name, $algorithm, $runtime, $connection, $clock, false)
        };
        ($name:ident, $algorithm:ident, $runtime:ident, $connection:ident, $clock:ident, $compact:expr) => {{
            let algorithm = <tollgate::$algorithm as Spec>::with_limit(10, Duration::from_secs(1));
            let limiter = Redis::builder(algorithm)
                .prefix("mem:")
                .client_time($clock.clone())
                .compact_state($compact)
                .build($connection.clone())
                .unwrap();
            let key = limiter.redis_key("user:042000");
            let _ = $runtime.block_on(limiter.check("user:042000")).unwrap();
            let bytes: u64 = $runtime
                .block_on(redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query_async($connection))
                .unwrap();
            let plain = "p".repeat(key.len());
            let () = $runtime
                .block_on(redis::cmd("SET").arg(&plain).arg(1_700_000_000_000_000_u64).query_async($connection))
                .unwrap();
            let integer: u64 = $runtime
                .block_on(redis::cmd("MEMORY").arg("USAGE").arg(&plain).arg("SAMPLES").arg(0).query_async($connection))
                .unwrap();
            let name = if $compact { concat!(stringify!($name), "_compact") } else { stringify!($name) };
            eprintln!(
                "  {name:<22} {bytes:>4} bytes   (a string holding one integer, same key length: {integer} bytes; +{})",
                bytes as i64 - integer as i64
            );
        }};
    }
    crate::algorithms::for_each_algorithm!(measure, runtime, connection, clock);
    measure!(fixed_window, FixedWindow, runtime, connection, clock, true);
    measure!(sliding_window, SlidingWindow, runtime, connection, clock, true);
}
