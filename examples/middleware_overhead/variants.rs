//! The servers `examples/middleware_overhead.rs` puts wrk against, shared
//! with the `middleware` criterion bench so that both measure the same
//! routers.
//!
//! Each variant is an axum router serving `GET /` → `hello` with one layer
//! (or none) as a `route_layer`, keyed per client IP (axum's `ConnectInfo`)
//! where a limiter is involved:
//!
//! - `bare`: no layer.
//! - `static`, `static-ietf`, `static-x`: no limiter; a `MapResponse` layer
//!   adds tollgate's headers (all five, the two IETF ones, the three
//!   `X-RateLimit-*` ones) as static values, byte for byte what tollgate
//!   writes here in the steady state: the floor for the same bytes.
//! - `tollgate`, `tollgate-ietf`, `tollgate-x`: `RateLimitLayer` on an
//!   in-memory token bucket that admits everything, writing those headers.
//! - `tollgate-denied`: the same layer allowing one request an hour: after
//!   the first, every request is answered 429.
//! - `tollgate-composite`: a composite of a per-second token bucket and a
//!   per-day window, both admitting everything, all five headers (two
//!   items in each IETF field).
//! - `governor`, `governor-headers`, `governor-denied`: tower_governor 0.8
//!   (governor's GCRA keyed on the peer IP) without and with its
//!   `use_headers()` pair, and denying everything after the first request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use governor::middleware::NoOpMiddleware;
use tollgate::middleware::{HeaderSet, KeyExtractor, RateLimitLayer};
use tollgate::{Composite, FixedWindow, InMemory, Rate, TokenBucket};
use tower::Service;
use tower::util::MapResponseLayer;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;

/// Every variant, in the order of the report.
pub const VARIANTS: [&str; 12] = [
    "bare",
    "static",
    "tollgate",
    "static-ietf",
    "tollgate-ietf",
    "static-x",
    "tollgate-x",
    "tollgate-composite",
    "governor",
    "governor-headers",
    "tollgate-denied",
    "governor-denied",
];

/// The allowance of the admitting variants: a million a second per IP, far
/// more than one client sends, so every request is admitted, `remaining`
/// stays at 999 999 and `t` at 1.
const ALLOWED: u32 = 1_000_000;

