//! The response headers and bodies: what a client reads from decisions.
//!
//! The `RateLimit-Policy` and `RateLimit` fields follow
//! [draft-ietf-httpapi-ratelimit-headers-11](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/11/)
//! (May 2026): each is a Structured Fields list of one item per policy, the
//! item a String naming the policy. `X-RateLimit-*` are the older, informal
//! fields many clients still read.
//!
//! Everything here takes a list of policies ([`PolicyState`]), so that one
//! response can carry several (a limiter with a per-second and a per-day
//! limit): each writes one item in `RateLimit-Policy` and `RateLimit`.
//!
//! How the values are made, cheaply, is in `value.rs`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use http::header::{CONTENT_TYPE, Entry, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use super::value::{TEXT, Text, Value, Write, decimal_len, intern, number};
use crate::error::{Result, invalid};
use crate::{Breakdown, Decision, Error};

/// `RateLimit-Policy: "name";q=<limit>;w=<window seconds>`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit: "name";r=<remaining>;t=<seconds until full>`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The most requests admitted at once.
pub(crate) const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// How many more would be admitted now.
pub(crate) const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// Seconds (rounded up) until the allowance is full again.
pub(crate) const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// Which rate-limit header fields a [`RateLimitLayer`](super::RateLimitLayer)
/// writes, on every response it lets through and on its 429s. `Retry-After`
/// is on every 429 whatever the set.
///
/// Each set is bytes on every response (about 70 for the IETF pair and 75
/// for the `X-` trio, with a short policy name), and writing them is most of
/// what the layer costs: a service whose clients read only one set can say
/// so. The default is both, as clients of either kind expect.
///
/// ```
/// use std::sync::Arc;
/// use tollgate::middleware::{HeaderSet, KeyExtractor, RateLimitLayer};
/// use tollgate::{InMemory, Rate, TokenBucket};
///
/// let limiter = Arc::new(InMemory::new(TokenBucket::new(100, Rate::per_second(10))?));
/// // Only the standard pair: fewer bytes on every response.
/// let layer = RateLimitLayer::new(limiter, KeyExtractor::global("all")).headers(HeaderSet::Ietf);
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderSet {
    /// `RateLimit-Policy` and `RateLimit`, as the IETF draft defines them.
    /// They have one meaning everywhere, they can list several policies,
    /// and they are where the standard is going.
    Ietf,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`:
    /// the informal trio many client libraries read. Informal means
    /// ambiguous: tollgate's `Reset` is seconds from now, where some APIs
    /// (GitHub's) send a Unix time, and a client written for those would
    /// read it as long past. With several policies they show the one with
    /// the fewest remaining.
    XRateLimit,
    /// Both sets, for clients of either kind (the default).
    #[default]
    Both,
}

impl HeaderSet {
    fn ietf(self) -> bool {
        matches!(self, Self::Both | Self::Ietf)
    }

    fn x_ratelimit(self) -> bool {
        matches!(self, Self::Both | Self::XRateLimit)
    }
}

/// Checks a policy name once, at configuration: it becomes an sf-string in
/// the headers and a JSON string in bodies, so it is kept to printable ASCII
/// without `"` or `\`, and then needs escaping in neither.
pub(crate) fn check_policy_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid("the rate-limit policy name must not be empty"));
    }
    match name.chars().find(|&c| !(' '..='~').contains(&c) || c == '"' || c == '\\') {
        Some(c) => Err(invalid(format!(
            "the rate-limit policy name {name:?} has {c:?}: use printable ASCII without '\"' or '\\'"
        ))),
        None => Ok(()),
    }
}

/// Whole seconds, rounded up: a client that waits this long has waited long
/// enough.
pub(crate) fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// `Retry-After` for a denial: rounded up, and never zero (a client told to
/// retry after zero seconds would spin).
pub(crate) fn retry_after_secs(decision: &Decision) -> u64 {
    ceil_secs(decision.retry_after().unwrap_or_default()).max(1)
}

/// How a layer names and describes its policies: the configuration the
/// [`Shape`]s of its responses are made from.
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    /// The layer's policy name (checked by [`check_policy_name`]): the item
    /// name of a limiter of one unnamed limit, and the name in the logs.
    pub(crate) name: String,
    /// The window the layer was told to advertise for a limiter of one
    /// limit, in whole seconds; each limit's own window otherwise.
    pub(crate) window_secs: Option<u64>,
    /// Name the items by the request's plan: `"pro"` for a plan of one
    /// limit, `"pro/per-day"` for a composite plan's limit.
    pub(crate) by_plan: bool,
}

