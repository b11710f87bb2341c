//! Workers sharing one upstream quota through Redis: three "processes" (each
//! a limiter on its own connection, as separate processes would have) of
//! four workers each send 150 requests to a third-party API that allows 50
//! a second in bursts of 5. Each worker waits for its turn with `acquire`;
//! nobody polls, and the turns go in the order they were asked for, across
//! the processes.
//!
//! It prints the rate achieved and the largest bursts, measured twice: on
//! the slots Redis granted (its clock: what the limit promises) and on the
//! workers' own clocks when `acquire` returned (what the API would see,
//! wake-up delays included).
//!
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run --example outbound --features redis`
//! (`REDIS_URL` defaults to `redis://127.0.0.1:6379`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tollgate::{Rate, RateLimiter, Redis, TokenBucket};

const PROCESSES: usize = 3;
const WORKERS_PER_PROCESS: usize = 4;
const REQUESTS: u64 = 150;
const RATE: u64 = 50;
const BURST: u64 = 5;

/// One request sent: by whom, at which slot (µs on Redis's clock), and when
/// the worker's `acquire` returned (µs since the run began, on its clock).
struct Sent {
    process: usize,
    slot_us: u64,
    returned_us: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    // A prefix of this run's own, so that reruns start afresh and no other data is touched.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
    let prefix = format!("tollgate-example-outbound:{run}:");
    let quota = TokenBucket::new(BURST, Rate::per_second(RATE))?;
    println!(
        "{PROCESSES} processes × {WORKERS_PER_PROCESS} workers send {REQUESTS} requests to an API allowing \
         {RATE}/s in bursts of {BURST}, through Redis at {url}\n"
    );

    let jobs = Arc::new(AtomicU64::new(REQUESTS));
    let began = Instant::now();
    let mut workers = Vec::new();
    for process in 0..PROCESSES {
        let limiter = Redis::builder(quota).prefix(&prefix).connect(&url).await?;
        for _ in 0..WORKERS_PER_PROCESS {
            let (limiter, jobs) = (limiter.clone(), Arc::clone(&jobs));
            workers.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                // Take a job while there is one; wait for the quota; send.
                while jobs.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
                    let permit = limiter.acquire("api.example.com", 1).await?;
                    let returned_us = began.elapsed().as_micros() as u64;
                    sent.push(Sent { process, slot_us: permit.granted_at().as_micros() as u64, returned_us });
                }
                Ok::<_, tollgate::Error>(sent)
            }));
        }
    }
    let mut sent = Vec::new();
    for worker in workers {
        sent.extend(worker.await??);
    }

    let first_slot = sent.iter().map(|s| s.slot_us).min().unwrap_or(0);
    let mut slots: Vec<u64> = sent.iter().map(|s| s.slot_us - first_slot).collect();
    let mut returns: Vec<u64> = sent.iter().map(|s| s.returned_us).collect();
    slots.sort_unstable();
    returns.sort_unstable();

    for (clock, times) in [("Redis's clock (the slots)", &slots), ("the workers' clocks (acquire returned)", &returns)]
    {
        let span = Duration::from_micros(times[times.len() - 1] - times[0]);
        let rate = (times.len() as u64 - BURST) as f64 / span.as_secs_f64();
        println!("on {clock}:");
        println!("  {} requests in {span:.3?}: {rate:.1} per second after the burst (the quota: {RATE})", times.len());
        for window_ms in [100, 1_000] {
            let allowed = BURST + RATE * window_ms / 1_000;
            let most = most_in_any_window(times, window_ms * 1_000);
            println!("  the most in any {window_ms} ms: {most} (the quota allows {allowed})");
        }
    }

    println!("\nper second, on Redis's clock:");
    let seconds = slots[slots.len() - 1] / 1_000_000 + 1;
    for second in 0..seconds {
        let count = slots.iter().filter(|&&slot| slot / 1_000_000 == second).count();
        println!("  second {second}: {count:>3} {}  (at most {})", "#".repeat(count / 2), BURST + RATE);
    }
    println!(
        "\nper process: {:?} requests",
        (0..PROCESSES).map(|p| sent.iter().filter(|s| s.process == p).count()).collect::<Vec<_>>()
    );
    Ok(())
}

/// The most of `times` (µs, sorted) in any half-open window of `window_us`.
fn most_in_any_window(times: &[u64], window_us: u64) -> usize {
    let mut end = 0;
    let mut most = 0;
    for (start, &from) in times.iter().enumerate() {
        while end < times.len() && times[end] < from + window_us {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}
