//! Load on loopback, on one server and on a cluster: many tasks, many keys,
//! every algorithm at once. No check fails, no key is left without a
//! TTL, every key admitted what its algorithm allows in the time the run
//! took (no more, and no less than its first allowance), and the circuit
//! breaker, at its default settings, never opened.
//!
//! The same load at the default check timeout (100 ms) is the busy but
//! healthy Redis the breaker must tell from one that is away: a few checks
//! may time out on a loaded machine, and the breaker still never opens.
//!
//! The default run is small (64 tasks × 500 checks over 200 keys); the
//! full size (64 tasks × 20 000 checks over 10 000 keys) is `#[ignore]`d:
//! `cargo test --all-features full_load -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::{Error, FixedWindow, Redis, RedisBuilder};

use crate::support::algorithms::{collected, for_each_algorithm};
use crate::support::deployment::{Deployment, Watched, on_a_server_and_a_cluster};
use crate::support::models::Spec;

/// Every algorithm allows 10 an hour (the leaky bucket: 1 now and 9 queued):
/// longer than any run, so most checks are denied and no key expires before
/// the TTLs are read.
const AMOUNT: u64 = 10;
const PERIOD: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Size {
    tasks: usize,
    checks_per_task: usize,
    keys: usize,
}

const SMALL: Size = Size { tasks: 64, checks_per_task: 500, keys: 200 };
const FULL: Size = Size { tasks: 64, checks_per_task: 20_000, keys: 10_000 };

/// The check timeout of the limiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timeout {
    /// 5 s: no check times out, so every bound is checked exactly.
    Patient,
    /// The default, 100 ms. A check that times out may still have run on
    /// Redis, so a key's lower bound no longer holds; its upper bound does.
    Default,
}

impl Timeout {
    fn duration(self) -> Duration {
        match self {
            Self::Patient => Duration::from_secs(5),
            Self::Default => RedisBuilder::<FixedWindow>::DEFAULT_TIMEOUT,
        }
    }
}

/// One algorithm's limiter under load, and the most one of its keys may
/// admit in a run of a given length.
struct Loaded {
    name: &'static str,
    limiter: Arc<dyn Watched>,
    most: Box<dyn Fn(Duration) -> u64 + Send + Sync>,
}

/// `A` admitting `AMOUNT` at once and about `AMOUNT` an hour, under its own prefix.
async fn loaded<A: Spec>(deployment: &impl Deployment, prefix: &str, timeout: Timeout) -> Loaded {
    let algorithm = A::with_limit(AMOUNT, PERIOD);
    let name = algorithm.name();
    // Without the deny cache every check reaches Redis: the most load for the breaker not to open under.
    let builder = Redis::builder(algorithm.clone())
        .prefix(format!("{prefix}{name}:"))
        .timeout(timeout.duration())
        .deny_cache(false);
    let limiter = deployment.limiter(builder).await;
    Loaded { name, limiter, most: Box::new(move |elapsed| algorithm.most_admitted_in(elapsed.as_micros() as u64)) }
}

/// Whether a check timed out: tollgate's timeout, or the connection's (a
/// cluster connection's requests time out at the check timeout too).
fn is_timeout(error: &Error) -> bool {
    match error {
        Error::Timeout(_) => true,
        Error::Backend { source, .. } => {
            source.downcast_ref::<redis::RedisError>().is_some_and(|error| error.is_timeout())
        }
        _ => false,
    }
}

/// A deterministic spread of keys for one task.
fn next_key(state: &mut u64, keys: usize) -> usize {
    // xorshift64
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % keys as u64) as usize
}