impl Naming {
    /// The name of the item of a limit named `limit` (`None`: unnamed) in
    /// plan `plan`; `None` when the name the configuration makes is not one
    /// the headers can carry, and the layer's name stands in.
    fn item_name(&self, plan: Option<&str>, limit: Option<&str>) -> String {
        let name = match (plan.filter(|_| self.by_plan), limit) {
            (Some(plan), Some(limit)) => format!("{plan}/{limit}"),
            (Some(plan), None) => plan.to_owned(),
            (None, Some(limit)) => limit.to_owned(),
            (None, None) => return self.name.clone(),
        };
        // Plan and limit names are checked by their own rules, which are
        // stricter than the headers' ones; this is for the unexpected.
        if check_policy_name(&name).is_ok() { name } else { self.name.clone() }
    }
}

/// A limiter's answer: a plain limiter's decision
/// ([`RateLimiter::check_now`](crate::RateLimiter::check_now)), or a
/// breakdown of each limit's.
#[derive(Debug)]
pub(crate) enum Answer {
    /// One unnamed limit, in no plan.
    Plain(Decision),
    Detailed(Breakdown),
}

impl Answer {
    /// The decision of all the limits together.
    pub(crate) fn decision(&self) -> Decision {
        match self {
            Self::Plain(decision) => *decision,
            Self::Detailed(breakdown) => breakdown.decision(),
        }
    }

    /// Limit `index`'s own decision.
    fn nth(&self, index: usize) -> Decision {
        match self {
            Self::Plain(decision) => *decision,
            Self::Detailed(breakdown) => breakdown.limits()[index].decision(),
        }
    }

    /// Where [`Breakdown::binding`] is among the limits.
    fn binding(&self) -> usize {
        match self {
            Self::Plain(_) => 0,
            Self::Detailed(breakdown) => {
                let binding = breakdown.binding();
                breakdown.limits().iter().position(|limit| std::ptr::eq(limit, binding)).unwrap_or(0)
            }
        }
    }
}

/// What is the same on every response decided in one configuration of the
/// limiter (one plan, for [`Plans`](crate::Plans)): each item's name and
/// window, the `RateLimit-Policy` value and each item's
/// `X-RateLimit-Limit`, made once. A breakdown [`fits`](Self::fits) a shape
/// when its plan and each limit's name, limit and window are the shape's.
#[derive(Debug)]
pub(crate) struct Shape {
    plan: Option<Box<str>>,
    limits: Box<[ShapeLimit]>,
    policy: HeaderValue,
    /// The longest its `RateLimit` value can be, whatever the numbers.
    ratelimit_longest: usize,
}

#[derive(Debug)]
struct ShapeLimit {
    /// The limit's own name, for [`Shape::fits`].
    limit_name: Option<Box<str>>,
    limit: u64,
    window: Option<Duration>,
    /// Its item's name in the fields.
    name: Box<str>,
    window_secs: Option<u64>,
    x_limit: HeaderValue,
    /// What its `RateLimit` item starts with: `"name";r=`, after `, ` for
    /// all but the first.
    ratelimit_prefix: Box<[u8]>,
}

impl Shape {
    /// The shape of `breakdown`'s configuration, named by `naming`; its
    /// values kept for the life of the process if `keep` (and there is room
    /// left, see [`intern`]).
    fn new(breakdown: &Breakdown, naming: &Naming, keep: bool) -> Self {
        let one = breakdown.limits().len() == 1;
        let limits: Box<[ShapeLimit]> = breakdown
            .limits()
            .iter()
            .enumerate()
            .map(|(index, limit)| {
                let window_secs = match (naming.window_secs, limit.window()) {
                    (Some(window), _) if one => Some(window),
                    (_, window) => window.map(|window| ceil_secs(window).max(1)),
                };
                let value = limit.decision().limit();
                let x_limit = if keep {
                    let mut text = Value::with_len(decimal_len(value));
                    text.decimal(value);
                    intern(text)
                } else {
                    number(value)
                };
                let name = naming.item_name(breakdown.plan(), limit.name());
                let separator = if index > 0 { ", " } else { "" };
                ShapeLimit {
                    limit_name: limit.name().map(Box::from),
                    limit: value,
                    window: limit.window(),
                    ratelimit_prefix: format!("{separator}\"{name}\";r=").into_bytes().into_boxed_slice(),
                    name: name.into_boxed_str(),
                    window_secs,
                    x_limit,
                }
            })
            .collect();
        let policy = policy_value(&limits);
        let policy = if keep { intern(policy) } else { policy.finish() };
        let ratelimit_longest =
            limits.iter().map(|limit| limit.ratelimit_prefix.len() + decimal_len(u64::MAX) * 2 + 3).sum();
        Self { plan: breakdown.plan().map(Box::from), limits, policy, ratelimit_longest }
    }

