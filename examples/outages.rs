//! What an outage of Redis costs the requests, measured: the figures of
//! docs/outages.md.
//!
//! Starts its own redis-server processes on free loopback ports (as the tests
//! do; `TOLLGATE_REDIS_SERVER` names the binary) and, for each scenario, three
//! times:
//!
//! - `kill`: kill -9 the server, then 1000 checks one after another, at the
//!   default settings (and with a 10 ms timeout);
//! - `stop`: SIGSTOP the server, then checks one after another: how long until
//!   they are answered at once, and how long 200 checks take from there;
//! - `restart`: kill -9, 1 s down, the server started again on its port: how
//!   long until a check reaches Redis again;
//! - `connect`: `connect` to a closed port and to a listener that accepts and
//!   never answers, under `ReturnError` and `Allow`;
//! - `late`: `connect` with `Allow` while no server listens, then one is
//!   started there: how long until a check reaches it.
//!
//! `--no-breaker` measures the same with `CircuitBreaker::disabled()`.
//!
//! ```sh
//! cargo run --release --features redis --example outages            # everything
//! cargo run --release --features redis --example outages -- kill stop --no-breaker
//! ```

use std::net::TcpListener;
use std::time::{Duration, Instant};

use tollgate::{CircuitBreaker, Error, FailurePolicy, Rate, RateLimiter, Redis, RedisBuilder, TokenBucket};

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use self::redis_server::RedisServer;

const ROUNDS: usize = 3;

/// A bucket no run can empty: Redis admits every check it answers.
fn builder(breaker: bool) -> RedisBuilder<TokenBucket> {
    let bucket = TokenBucket::new(1_000_000, Rate::per_hour(1)).expect("a valid bucket");
    let breaker = if breaker { CircuitBreaker::new() } else { CircuitBreaker::disabled() };
    Redis::builder(bucket).prefix("outages:").circuit_breaker(breaker)
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

/// Checks until one is answered by Redis (allowed, below the full allowance):
/// how long that took.
async fn until_redis_answers(limiter: &impl RateLimiter) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(decision) = limiter.check("back").await
            && decision.is_allowed()
            && decision.remaining() < decision.limit()
        {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "Redis never answered again");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// "median (min–max)" of the figures of the rounds.
fn summary(mut figures: Vec<Duration>) -> String {
    figures.sort();
    format!("{:.2?} ({:.2?} – {:.2?})", figures[figures.len() / 2], figures[0], figures[figures.len() - 1])
}

async fn killed(breaker: bool) {
    for timeout in [RedisBuilder::<TokenBucket>::DEFAULT_TIMEOUT, Duration::from_millis(10)] {
        let mut took = Vec::new();
        for _ in 0..ROUNDS {
            let mut server = RedisServer::start().expect("a redis-server");
            let limiter = builder(breaker).timeout(timeout).connect(&server.url()).await.expect("connect");
            checks(&limiter, 10).await;
            server.stop();
            let (elapsed, failed) = checks(&limiter, 1000).await;
            assert_eq!(failed, 1000, "ReturnError: every check errs while Redis is down");
            took.push(elapsed);
        }
        println!("kill -9, timeout {timeout:?}: 1000 checks one after another took {}", summary(took));
    }
}

async fn stopped(breaker: bool) {
    let (mut until_fast, mut took) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let server = RedisServer::start().expect("a redis-server");
        let limiter = builder(breaker).connect(&server.url()).await.expect("connect");
        checks(&limiter, 10).await;
        server.pause();
        let paused = Instant::now();
        if breaker {
            // Checks one after another until the breaker has opened.
            while limiter.health().is_up() {
                let _ = limiter.check("k").await;
                assert!(paused.elapsed() < Duration::from_secs(30), "the breaker never opened");
            }
            until_fast.push(paused.elapsed());
        }
        took.push(checks(&limiter, 200).await.0);
        server.resume();
    }
    if breaker {
        println!("SIGSTOP: the breaker opened after {}", summary(until_fast));
    }
    println!("SIGSTOP: then 200 checks one after another took {}", summary(took));
}

async fn restarted(breaker: bool) {
    let mut back = Vec::new();
    for _ in 0..ROUNDS {
        let mut server = RedisServer::start().expect("a redis-server");
        let limiter = builder(breaker).connect(&server.url()).await.expect("connect");
        checks(&limiter, 10).await;
        server.stop();
        let down = Instant::now();
        while down.elapsed() < Duration::from_secs(1) {
            let _ = limiter.check("k").await;
        }
        server.restart();
        back.push(until_redis_answers(&limiter).await);
    }
    println!("kill -9, 1 s down, restart: checks reached Redis again {} after the restart", summary(back));
}

async fn connecting(breaker: bool) {
    let mut closed = RedisServer::start().expect("a redis-server");
    closed.stop();
    // Accepts connections (the kernel does, into the backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let silent_url = format!("redis://{}", silent.local_addr().expect("an address"));
    for policy in [FailurePolicy::ReturnError, FailurePolicy::Allow] {
        for (what, url) in [("a closed port", closed.url()), ("a silent listener", silent_url.clone())] {
            let mut took = Vec::new();
            let mut outcome = String::new();
            for _ in 0..ROUNDS {
                let started = Instant::now();
                let connected = builder(breaker).failure_policy(policy).connect(&url).await;
                took.push(started.elapsed());
                outcome = match connected {
                    Ok(limiter) => {
                        let started = Instant::now();
                        let checked = limiter.check("k").await;
                        format!(
                            "a limiter whose first check answered {:?} in {:.2?}",
                            checked.is_ok(),
                            started.elapsed()
                        )
                    }
                    Err(Error::Backend { source, .. }) => format!("Error::Backend ({source})"),
                    Err(error) => format!("{error}"),
                };
            }
            println!("connect to {what}, {policy:?}: {outcome}, after {}", summary(took));
        }
    }
}

async fn late(breaker: bool) {
    let mut back = Vec::new();
    for _ in 0..ROUNDS {
        let mut server = RedisServer::start().expect("a redis-server");
        server.stop();
        let limiter =
            builder(breaker).failure_policy(FailurePolicy::Allow).connect(&server.url()).await.expect("a limiter");
        let _ = limiter.check("k").await;
        server.restart();
        back.push(until_redis_answers(&limiter).await);
    }
    println!("started with no server, then one started: checks reached Redis {} after it started", summary(back));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let breaker = !args.iter().any(|arg| arg == "--no-breaker");
    let scenarios: Vec<&str> = args.iter().map(String::as_str).filter(|arg| !arg.starts_with("--")).collect();
    let wants = |name: &str| scenarios.is_empty() || scenarios.contains(&name);
    println!("circuit breaker {}; median (min – max) of {ROUNDS} rounds", if breaker { "on" } else { "off" });
    if wants("kill") {
        killed(breaker).await;
    }
    if wants("stop") {
        stopped(breaker).await;
    }
    if wants("restart") {
        restarted(breaker).await;
    }
    if wants("connect") {
        connecting(breaker).await;
    }
    if wants("late") {
        late(breaker).await;
    }
}
