//! What waiting costs: memory and wake-ups of many tasks waiting in
//! `acquire` on one in-memory key, beside tasks that only sleep on a timer
//! (the least any waiting task costs) and the loop over `retry_after` that
//! `acquire` replaces.
//!
//! `cargo run --release --example waiters --features acquire`
//!
//! Each scenario runs on a fresh Tokio runtime with paused time, and the
//! limiter reads Tokio's clock: slots land exactly and nothing waits in real
//! time, so memory and wake-ups are exact counts, and the time taken is CPU
//! time, the waiting's own. Scenarios are interleaved over five rounds; CPU
//! times are given as the median and the range (docs/acquire.md quotes them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tollgate::{Clock, FixedWindow, InMemory, Rate, RateLimiter, TokenBucket};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter only adds and subtracts the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller's contract for `GlobalAlloc::alloc`.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as the caller's contract for `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The limiter's clock: Tokio's, so that paused time moves both.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        Duration::from_secs(1_700_000_000) + self.0.elapsed()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    /// Sleeps until its turn on one timer, with no limiter: the floor.
    Sleep,
    /// `acquire` on a token bucket: one reservation, one timer.
    AcquireTokenBucket,
    /// `acquire` on a fixed window: a line per key, only its head tries.
    AcquireFixedWindow,
    /// `check`, and on a denial sleep for its `retry_after` and check again.
    RetryAfterLoop,
}

impl How {
    fn name(self) -> &'static str {
        match self {
            How::Sleep => "a timer, no limiter",
            How::AcquireTokenBucket => "acquire, token bucket",
            How::AcquireFixedWindow => "acquire, fixed window",
            How::RetryAfterLoop => "retry_after loop, token bucket",
        }
    }
}

/// What one scenario measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// Bytes held per waiter while all wait: its task, its future, its timer.
    bytes: f64,
    /// Times each waiter's future was polled, on average: 1 is the first
    /// poll, each more is a wake-up.
    polls: f64,
    /// Every waiter admitted, from the first spawn to the last permit.
    cpu: Duration,
}

/// `waiters` tasks, each waiting once for one key, 1 000 slots a second.
fn run(how: How, waiters: u64) -> Figures {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(async move {
        let clock = TokioClock(tokio::time::Instant::now());
        let rate = Rate::per_second(1_000);
        let limiter: Arc<dyn RateLimiter> = match how {
            How::AcquireFixedWindow => Arc::new(InMemory::with_clock(FixedWindow::new(rate).unwrap(), clock)),
            _ => Arc::new(InMemory::with_clock(TokenBucket::new(1, rate).unwrap(), clock)),
        };
        let polls = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::with_capacity(waiters as usize);
        let before = LIVE.load(Ordering::Relaxed);
        let started = Instant::now();
        for n in 0..waiters {
            let (limiter, polls) = (Arc::clone(&limiter), Arc::clone(&polls));
            handles.push(tokio::spawn(counted(wait(how, limiter, n), polls)));
        }
        // Every waiter runs once (and starts waiting) before this task runs again.
        tokio::task::yield_now().await;
        let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64 / waiters as f64;
        for handle in handles {
            handle.await.unwrap();
        }
        let cpu = started.elapsed();
        Figures { bytes, polls: polls.load(Ordering::Relaxed) as f64 / waiters as f64, cpu }
    })
}

/// Waiter `n`'s wait, as `how` waits.
async fn wait(how: How, limiter: Arc<dyn RateLimiter>, n: u64) {
    match how {
        How::Sleep => tokio::time::sleep(Duration::from_millis(n)).await,
        How::AcquireTokenBucket | How::AcquireFixedWindow => {
            let _permit = limiter.acquire("key", 1).await.unwrap();
        }
        How::RetryAfterLoop => {
            while let Some(retry_after) = limiter.check("key").await.unwrap().retry_after() {
                tokio::time::sleep(retry_after).await;
            }
        }
    }
}

/// `future`, counting its polls into `polls`.
async fn counted(future: impl Future<Output = ()>, polls: Arc<AtomicU64>) {
    let mut future = pin!(future);
    poll_fn(|cx| {
        polls.fetch_add(1, Ordering::Relaxed);
        future.as_mut().poll(cx)
    })
    .await
}

fn main() {
    let scenarios = [
        (How::Sleep, 10_000),
        (How::AcquireTokenBucket, 10_000),
        (How::AcquireFixedWindow, 10_000),
        (How::AcquireTokenBucket, 1_000),
        (How::RetryAfterLoop, 1_000),
    ];
    let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); scenarios.len()];
    for _ in 0..5 {
        for (figures, &(how, waiters)) in rounds.iter_mut().zip(&scenarios) {
            figures.push(run(how, waiters));
        }
    }
    println!(
        "{:>7}  {:<32} {:>12} {:>12} {:>22}",
        "waiters", "how", "bytes/waiter", "polls/waiter", "CPU ms: median (range)"
    );
    for (figures, &(how, waiters)) in rounds.iter_mut().zip(&scenarios) {
        figures.sort_by_key(|f| f.cpu);
        let ms = |f: &Figures| f.cpu.as_secs_f64() * 1e3;
        let (low, median, high) = (ms(&figures[0]), ms(&figures[2]), ms(&figures[4]));
        // Memory and polls are the same in every round (paused time); the median round's are shown.
        let Figures { bytes, polls, .. } = figures[2];
        println!(
            "{waiters:>7}  {:<32} {bytes:>12.0} {polls:>12.2} {:>22}",
            how.name(),
            format!("{median:.1} ({low:.1}-{high:.1})")
        );
    }
}
