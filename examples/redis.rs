//! Two "app servers" sharing one limit through Redis.
//!
//! Each server is a limiter with its own connection, as two processes would
//! have; both use the same algorithm and prefix, so they share each user's
//! allowance: together they admit 5 requests, not 5 each.
//!
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run --example redis --features redis`
//! (`REDIS_URL` defaults to `redis://127.0.0.1:6379`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate::{FailurePolicy, Rate, RateLimiter, Redis, TokenBucket};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tollgate::Error> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    // A prefix of this run's own, so that reruns start afresh and no other data is touched.
    let run = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
    let prefix = format!("tollgate-example:{run}:");
    // Bursts of 5, then one request every 2 s.
    let algorithm = TokenBucket::new(5, Rate::new(1, Duration::from_secs(2)))?;

    let mut servers = Vec::new();
    for name in ["app-1", "app-2"] {
        let limiter =
            Redis::builder(algorithm).prefix(&prefix).failure_policy(FailurePolicy::ReturnError).connect(&url).await?;
        servers.push((name, limiter));
    }
    println!("two app servers on {url}, one limit: bursts of 5 per user, then one every 2 s");
    println!("user:42's state is at Redis key {:?}\n", servers[0].1.redis_key("user:42"));

    // user:42's requests land on the two servers in turn.
    for request in 1..=8 {
        let (name, limiter) = &servers[request % 2];
        let decision = limiter.check("user:42").await?;
        match decision.retry_after() {
            None => println!("request {request} on {name}: allowed, {} left", decision.remaining()),
            Some(wait) => println!("request {request} on {name}: denied, retry after {wait:?}"),
        }
    }

    // Both servers read one state.
    println!();
    for (name, limiter) in &servers {
        let peek = limiter.check_n("user:42", 0).await?;
        println!(
            "{name} peeks at user:42: {} of {} left, full again in {:?}",
            peek.remaining(),
            peek.limit(),
            peek.reset_after()
        );
    }

    // One reset frees the user on both (the key would expire by itself within 10 s anyway).
    servers[0].1.reset("user:42").await?;
    let after_reset = servers[1].1.check("user:42").await?;
    println!("after a reset on app-1, app-2 allows user:42: {}", after_reset.is_allowed());
    Ok(())
}
