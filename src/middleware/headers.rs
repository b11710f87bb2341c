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
use std::time::Duration;

use http::header::{CONTENT_TYPE, Entry, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use super::value::{Value, decimal_len, intern, number};
use crate::Decision;
use crate::error::{Result, invalid};

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

/// A policy as configured: its name (checked by [`check_policy_name`]) and
/// the window it advertises, if any.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) window_secs: Option<u64>,
}

impl Policy {
    /// This policy's numbers after `decision`.
    pub(crate) fn state(&self, decision: &Decision) -> PolicyState<'_> {
        PolicyState {
            name: &self.name,
            window_secs: self.window_secs,
            limit: decision.limit(),
            remaining: decision.remaining(),
            reset_secs: ceil_secs(decision.reset_after()),
        }
    }
}

/// One policy's numbers for one response: one item of `RateLimit-Policy`
/// and of `RateLimit`, and a candidate for the `X-RateLimit-*` trio.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyState<'a> {
    pub(crate) name: &'a str,
    pub(crate) window_secs: Option<u64>,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Seconds (rounded up) until the allowance is full.
    pub(crate) reset_secs: u64,
}

/// The policy of `policies` a client is closest to running out of (the
/// fewest remaining, the first of equals), and where it is in the list.
/// `None` for an empty list.
fn binding<'p, 'a>(policies: &'p [PolicyState<'a>]) -> Option<(usize, &'p PolicyState<'a>)> {
    policies
        .iter()
        .enumerate()
        .reduce(|tightest, next| if next.1.remaining < tightest.1.remaining { next } else { tightest })
}

/// The length of a list of one item per policy, each `item_len` long,
/// separated by ", ".
fn list_len(policies: &[PolicyState<'_>], item_len: impl Fn(&PolicyState<'_>) -> usize) -> usize {
    policies.iter().map(item_len).sum::<usize>() + 2 * policies.len().saturating_sub(1)
}

/// A policy name as an sf-string; [`check_policy_name`] made sure it needs
/// no escaping.
fn push_name(value: &mut Value, name: &str) {
    value.push(b"\"");
    value.push(name.as_bytes());
    value.push(b"\"");
}