async fn run(deployment: impl Deployment, size: Size, timeout: Timeout) {
    let prefix = "load:";
    let mut all = Vec::new();
    for_each_algorithm!(collected, all, loaded, (&deployment), prefix, timeout);
    let started = Instant::now();
    let tasks: Vec<_> = (0..size.tasks)
        .map(|task| {
            let index = task % all.len();
            let limiter = Arc::clone(&all[index].limiter);
            tokio::spawn(async move {
                let mut calls = vec![0_u64; size.keys];
                let mut admitted = vec![0_u64; size.keys];
                let mut state = 0x9E37_79B9_7F4A_7C15 ^ task as u64;
                let mut slowest = Duration::ZERO;
                let mut timed_out = 0_u64;
                for _ in 0..size.checks_per_task {
                    let key = next_key(&mut state, size.keys);
                    let check = Instant::now();
                    let outcome = limiter.check(&key.to_string()).await;
                    slowest = slowest.max(check.elapsed());
                    match outcome {
                        Ok(decision) => {
                            calls[key] += 1;
                            admitted[key] += u64::from(decision.is_allowed());
                        }
                        Err(error) if timeout == Timeout::Default && is_timeout(&error) => timed_out += 1,
                        Err(error) => panic!("a check failed under load: {error}"),
                    }
                }
                (index, calls, admitted, slowest, timed_out)
            })
        })
        .collect();

    let mut calls = vec![vec![0_u64; size.keys]; all.len()];
    let mut admitted = vec![vec![0_u64; size.keys]; all.len()];
    let mut slowest = Duration::ZERO;
    let mut timed_out = 0;
    for task in tasks {
        let (index, task_calls, task_admitted, task_slowest, task_timed_out) = task.await.unwrap();
        timed_out += task_timed_out;
        for key in 0..size.keys {
            calls[index][key] += task_calls[key];
            admitted[index][key] += task_admitted[key];
        }
        slowest = slowest.max(task_slowest);
    }
    let elapsed = started.elapsed();
    let checks = size.tasks * size.checks_per_task;
    eprintln!(
        "{}: {} tasks × {} checks over {} keys × {} algorithms, {timeout:?} timeout: {checks} checks in \
         {elapsed:.2?}, {:.0} checks/s, slowest check {slowest:.2?}, {timed_out} timed out",
        deployment.name(),
        size.tasks,
        size.checks_per_task,
        size.keys,
        all.len(),
        checks as f64 / elapsed.as_secs_f64(),
    );

    let mut keys_used = 0;
    for (index, Loaded { name, most, .. }) in all.iter().enumerate() {
        let most = most(elapsed);
        let (mut total_calls, mut total_admitted) = (0, 0);
        for key in 0..size.keys {
            let (calls, admitted) = (calls[index][key], admitted[index][key]);
            assert!(admitted <= most, "{name} key {key}: {admitted} admitted, at most {most} in {elapsed:?}");
            if timeout == Timeout::Patient {
                assert!(admitted >= calls.min(AMOUNT), "{name} key {key}: {admitted} of {calls} admitted");
            }
            keys_used += usize::from(calls > 0);
            total_calls += calls;
            total_admitted += admitted;
        }
        eprintln!("{}: {name} admitted {total_admitted} of {total_calls}", deployment.name());
    }

    // A busy Redis is not one that is away.
    for Loaded { name, limiter, .. } in &all {
        let health = limiter.health();
        assert_eq!(health.times_opened, 0, "{name}: the circuit breaker opened under load: {health:?}");
        assert!(health.is_up() && !health.breakers.is_empty(), "{name}: {health:?}");
    }
    assert!(timed_out * 100 <= checks as u64, "{timed_out} of {checks} checks timed out");

    let stored = deployment.keys_with_ttl(&format!("{prefix}*")).await;
    if timeout == Timeout::Default {
        // A check that timed out may have written a key that was never counted.
        assert!(stored.len() >= keys_used, "one Redis key per (limiter, user key) checked");
    } else {
        assert_eq!(stored.len(), keys_used, "one Redis key per (limiter, user key) checked");
    }
    let without_ttl: Vec<_> = stored.iter().filter(|(_, ttl_ms)| *ttl_ms <= 0).collect();
    assert!(without_ttl.is_empty(), "keys without a TTL: {without_ttl:?}");
}

on_a_server_and_a_cluster!(
    load_on_one_server_fails_nothing_leaves_ttls_and_keeps_every_bound,
    load_on_a_cluster_fails_nothing_leaves_ttls_and_keeps_every_bound,
    |deployment| run(deployment, SMALL, Timeout::Patient)
);

on_a_server_and_a_cluster!(
    load_on_one_server_at_the_default_timeout_never_opens_the_breaker,
    load_on_a_cluster_at_the_default_timeout_never_opens_the_breaker,
    |deployment| run(deployment, SMALL, Timeout::Default)
);

on_a_server_and_a_cluster!(
    #[ignore = "minutes per deployment; run with --ignored"]
    full_load_on_one_server,
    full_load_on_a_cluster,
    |deployment| run(deployment, FULL, Timeout::Patient)
);

on_a_server_and_a_cluster!(
    #[ignore = "minutes per deployment; run with --ignored"]
    full_size_at_the_default_timeout_on_one_server,
    full_size_at_the_default_timeout_on_a_cluster,
    |deployment| run(deployment, FULL, Timeout::Default)
);
