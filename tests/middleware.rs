//! The tower middleware: every header with exact values, the leaky bucket's
//! hold, what it logs, and the axum example driven over real HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Bytes, HttpBody};
use http::header::{CONTENT_TYPE, HeaderName, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tollgate::middleware::{HeaderSet, KeyExtractor, MissingKey, RateLimit, RateLimitLayer};
use tollgate::{
    Composite, Decision, Error, FixedWindow, InMemory, LeakyBucket, ManualClock, Plans, Rate, RateLimiter, SlidingLog,
    TokenBucket,
};
use tower::{Layer, Service, ServiceExt};
use tracing::Level;

use crate::support::logs::Capture;

#[path = "../examples/axum_server/app.rs"]
mod axum_app;

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// An inner service that counts its calls and notes when each happened.
#[derive(Clone, Default)]
struct Inner {
    calls: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl Inner {
    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Service<Request<()>> for Inner {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        self.calls.lock().unwrap().push(tokio::time::Instant::now());
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

/// A fixed window of 3 per 10 s on a manual clock at 1.5 s: the window ends
/// in 8.5 s, which every header rounds up to 9.
fn three_per_ten_seconds() -> Arc<InMemory<FixedWindow, ManualClock>> {
    let window = FixedWindow::new(Rate::new(3, Duration::from_secs(10))).unwrap();
    Arc::new(InMemory::with_clock(window, ManualClock::starting_at(Duration::from_millis(1500))))
}

fn request() -> Request<()> {
    Request::new(())
}

fn with_api_key(key: &str) -> Request<()> {
    Request::builder().header(API_KEY, key).body(()).unwrap()
}

fn from_peer(addr: &str) -> Request<()> {
    let mut request = request();
    request.extensions_mut().insert(addr.parse::<SocketAddr>().unwrap());
    request
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

fn all<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers.get_all(name).iter().map(|value| value.to_str().unwrap()).collect()
}

async fn send<S, B>(service: &mut S, request: Request<()>) -> (StatusCode, HeaderMap, String)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
    B: HttpBody<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The service's allowance for `key` right now, without taking any.
async fn remaining(limiter: &dyn RateLimiter, key: &str) -> u64 {
    limiter.check_n(key, 0).await.unwrap().remaining()
}

#[tokio::test]
async fn an_allowed_response_carries_every_rate_limit_header_with_exact_values() {
    let layer = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all"))
        .policy_name("api")
        .unwrap()
        .window(Duration::from_secs(10))
        .headers(HeaderSet::Both);
    let mut service = layer.layer(Inner::default());

    let (status, headers, body) = send(&mut service, request()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(all(&headers, "ratelimit-policy"), [r#""api";q=3;w=10"#]);
    assert_eq!(all(&headers, "ratelimit"), [r#""api";r=2;t=9"#]);
    assert_eq!(header(&headers, "x-ratelimit-limit"), "3");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "2");
    assert_eq!(header(&headers, "x-ratelimit-reset"), "9");
    assert!(headers.get(RETRY_AFTER).is_none());
}

#[tokio::test]
async fn a_denied_request_gets_429_with_retry_after_every_header_and_a_json_body() {
    let inner = Inner::default();
    let layer = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all"))
        .policy_name("api")
        .unwrap()
        .window(Duration::from_secs(10))
        .headers(HeaderSet::Both);
    let mut service = layer.layer(inner.clone());
    for _ in 0..3 {
        assert_eq!(send(&mut service, request()).await.0, StatusCode::OK);
    }

    let (status, headers, body) = send(&mut service, request()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(inner.calls(), 3, "a denied request never reaches the inner service");
    assert_eq!(header(&headers, "retry-after"), "9");
    assert_eq!(all(&headers, "ratelimit-policy"), [r#""api";q=3;w=10"#]);
    assert_eq!(all(&headers, "ratelimit"), [r#""api";r=0;t=9"#]);
    assert_eq!(header(&headers, "x-ratelimit-limit"), "3");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&headers, "x-ratelimit-reset"), "9");
    assert_eq!(header(&headers, "content-type"), "application/problem+json");
    assert_eq!(
        body,
        concat!(
            r#"{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","#,
            r#""title":"Too Many Requests","status":429,"violated-policies":["api"],"#,
            r#""limit":3,"remaining":0,"reset":9,"retry_after":9}"#
        )
    );
}

#[tokio::test]
async fn retry_after_and_reset_round_up_to_whole_seconds_and_retry_after_is_never_zero() {
    // One token per 2.5 s.
    let clock = ManualClock::new();
    let bucket = TokenBucket::new(1, Rate::new(1, Duration::from_millis(2500))).unwrap();
    let limiter = Arc::new(InMemory::with_clock(bucket, clock.clone()));
    let mut service =
        RateLimitLayer::new(limiter, KeyExtractor::global("all")).headers(HeaderSet::Both).layer(Inner::default());

    let (_, allowed, _) = send(&mut service, request()).await;
    assert_eq!(header(&allowed, "x-ratelimit-reset"), "3");
    let (status, denied, _) = send(&mut service, request()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after"), "3");

    // One microsecond before the token is back.
    clock.advance(Duration::from_millis(2500) - Duration::from_micros(1));
    let (status, denied, _) = send(&mut service, request()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after"), "1");
    assert_eq!(header(&denied, "x-ratelimit-reset"), "1");
    assert_eq!(all(&denied, "ratelimit"), [r#""default";r=0;t=1"#]);

    clock.advance(Duration::from_micros(1));
    assert_eq!(send(&mut service, request()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn by_default_both_sets_are_written_and_each_set_writes_exactly_its_own() {
    let names = |headers: &HeaderMap| {
        let mut names: Vec<_> = headers.keys().map(|name| name.as_str().to_owned()).collect();
        names.sort();
        names
    };
    let layer = || RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all"));
    let ietf = ["ratelimit", "ratelimit-policy"];
    let x = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"];
    let both = [&ietf[..], &x[..]].concat();
    for (layer, expected) in [
        (layer(), &both[..]),
        (layer().headers(HeaderSet::Ietf), &ietf[..]),
        (layer().headers(HeaderSet::XRateLimit), &x[..]),
        (layer().headers(HeaderSet::Both), &[&ietf[..], &x[..]].concat()[..]),
    ] {
        let mut service = layer.layer(Inner::default());
        let (_, allowed, _) = send(&mut service, request()).await;
        assert_eq!(names(&allowed), expected);
        for _ in 0..2 {
            send(&mut service, request()).await;
        }
        let (status, denied, _) = send(&mut service, request()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let mut with_429s_own = [expected, &["content-type", "retry-after"]].concat();
        with_429s_own.sort();
        assert_eq!(names(&denied), with_429s_own);
    }
}

#[tokio::test]
async fn without_a_window_or_a_name_the_policy_is_default_and_advertises_the_limits_own_window() {
    let mut service = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all")).layer(Inner::default());
    let (_, headers, _) = send(&mut service, request()).await;
    assert_eq!(all(&headers, "ratelimit-policy"), [r#""default";q=3;w=10"#]);
    assert_eq!(all(&headers, "ratelimit"), [r#""default";r=2;t=9"#]);
}

#[tokio::test]
async fn a_limiter_that_does_not_report_its_window_advertises_none() {
    let mut service = RateLimitLayer::new(Arc::new(AlwaysTwoLeft), KeyExtractor::global("all")).layer(Inner::default());
    let (_, headers, _) = send(&mut service, request()).await;
    assert_eq!(all(&headers, "ratelimit-policy"), [r#""default";q=3"#]);
    assert_eq!(all(&headers, "ratelimit"), [r#""default";r=2;t=5"#]);
}

/// A limiter of its own that knows only `check_n`, as a user's might.
#[derive(Debug)]
struct AlwaysTwoLeft;

#[async_trait]
impl RateLimiter for AlwaysTwoLeft {
    async fn check_n(&self, _: &str, _: u64) -> tollgate::Result<Decision> {
        Decision::allow(3, 2, Duration::from_secs(5), Duration::ZERO)
    }

    async fn reset(&self, _: &str) -> tollgate::Result<()> {
        Ok(())
    }
}

#[test]
fn a_policy_name_that_would_break_the_headers_is_a_configuration_error() {
    let layer = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all"));
    assert!(matches!(layer.clone().policy_name("a\"b"), Err(Error::InvalidConfig(_))));
    assert!(matches!(layer.policy_name(""), Err(Error::InvalidConfig(_))));
}

#[tokio::test]
async fn each_api_key_has_its_own_allowance() {
    let limiter = three_per_ten_seconds();
    let mut service = RateLimitLayer::new(limiter.clone(), KeyExtractor::header(API_KEY)).layer(Inner::default());
    for _ in 0..3 {
        assert_eq!(send(&mut service, with_api_key("alice")).await.0, StatusCode::OK);
    }
    assert_eq!(send(&mut service, with_api_key("alice")).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(send(&mut service, with_api_key("bob")).await.0, StatusCode::OK);
    assert_eq!(remaining(&*limiter, "bob").await, 2);
}

#[tokio::test]
async fn a_request_without_a_key_is_rejected_with_400_by_default_and_takes_nothing() {
    let inner = Inner::default();
    let limiter = three_per_ten_seconds();
    let mut service = RateLimitLayer::new(limiter.clone(), KeyExtractor::header(API_KEY)).layer(inner.clone());

    for request in [request(), with_api_key("")] {
        let (status, headers, body) = send(&mut service, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(header(&headers, "content-type"), "application/problem+json");
        assert!(body.contains(r#""status":400"#), "{body}");
        assert!(headers.get("ratelimit").is_none());
    }
    assert_eq!(inner.calls(), 0);
    assert!(limiter.is_empty(), "no key was charged");
}

#[tokio::test]
async fn a_request_without_a_key_can_fall_back_to_one_shared_key() {
    let limiter = three_per_ten_seconds();
    let layer = RateLimitLayer::new(limiter.clone(), KeyExtractor::header(API_KEY))
        .on_missing_key(MissingKey::Fallback("anonymous".into()));
    let mut service = layer.layer(Inner::default());
    assert_eq!(send(&mut service, request()).await.0, StatusCode::OK);
    assert_eq!(send(&mut service, request()).await.0, StatusCode::OK);
    assert_eq!(send(&mut service, with_api_key("alice")).await.0, StatusCode::OK);
    assert_eq!(remaining(&*limiter, "anonymous").await, 1);
    assert_eq!(remaining(&*limiter, "alice").await, 2);
}

#[tokio::test]
async fn peer_ip_keys_on_the_address_not_the_port() {
    let limiter = three_per_ten_seconds();
    let mut service = RateLimitLayer::new(limiter.clone(), KeyExtractor::peer_ip()).layer(Inner::default());
    for peer in ["10.0.0.1:5000", "[::ffff:10.0.0.1]:5001", "[2001:db8::1]:443"] {
        assert_eq!(send(&mut service, from_peer(peer)).await.0, StatusCode::OK);
    }
    assert_eq!(remaining(&*limiter, "10.0.0.1").await, 1, "one allowance over IPv4 and IPv4-mapped IPv6");
    assert_eq!(remaining(&*limiter, "2001:db8::1").await, 2);
    assert_eq!(send(&mut service, request()).await.0, StatusCode::BAD_REQUEST, "no address, no key");
}

#[tokio::test]
async fn an_ip_function_keys_as_peer_ip_does() {
    let limiter = three_per_ten_seconds();
    let from_forwarded = KeyExtractor::ip_from_fn(|parts| parts.headers.get("x-real-ip")?.to_str().ok()?.parse().ok());
    let mut service = RateLimitLayer::new(limiter.clone(), from_forwarded).layer(Inner::default());
    let from = |ip: &str| Request::builder().header("x-real-ip", ip).body(()).unwrap();
    for ip in ["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"] {
        assert_eq!(send(&mut service, from(ip)).await.0, StatusCode::OK);
    }
    assert_eq!(remaining(&*limiter, "10.0.0.1").await, 1, "one allowance over IPv4 and IPv4-mapped IPv6");
    assert_eq!(remaining(&*limiter, "2001:db8::1").await, 2);
    assert_eq!(send(&mut service, request()).await.0, StatusCode::BAD_REQUEST, "no address, no key");
}

#[tokio::test]
async fn an_ip_from_an_extension_keys_as_peer_ip_does_and_plans_still_see_the_head() {
    use axum::extract::ConnectInfo;
    let limiter = three_per_ten_seconds();
    let by_connect_info = || KeyExtractor::ip_from_extension(|ConnectInfo(addr): &ConnectInfo<SocketAddr>| addr.ip());
    let mut service = RateLimitLayer::new(limiter.clone(), by_connect_info()).layer(Inner::default());
    let from =
        |peer: &str| Request::builder().extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap())).body(()).unwrap();
    for peer in ["10.0.0.1:5000", "[::ffff:10.0.0.1]:5001", "[2001:db8::1]:443"] {
        assert_eq!(send(&mut service, from(peer)).await.0, StatusCode::OK);
    }
    assert_eq!(remaining(&*limiter, "10.0.0.1").await, 1, "one allowance over IPv4 and IPv4-mapped IPv6");
    assert_eq!(remaining(&*limiter, "2001:db8::1").await, 2);
    assert_eq!(send(&mut service, request()).await.0, StatusCode::BAD_REQUEST, "no extension, no key");
    assert_eq!(
        send(&mut service, from_peer("10.0.0.1:5000")).await.0,
        StatusCode::BAD_REQUEST,
        "a bare SocketAddr is not it"
    );

    // With a plan extractor the head is moved out for it; the key is the same.
    let plans = Arc::new(InMemory::new(
        Plans::new("free", TokenBucket::new(3, Rate::per_second(1)).unwrap())
            .unwrap()
            .plan("pro", TokenBucket::new(5, Rate::per_second(1)).unwrap())
            .unwrap(),
    ));
    let mut service = RateLimitLayer::new(plans.clone(), by_connect_info())
        .plan_from_fn(|parts| parts.headers.contains_key("x-pro").then_some("pro"))
        .layer(Inner::default());
    let mut pro = from("10.0.0.2:5000");
    pro.headers_mut().insert("x-pro", http::HeaderValue::from_static("1"));
    assert_eq!(send(&mut service, pro).await.0, StatusCode::OK);
    assert_eq!(plans.check_detailed_sync("10.0.0.2", 0, Some("pro")).unwrap().decision().remaining(), 4);
}

#[tokio::test]
async fn a_key_function_sees_the_request_head() {
    let limiter = three_per_ten_seconds();
    let by_tenant =
        KeyExtractor::from_fn(|parts| parts.uri.path().strip_prefix("/tenants/")?.split('/').next().map(str::to_owned));
    let mut service = RateLimitLayer::new(limiter.clone(), by_tenant).layer(Inner::default());
    let to = |path: &str| Request::builder().uri(path).body(()).unwrap();
    assert_eq!(send(&mut service, to("/tenants/acme/orders")).await.0, StatusCode::OK);
    assert_eq!(send(&mut service, to("/tenants/acme/users")).await.0, StatusCode::OK);
    assert_eq!(send(&mut service, to("/health")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(remaining(&*limiter, "acme").await, 1);
}

#[tokio::test]
async fn every_clone_of_the_service_draws_on_one_limiter() {
    let layer = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all"));
    let mut first = layer.layer(Inner::default());
    let mut second = first.clone();
    let mut third = layer.layer(Inner::default());
    assert_eq!(send(&mut first, request()).await.0, StatusCode::OK);
    assert_eq!(send(&mut second, request()).await.0, StatusCode::OK);
    assert_eq!(send(&mut third, request()).await.0, StatusCode::OK);
    for service in [&mut first, &mut second, &mut third] {
        assert_eq!(send(service, request()).await.0, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn poll_ready_takes_nothing_from_the_limiter() {
    let limiter = three_per_ten_seconds();
    let mut service = RateLimitLayer::new(limiter.clone(), KeyExtractor::global("all")).layer(Inner::default());
    for _ in 0..10 {
        service.ready().await.unwrap();
    }
    assert_eq!(remaining(&*limiter, "all").await, 3);
    assert!(limiter.is_empty());
}

/// A backend that always fails, as Redis does when it is down and its
/// failure policy is to report the error.
#[derive(Debug)]
struct Unreachable;

#[async_trait]
impl RateLimiter for Unreachable {
    async fn check_n(&self, _: &str, _: u64) -> tollgate::Result<Decision> {
        Err(Error::Timeout(Duration::from_millis(50)))
    }

    async fn reset(&self, _: &str) -> tollgate::Result<()> {
        Err(Error::Timeout(Duration::from_millis(50)))
    }
}

#[tokio::test]
async fn a_limiter_error_is_answered_503_with_the_error_for_logging_layers() {
    let inner = Inner::default();
    let mut service = RateLimitLayer::new(Arc::new(Unreachable), KeyExtractor::global("all")).layer(inner.clone());
    let response = service.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    let error = response.extensions().get::<Arc<Error>>().expect("the limiter's error");
    assert!(matches!(**error, Error::Timeout(_)));
    assert_eq!(inner.calls(), 0);
}

/// A backend that never answers.
#[derive(Debug)]
struct Silent;

#[async_trait]
impl RateLimiter for Silent {
    async fn check_n(&self, _: &str, _: u64) -> tollgate::Result<Decision> {
        std::future::pending().await
    }

    async fn reset(&self, _: &str) -> tollgate::Result<()> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_limiter_that_never_answers_is_cut_short_by_the_check_timeout_with_503() {
    let inner = Inner::default();
    let layer =
        RateLimitLayer::new(Arc::new(Silent), KeyExtractor::global("all")).check_timeout(Duration::from_millis(250));
    let mut service = layer.layer(inner.clone());
    let start = tokio::time::Instant::now();
    let response = service.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error = response.extensions().get::<Arc<Error>>().expect("the timeout error");
    assert!(matches!(**error, Error::Timeout(limit) if limit == Duration::from_millis(250)));
    assert_eq!(inner.calls(), 0);
}

#[tokio::test]
async fn with_nested_layers_every_policy_is_listed_and_x_headers_show_the_tightest() {
    let global = Arc::new(InMemory::new(FixedWindow::new(Rate::per_hour(100)).unwrap()));
    let per_key = three_per_ten_seconds();
    let service = RateLimitLayer::new(global, KeyExtractor::global("all"))
        .policy_name("global")
        .unwrap()
        .headers(HeaderSet::Both)
        .layer(Inner::default());
    let mut service = RateLimitLayer::new(per_key, KeyExtractor::header(API_KEY))
        .policy_name("per-key")
        .unwrap()
        .headers(HeaderSet::Both)
        .layer(service);

    let (status, headers, _) = send(&mut service, with_api_key("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all(&headers, "ratelimit-policy"), [r#""global";q=100;w=3600"#, r#""per-key";q=3;w=10"#]);
    let ratelimit = all(&headers, "ratelimit");
    assert!(ratelimit[0].starts_with(r#""global";r=99;t="#), "{ratelimit:?}");
    assert_eq!(ratelimit[1], r#""per-key";r=2;t=9"#);
    assert_eq!(header(&headers, "x-ratelimit-limit"), "3");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "2");
    assert_eq!(header(&headers, "x-ratelimit-reset"), "9");
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
fn x_trio(headers: &HeaderMap) -> [&str; 3] {
    ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"].map(|name| header(headers, name))
}

/// A 429 with this `Retry-After`, `RateLimit`, `X-` trio, and a body that
/// names the `violated` policy and the trio's numbers.
fn assert_denied(
    (status, headers, body): (StatusCode, HeaderMap, String),
    retry_after: &str,
    ratelimit: &str,
    [limit, remaining, reset]: [&str; 3],
    violated: &str,
) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "retry-after"), retry_after);
    assert_eq!(all(&headers, "ratelimit"), [ratelimit]);
    assert_eq!(x_trio(&headers), [limit, remaining, reset]);
    let numbers = format!(r#""limit":{limit},"remaining":{remaining},"reset":{reset},"retry_after":{retry_after}}}"#);
    assert!(body.ends_with(&format!(r#""violated-policies":["{violated}"],{numbers}"#)), "{body}");
}

/// 3 a second and 5 a minute, fixed windows, on a manual clock at 1.5 s:
/// the second ends in 0.5 s, the minute in 58.5 s.
fn three_a_second_and_five_a_minute() -> Arc<InMemory<Composite, ManualClock>> {
    let composite = Composite::new("per-second", FixedWindow::new(Rate::per_second(3)).unwrap())
        .unwrap()
        .with("per-minute", FixedWindow::new(Rate::per_minute(5)).unwrap())
        .unwrap();
    Arc::new(InMemory::with_clock(composite, ManualClock::starting_at(Duration::from_millis(1500))))
}

#[tokio::test]
async fn a_composite_reports_each_limit_and_retry_after_follows_the_binding_one() {
    let limiter = three_a_second_and_five_a_minute();
    let inner = Inner::default();
    let mut service = RateLimitLayer::new(limiter.clone(), KeyExtractor::header(API_KEY))
        .headers(HeaderSet::Both)
        .layer(inner.clone());
    let policy = [r#""per-second";q=3;w=1, "per-minute";q=5;w=60"#];

    for (second, minute) in [(2, 4), (1, 3), (0, 2)] {
        let (status, headers, _) = send(&mut service, with_api_key("alice")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(all(&headers, "ratelimit-policy"), policy);
        assert_eq!(
            all(&headers, "ratelimit"),
            [format!(r#""per-second";r={second};t=1, "per-minute";r={minute};t=59"#)]
        );
        // The binding limit is the one with the fewest left.
        assert_eq!(header(&headers, "x-ratelimit-remaining"), second.to_string());
    }

    // The second's limit denies: it binds, and the minute's loses nothing.
    let denial = send(&mut service, with_api_key("alice")).await;
    assert_denied(denial, "1", r#""per-second";r=0;t=1, "per-minute";r=2;t=59"#, ["3", "0", "1"], "per-second");

    // A new second: two more, then the minute's limit denies, and binds.
    limiter.clock().advance(Duration::from_millis(500));
    for _ in 0..2 {
        assert_eq!(send(&mut service, with_api_key("alice")).await.0, StatusCode::OK);
    }
    let denial = send(&mut service, with_api_key("alice")).await;
    assert_denied(denial, "58", r#""per-second";r=1;t=1, "per-minute";r=0;t=58"#, ["5", "0", "58"], "per-minute");
    assert_eq!(inner.calls(), 5);
}

/// "free": 2 per 10 s; "pro": 5 per 10 s; both fixed windows.
fn free_and_pro() -> Arc<InMemory<Plans, ManualClock>> {
    let per_ten_seconds = |amount| FixedWindow::new(Rate::new(amount, Duration::from_secs(10))).unwrap();
    let plans = Plans::new("free", per_ten_seconds(2)).unwrap().plan("pro", per_ten_seconds(5)).unwrap();
    Arc::new(InMemory::with_clock(plans, ManualClock::starting_at(Duration::from_millis(1500))))
}

/// Keys that start with `pro_` are on "pro"; others name no plan.
fn plan_by_key_prefix(parts: &http::request::Parts) -> Option<&'static str> {
    let key = parts.headers.get(API_KEY)?.to_str().ok()?;
    key.starts_with("pro_").then_some("pro")
}

#[tokio::test]
async fn the_plan_extractor_picks_each_requests_plan_and_names_its_policy() {
    let mut service = RateLimitLayer::new(free_and_pro(), KeyExtractor::header(API_KEY))
        .plan_from_fn(plan_by_key_prefix)
        .policy_name_from_plan()
        .layer(Inner::default());

    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, headers, _) = send(&mut service, with_api_key("pro_alice")).await;
        assert_eq!(all(&headers, "ratelimit-policy"), [r#""pro";q=5;w=10"#]);
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);

    // No plan named: the limiter's default, "free".
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, headers, _) = send(&mut service, with_api_key("bob")).await;
        assert_eq!(all(&headers, "ratelimit-policy"), [r#""free";q=2;w=10"#]);
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn without_naming_by_plan_a_plans_policy_has_the_layers_name() {
    let mut service = RateLimitLayer::new(free_and_pro(), KeyExtractor::header(API_KEY))
        .plan_from_fn(plan_by_key_prefix)
        .policy_name("api")
        .unwrap()
        .layer(Inner::default());
    let (_, headers, _) = send(&mut service, with_api_key("pro_alice")).await;
    assert_eq!(all(&headers, "ratelimit-policy"), [r#""api";q=5;w=10"#]);
    assert_eq!(all(&headers, "ratelimit"), [r#""api";r=4;t=9"#]);
}

#[tokio::test]
async fn a_plan_the_limiter_does_not_have_is_answered_500_and_warned_about_once() {
    let logs = Capture::default();
    let _capturing = logs.install();
    let inner = Inner::default();
    let mut service = RateLimitLayer::new(free_and_pro(), KeyExtractor::header(API_KEY))
        .plan_from_fn(|_| Some("gold"))
        .layer(inner.clone());
    for _ in 0..3 {
        let response = service.ready().await.unwrap().call(with_api_key("alice")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        let error = response.extensions().get::<Arc<Error>>().expect("the limiter's error");
        assert!(matches!(&**error, Error::UnknownPlan { plan } if plan == "gold"), "{error:?}");
    }
    assert_eq!(inner.calls(), 0);
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("500 Internal Server Error"), "{warnings:?}");
    assert_eq!(warnings[0].field("error"), Some(r#"this limiter has no plan named "gold""#));
}

/// A Redis backend whose circuit breaker is open, probing again in 2.2 s.
#[derive(Debug)]
struct BreakerOpen;

#[async_trait]
impl RateLimiter for BreakerOpen {
    async fn check_n(&self, _: &str, _: u64) -> tollgate::Result<Decision> {
        Err(Error::Unavailable { backend: "redis", retry_in: Duration::from_millis(2200) })
    }

    async fn reset(&self, _: &str) -> tollgate::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_open_breaker_is_answered_503_with_retry_after_its_next_probe() {
    let mut service = RateLimitLayer::new(Arc::new(BreakerOpen), KeyExtractor::global("all")).layer(Inner::default());
    let (status, headers, _) = send(&mut service, request()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&headers, "retry-after"), "3");
}

/// A leaky bucket of 5 waiting at 10 per second: a slot every 100 ms.
fn leaky() -> Arc<InMemory<LeakyBucket, ManualClock>> {
    let bucket = LeakyBucket::new(5, Rate::per_second(10)).unwrap();
    Arc::new(InMemory::with_clock(bucket, ManualClock::starting_at(Duration::from_secs(1))))
}

#[tokio::test(start_paused = true)]
async fn a_leaky_bucket_holds_each_request_for_its_wait_before_the_inner_service() {
    let inner = Inner::default();
    let mut service =
        RateLimitLayer::new(leaky(), KeyExtractor::global("all")).headers(HeaderSet::Both).layer(inner.clone());
    let start = tokio::time::Instant::now();

    let (status, first, _) = send(&mut service, request()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&first, "x-ratelimit-remaining"), "5");
    let (status, second, _) = send(&mut service, request()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&second, "x-ratelimit-limit"), "6");
    assert_eq!(header(&second, "x-ratelimit-remaining"), "4");
    assert_eq!(all(&second, "ratelimit"), [r#""default";r=4;t=1"#]);

    let calls = inner.calls.lock().unwrap().clone();
    assert_eq!(calls[0] - start, Duration::ZERO);
    assert_eq!(calls[1] - start, Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_while_held_costs_nothing_more() {
    let inner = Inner::default();
    let limiter = leaky();
    let mut service = RateLimitLayer::new(limiter.clone(), KeyExtractor::global("all")).layer(inner.clone());
    assert_eq!(send(&mut service, request()).await.0, StatusCode::OK);

    let held = tokio::spawn(service.ready().await.unwrap().call(request()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(inner.calls(), 1, "the abandoned request never reached the inner service");
    // Two slots taken (the limiter's clock did not move): the abandoned
    // request kept its own slot and nothing else.
    assert_eq!(remaining(&*limiter, "all").await, 4);
}

#[test]
fn the_layer_fits_axum_routers_layer_and_route_layer() {
    let layer = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all"));
    let _: axum::Router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .route_layer(layer.clone())
        .layer(layer);
}

#[tokio::test]
async fn with_route_layer_an_unknown_path_is_404_and_costs_nothing_where_layer_would_limit_it() {
    let limiter = three_per_ten_seconds();
    let layer = RateLimitLayer::new(limiter.clone(), KeyExtractor::header(API_KEY));
    let hello = || axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let get = |path: &str, key: Option<&str>| {
        let request = Request::builder().uri(path);
        let request = match key {
            Some(key) => request.header(API_KEY, key),
            None => request,
        };
        request.body(axum::body::Body::empty()).unwrap()
    };

    let route_layered = hello().route_layer(layer.clone());
    assert_eq!(route_layered.clone().oneshot(get("/nope", None)).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(
        route_layered.clone().oneshot(get("/nope", Some("alice"))).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert!(limiter.is_empty(), "an unknown path took nothing");
    assert_eq!(route_layered.oneshot(get("/hello", Some("alice"))).await.unwrap().status(), StatusCode::OK);
    assert_eq!(remaining(&*limiter, "alice").await, 2);

    let layered = hello().layer(layer);
    assert_eq!(layered.clone().oneshot(get("/nope", None)).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(layered.oneshot(get("/nope", Some("alice"))).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(remaining(&*limiter, "alice").await, 1, "with .layer, a 404 used up quota");
}

#[tokio::test(start_paused = true)]
async fn a_misconfigured_key_extractor_warns_once_with_the_cause_not_once_per_request() {
    let logs = Capture::default();
    let _capturing = logs.install();
    let mut service = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::peer_ip())
        .policy_name("per-ip")
        .unwrap()
        .layer(Inner::default());
    for _ in 0..100 {
        assert_eq!(send(&mut service, request()).await.0, StatusCode::BAD_REQUEST);
    }

    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = &warnings[0];
    assert_eq!(warning.target, "tollgate::middleware");
    assert_eq!(warning.field("policy"), Some("per-ip"));
    assert!(warning.message.contains("400"), "{warning:?}");
    let cause = warning.field("cause").unwrap();
    assert!(cause.contains("found no SocketAddr") && cause.contains("ip_from_fn"), "{cause}");
    assert_eq!(logs.at(Level::DEBUG).len(), 99, "the rest, at debug");

    // Still misconfigured a minute later: one more warning, counting the
    // ones held back since the first.
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..10 {
        send(&mut service, request()).await;
    }
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert_eq!(warnings[1].field("suppressed"), Some("99"));
}

#[tokio::test]
async fn each_key_extractor_names_its_own_likely_cause() {
    for (extractor, cause) in [
        (KeyExtractor::header(API_KEY), "no x-api-key header"),
        (KeyExtractor::ip_from_fn(|_| None), "into_make_service_with_connect_info::<SocketAddr>()"),
        (KeyExtractor::ip_from_extension(|addr: &SocketAddr| addr.ip()), "SocketAddr in the request's extensions"),
        (KeyExtractor::from_fn(|_| None), "returned None"),
    ] {
        let logs = Capture::default();
        let _capturing = logs.install();
        let mut service = RateLimitLayer::new(three_per_ten_seconds(), extractor).layer(Inner::default());
        for _ in 0..5 {
            assert_eq!(send(&mut service, request()).await.0, StatusCode::BAD_REQUEST);
        }
        let warnings = logs.at(Level::WARN);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(warnings[0].field("cause").unwrap().contains(cause), "{warnings:?}");
    }
}

/// A backend that fails while `down` is set, and otherwise admits everything.
#[derive(Debug, Default)]
struct Flaky {
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl RateLimiter for Flaky {
    async fn check_n(&self, key: &str, cost: u64) -> tollgate::Result<Decision> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::backend("flaky", "connection refused"));
        }
        let unlimited = InMemory::new(TokenBucket::new(1000, Rate::per_second(1000)).unwrap());
        unlimited.check_n(key, cost).await
    }

    async fn reset(&self, _: &str) -> tollgate::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_limiter_warns_once_with_its_error_and_says_when_it_answers_again() {
    let logs = Capture::default();
    let _capturing = logs.install();
    let flaky = Arc::new(Flaky::default());
    let mut service = RateLimitLayer::new(flaky.clone(), KeyExtractor::global("all")).layer(Inner::default());
    assert_eq!(send(&mut service, request()).await.0, StatusCode::OK);
    assert!(logs.at(Level::INFO).is_empty() && logs.at(Level::WARN).is_empty(), "an answer logs nothing");

    flaky.down.store(true, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..50 {
        assert_eq!(send(&mut service, request()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].field("error"), Some("flaky: connection refused"));
    assert!(warnings[0].message.contains("503"), "{warnings:?}");
    assert_eq!(logs.at(Level::DEBUG).len(), 49);

    flaky.down.store(false, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..10 {
        assert_eq!(send(&mut service, request()).await.0, StatusCode::OK);
    }
    let recovered = logs.at(Level::INFO);
    assert_eq!(recovered.len(), 1, "one event for the transition: {recovered:#?}");
    assert!(recovered[0].message.contains("answers again"), "{recovered:?}");
}

#[test]
fn the_layer_and_service_are_send_sync_clone_and_static() {
    fn bounds<T: Send + Sync + Clone + 'static>() {}
    bounds::<RateLimitLayer>();
    bounds::<RateLimit<Inner>>();
    bounds::<KeyExtractor>();
    fn future_is_send<F: Send>(_: &F) {}
    let mut service = RateLimitLayer::new(three_per_ten_seconds(), KeyExtractor::global("all")).layer(Inner::default());
    future_is_send(&service.call(request()));
}

/// One header value of the IETF draft: `"name";key=integer;...`.
fn parse_item(item: &str) -> (String, Vec<(String, u64)>) {
    let mut fields = item.split(';');
    let name = fields.next().unwrap();
    let name = name.strip_prefix('"').and_then(|name| name.strip_suffix('"')).expect("a quoted policy name");
    let params = fields
        .map(|param| {
            let (key, value) = param.split_once('=').expect("key=value");
            (key.to_owned(), value.parse().unwrap_or_else(|_| panic!("{item}: {value} is not an integer")))
        })
        .collect();
    (name.to_owned(), params)
}

/// Every item of a response's `RateLimit-Policy` (or `RateLimit`) fields,
/// each field line a list of items, in order.
fn items(headers: &http::HeaderMap, name: &str) -> Vec<(String, Vec<(String, u64)>)> {
    headers.get_all(name).iter().flat_map(|line| line.to_str().unwrap().split(", ").map(parse_item)).collect()
}

/// Every rate-limit header of a response parses; its policies are `expected`
/// (the client's own, checked first, are appended after the global one it
/// passed on to, if it did); each advertises its limit and window; and the
/// `X-` trio agrees with one of the `RateLimit` items.
fn check_headers(response: &reqwest::Response, expected: &[(&str, u64, u64)]) {
    let headers = response.headers();
    let number = |name: &str| -> u64 { headers[name].to_str().unwrap().parse().unwrap() };
    let policies = items(headers, "ratelimit-policy");
    let limits = items(headers, "ratelimit");
    let shown: Vec<_> = policies.iter().map(|(name, params)| (name.as_str(), params[0].1, params[1].1)).collect();
    assert_eq!(shown, expected, "name, q and w of each policy");
    for (_, params) in &policies {
        assert_eq!(params.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["q", "w"]);
    }
    assert_eq!(limits.iter().map(|l| &l.0).collect::<Vec<_>>(), policies.iter().map(|p| &p.0).collect::<Vec<_>>());
    for ((_, params), (_, policy)) in limits.iter().zip(&policies) {
        assert_eq!(params.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["r", "t"]);
        assert!(params[0].1 <= policy[0].1 && params[1].1 <= policy[1].1, "{params:?} within {policy:?}");
    }
    let (limit, remaining) = (number("x-ratelimit-limit"), number("x-ratelimit-remaining"));
    assert!(limits.iter().any(|(_, params)| params[0].1 == remaining), "x-ratelimit-remaining {remaining}");
    assert!(policies.iter().any(|(_, params)| params[0].1 == limit), "x-ratelimit-limit {limit}");
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        assert!(number("retry-after") >= 1);
        assert_eq!(remaining, 0);
    } else {
        assert!(headers.get(RETRY_AFTER).is_none());
    }
}

/// The RateLimit item named `name`: (remaining, seconds until full).
fn item(response: &reqwest::Response, name: &str) -> (u64, u64) {
    let (_, params) = items(response.headers(), "ratelimit").into_iter().find(|(item, _)| item == name).unwrap();
    (params[0].1, params[1].1)
}

const DAY: u64 = 86_400;

/// The example's limiters, in memory: global 1000 a second, "free" 3 a
/// second and 4 a day, "pro" 5 a second and 100 a day, 2 a second per IP.
fn example_limits() -> (axum_app::Limits, Arc<dyn RateLimiter>) {
    let per_second = |amount| -> Arc<dyn RateLimiter> {
        Arc::new(InMemory::new(SlidingLog::new(Rate::per_second(amount)).unwrap()))
    };
    let global = per_second(1000);
    let plans =
        axum_app::plans(axum_app::Quota { per_second: 3, per_day: 4 }, axum_app::Quota { per_second: 5, per_day: 100 })
            .unwrap();
    let limits = axum_app::Limits {
        global: Arc::clone(&global),
        per_key: Arc::new(InMemory::new(plans)),
        per_ip: per_second(2),
    };
    (limits, global)
}

#[tokio::test]
async fn the_axum_example_answers_exact_counts_of_200_and_429_over_http() {
    let (limits, global) = example_limits();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum_app::serve(listener, axum_app::app(limits).unwrap()));
    let client = reqwest::Client::new();
    let get = |path: &str, api_key: Option<&str>| {
        let request = client.get(format!("{base}{path}"));
        match api_key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
    };
    let free = [("free/per-second", 3, 1), ("free/per-day", 4, DAY)];
    let passed = |own: &[(&'static str, u64, u64)]| [&[("global", 1000, 1)], own].concat();

    // alice is on "free": 3 a second, then the second's limit binds.
    let mut statuses = Vec::new();
    let mut retry_after = 0;
    for _ in 0..5 {
        let response = get("/api/hello", Some("alice")).send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            check_headers(&response, &free);
            retry_after = response.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
            assert_eq!(item(&response, "free/per-day").0, 1, "the denials took nothing from the day");
        } else {
            check_headers(&response, &passed(&free));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(retry_after, 1);

    // A pro_ key is on "pro".
    let pro = [("pro/per-second", 5, 1), ("pro/per-day", 100, DAY)];
    for _ in 0..5 {
        let response = get("/api/hello", Some("pro_bob")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        check_headers(&response, &passed(&pro));
    }
    let bob = get("/api/hello", Some("pro_bob")).send().await.unwrap();
    assert_eq!(bob.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(item(&bob, "pro/per-day").0, 95);
    assert_eq!(get("/api/hello", None).send().await.unwrap().status(), StatusCode::BAD_REQUEST);

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = get("/public/hello", None).send().await.unwrap();
        let per_ip = [("per-ip", 2, 1)];
        check_headers(&response, &if response.status() == StatusCode::OK { passed(&per_ip) } else { per_ip.to_vec() });
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "per client IP, through axum's ConnectInfo");

    // Only what each client's own limit admitted reached the global one:
    // alice 3, bob 5, the public client 2 (all within the last second).
    assert_eq!(remaining(&*global, "all").await, 1000 - 10);

    // After Retry-After alice's second allows her fourth of the day, and
    // then the day's limit binds.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = get("/api/hello", Some("alice")).send().await.unwrap();
    check_headers(&again, &passed(&free));
    assert_eq!(again.status(), StatusCode::OK, "a request after Retry-After is admitted");
    assert_eq!(item(&again, "free/per-day").0, 0);
    let spent = get("/api/hello", Some("alice")).send().await.unwrap();
    assert_eq!(spent.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = spent.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    let (_, day_reset) = item(&spent, "free/per-day");
    assert_eq!(retry_after, day_reset, "Retry-After follows the day's limit");
    assert_eq!(spent.headers()["x-ratelimit-limit"], "4");
    assert!(spent.text().await.unwrap().contains(r#""violated-policies":["free/per-day"]"#));
    server.abort();
}

#[tokio::test]
async fn concurrent_requests_over_http_are_admitted_exactly_up_to_the_limit() {
    let per_minute = |amount| -> Arc<dyn RateLimiter> {
        Arc::new(InMemory::new(SlidingLog::new(Rate::per_minute(amount)).unwrap()))
    };
    // "free": a day's 10 bind, the second's 1000 do not.
    let quota = axum_app::Quota { per_second: 1000, per_day: 10 };
    let plans = Arc::new(InMemory::new(axum_app::plans(quota, quota).unwrap()));
    let limits = axum_app::Limits { global: per_minute(1000), per_key: plans, per_ip: per_minute(10) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/hello", listener.local_addr().unwrap());
    let server = tokio::spawn(axum_app::serve(listener, axum_app::app(limits).unwrap()));
    let client = reqwest::Client::new();

    let requests: Vec<_> = (0..25)
        .map(|_| {
            let request = client.get(&url).header("x-api-key", "carol").send();
            tokio::spawn(async move { request.await.unwrap().status() })
        })
        .collect();
    let mut ok = 0;
    let mut too_many = 0;
    for request in requests {
        match request.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => too_many += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, too_many), (10, 15));
    server.abort();
}
