//! Threads racing on one key never get more than the algorithm allows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tollgate::{Algorithm, InMemory, ManualClock, RateLimiter};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::Spec;

const THREADS: u64 = 16;
const TRIES: u64 = 1_000;
const LIMIT: u64 = 500;

/// A limiter of `LIMIT` an hour whose clock never moves: nothing refills
/// and no window ends, so exactly `LIMIT` can ever be admitted.
fn frozen<A: Spec>() -> Arc<InMemory<A, ManualClock>> {
    let algorithm = A::with_limit(LIMIT, Duration::from_secs(3_600));
    Arc::new(InMemory::with_clock(algorithm, ManualClock::starting_at(Duration::from_secs(1_000))))
}

fn admitted_by_racing_threads<A: Algorithm>(limiter: &InMemory<A, ManualClock>) -> u64 {
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

macro_rules! exact_under_contention {
    ($name:ident, $algorithm:ident) => {
        mod $name {
            use super::*;

            #[test]
            fn sixteen_threads_making_a_thousand_tries_each_on_one_key_get_exactly_the_limit() {
                assert_eq!(admitted_by_racing_threads(&frozen::<tollgate::$algorithm>()), LIMIT);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn tasks_sharing_an_arc_dyn_rate_limiter_get_exactly_the_limit() {
                assert_eq!(admitted_by_racing_tasks(frozen::<tollgate::$algorithm>()).await, LIMIT);
            }

            #[test]
            fn limiters_can_be_shared_across_threads_and_tasks() {
                fn shareable<T: Send + Sync + 'static>() {}
                shareable::<InMemory<tollgate::$algorithm>>();
                shareable::<InMemory<tollgate::$algorithm, ManualClock>>();
            }
        }
    };
}

for_each_algorithm!(exact_under_contention);

#[test]
fn a_shared_dyn_limiter_is_send_sync_and_static() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Arc<dyn RateLimiter>>();
}