    /// One unnamed limit, in no plan: what a plain limiter's decisions are.
    fn is_plain(&self) -> bool {
        self.plan.is_none() && self.limits.len() == 1 && self.limits[0].limit_name.is_none()
    }

    /// Whether `breakdown` was decided in this shape's configuration.
    fn fits(&self, breakdown: &Breakdown) -> bool {
        self.plan.as_deref() == breakdown.plan()
            && self.limits.len() == breakdown.limits().len()
            && self.limits.iter().zip(breakdown.limits()).all(|(shape, limit)| {
                shape.limit == limit.decision().limit()
                    && shape.window == limit.window()
                    && shape.limit_name.as_deref() == limit.name()
            })
    }
}

/// The most shapes a layer keeps: one per plan, for a handful of plans. A
/// limiter whose configurations are more (or whose limits change) has the
/// values of the others made per response.
const SHAPES: usize = 8;

/// The [`Shape`]s a layer has met, each made once, read without a lock.
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    slots: [OnceLock<Shape>; SHAPES],
    /// A shape of one unnamed limit in no plan has been made: the
    /// limiter's [`Answer::Plain`]s have a shape to fit.
    plain: AtomicBool,
}

/// A layer's configuration is cloned only while it is being built
/// (`Arc::make_mut`), when its name or window may still change: a clone
/// starts empty.
impl Clone for Shapes {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Shapes {
    /// The shape `breakdown` fits, made now if it is new and there is room.
    fn get(&self, breakdown: &Breakdown, naming: &Naming) -> Option<&Shape> {
        for slot in &self.slots {
            let shape = match slot.get() {
                Some(shape) => shape,
                None => slot.get_or_init(|| Shape::new(breakdown, naming, true)),
            };
            if shape.fits(breakdown) {
                if shape.is_plain() && !self.plain.load(Relaxed) {
                    self.plain.store(true, Relaxed);
                }
                return Some(shape);
            }
        }
        None
    }

    /// Whether a plain limiter's decision would find its shape here: its
    /// window has been learned from a breakdown.
    pub(crate) fn knows_plain(&self) -> bool {
        self.plain.load(Relaxed)
    }

    /// The shape of a plain decision of `limit`.
    fn plain(&self, limit: u64) -> Option<&Shape> {
        self.slots.iter().map_while(OnceLock::get).find(|shape| shape.is_plain() && shape.limits[0].limit == limit)
    }

