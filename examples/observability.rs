//! What tollgate tells an operator: logs through `tracing`, metrics through
//! the `metrics` facade, here printed by tracing-subscriber and rendered in
//! Prometheus's text format. Needs no server:
//!
//! ```text
//! cargo run --example observability --features metrics,tower
//! RUST_LOG=tollgate=debug cargo run --example observability --features metrics,tower
//! ```
//!
//! docs/observability.md lists every event and metric.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderName, Request, Response};
use metrics_exporter_prometheus::PrometheusBuilder;
use tollgate::middleware::{KeyExtractor, RateLimitLayer};
use tollgate::{InMemory, Rate, TokenBucket};
use tower::{Layer, ServiceExt};
use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs: RUST_LOG if set, else every check (trace) and every warning.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,tollgate=trace"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // Metrics: installed before the first check, which registers the
    // limiter's series with it. A server would serve `render()` on /metrics.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let limiter = Arc::new(InMemory::new(TokenBucket::new(2, Rate::per_minute(2))?).named("per-key"));
    let api_key = HeaderName::from_static("x-api-key");
    let app = RateLimitLayer::new(limiter.clone(), KeyExtractor::header(api_key.clone()))
        .policy_name("api")?
        .layer(tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));

    // Alice's bucket holds two; her third request is denied. The last
    // request has no key: a 400, and one warning naming the likely cause.
    for key in [Some("alice"), Some("alice"), Some("alice"), Some("bob"), None] {
        let mut request = Request::builder();
        if let Some(key) = key {
            request = request.header(&api_key, key);
        }
        let response = app.clone().oneshot(request.body(())?).await?;
        println!("{key:?}: {}", response.status());
    }
    // The keys gauge is set as the store sweeps itself, and by a cleanup.
    limiter.cleanup();

    println!("\n{}", prometheus.render());
    Ok(())
}