/// The IETF pair as tollgate writes it here (a bucket of a million, a
/// one-second window advertised, one request taken from a full bucket).
const POLICY: (&str, &str) = ("ratelimit-policy", r#""per-ip";q=1000000;w=1"#);
const RATELIMIT: (&str, &str) = ("ratelimit", r#""per-ip";r=999999;t=1"#);
/// The `X-RateLimit-*` trio, likewise.
const LIMIT: (&str, &str) = ("x-ratelimit-limit", "1000000");
const REMAINING: (&str, &str) = ("x-ratelimit-remaining", "999999");
const RESET: (&str, &str) = ("x-ratelimit-reset", "1");

type Field = (HeaderName, HeaderValue);

/// Built at compile time, so that adding one to a response costs what a
/// static header costs: a hash, an insert and two pointer copies.
const fn field((name, value): (&'static str, &'static str)) -> Field {
    (HeaderName::from_static(name), HeaderValue::from_static(value))
}

static ALL: [Field; 5] = [field(POLICY), field(RATELIMIT), field(LIMIT), field(REMAINING), field(RESET)];
static IETF: [Field; 2] = [field(POLICY), field(RATELIMIT)];
static X: [Field; 3] = [field(LIMIT), field(REMAINING), field(RESET)];

/// The router of `variant`, one of [`VARIANTS`].
pub fn router(variant: &str) -> Result<Router, Box<dyn std::error::Error>> {
    let hello = Router::new().route("/", get(|| async { "hello" }));
    let router = match variant {
        "bare" => hello,
        "static" => hello.route_layer(static_fields(&ALL)),
        "static-ietf" => hello.route_layer(static_fields(&IETF)),
        "static-x" => hello.route_layer(static_fields(&X)),
        "tollgate" => hello.route_layer(tollgate(ALLOWED.into(), HeaderSet::Both)?),
        "tollgate-ietf" => hello.route_layer(tollgate(ALLOWED.into(), HeaderSet::Ietf)?),
        "tollgate-x" => hello.route_layer(tollgate(ALLOWED.into(), HeaderSet::XRateLimit)?),
        "tollgate-denied" => hello.route_layer(tollgate(1, HeaderSet::Both)?),
        "tollgate-composite" => hello.route_layer(composite()?),
        "governor" => {
            hello.route_layer(GovernorLayer::new(governor_config(ALLOWED).finish().ok_or("governor config")?))
        }
        "governor-headers" => hello
            .route_layer(GovernorLayer::new(governor_config(ALLOWED).use_headers().finish().ok_or("governor config")?)),
        "governor-denied" => {
            hello.route_layer(GovernorLayer::new(governor_config(1).finish().ok_or("governor config")?))
        }
        other => return Err(format!("unknown variant {other:?}; one of {VARIANTS:?}").into()),
    };
    Ok(router)
}

/// Adds `fields` to every response, as static values.
fn static_fields(fields: &'static [Field]) -> MapResponseLayer<impl Fn(Response) -> Response + Clone> {
    MapResponseLayer::new(move |mut response: Response| {
        for (name, value) in fields {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    })
}

/// tower_governor keyed per client IP (its default): a burst of `burst`
/// refilled in a second, or for a `burst` of 1 in an hour (so it denies
/// every request after the first).
fn governor_config(burst: u32) -> GovernorConfigBuilder<PeerIpKeyExtractor, NoOpMiddleware> {
    let mut builder = GovernorConfigBuilder::default();
    let per_request = if burst == 1 { Duration::from_secs(3600) } else { Duration::from_secs(1) / burst };
    builder.period(per_request).burst_size(burst);
    builder
}

/// tollgate keyed per client IP through axum's `ConnectInfo`: a token bucket
/// of `capacity` that refills in a second, or for `capacity` 1 in an hour (so
/// it denies every request after the first).
fn tollgate(capacity: u64, headers: HeaderSet) -> tollgate::Result<RateLimitLayer> {
    let (rate, window) = if capacity == 1 {
        (Rate::per_hour(1), Duration::from_secs(3600))
    } else {
        (Rate::per_second(capacity), Duration::from_secs(1))
    };
    let limiter = Arc::new(InMemory::new(TokenBucket::new(capacity, rate)?));
    Ok(RateLimitLayer::new(limiter, by_ip()).policy_name("per-ip")?.window(window).headers(headers))
}

/// tollgate keyed per client IP on a composite of a per-second token
/// bucket of a million and a per-day window of a billion: both items in the
/// IETF pair, the binding one in the `X-` trio, all five headers.
fn composite() -> tollgate::Result<RateLimitLayer> {
    let limits = Composite::new("per-second", TokenBucket::new(ALLOWED.into(), Rate::per_second(ALLOWED.into()))?)?
        .with("per-day", FixedWindow::new(Rate::per_day(1_000_000_000))?)?;
    Ok(RateLimitLayer::new(Arc::new(InMemory::new(limits)), by_ip()).headers(HeaderSet::Both))
}

/// The client's IP, through axum's `ConnectInfo`.
fn by_ip() -> KeyExtractor {
    KeyExtractor::ip_from_extension(|ConnectInfo(addr): &ConnectInfo<SocketAddr>| addr.ip())
}

/// One `GET /` from `client` through `router`, in process: called, polled
/// once with a no-op waker (an in-memory check and the hello handler never
/// wait), the response dropped; its status.
pub fn request(router: &mut Router, client: SocketAddr) -> StatusCode {
    let request = Request::builder().uri("/").extension(ConnectInfo(client)).body(Body::empty()).unwrap();
    let future = pin!(router.call(request));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(response)) => std::hint::black_box(response).status(),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => unreachable!("an in-memory check and the hello handler never wait"),
    }
}
