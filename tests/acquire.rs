//! Waiting for permission (issue 12): `acquire` resolves at the request's
//! slot, waiters are served in the order they asked, a slot beyond the
//! deadline reserves nothing, and dropping a waiter never lets more through
//! than the limit (the newest slot is given back). In memory on paused
//! Tokio time, so that slots land on the µs and no test waits; on Redis in
//! real time, across eight processes, measured on Redis's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tollgate::{Clock, InMemory, LeakyBucket, Rate, RateLimiter, TokenBucket};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::{Model, Spec};
use crate::support::tokio_clock::TokioClock;

/// A realistic epoch time at the start of a second.
const START: Duration = Duration::from_secs(1_700_000_000);
const SECOND_US: u64 = 1_000_000;

/// The run: 1 000 permits from a token bucket of 200 a second (in
/// bursts of 10), shared by 32 tasks (on Redis, 8 processes of 4).
const PERMITS: u64 = 1_000;
const RATE: u64 = 200;
const BURST: u64 = 10;
const TASKS: u64 = 32;
/// The run takes (PERMITS - BURST) / RATE = 4.95 s: the burst goes at once.
const RUN: Duration = Duration::from_millis((PERMITS - BURST) * 1_000 / RATE);

fn micros(duration: Duration) -> u64 {
    duration.as_micros() as u64
}

/// Task `task`'s share of the permits, when `tasks` share them.
fn share(task: u64, tasks: u64) -> u64 {
    PERMITS / tasks + u64::from(task < PERMITS % tasks)
}

/// Whether `slots` (µs, sorted, one permit each) keep the bucket's promise
/// in every interval, closed at both ends: at most BURST + RATE × its
/// length. Returns the most slots in any interval of one second.
fn keeps_the_buckets_promise(slots: &[u64]) -> Result<usize, String> {
    for (i, &from) in slots.iter().enumerate() {
        for (j, &until) in slots.iter().enumerate().skip(i) {
            let count = (j - i + 1) as u64;
            if count * SECOND_US > BURST * SECOND_US + RATE * (until - from) {
                return Err(format!("{count} permits from {from} µs to {until} µs"));
            }
        }
    }
    let mut busiest = 0;
    let mut end = 0;
    for (i, &from) in slots.iter().enumerate() {
        while end < slots.len() && slots[end] < from + SECOND_US {
            end += 1;
        }
        busiest = busiest.max(end - i);
    }
    Ok(busiest)
}

/// The run's figures, asserted: it took 5 s ± 2% from the first slot to the
/// last, and no interval carried more than the bucket allows (so no second
/// more than BURST + RATE).
fn assert_the_run_kept_the_limit(slots: &[u64]) {
    assert!(slots.is_sorted());
    let run = Duration::from_micros(slots[slots.len() - 1] - slots[0]);
    let busiest = keeps_the_buckets_promise(slots).unwrap_or_else(|broken| panic!("{broken}"));
    eprintln!("{} permits in {run:?}; the busiest second carried {busiest}", slots.len());
    assert!(run.abs_diff(Duration::from_secs(5)) <= Duration::from_millis(100), "the run took {run:?}");
    assert!(busiest as u64 <= BURST + RATE, "{busiest} in one second");
}

/// The longest gap between the slots of one waiter (a task, a process),
/// after its first.
fn longest_gap(slots: &[u64]) -> Duration {
    Duration::from_micros(slots.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or(0))
}

// ---------------------------------------------------------------------------
// In memory, on paused time

