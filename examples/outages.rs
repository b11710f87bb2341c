//! What an outage of Redis costs the requests, measured before the circuit
//! breaker: kill -9 and SIGSTOP of the server, then checks one after another;
//! `connect` to a closed port and to a listener that never answers. Starts its
//! own redis-server processes on free loopback ports, as the tests do.
//!
//! `cargo run --release --features redis --example outages [kill] [stop] [connect]`

use std::net::TcpListener;
use std::time::{Duration, Instant};

use tollgate::{FailurePolicy, Rate, RateLimiter, Redis, TokenBucket};

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use self::redis_server::RedisServer;

/// A bucket no run can empty: Redis admits every check it answers.
fn bucket() -> TokenBucket {
    TokenBucket::new(1_000_000, Rate::per_hour(1)).unwrap()
}

/// `n` checks one after another: how long they took, and how many erred.
async fn checks(limiter: &impl RateLimiter, n: usize) -> (Duration, usize) {
    let started = Instant::now();
    let mut failed = 0;
    for i in 0..n {
        failed += usize::from(limiter.check(&format!("k{}", i % 100)).await.is_err());
    }
    (started.elapsed(), failed)
}

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if wants("kill") {
        for timeout in [Duration::from_millis(100), Duration::from_millis(10)] {
            let mut server = RedisServer::start().expect("redis-server");
            let limiter = Redis::builder(bucket()).timeout(timeout).connect(&server.url()).await.unwrap();
            checks(&limiter, 10).await;
            server.stop();
            let (took, failed) = checks(&limiter, 1000).await;
            println!("kill -9, timeout {timeout:?}: 1000 sequential checks took {took:.2?} ({failed} failed)");
        }
    }
    if wants("stop") {
        let server = RedisServer::start().expect("redis-server");
        let limiter = Redis::builder(bucket()).connect(&server.url()).await.unwrap();
        checks(&limiter, 10).await;
        server.pause();
        let (took, failed) = checks(&limiter, 200).await;
        println!("SIGSTOP: 200 sequential checks took {took:.2?} ({failed} failed)");
        server.resume();
    }
    if wants("connect") {
        let mut server = RedisServer::start().expect("redis-server");
        server.stop();
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_url = format!("redis://{}", silent.local_addr().unwrap());
        for policy in [FailurePolicy::ReturnError, FailurePolicy::Allow] {
            for (what, url) in [("closed port", server.url()), ("silent listener", silent_url.clone())] {
                let started = Instant::now();
                let outcome = Redis::builder(bucket()).failure_policy(policy).connect(&url).await;
                println!(
                    "connect to a {what}, {policy:?}: {} after {:.2?}",
                    match &outcome {
                        Ok(_) => "a limiter".to_owned(),
                        Err(error) => format!("error {error}"),
                    },
                    started.elapsed()
                );
            }
        }
    }
}
