//! The router of the axum example, shared with the end-to-end test in
//! `tests/middleware.rs` so that the test drives exactly what the example
//! serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::HeaderName;
use axum::routing::get;
use tokio::net::TcpListener;
use tollgate::RateLimiter;
use tollgate::middleware::{HeaderSet, KeyExtractor, MissingKey, RateLimitLayer};

/// The three limiters of the app, each with the window it advertises in
/// `RateLimit-Policy`.
pub struct Limits {
    /// One allowance shared by every request.
    pub global: (Arc<dyn RateLimiter>, Duration),
    /// One allowance per `x-api-key`, for `/api/*`.
    pub per_key: (Arc<dyn RateLimiter>, Duration),
    /// One allowance per client IP, for `/public/*`.
    pub per_ip: (Arc<dyn RateLimiter>, Duration),
}

/// `/api/hello` needs an `x-api-key` header (400 without one) and is limited
/// per key; `/public/hello` is limited per client IP; everything is also
/// under one global limit.
///
/// The per-key and per-IP layers sit outside the global one (in axum the
/// last layer added is the outermost), so a client over its own limit, or
/// without an API key, is turned away before it uses up the global
/// allowance. Clones of one layer share its limiter, so both routes draw on
/// the one global allowance.
///
/// Every layer is a `route_layer`: it limits the routes that matched. With
/// `.layer(..)` a request to a path that does not exist would be limited
/// too: answered 400 rather than 404 without an API key, and using up quota
/// with one.
///
/// Each layer writes both header sets: the IETF draft's, and the
/// `X-RateLimit-*` trio for clients that only read those.
pub fn app(limits: Limits) -> tollgate::Result<Router> {
    let (global, global_window) = limits.global;
    let (per_key, per_key_window) = limits.per_key;
    let (per_ip, per_ip_window) = limits.per_ip;

    let global = RateLimitLayer::new(global, KeyExtractor::global("all"))
        .policy_name("global")?
        .window(global_window)
        .headers(HeaderSet::Both);

    let by_api_key = KeyExtractor::header(HeaderName::from_static("x-api-key"));
    let per_key = RateLimitLayer::new(per_key, by_api_key)
        .on_missing_key(MissingKey::Reject)
        .policy_name("per-key")?
        .window(per_key_window)
        .headers(HeaderSet::Both);
    let api = Router::new()
        .route("/api/hello", get(|| async { "hello, API client\n" }))
        .route_layer(global.clone())
        .route_layer(per_key);

    // axum puts the peer address in a `ConnectInfo<SocketAddr>` extension
    // (when served with `into_make_service_with_connect_info`); tollgate does
    // not depend on axum, so the key extractor is told where to find it.
    let by_ip = KeyExtractor::ip_from_fn(|parts| {
        parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
    });
    let per_ip =
        RateLimitLayer::new(per_ip, by_ip).policy_name("per-ip")?.window(per_ip_window).headers(HeaderSet::Both);
    let public = Router::new()
        .route("/public/hello", get(|| async { "hello, world\n" }))
        .route_layer(global)
        .route_layer(per_ip);

    Ok(api.merge(public))
}

/// Serves `app` on `listener`, with the peer address available to the
/// per-IP key extractor.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}