    /// Calls `use_shape` with the shape of `answer` (for a plain decision,
    /// the one learned from a breakdown of the same limit), or with one made
    /// for this response alone.
    pub(crate) fn with<R>(&self, answer: &Answer, naming: &Naming, use_shape: impl FnOnce(&Shape) -> R) -> R {
        let kept = match answer {
            Answer::Plain(decision) => self.plain(decision.limit()),
            Answer::Detailed(breakdown) => self.get(breakdown, naming),
        };
        match (kept, answer) {
            (Some(shape), _) => use_shape(shape),
            (None, Answer::Detailed(breakdown)) => use_shape(&Shape::new(breakdown, naming, false)),
            (None, Answer::Plain(decision)) => use_shape(&Shape::new(&Breakdown::from(*decision), naming, false)),
        }
    }
}

/// The length of a list of one item per limit, each `item_len` long,
/// separated by ", ".
fn list_len<T>(items: impl Iterator<Item = T>, item_len: impl Fn(T) -> usize) -> usize {
    let (mut len, mut count) = (0, 0_usize);
    for item in items {
        len += item_len(item);
        count += 1;
    }
    len + 2 * count.saturating_sub(1)
}

/// A policy name as an sf-string; [`check_policy_name`] made sure it needs
/// no escaping.
fn push_name(value: &mut Value, name: &str) {
    value.push(b"\"");
    value.push(name.as_bytes());
    value.push(b"\"");
}

/// `RateLimit-Policy`: `"name";q=<limit>;w=<window>, ...`.
fn policy_value(limits: &[ShapeLimit]) -> Value {
    let len = list_len(limits.iter(), |limit| {
        2 + limit.name.len() + 3 + decimal_len(limit.limit) + limit.window_secs.map_or(0, |w| 3 + decimal_len(w))
    });
    let mut value = Value::with_len(len);
    for (index, limit) in limits.iter().enumerate() {
        if index > 0 {
            value.push(b", ");
        }
        push_name(&mut value, &limit.name);
        value.push(b";q=");
        value.decimal(limit.limit);
        if let Some(window) = limit.window_secs {
            value.push(b";w=");
            value.decimal(window);
        }
    }
    value
}

/// `RateLimit`: `"name";r=<remaining>;t=<reset>, ...`: on the stack when it
/// fits, as it does for a few items.
fn ratelimit_value(shape: &Shape, answer: &Answer) -> HeaderValue {
    let numbers = |index: usize| {
        let decision = answer.nth(index);
        (decision.remaining(), ceil_secs(decision.reset_after()))
    };
    if shape.ratelimit_longest < TEXT {
        let mut text = Text::new();
        ratelimit_items(&mut text, shape, &numbers);
        return text.finish();
    }
    let mut len = 0;
    for (index, limit) in shape.limits.iter().enumerate() {
        let (remaining, reset) = numbers(index);
        len += limit.ratelimit_prefix.len() + decimal_len(remaining) + 3 + decimal_len(reset);
    }
    let mut value = Value::with_len(len);
    ratelimit_items(&mut value, shape, &numbers);
    value.finish()
}

/// The items of `RateLimit`, each limit's `numbers` (remaining, reset).
fn ratelimit_items(value: &mut impl Write, shape: &Shape, numbers: &impl Fn(usize) -> (u64, u64)) {
    for (index, limit) in shape.limits.iter().enumerate() {
        let (remaining, reset) = numbers(index);
        value.push(&limit.ratelimit_prefix);
        value.decimal(remaining);
        value.push(b";t=");
        value.decimal(reset);
    }
}

/// The rate-limit fields of one response: built as soon as the decisions
/// are known, added to the response's headers when it is ready.
#[derive(Debug)]
pub(crate) struct Fields {
    /// `RateLimit-Policy` and `RateLimit`.
    ietf: Option<[HeaderValue; 2]>,
    x_ratelimit: Option<XRateLimit>,
}

/// The `X-RateLimit-*` trio of the binding limit: its numbers, made values
/// only if they are written (another layer's may be tighter).
#[derive(Debug)]
struct XRateLimit {
    remaining: u64,
    reset_secs: u64,
    limit_value: HeaderValue,
}

impl Fields {
    /// The fields of `set` for `answer`, decided in `shape`'s
    /// configuration: one item per limit in the IETF pair (in the limits'
    /// order), and the binding limit ([`Breakdown::binding`]: the one with
    /// the longest wait when denied, else the fewest remaining) in the `X-`
    /// trio.
    pub(crate) fn new(set: HeaderSet, shape: &Shape, answer: &Answer) -> Self {
        let ietf = set.ietf().then(|| [shape.policy.clone(), ratelimit_value(shape, answer)]);
        let x_ratelimit = set.x_ratelimit().then(|| {
            let index = answer.binding();
            let decision = answer.nth(index);
            XRateLimit {
                remaining: decision.remaining(),
                reset_secs: ceil_secs(decision.reset_after()),
                limit_value: shape.limits[index].x_limit.clone(),
            }
        });
        Self { ietf, x_ratelimit }
    }

    /// Adds the fields to `headers`.
    ///
    /// `RateLimit-Policy` and `RateLimit` are lists, so each layer appends
    /// its own field line and a client sees every policy the request passed.
    /// The `X-RateLimit-*` trio has room for one policy: it keeps the one
    /// with the fewest remaining, whichever layer wrote it.
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        if let Some([policy, ratelimit]) = self.ietf {
            headers.append(RATELIMIT_POLICY, policy);
            headers.append(RATELIMIT, ratelimit);
        }
        if let Some(x) = self.x_ratelimit {
            // `Remaining` first, through an entry: one lookup both reads what
            // another layer wrote and writes this one.
            match headers.entry(X_RATELIMIT_REMAINING) {
                Entry::Occupied(mut written) => {
                    let tighter_already = written
                        .get()
                        .to_str()
                        .ok()
                        .and_then(|value| value.parse::<u64>().ok())
                        .is_some_and(|remaining| remaining <= x.remaining);
                    if tighter_already {
                        return;
                    }
                    written.insert(number(x.remaining));
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(number(x.remaining));
                }
            }
            headers.insert(X_RATELIMIT_LIMIT, x.limit_value);
            headers.insert(X_RATELIMIT_RESET, number(x.reset_secs));
        }
    }
}

