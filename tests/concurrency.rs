//! Threads racing on one key never get more than the algorithm allows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tollgate::{
    Algorithm, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, RateLimiter, SlidingLog, TokenBucket,
};

const THREADS: u64 = 16;
const TRIES: u64 = 1_000;
const LIMIT: u64 = 500;

/// A limiter whose clock never moves: nothing refills and no window ends, so
/// exactly `LIMIT` can ever be admitted.
fn frozen<A: Algorithm>(algorithm: A) -> Arc<InMemory<A, ManualClock>> {
    Arc::new(InMemory::with_clock(algorithm, ManualClock::starting_at(Duration::from_secs(1_000))))
}

fn fixed_window() -> FixedWindow {
    FixedWindow::new(Rate::per_hour(LIMIT)).unwrap()
}
fn sliding_log() -> SlidingLog {
    SlidingLog::new(Rate::per_hour(LIMIT)).unwrap()
}
fn token_bucket() -> TokenBucket {
    TokenBucket::new(LIMIT, Rate::per_hour(1)).unwrap()
}
fn leaky_bucket() -> LeakyBucket {
    // One departs now, LIMIT - 1 wait.
    LeakyBucket::new(LIMIT - 1, Rate::per_hour(1)).unwrap()
}

fn admitted_by_racing_threads<A: Algorithm>(algorithm: A) -> u64 {
    let limiter = frozen(algorithm);
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..TRIES {
                    if limiter.check_sync("hot").is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    admitted.into_inner()
}

async fn admitted_by_racing_tasks(limiter: Arc<dyn RateLimiter>) -> u64 {
    let tasks: Vec<_> = (0..THREADS)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..TRIES {
                    admitted += u64::from(limiter.check("hot").await.unwrap().is_allowed());
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    admitted
}

#[test]
fn sixteen_threads_making_a_thousand_tries_each_on_one_key_get_exactly_the_limit() {
    assert_eq!(admitted_by_racing_threads(fixed_window()), LIMIT, "fixed window");
    assert_eq!(admitted_by_racing_threads(sliding_log()), LIMIT, "sliding log");
    assert_eq!(admitted_by_racing_threads(token_bucket()), LIMIT, "token bucket");
    assert_eq!(admitted_by_racing_threads(leaky_bucket()), LIMIT, "leaky bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_sharing_an_arc_dyn_rate_limiter_get_exactly_the_limit() {
    assert_eq!(admitted_by_racing_tasks(frozen(fixed_window())).await, LIMIT, "fixed window");
    assert_eq!(admitted_by_racing_tasks(frozen(sliding_log())).await, LIMIT, "sliding log");
    assert_eq!(admitted_by_racing_tasks(frozen(token_bucket())).await, LIMIT, "token bucket");
    assert_eq!(admitted_by_racing_tasks(frozen(leaky_bucket())).await, LIMIT, "leaky bucket");
}

#[test]
fn limiters_can_be_shared_across_threads_and_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<InMemory<FixedWindow>>();
    shareable::<InMemory<SlidingLog, ManualClock>>();
    shareable::<InMemory<TokenBucket>>();
    shareable::<InMemory<LeakyBucket>>();
    shareable::<Arc<dyn RateLimiter>>();
}
