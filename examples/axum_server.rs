//! An axum server behind tollgate's tower middleware.
//!
//! ```text
//! cargo run --example axum_server --features tower
//! ADDR=0.0.0.0:8080 REDIS_URL=redis://127.0.0.1/ cargo run --example axum_server --features tower,redis
//! curl -i -H 'x-api-key: alice' http://127.0.0.1:3000/api/hello       # plan "free"
//! curl -i -H 'x-api-key: pro_bob' http://127.0.0.1:3000/api/hello     # plan "pro"
//! curl -i http://127.0.0.1:3000/public/hello
//! ```
//!
//! Limits: 100 requests per second for everybody together (token bucket);
//! per API key, a plan chosen by the key (`pro_...` is "pro", any other key
//! "free"), each a composite of a per-second and a per-day limit: free 5 a
//! second and 1 000 a day, pro 50 a second and 100 000 a day; 20 per minute
//! per client IP (sliding log). A response to an API client lists both of
//! its limits:
//!
//! ```text
//! RateLimit-Policy: "pro/per-second";q=50;w=1, "pro/per-day";q=100000;w=86400
//! RateLimit: "pro/per-second";r=49;t=1, "pro/per-day";r=99999;t=51246
//! ```
//!
//! In memory by default; on Redis, shared by every server process, when
//! `REDIS_URL` is set (and the `redis` feature is on).

#[path = "axum_server/app.rs"]
mod app;

use std::sync::Arc;

use app::Quota;
use tollgate::{InMemory, Rate, SlidingLog, TokenBucket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let global = TokenBucket::new(100, Rate::per_second(100))?;
    let per_key = app::plans(Quota { per_second: 5, per_day: 1_000 }, Quota { per_second: 50, per_day: 100_000 })?;
    let per_ip = SlidingLog::new(Rate::per_minute(20))?;

    let limits = match std::env::var("REDIS_URL") {
        #[cfg(feature = "redis")]
        Ok(url) => {
            println!("limits on Redis at {url}");
            let url = url.as_str();
            app::Limits {
                global: Arc::new(tollgate::Redis::builder(global).prefix("axum-example:global").connect(url).await?),
                per_key: Arc::new(tollgate::Redis::builder(per_key).prefix("axum-example:key").connect(url).await?),
                per_ip: Arc::new(tollgate::Redis::builder(per_ip).prefix("axum-example:ip").connect(url).await?),
            }
        }
        #[cfg(not(feature = "redis"))]
        Ok(_) => return Err("REDIS_URL is set, but this example was built without the `redis` feature".into()),
        Err(_) => {
            println!("limits in memory");
            app::Limits {
                global: Arc::new(InMemory::new(global)),
                per_key: Arc::new(InMemory::new(per_key)),
                per_ip: Arc::new(InMemory::new(per_ip)),
            }
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    app::serve(listener, app::app(limits)?).await?;
    Ok(())
}