/// 429 Too Many Requests with `Retry-After`, without the rate-limit fields
/// (the caller adds them): an RFC 9457 problem body of the draft's
/// "quota-exceeded" type naming the violated policies (the limits that
/// denied the request), with the numbers of the binding one and
/// `retry_after_secs`.
pub(crate) fn too_many_requests(shape: &Shape, answer: &Answer, retry_after_secs: u64) -> Response<String> {
    let mut body = String::with_capacity(256);
    body.push_str(concat!(
        r#"{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","#,
        r#""title":"Too Many Requests","status":429,"violated-policies":["#
    ));
    let violated = shape.limits.iter().enumerate().filter(|&(index, _)| !answer.nth(index).is_allowed());
    for (index, (_, shape_limit)) in violated.enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push('"');
        body.push_str(&shape_limit.name);
        body.push('"');
    }
    body.push(']');
    let binding = answer.nth(answer.binding());
    let numbers = [
        ("limit", binding.limit()),
        ("remaining", binding.remaining()),
        ("reset", ceil_secs(binding.reset_after())),
        ("retry_after", retry_after_secs),
    ];
    for (field, value) in numbers {
        body.push_str(",\"");
        body.push_str(field);
        body.push_str("\":");
        body.push_str(Decimal::new(value).as_str());
    }
    body.push('}');
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, body);
    response.headers_mut().insert(RETRY_AFTER, number(retry_after_secs));
    response
}

/// 400 Bad Request, for a request the key extractor found no key in.
pub(crate) fn missing_key() -> Response<String> {
    problem(
        StatusCode::BAD_REQUEST,
        r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"the request has no rate-limit key"}"#
            .to_owned(),
    )
}

/// The answer to a limiter that failed with `error`:
///
/// - `500 Internal Server Error` for [`Error::UnknownPlan`]: the layer's
///   plan extractor names a plan the limiter does not have. That is this
///   server's configuration, not the client's doing and not something a
///   retry fixes, so neither 4xx nor 503; the request is not admitted
///   unlimited either.
/// - `503 Service Unavailable` otherwise, with a `Retry-After` of the
///   breaker's `retry_in` (rounded up, never 0) for
///   [`Error::Unavailable`]: no answer can change before then.
pub(crate) fn limiter_failed(error: &Error) -> Response<String> {
    match error {
        Error::UnknownPlan { .. } => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"the request's rate-limit plan is not configured"}"#
                .to_owned(),
        ),
        _ => {
            let mut response = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"the rate limiter is unavailable"}"#
                    .to_owned(),
            );
            if let Error::Unavailable { retry_in, .. } = error {
                response.headers_mut().insert(RETRY_AFTER, number(ceil_secs(*retry_in).max(1)));
            }
            response
        }
    }
}

fn problem(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    response
}

/// A `u64` in decimal, for the bodies.
struct Decimal {
    digits: [u8; 20],
    len: usize,
}

impl Decimal {
    fn new(mut value: u64) -> Self {
        let mut digits = [0; 20];
        let len = decimal_len(value);
        for digit in digits[..len].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
        Self { digits, len }
    }

    fn as_str(&self) -> &str {
        // ASCII digits only: never the fallback.
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Composite, FixedWindow, InMemory, ManualClock, Plans, Rate, TokenBucket};