/// A list of one item per policy, separated by ", ": each item `item_len`
/// long, written by `item`.
fn list(
    policies: &[PolicyState<'_>],
    item_len: impl Fn(&PolicyState<'_>) -> usize,
    item: impl Fn(&mut Value, &PolicyState<'_>),
) -> Value {
    let mut value = Value::with_len(list_len(policies, item_len));
    for (index, state) in policies.iter().enumerate() {
        if index > 0 {
            value.push(b", ");
        }
        push_name(&mut value, state.name);
        item(&mut value, state);
    }
    value
}

/// `RateLimit-Policy`: `"name";q=<limit>;w=<window>, ...`.
fn policy_value(policies: &[PolicyState<'_>]) -> Value {
    list(
        policies,
        |state| {
            2 + state.name.len() + 3 + decimal_len(state.limit) + state.window_secs.map_or(0, |w| 3 + decimal_len(w))
        },
        |value, state| {
            value.push(b";q=");
            value.decimal(state.limit);
            if let Some(window) = state.window_secs {
                value.push(b";w=");
                value.decimal(window);
            }
        },
    )
}

/// `RateLimit`: `"name";r=<remaining>;t=<reset>, ...`.
fn ratelimit_value(policies: &[PolicyState<'_>]) -> Value {
    list(
        policies,
        |state| 2 + state.name.len() + 3 + decimal_len(state.remaining) + 3 + decimal_len(state.reset_secs),
        |value, state| {
            value.push(b";r=");
            value.decimal(state.remaining);
            value.push(b";t=");
            value.decimal(state.reset_secs);
        },
    )
}

/// The values that are the same on every response of a layer, made once
/// from the first response's limits: `RateLimit-Policy`, and each policy's
/// `X-RateLimit-Limit`. A response whose limits differ (a limiter whose
/// limit changes) makes its own.
#[derive(Debug, Default)]
pub(crate) struct ConstantFields {
    /// `None` inside: the process-wide room for kept values ran out.
    values: OnceLock<Option<Constant>>,
}

#[derive(Debug)]
struct Constant {
    limits: Box<[u64]>,
    policy: HeaderValue,
    x_limits: Box<[HeaderValue]>,
}

impl ConstantFields {
    fn get(&self, policies: &[PolicyState<'_>]) -> Option<&Constant> {
        let constant = self
            .values
            .get_or_init(|| {
                Some(Constant {
                    limits: policies.iter().map(|state| state.limit).collect(),
                    policy: intern(policy_value(policies))?,
                    x_limits: policies
                        .iter()
                        .map(|state| {
                            let mut text = Value::with_len(decimal_len(state.limit));
                            text.decimal(state.limit);
                            intern(text)
                        })
                        .collect::<Option<_>>()?,
                })
            })
            .as_ref()?;
        constant.limits.iter().eq(policies.iter().map(|state| &state.limit)).then_some(constant)
    }
}

/// A layer's configuration is cloned only while it is being built
/// (`Arc::make_mut`), when its name or window may still change: a clone
/// starts empty.
impl Clone for ConstantFields {
    fn clone(&self) -> Self {
        Self::default()
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

/// The `X-RateLimit-*` trio of the binding policy.
#[derive(Debug)]
struct XRateLimit {
    remaining: u64,
    limit_value: HeaderValue,
    remaining_value: HeaderValue,
    reset_value: HeaderValue,
}

impl Fields {
    /// The fields of `set` for `policies`, one item each in the IETF pair
    /// (in this order), and the tightest of them in the `X-` trio. What is
    /// the same on every response comes from `constant`.
    pub(crate) fn new(set: HeaderSet, policies: &[PolicyState<'_>], constant: &ConstantFields) -> Self {
        let constant = constant.get(policies);
        let ietf = set.ietf().then(|| {
            let policy = match constant {
                Some(constant) => constant.policy.clone(),
                None => policy_value(policies).finish(),
            };
            [policy, ratelimit_value(policies).finish()]
        });
        let x_ratelimit = set.x_ratelimit().then(|| binding(policies)).flatten().map(|(index, state)| XRateLimit {
            remaining: state.remaining,
            limit_value: constant.map_or_else(|| number(state.limit), |constant| constant.x_limits[index].clone()),
            remaining_value: number(state.remaining),
            reset_value: number(state.reset_secs),
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
                    written.insert(x.remaining_value);
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(x.remaining_value);
                }
            }
            headers.insert(X_RATELIMIT_LIMIT, x.limit_value);
            headers.insert(X_RATELIMIT_RESET, x.reset_value);
        }
    }
}

/// 429 Too Many Requests with `Retry-After`, without the rate-limit fields
/// (the caller adds them): an RFC 9457 problem body of the draft's
/// "quota-exceeded" type naming the `violated` policies, with the numbers of
/// the binding one (the fewest remaining) and `retry_after_secs`.
pub(crate) fn too_many_requests(violated: &[PolicyState<'_>], retry_after_secs: u64) -> Response<String> {
    let mut body = String::with_capacity(256);
    body.push_str(concat!(
        r#"{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","#,
        r#""title":"Too Many Requests","status":429,"violated-policies":["#
    ));
    for (index, state) in violated.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push('"');
        body.push_str(state.name);
        body.push('"');
    }
    body.push(']');
    if let Some((_, state)) = binding(violated) {
        for (field, value) in [("limit", state.limit), ("remaining", state.remaining), ("reset", state.reset_secs)] {
            body.push_str(",\"");
            body.push_str(field);
            body.push_str("\":");
            body.push_str(Decimal::new(value).as_str());
        }
    }
    body.push_str(r#","retry_after":"#);
    body.push_str(Decimal::new(retry_after_secs).as_str());
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

/// 503 Service Unavailable, for a limiter that answered with an error.
pub(crate) fn limiter_failed() -> Response<String> {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"the rate limiter is unavailable"}"#
            .to_owned(),
    )
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

    fn state(name: &str, limit: u64, remaining: u64, reset_secs: u64, window_secs: Option<u64>) -> PolicyState<'_> {
        PolicyState { name, window_secs, limit, remaining, reset_secs }
    }

    fn values<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<&'a str> {
        headers.get_all(name).iter().map(|value| value.to_str().unwrap()).collect()
    }

    #[test]
    fn several_policies_make_one_item_each_and_the_tightest_fills_the_x_fields() {
        let policies = [state("per-second", 10, 7, 1, Some(1)), state("per-day", 1000, 3, 86_400, Some(86_400))];
        let mut headers = HeaderMap::new();
        Fields::new(HeaderSet::Both, &policies, &ConstantFields::default()).write(&mut headers);
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""per-second";q=10;w=1, "per-day";q=1000;w=86400"#]);
        assert_eq!(values(&headers, &RATELIMIT), [r#""per-second";r=7;t=1, "per-day";r=3;t=86400"#]);
        assert_eq!(values(&headers, &X_RATELIMIT_LIMIT), ["1000"]);
        assert_eq!(values(&headers, &X_RATELIMIT_REMAINING), ["3"]);
        assert_eq!(values(&headers, &X_RATELIMIT_RESET), ["86400"]);
    }

    #[test]
    fn each_header_set_writes_its_fields_only() {
        let policies = [state("api", 3, 2, 9, None)];
        let written = |set| {
            let mut headers = HeaderMap::new();
            Fields::new(set, &policies, &ConstantFields::default()).write(&mut headers);
            let mut names: Vec<_> = headers.keys().map(HeaderName::as_str).map(str::to_owned).collect();
            names.sort();
            names
        };
        assert_eq!(written(HeaderSet::Ietf), ["ratelimit", "ratelimit-policy"]);
        assert_eq!(written(HeaderSet::XRateLimit), ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]);
        assert_eq!(written(HeaderSet::Both).len(), 5);
    }

    #[test]
    fn a_long_list_of_policies_is_written_whole() {
        let names: Vec<String> = (0..20).map(|n| format!("policy-number-{n:02}")).collect();
        let policies: Vec<_> = names.iter().map(|name| state(name, 1_000_000, 999_999, 60, Some(60))).collect();
        let mut headers = HeaderMap::new();
        Fields::new(HeaderSet::Ietf, &policies, &ConstantFields::default()).write(&mut headers);
        let expected: Vec<String> = names.iter().map(|name| format!("\"{name}\";q=1000000;w=60")).collect();
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [expected.join(", ")]);
    }

    #[test]
    fn values_kept_for_the_first_limits_are_used_only_for_the_same_limits() {
        let constant = ConstantFields::default();
        let written = |limit, remaining| {
            let mut headers = HeaderMap::new();
            Fields::new(HeaderSet::Both, &[state("api", limit, remaining, 1, Some(1))], &constant).write(&mut headers);
            [RATELIMIT_POLICY, RATELIMIT, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING]
                .map(|name| headers[&name].to_str().unwrap().to_owned())
        };
        for _ in 0..2 {
            assert_eq!(written(100_000, 99_999), [r#""api";q=100000;w=1"#, r#""api";r=99999;t=1"#, "100000", "99999"]);
        }
        assert_eq!(written(7, 6), [r#""api";q=7;w=1"#, r#""api";r=6;t=1"#, "7", "6"]);
    }

    #[test]
    fn the_429_body_names_every_violated_policy_with_the_binding_ones_numbers() {
        let violated = [state("per-second", 10, 0, 1, Some(1)), state("per-day", 1000, 0, 86_400, None)];
        let response = too_many_requests(&violated, 1);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(
            response.body(),
            concat!(
                r#"{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","#,
                r#""title":"Too Many Requests","status":429,"violated-policies":["per-second","per-day"],"#,
                r#""limit":10,"remaining":0,"reset":1,"retry_after":1}"#
            )
        );
    }
}