#[tokio::test(start_paused = true)]
async fn thirty_two_tasks_share_two_hundred_a_second_served_in_the_order_they_asked() {
    let clock = TokioClock::starting_at(START);
    let limiter = Arc::new(InMemory::with_clock(TokenBucket::new(BURST, Rate::per_second(RATE)).unwrap(), clock));
    let asked = Arc::new(AtomicU64::new(0));
    // (ask number, task, slot µs), in the order the permits were granted.
    let granted = Arc::new(Mutex::new(Vec::new()));
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (limiter, asked, granted) = (Arc::clone(&limiter), Arc::clone(&asked), Arc::clone(&granted));
            tokio::spawn(async move {
                for _ in 0..share(task, TASKS) {
                    // Numbered as it asks: in memory the slot is reserved in the same poll.
                    let ask = asked.fetch_add(1, Ordering::SeqCst);
                    let permit = limiter.acquire("upstream", 1).await.unwrap();
                    granted.lock().unwrap().push((ask, task, micros(permit.granted_at())));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let granted = granted.lock().unwrap().clone();

    // The n-th permit granted is the n-th asked for.
    let order: Vec<u64> = granted.iter().map(|&(ask, _, _)| ask).collect();
    assert_eq!(order, (0..PERMITS).collect::<Vec<_>>());
    let slots: Vec<u64> = granted.iter().map(|&(_, _, slot)| slot).collect();
    assert_the_run_kept_the_limit(&slots);
    // Each permit is granted at its slot: the run ends at the last.
    assert_eq!(elapsed, RUN);
    assert_eq!(slots[slots.len() - 1] - slots[0], micros(RUN));
    // No task starves: each asks again behind the 31 others, and gets its turn 32 slots on.
    for task in 0..TASKS {
        let own: Vec<u64> = granted.iter().filter(|&&(_, t, _)| t == task).map(|&(_, _, slot)| slot).collect();
        assert_eq!(own.len() as u64, share(task, TASKS));
        assert!(longest_gap(&own) <= Duration::from_millis(5 * TASKS), "task {task}: {:?}", longest_gap(&own));
    }
}

/// A limiter of `A` admitting two at once and about two a second, on
/// Tokio's paused clock.
fn two_a_second<A: Spec>() -> Arc<InMemory<A, TokioClock>> {
    Arc::new(InMemory::with_clock(A::with_limit(2, Duration::from_secs(1)), TokioClock::starting_at(START)))
}

/// Starts `count` waiters for a permit each, in order (each has asked
/// before the next starts); each records its number and slot when granted.
async fn waiters<L: RateLimiter + 'static>(
    limiter: &Arc<L>,
    numbers: std::ops::Range<usize>,
    granted: &Arc<Mutex<Vec<(usize, u64)>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for number in numbers {
        let (limiter, granted) = (Arc::clone(limiter), Arc::clone(granted));
        handles.push(tokio::spawn(async move {
            let permit = limiter.acquire("key", 1).await.unwrap();
            granted.lock().unwrap().push((number, micros(permit.granted_at())));
        }));
        tokio::task::yield_now().await;
    }
    handles
}

/// Drops waiter `handle` (its future, wherever it is), and waits until it has.
async fn leave(handle: tokio::task::JoinHandle<()>) {
    handle.abort();
    let left = handle.await;
    assert!(left.is_ok() || left.is_err_and(|error| error.is_cancelled()));
}

/// Slots as `keeps_its_promise` reads admissions: (time, cost, wait).
fn admissions(slots: impl IntoIterator<Item = u64>) -> Vec<(u64, u64, u64)> {
    let mut admitted: Vec<_> = slots.into_iter().map(|slot| (slot, 1, 0)).collect();
    admitted.sort_unstable();
    admitted
}

async fn waiters_are_served_in_the_order_they_asked<A: Spec>() {
    let limiter = two_a_second::<A>();
    let granted = Arc::new(Mutex::new(Vec::new()));
    for waiter in waiters(&limiter, 0..8, &granted).await {
        waiter.await.unwrap();
    }
    let granted = granted.lock().unwrap().clone();
    let order: Vec<usize> = granted.iter().map(|&(number, _)| number).collect();
    assert_eq!(order, (0..8).collect::<Vec<_>>(), "{:?}", limiter.algorithm());
    let admitted = admissions(granted.iter().map(|&(_, slot)| slot));
    limiter.algorithm().keeps_its_promise(&admitted).unwrap();
    // Eight permits of two a second (two at once) take three seconds at least.
    assert!(admitted[7].0 - admitted[0].0 >= 3 * SECOND_US - 1, "{admitted:?}");
}

/// The slot a request of one unit gets after `limit` units were taken at
/// START, by `algorithm`'s model: a reservation's wait, or for the
/// algorithms that reserve nothing ahead, the time until a check admits it.
fn slot_after_the_limit<A: Spec>(algorithm: &A) -> Duration {
    let start = micros(START);
    let mut model = algorithm.model();
    let _ = model.decide(start, algorithm.limit());
    let verdict = model.reserve(start, 1, u64::MAX);
    verdict.retry_after.unwrap_or(verdict.wait)
}

async fn a_slot_beyond_the_deadline_reserves_nothing_and_the_wait_is_told<A: Spec>() {
    let limiter = two_a_second::<A>();
    assert!(limiter.acquire_within("key", 2, Duration::ZERO).await.unwrap().is_ok());
    let slot = slot_after_the_limit(limiter.algorithm());
    let before = limiter.check_n_sync("key", 0).unwrap();
    let too_long = limiter.acquire_within("key", 1, slot - Duration::from_micros(1)).await.unwrap().unwrap_err();
    assert_eq!(too_long.wait(), slot, "{:?}", limiter.algorithm());
    assert_eq!(limiter.check_n_sync("key", 0).unwrap(), before, "{:?}: the state changed", limiter.algorithm());
    // Nothing was waited for; and the next caller, with time enough, gets that very slot.
    assert_eq!(limiter.clock().now(), START);
    let permit = limiter.acquire_within("key", 1, slot).await.unwrap().unwrap();
    assert_eq!((permit.granted_at(), permit.waited()), (START + slot, slot), "{:?}", limiter.algorithm());
}

async fn dropping_waiters_never_lets_more_through_than_the_limit<A: Spec>() {
    let limiter = two_a_second::<A>();
    let granted = Arc::new(Mutex::new(Vec::new()));
    let mut handles = waiters(&limiter, 0..8, &granted).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The newest waiter and one in the middle leave; two more come.
    leave(handles.remove(7)).await;
    leave(handles.remove(3)).await;
    handles.extend(waiters(&limiter, 8..10, &granted).await);
    for handle in handles {
        let _ = handle.await;
    }
    // Checks all along afterwards: whatever was given back, all that passed keeps the promise.
    let mut slots: Vec<u64> = granted.lock().unwrap().iter().map(|&(_, slot)| slot).collect();
    assert_eq!(slots.len(), 8);
    for _ in 0..300 {
        let check = limiter.check_n_sync("key", 1).unwrap();
        if check.is_allowed() {
            // A leaky bucket's request goes when it departs.
            slots.push(micros(limiter.clock().now() + check.wait()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let admitted = admissions(slots);
    limiter.algorithm().keeps_its_promise(&admitted).unwrap_or_else(|broken| panic!("{broken}: {admitted:?}"));
}

macro_rules! acquire_in_memory {
    ($name:ident, $algorithm:ident) => {
        mod $name {
            #[tokio::test(start_paused = true)]
            async fn waiters_are_served_in_the_order_they_asked() {
                super::waiters_are_served_in_the_order_they_asked::<tollgate::$algorithm>().await;
            }

            #[tokio::test(start_paused = true)]
            async fn a_slot_beyond_the_deadline_reserves_nothing_and_the_wait_is_told() {
                super::a_slot_beyond_the_deadline_reserves_nothing_and_the_wait_is_told::<tollgate::$algorithm>().await;
            }

            #[tokio::test(start_paused = true)]
            async fn dropping_waiters_never_lets_more_through_than_the_limit() {
                super::dropping_waiters_never_lets_more_through_than_the_limit::<tollgate::$algorithm>().await;
            }
        }
    };
}

mod in_memory {
    use super::*;
    for_each_algorithm!(acquire_in_memory);
}

/// Of three waiters on a bucket of one slot every 100 ms, the third (the
/// newest) leaves: its slot (200 ms) goes to the next caller. Then the
/// second leaves, no longer the newest: its slot (100 ms) stays taken,
/// unused, and the next caller goes after the one still waiting (300 ms),
/// never with it.
async fn the_newest_slot_given_back_goes_to_the_next_caller<A: Spec>(algorithm: A) {
    let limiter = Arc::new(InMemory::with_clock(algorithm, TokioClock::starting_at(START)));
    let granted = Arc::new(Mutex::new(Vec::new()));
    let mut handles = waiters(&limiter, 0..3, &granted).await;
    leave(handles.remove(2)).await;
    handles.extend(waiters(&limiter, 3..4, &granted).await);
    leave(handles.remove(1)).await;
    handles.extend(waiters(&limiter, 4..5, &granted).await);
    for handle in handles {
        let _ = handle.await;
    }
    let ms = |ms: u64| micros(START) + ms * 1_000;
    let granted = granted.lock().unwrap().clone();
    assert_eq!(granted, [(0, ms(0)), (3, ms(200)), (4, ms(300))], "{:?}", limiter.algorithm());
}

#[tokio::test(start_paused = true)]
async fn the_newest_slot_given_back_goes_to_the_next_caller_token_bucket() {
    let bucket = TokenBucket::new(1, Rate::new(1, Duration::from_millis(100))).unwrap();
    the_newest_slot_given_back_goes_to_the_next_caller(bucket).await;
}

#[tokio::test(start_paused = true)]
async fn the_newest_slot_given_back_goes_to_the_next_caller_leaky_bucket() {
    let bucket = LeakyBucket::new(1, Rate::new(1, Duration::from_millis(100))).unwrap();
    the_newest_slot_given_back_goes_to_the_next_caller(bucket).await;
}

/// A caller that checks instead of waiting cannot jump the line: the slots
/// reserved ahead are taken.
#[tokio::test(start_paused = true)]
async fn a_check_behind_waiters_waits_for_them_all() {
    let limiter = two_a_second::<TokenBucket>();
    let granted = Arc::new(Mutex::new(Vec::new()));
    let handles = waiters(&limiter, 0..5, &granted).await;
    let check = limiter.check_sync("key");
    assert!(!check.is_allowed());
    assert_eq!((check.remaining(), check.retry_after()), (0, Some(Duration::from_millis(2_000))));
    for handle in handles {
        handle.await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// On Redis, in real time

#[cfg(feature = "redis")]
mod on_redis {
    use std::io::Read;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use tollgate::{FailurePolicy, Redis};

    use super::*;
    use crate::support::redis_server::RedisServer;

    const PROCESSES: u64 = 8;
    const TASKS_PER_PROCESS: u64 = TASKS / PROCESSES;

    /// What the parent tells each worker process.
    const URL: &str = "TOLLGATE_ACQUIRE_WORKER_URL";
    const PREFIX: &str = "TOLLGATE_ACQUIRE_WORKER_PREFIX";
    const PROCESS: &str = "TOLLGATE_ACQUIRE_WORKER_PROCESS";

    /// The test: 8 processes of 4 tasks acquire 1 000 permits, one at
    /// a time, from one token bucket of 200 a second on Redis. Each process
    /// is this test binary again, running `worker_process`, and prints each
    /// permit's slot, which Redis's clock gave (the script's `TIME` plus the
    /// reserved wait): the times the limit holds for, whatever the wake-up
    /// jitter of a loaded machine. Intervals are measured between slots,
    /// closed at both ends.
    #[test]
    fn eight_processes_of_four_tasks_share_two_hundred_a_second_through_redis() {
        let Some(server) = RedisServer::start() else { return };
        let prefix = format!("acquire-processes:{}:", std::process::id());
        let exe = std::env::current_exe().unwrap();
        let started = Instant::now();
        let mut children: Vec<Child> = (0..PROCESSES)
            .map(|process| {
                Command::new(&exe)
                    .args(["acquire::on_redis::worker_process", "--exact", "--ignored", "--nocapture"])
                    .env(URL, server.url())
                    .env(PREFIX, &prefix)
                    .env(PROCESS, process.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start a worker process")
            })
            .collect();
        let readers: Vec<_> = children
            .iter_mut()
            .map(|child| {
                let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
                std::thread::spawn(move || {
                    let (mut out, mut err) = (String::new(), String::new());
                    let _ = stdout.read_to_string(&mut out);
                    let _ = stderr.read_to_string(&mut err);
                    (out, err)
                })
            })
            .collect();
        // Bounded: a run that should take 5 s gets two minutes, then its workers are killed.
        let deadline = Instant::now() + Duration::from_secs(120);
        for (process, child) in children.iter_mut().enumerate() {
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if !status.is_some_and(|status| status.success()) {
                for child in &mut children {
                    let _ = child.kill();
                }
                panic!("worker {process} failed or did not finish in time: {status:?}");
            }
        }
        let wall = started.elapsed();

        // (process, slot µs)
        let mut granted = Vec::new();
        for (process, reader) in readers.into_iter().enumerate() {
            let (out, err) = reader.join().unwrap();
            let before = granted.len();
            for line in out.lines().filter_map(|line| line.strip_prefix("GRANT ")) {
                let fields: Vec<u64> = line.split_whitespace().map(|field| field.parse().unwrap()).collect();
                assert_eq!(fields[0], process as u64, "{line}");
                granted.push((fields[0], fields[2]));
            }
            let expected: u64 =
                (0..TASKS_PER_PROCESS).map(|t| share(process as u64 * TASKS_PER_PROCESS + t, TASKS)).sum();
            assert_eq!((granted.len() - before) as u64, expected, "process {process} starved: {out}\n{err}");
        }
        let mut slots: Vec<u64> = granted.iter().map(|&(_, slot)| slot).collect();
        slots.sort_unstable();
        assert_eq!(slots.len() as u64, PERMITS);
        eprintln!("8 processes, wall time {wall:?} (process starts included)");
        assert_the_run_kept_the_limit(&slots);
        // Every process keeps making progress once it has started.
        for process in 0..PROCESSES {
            let mut own: Vec<u64> = granted.iter().filter(|&&(p, _)| p == process).map(|&(_, slot)| slot).collect();
            own.sort_unstable();
            let gap = longest_gap(&own);
            eprintln!("process {process}: {} permits, longest gap {gap:?}", own.len());
            assert!(gap <= Duration::from_secs(1), "process {process} waited {gap:?} between permits");
        }
    }

    /// One worker process of the test above; does nothing when run by hand.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a worker process that eight_processes_of_four_tasks_share_two_hundred_a_second_through_redis starts"]
    async fn worker_process() {
        let (Ok(url), Ok(prefix), Ok(process)) = (std::env::var(URL), std::env::var(PREFIX), std::env::var(PROCESS))
        else {
            eprintln!("skipped: started by eight_processes_of_four_tasks_share_two_hundred_a_second_through_redis");
            return;
        };
        let process: u64 = process.parse().unwrap();
        let bucket = TokenBucket::new(BURST, Rate::per_second(RATE)).unwrap();
        let limiter =
            Redis::builder(bucket).prefix(prefix).timeout(Duration::from_secs(10)).connect(&url).await.unwrap();
        let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
            .map(|t| {
                let limiter = limiter.clone();
                let task = process * TASKS_PER_PROCESS + t;
                tokio::spawn(async move {
                    for _ in 0..share(task, TASKS) {
                        let permit = limiter.acquire("upstream", 1).await.unwrap();
                        println!("GRANT {process} {task} {}", micros(permit.granted_at()));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// As in memory, but the slot is given back by a script call in the
    /// background. Slots a second apart; the test watches the meter in
    /// Redis (its time until empty, `updated_us + debt / amount`, on Redis's
    /// clock) to know when the reservations and the give-back have landed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_newest_slot_given_back_on_redis_goes_to_the_next_caller() {
        let Some(server) = RedisServer::start() else { return };
        let mut connection = server.connection().await;
        let bucket = TokenBucket::new(1, Rate::per_second(1)).unwrap();
        let limiter =
            Arc::new(Redis::builder(bucket).timeout(Duration::from_secs(5)).connect(&server.url()).await.unwrap());
        let redis_key = limiter.redis_key("key");
        let first = micros(limiter.acquire("key", 1).await.unwrap().granted_at());
        let granted = Arc::new(Mutex::new(Vec::new()));
        // One at a time, so that the second is the newest: reserved at 1 s, then 2 s.
        let mut handles = waiters(&limiter, 1..2, &granted).await;
        meter_empty_at(&mut connection, &redis_key, first + 2 * SECOND_US).await;
        handles.extend(waiters(&limiter, 2..3, &granted).await);
        meter_empty_at(&mut connection, &redis_key, first + 3 * SECOND_US).await;
        // The reply may still be on its way to the waiter, and a waiter
        // dropped before it reads its reply has nothing to give back: let it
        // read it (well before the first waiter's slot, at 1 s).
        tokio::time::sleep(Duration::from_millis(300)).await;
        leave(handles.remove(1)).await;
        // Given back: full again at 2 s.
        meter_empty_at(&mut connection, &redis_key, first + 2 * SECOND_US).await;
        let next = micros(limiter.acquire("key", 1).await.unwrap().granted_at());
        handles.remove(0).await.unwrap();
        assert_eq!(next - first, 2 * SECOND_US, "the slot of the waiter that left");
        assert_eq!(granted.lock().unwrap()[..], [(1, first + SECOND_US)]);
    }

    /// Reads the token bucket's meter at `redis_key` until it is empty at
    /// `expected` µs (at most 3 s): its state is a tag, the debt, when it was
    /// written and the period, and with an amount of 1 the debt drains one
    /// unit a µs.
    async fn meter_empty_at(connection: &mut redis::aio::MultiplexedConnection, redis_key: &str, expected: u64) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let state: Vec<u8> = redis::AsyncCommands::get(connection, redis_key).await.unwrap();
            assert_eq!(state.len(), 25, "the meter at {redis_key} is gone: it was never empty at {expected} µs");
            let number = |at: usize| f64::from_be_bytes(state[at..at + 8].try_into().unwrap()) as u64;
            let empty_at = number(9) + number(1);
            if empty_at == expected {
                return;
            }
            assert!(Instant::now() < deadline, "the meter is empty at {empty_at} µs, not {expected}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// In client-time mode, a client whose clock is behind the last
    /// writer's is held at the writer's time, as the step holds it: its
    /// permit's slot counts from there, not from its own clock.
    #[tokio::test]
    async fn a_slot_counts_from_the_newest_time_in_the_key_when_a_clients_clock_is_behind() {
        let Some(server) = RedisServer::start() else { return };
        let bucket = TokenBucket::new(1, Rate::new(1, Duration::from_millis(10))).unwrap();
        let ahead = tollgate::ManualClock::starting_at(START);
        let behind = tollgate::ManualClock::starting_at(START - Duration::from_millis(50));
        let url = server.url();
        let limiter = |clock: &tollgate::ManualClock| {
            Redis::builder(bucket).client_time(clock.clone()).timeout(Duration::from_secs(5)).connect(&url)
        };
        let (ahead, behind) = (limiter(&ahead).await.unwrap(), limiter(&behind).await.unwrap());
        assert_eq!(ahead.acquire("key", 1).await.unwrap().granted_at(), START);
        assert_eq!(behind.acquire("key", 1).await.unwrap().granted_at(), START + Duration::from_millis(10));
    }

    /// With Redis down, each try is the failure policy's: Allow lets the
    /// request go at once, Deny is a retry a second later (too long for
    /// 100 ms), and the in-memory fallback reserves in this process.
    #[tokio::test]
    async fn with_redis_down_the_failure_policy_answers_each_try() {
        let Some(mut server) = RedisServer::start() else { return };
        let url = server.url();
        let bucket = TokenBucket::new(1, Rate::per_hour(1)).unwrap();
        let mut limiters = Vec::new();
        for policy in [FailurePolicy::Allow, FailurePolicy::Deny, FailurePolicy::FallbackToMemory] {
            let limiter = Redis::builder(bucket).failure_policy(policy).timeout(Duration::from_millis(100));
            limiters.push(limiter.connect(&url).await.unwrap());
        }
        server.stop();
        let within = Duration::from_millis(100);
        let [allow, deny, fallback] = &limiters[..] else { unreachable!() };
        for _ in 0..3 {
            assert!(allow.acquire_within("key", 1, within).await.unwrap().is_ok());
        }
        let too_long = deny.acquire_within("key", 1, within).await.unwrap().unwrap_err();
        assert!(too_long.wait() >= FailurePolicy::DENY_RETRY_AFTER, "{too_long:?}");
        assert!(fallback.acquire_within("key", 1, within).await.unwrap().is_ok());
        let too_long = fallback.acquire_within("key", 1, within).await.unwrap().unwrap_err();
        assert!(too_long.wait() > Duration::from_secs(3_000), "one an hour: {too_long:?}");
    }
}
