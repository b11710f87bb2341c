//! The router of the axum example, shared with the end-to-end tests in
//! `tests/middleware.rs` so that the tests drive exactly what the example
//! serves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::HeaderName;
use axum::routing::get;
use tokio::net::TcpListener;
use tollgate::middleware::{HeaderSet, KeyExtractor, MissingKey, RateLimitLayer};
use tollgate::{Composite, FixedWindow, Plans, Rate, RateLimiter, SlidingLog};

/// The three limiters of the app. Each advertises its own window in
/// `RateLimit-Policy`.
pub struct Limits {
    /// One allowance shared by every request.
    pub global: Arc<dyn RateLimiter>,
    /// One allowance per `x-api-key`, for `/api/*`: the [`plans`].
    pub per_key: Arc<dyn RateLimiter>,
    /// One allowance per client IP, for `/public/*`.
    pub per_ip: Arc<dyn RateLimiter>,
}

/// One plan's limits: so many a second, and so many a day.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub per_second: u64,
    pub per_day: u64,
}

/// The API's two plans, "free" (the default) and "pro", each a composite of
/// a per-second and a per-day limit, checked all or nothing: a request the
/// per-second limit turns away takes nothing from the day.
pub fn plans(free: Quota, pro: Quota) -> tollgate::Result<Plans> {
    let composite = |quota: Quota| -> tollgate::Result<Composite> {
        Composite::new("per-second", SlidingLog::new(Rate::per_second(quota.per_second))?)?
            .with("per-day", FixedWindow::new(Rate::per_day(quota.per_day))?)
    };
    Plans::new("free", composite(free)?)?.plan("pro", composite(pro)?)
}

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// `/api/hello` needs an `x-api-key` header (400 without one) and is limited
/// per key, in the plan the key names: keys that start with `pro_` are on
/// "pro", every other key on "free". Its policies are named by the plan:
/// `"pro/per-second"`, `"pro/per-day"`. `/public/hello` is limited per
/// client IP; everything is also under one global limit.
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
/// Each layer writes both header sets: the IETF draft's (every limit, one
/// item each), and the `X-RateLimit-*` trio (the binding limit) for
/// clients that only read those.
pub fn app(limits: Limits) -> tollgate::Result<Router> {
    let global =
        RateLimitLayer::new(limits.global, KeyExtractor::global("all")).policy_name("global")?.headers(HeaderSet::Both);

    let per_key = RateLimitLayer::new(limits.per_key, KeyExtractor::header(API_KEY))
        .on_missing_key(MissingKey::Reject)
        .plan_from_fn(|parts| {
            let key = parts.headers.get(API_KEY)?.to_str().ok()?;
            Some(if key.starts_with("pro_") { "pro" } else { "free" })
        })
        .policy_name_from_plan()
        .headers(HeaderSet::Both);
    let api = Router::new()
        .route("/api/hello", get(|| async { "hello, API client\n" }))
        .route_layer(global.clone())
        .route_layer(per_key);

    // axum puts the peer address in a `ConnectInfo<SocketAddr>` extension
    // (when served with `into_make_service_with_connect_info`); tollgate does
    // not depend on axum, so the key extractor is told where to find it.
    let by_ip = KeyExtractor::ip_from_extension(|ConnectInfo(addr): &ConnectInfo<SocketAddr>| addr.ip());
    let per_ip = RateLimitLayer::new(limits.per_ip, by_ip).policy_name("per-ip")?.headers(HeaderSet::Both);
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
