//! The response headers and bodies: what a client reads from a decision.
//!
//! The `RateLimit-Policy` and `RateLimit` fields follow
//! [draft-ietf-httpapi-ratelimit-headers-11](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/11/)
//! (May 2026): each is a Structured Fields list of one item per policy, the
//! item a String naming the policy. `X-RateLimit-*` are the older, informal
//! fields many clients still read.

use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

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

/// The policy this layer advertises: a name, and optionally a window.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) window_secs: Option<u64>,
}

impl Policy {
    /// Adds this policy's fields for `decision` to `headers`.
    ///
    /// `RateLimit-Policy` and `RateLimit` are lists, so each layer appends its
    /// own item and a client sees every policy the request passed. The
    /// `X-RateLimit-*` trio has room for one policy: it keeps the one with
    /// the fewest remaining, whichever layer wrote it.
    pub(crate) fn write(&self, headers: &mut HeaderMap, decision: &Decision) {
        let reset = ceil_secs(decision.reset_after());
        let policy = match self.window_secs {
            Some(window) => format!("\"{}\";q={};w={window}", self.name, decision.limit()),
            None => format!("\"{}\";q={}", self.name, decision.limit()),
        };
        headers.append(RATELIMIT_POLICY, text(policy));
        headers.append(RATELIMIT, text(format!("\"{}\";r={};t={reset}", self.name, decision.remaining())));

        let tighter_already = headers
            .get(X_RATELIMIT_REMAINING)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|remaining| remaining <= decision.remaining());
        if !tighter_already {
            headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(decision.limit()));
            headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(decision.remaining()));
            headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
        }
    }

    /// 429 Too Many Requests: `Retry-After`, the rate-limit fields, and an RFC
    /// 9457 problem body of the draft's "quota-exceeded" type with the same
    /// numbers.
    pub(crate) fn too_many_requests(&self, decision: &Decision) -> Response<String> {
        let retry_after = retry_after_secs(decision);
        let body = format!(
            concat!(
                "{{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\",",
                "\"title\":\"Too Many Requests\",\"status\":429,\"violated-policies\":[\"{}\"],",
                "\"limit\":{},\"remaining\":{},\"reset\":{},\"retry_after\":{}}}"
            ),
            self.name,
            decision.limit(),
            decision.remaining(),
            ceil_secs(decision.reset_after()),
            retry_after,
        );
        let mut response = problem(StatusCode::TOO_MANY_REQUESTS, body);
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after));
        self.write(response.headers_mut(), decision);
        response
    }
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

/// A header value from text built of digits, ASCII punctuation and a checked
/// policy name, which is always a valid value.
fn text(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""))
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
}
