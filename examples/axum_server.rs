//! An axum server behind tollgate's tower middleware.
//!
//! ```text
//! cargo run --example axum_server --features tower
//! ADDR=0.0.0.0:8080 REDIS_URL=redis://127.0.0.1/ cargo run --example axum_server --features tower,redis
//! curl -i -H 'x-api-key: alice' http://127.0.0.1:3000/api/hello
//! curl -i http://127.0.0.1:3000/public/hello
//! ```
//!
//! Limits: 100 requests per second for everybody together (token bucket),
//! 5 per 10 seconds per API key (fixed window), 20 per minute per client IP
//! (sliding log). In memory by default; on Redis, shared by every server
//! process, when `REDIS_URL` is set (and the `redis` feature is on).

#[path = "axum_server/app.rs"]
mod app;

use std::sync::Arc;
use std::time::Duration;

use tollgate::{FixedWindow, InMemory, Rate, RateLimiter, SlidingLog, TokenBucket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let global = TokenBucket::new(100, Rate::per_second(100))?;
    let per_key = FixedWindow::new(Rate::new(5, Duration::from_secs(10)))?;
    let per_ip = SlidingLog::new(Rate::per_minute(20))?;

    let (global, per_key, per_ip): (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) =
        match std::env::var("REDIS_URL") {
            #[cfg(feature = "redis")]
            Ok(url) => {
                println!("limits on Redis at {url}");
                (
                    Arc::new(
                        tollgate::Redis::builder(global).prefix("axum-example:global").connect(url.as_str()).await?,
                    ),
                    Arc::new(tollgate::Redis::builder(per_key).prefix("axum-example:key").connect(url.as_str()).await?),
                    Arc::new(tollgate::Redis::builder(per_ip).prefix("axum-example:ip").connect(url.as_str()).await?),
                )
            }
            #[cfg(not(feature = "redis"))]
            Ok(_) => return Err("REDIS_URL is set, but this example was built without the `redis` feature".into()),
            Err(_) => {
                println!("limits in memory");
                (Arc::new(InMemory::new(global)), Arc::new(InMemory::new(per_key)), Arc::new(InMemory::new(per_ip)))
            }
        };

    let limits = app::Limits {
        global: (global, Duration::from_secs(1)),
        per_key: (per_key, Duration::from_secs(10)),
        per_ip: (per_ip, Duration::from_secs(60)),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    app::serve(listener, app::app(limits)?).await?;
    Ok(())
}