    #[test]
    fn seconds_round_up_and_retry_after_is_never_zero() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_micros(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(&Decision::denied(1, 0, 1, 0)), 1);
        assert_eq!(retry_after_secs(&Decision::denied(1, 0, 1_000_001, 0)), 2);
    }

    #[test]
    fn policy_names_are_printable_ascii_without_quotes_or_backslashes() {
        assert!(check_policy_name("per-key 60/min").is_ok());
        for bad in ["", "a\"b", "a\\b", "tab\t", "é"] {
            assert!(check_policy_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_match_display() {
        for value in [0, 1, 9, 10, 99, 100, 65_535, 999_999, 1_000_000, u64::MAX] {
            assert_eq!(Decimal::new(value).as_str(), value.to_string());
            assert_eq!(number(value), value.to_string().as_str());
        }
    }

    fn naming(name: &str) -> Naming {
        Naming { name: name.to_owned(), window_secs: None, by_plan: false }
    }

    fn values<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<&'a str> {
        headers.get_all(name).iter().map(|value| value.to_str().unwrap()).collect()
    }

    /// 10 a second and 1000 a day, at 0.5 s on a manual clock.
    fn per_second_and_day() -> InMemory<Composite, ManualClock> {
        let composite = Composite::new("per-second", TokenBucket::new(10, Rate::per_second(10)).unwrap())
            .unwrap()
            .with("per-day", FixedWindow::new(Rate::per_day(1_000)).unwrap())
            .unwrap();
        InMemory::with_clock(composite, ManualClock::starting_at(Duration::from_millis(500)))
    }

    fn written(set: HeaderSet, shapes: &Shapes, naming: &Naming, breakdown: &Breakdown) -> HeaderMap {
        let answer = Answer::Detailed(breakdown.clone());
        let mut headers = HeaderMap::new();
        shapes.with(&answer, naming, |shape| Fields::new(set, shape, &answer)).write(&mut headers);
        headers
    }

    #[test]
    fn a_composite_makes_one_item_per_limit_and_the_binding_one_fills_the_x_fields() {
        let limiter = per_second_and_day();
        let breakdown = limiter.check_detailed_sync("alice", 4, None).unwrap();
        let headers = written(HeaderSet::Both, &Shapes::default(), &naming("api"), &breakdown);
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""per-second";q=10;w=1, "per-day";q=1000;w=86400"#]);
        // The day's window is fixed: it ends 86 399.5 s from now, rounded up.
        assert_eq!(values(&headers, &RATELIMIT), [r#""per-second";r=6;t=1, "per-day";r=996;t=86400"#]);
        assert_eq!(values(&headers, &X_RATELIMIT_LIMIT), ["10"]);
        assert_eq!(values(&headers, &X_RATELIMIT_REMAINING), ["6"]);
        assert_eq!(values(&headers, &X_RATELIMIT_RESET), ["1"]);
    }

    #[test]
    fn each_header_set_writes_its_fields_only() {
        let limiter = per_second_and_day();
        let breakdown = limiter.check_detailed_sync("alice", 1, None).unwrap();
        let written = |set| {
            let headers = written(set, &Shapes::default(), &naming("api"), &breakdown);
            let mut names: Vec<_> = headers.keys().map(HeaderName::as_str).map(str::to_owned).collect();
            names.sort();
            names
        };
        assert_eq!(written(HeaderSet::Ietf), ["ratelimit", "ratelimit-policy"]);
        assert_eq!(written(HeaderSet::XRateLimit), ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]);
        assert_eq!(written(HeaderSet::Both).len(), 5);
    }

    #[test]
    fn the_longest_composite_is_written_whole() {
        let names: Vec<String> = (0..Composite::MAX_LIMITS).map(|n| format!("policy-number-{n:02}")).collect();
        let limits = names.iter().map(|name| (name.clone(), FixedWindow::new(Rate::per_minute(1_000_000)).unwrap()));
        let limiter = InMemory::with_clock(Composite::from_limits(limits).unwrap(), ManualClock::new());
        let breakdown = limiter.check_detailed_sync("alice", 1, None).unwrap();
        let headers = written(HeaderSet::Ietf, &Shapes::default(), &naming("api"), &breakdown);
        let policy: Vec<String> = names.iter().map(|name| format!("\"{name}\";q=1000000;w=60")).collect();
        let ratelimit: Vec<String> = names.iter().map(|name| format!("\"{name}\";r=999999;t=60")).collect();
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [policy.join(", ")]);
        assert_eq!(values(&headers, &RATELIMIT), [ratelimit.join(", ")]);
    }

    #[test]
    fn each_plan_has_a_shape_of_its_own_and_can_name_the_policies() {
        let plans = Plans::new("free", TokenBucket::new(2, Rate::per_second(2)).unwrap())
            .unwrap()
            .plan("pro", per_second_and_day().algorithm().clone())
            .unwrap();
        let limiter = InMemory::with_clock(plans, ManualClock::new());
        // A layer's naming is fixed: one set of shapes per naming.
        let (shapes, by_plan_shapes) = (Shapes::default(), Shapes::default());
        let by_plan = Naming { by_plan: true, ..naming("api") };
        for _ in 0..2 {
            let free = limiter.check_detailed_sync("alice", 0, Some("free")).unwrap();
            let pro = limiter.check_detailed_sync("bob", 0, Some("pro")).unwrap();
            let headers = written(HeaderSet::Ietf, &shapes, &naming("api"), &free);
            assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""api";q=2;w=1"#]);
            let headers = written(HeaderSet::Ietf, &shapes, &naming("api"), &pro);
            assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""per-second";q=10;w=1, "per-day";q=1000;w=86400"#]);
            let headers = written(HeaderSet::Ietf, &by_plan_shapes, &by_plan, &free);
            assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""free";q=2;w=1"#]);
            let headers = written(HeaderSet::Ietf, &by_plan_shapes, &by_plan, &pro);
            assert_eq!(
                values(&headers, &RATELIMIT_POLICY),
                [r#""pro/per-second";q=10;w=1, "pro/per-day";q=1000;w=86400"#]
            );
        }
        // Made once per plan, and kept.
        for shapes in [shapes, by_plan_shapes] {
            assert_eq!(shapes.slots.iter().filter(|slot| slot.get().is_some()).count(), 2);
        }
    }

    #[test]
    fn a_layer_window_is_advertised_for_one_limit_and_each_limits_own_otherwise() {
        let single = InMemory::with_clock(FixedWindow::new(Rate::per_minute(3)).unwrap(), ManualClock::new());
        let breakdown = single.check_detailed_sync("alice", 1, None).unwrap();
        let told = Naming { window_secs: Some(7), ..naming("api") };
        let headers = written(HeaderSet::Ietf, &Shapes::default(), &told, &breakdown);
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""api";q=3;w=7"#]);
        let headers = written(HeaderSet::Ietf, &Shapes::default(), &naming("api"), &breakdown);
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""api";q=3;w=60"#]);
        // A limiter that does not say its window advertises none.
        let breakdown = Breakdown::from(Decision::allowed(3, 2, 1_000_000, 0));
        let headers = written(HeaderSet::Ietf, &Shapes::default(), &naming("api"), &breakdown);
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""api";q=3"#]);
    }

    #[test]
    fn more_shapes_than_a_layer_keeps_are_written_all_the_same() {
        let shapes = Shapes::default();
        for limit in 1..=2 * SHAPES as u64 {
            let breakdown = Breakdown::from(Decision::allowed(limit, limit - 1, 1_000_000, 0));
            let headers = written(HeaderSet::Both, &shapes, &naming("api"), &breakdown);
            assert_eq!(values(&headers, &RATELIMIT_POLICY), [format!(r#""api";q={limit}"#)]);
            assert_eq!(values(&headers, &X_RATELIMIT_LIMIT), [limit.to_string()]);
        }
    }

    #[test]
    fn the_429_body_names_every_violated_limit_with_the_binding_ones_numbers() {
        let limiter = per_second_and_day();
        let _ = limiter.check_detailed_sync("alice", 10, None).unwrap();
        let breakdown = limiter.check_detailed_sync("alice", 1, None).unwrap();
        assert!(!breakdown.decision().is_allowed());
        let answer = Answer::Detailed(breakdown);
        let response = Shapes::default().with(&answer, &naming("api"), |shape| too_many_requests(shape, &answer, 1));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(
            response.body(),
            concat!(
                r#"{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","#,
                r#""title":"Too Many Requests","status":429,"violated-policies":["per-second"],"#,
                r#""limit":10,"remaining":0,"reset":1,"retry_after":1}"#
            )
        );
    }

    #[test]
    fn an_open_breaker_is_answered_503_with_its_retry_in_and_an_unknown_plan_500() {
        let unavailable = |retry_in| Error::Unavailable { backend: "redis", retry_in };
        let response = limiter_failed(&unavailable(Duration::from_millis(2_500)));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        assert_eq!(limiter_failed(&unavailable(Duration::from_nanos(1))).headers()[RETRY_AFTER], "1");
        assert_eq!(limiter_failed(&unavailable(Duration::ZERO)).headers()[RETRY_AFTER], "1");
        let response = limiter_failed(&Error::Timeout(Duration::from_secs(1)));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        let response = limiter_failed(&Error::UnknownPlan { plan: "gold".into() });
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }
}
