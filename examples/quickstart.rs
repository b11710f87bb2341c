//! Every algorithm side by side on the same two bursts, in memory, no server.
//!
//! `cargo run --example quickstart`
//!
//! The limiters are built by hand, one line each, to show each constructor;
//! the tests, benches and `compare` example take the list of algorithms from
//! one registry (tests/support/algorithms.rs) instead.

use std::sync::Arc;
use std::time::Duration;

use tollgate::{
    FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, RateLimiter, SlidingLog, SlidingWindow, TokenBucket,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tollgate::Error> {
    // A clock we move by hand, so the output is the same on every run.
    let clock = ManualClock::starting_at(Duration::from_secs(1_700_000_000) + Duration::from_millis(800));
    let five_a_second = Rate::per_second(5);
    let limiters: Vec<(&str, Arc<dyn RateLimiter>)> = vec![
        ("fixed window 5/s", Arc::new(InMemory::with_clock(FixedWindow::new(five_a_second)?, clock.clone()))),
        ("sliding log 5/s", Arc::new(InMemory::with_clock(SlidingLog::new(five_a_second)?, clock.clone()))),
        ("sliding window 5/s", Arc::new(InMemory::with_clock(SlidingWindow::new(five_a_second)?, clock.clone()))),
        ("token bucket 5, 5/s", Arc::new(InMemory::with_clock(TokenBucket::new(5, five_a_second)?, clock.clone()))),
        ("leaky bucket 4, 5/s", Arc::new(InMemory::with_clock(LeakyBucket::new(4, five_a_second)?, clock.clone()))),
    ];

    // Eight requests at 0.8 s into a second, then eight more 0.3 s later,
    // just after the fixed window's boundary.
    for (label, after) in [("burst at t = 0", Duration::ZERO), ("burst at t = 300 ms", Duration::from_millis(300))] {
        clock.advance(after);
        println!("\n{label}: 8 requests from user:42");
        for (name, limiter) in &limiters {
            let mut line = format!("  {name:<20}");
            let mut admitted = 0;
            for _ in 0..8 {
                let decision = limiter.check("user:42").await?;
                line.push_str(&if decision.is_allowed() {
                    admitted += 1;
                    format!(" ok+{}ms", decision.wait().as_millis())
                } else {
                    format!(" no({}ms)", decision.retry_after().unwrap_or_default().as_millis())
                });
            }
            println!("{line}   -> {admitted} admitted");
        }
    }
    println!("\nok+Nms: admitted, hold N ms first (leaky bucket shaping); no(Nms): denied, retry after N ms");
    Ok(())
}
