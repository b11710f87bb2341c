//! Load on loopback, on one server and on a cluster: many tasks, many keys,
//! every algorithm at once. No check fails, no key is left without a
//! TTL, and every key admitted what its algorithm allows in the time the run
//! took: no more, and no less than its first allowance.
//!
//! The default run is small (64 tasks × 500 checks over 200 keys); the
//! full size (64 tasks × 20 000 checks over 10 000 keys) is `#[ignore]`d:
//! `cargo test --all-features full_load -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::{RateLimiter, Redis};

use crate::support::algorithms::{collected, for_each_algorithm};
use crate::support::deployment::{Deployment, on_a_server_and_a_cluster};
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

/// One algorithm's limiter under load, and the most one of its keys may
/// admit in a run of a given length.
struct Loaded {
    name: &'static str,
    limiter: Arc<dyn RateLimiter>,
    most: Box<dyn Fn(Duration) -> u64 + Send + Sync>,
}

/// `A` admitting `AMOUNT` at once and about `AMOUNT` an hour, under its own prefix.
async fn loaded<A: Spec>(deployment: &impl Deployment, prefix: &str) -> Loaded {
    let algorithm = A::with_limit(AMOUNT, PERIOD);
    let name = algorithm.name();
    // Generous: the check timeout is not what this test measures.
    let builder = Redis::builder(algorithm.clone()).prefix(format!("{prefix}{name}:")).timeout(Duration::from_secs(5));
    let limiter = deployment.limiter(builder).await;
    Loaded { name, limiter, most: Box::new(move |elapsed| algorithm.most_admitted_in(elapsed.as_micros() as u64)) }
}

/// A deterministic spread of keys for one task.
fn next_key(state: &mut u64, keys: usize) -> usize {
    // xorshift64
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % keys as u64) as usize
}

async fn run(deployment: impl Deployment, size: Size) {
    let prefix = "load:";
    let mut all = Vec::new();
    for_each_algorithm!(collected, all, loaded, (&deployment), prefix);
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
                for _ in 0..size.checks_per_task {
                    let key = next_key(&mut state, size.keys);
                    let check = Instant::now();
                    let decision = limiter.check(&key.to_string()).await.expect("no check fails under load");
                    slowest = slowest.max(check.elapsed());
                    calls[key] += 1;
                    admitted[key] += u64::from(decision.is_allowed());
                }
                (index, calls, admitted, slowest)
            })
        })
        .collect();

    let mut calls = vec![vec![0_u64; size.keys]; all.len()];
    let mut admitted = vec![vec![0_u64; size.keys]; all.len()];
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (index, task_calls, task_admitted, task_slowest) = task.await.unwrap();
        for key in 0..size.keys {
            calls[index][key] += task_calls[key];
            admitted[index][key] += task_admitted[key];
        }
        slowest = slowest.max(task_slowest);
    }
    let elapsed = started.elapsed();
    let checks = size.tasks * size.checks_per_task;
    eprintln!(
        "{}: {} tasks × {} checks over {} keys × {} algorithms: {checks} checks in {elapsed:.2?}, \
         {:.0} checks/s, slowest check {slowest:.2?}",
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
            assert!(admitted >= calls.min(AMOUNT), "{name} key {key}: {admitted} of {calls} admitted");
            keys_used += usize::from(calls > 0);
            total_calls += calls;
            total_admitted += admitted;
        }
        eprintln!("{}: {name} admitted {total_admitted} of {total_calls}", deployment.name());
    }

    let stored = deployment.keys_with_ttl(&format!("{prefix}*")).await;
    assert_eq!(stored.len(), keys_used, "one Redis key per (limiter, user key) checked");
    let without_ttl: Vec<_> = stored.iter().filter(|(_, ttl_ms)| *ttl_ms <= 0).collect();
    assert!(without_ttl.is_empty(), "keys without a TTL: {without_ttl:?}");
}

on_a_server_and_a_cluster!(
    load_on_one_server_fails_nothing_leaves_ttls_and_keeps_every_bound,
    load_on_a_cluster_fails_nothing_leaves_ttls_and_keeps_every_bound,
    |deployment| run(deployment, SMALL)
);

on_a_server_and_a_cluster!(
    #[ignore = "minutes per deployment; run with --ignored"]
    full_load_on_one_server,
    full_load_on_a_cluster,
    |deployment| run(deployment, FULL)
);
