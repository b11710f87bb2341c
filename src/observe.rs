//! What a limiter tells the operator about its checks: a `trace` event per
//! decision, the Redis failures a failure policy answered (rate limited
//! `warn`s), and [feature `metrics`] counters, a latency histogram and a
//! gauge through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Each limiter owns one [`Observer`], named after it. Its metric handles are
//! registered with the recorder in force at its first check (or first sweep)
//! and kept, so a check records through handles it holds: no label is built,
//! nothing allocated, no registry looked up. Without the feature, the
//! metric calls compile to nothing and a check costs one disabled `trace`
//! callsite. docs/observability.md lists every event and metric.

use std::borrow::Cow;
use std::fmt;

use crate::{Breakdown, Decision, Result};

/// The target of the per-check `trace` event.
const CHECK_TARGET: &str = "tollgate::check";

/// How a check ended, the `outcome` label of `tollgate_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The limiter (Redis or memory) admitted it.
    Allowed,
    /// The limiter refused it.
    Denied,
    /// The check returned an error.
    Error,
    /// Redis failed, and the failure policy (allow, deny, or the in-memory
    /// fallback) answered instead.
    #[cfg_attr(not(feature = "redis"), allow(dead_code, reason = "only Redis has a failure policy"))]
    FailurePolicy,
}

impl Outcome {
    /// Every outcome, in the order of their counters.
    #[cfg(feature = "metrics")]
    const ALL: [Outcome; 4] = [Outcome::Allowed, Outcome::Denied, Outcome::Error, Outcome::FailurePolicy];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::FailurePolicy => "failure_policy",
        }
    }
}

/// What a check returns, read for its outcome.
pub(crate) trait Observed {
    fn outcome(&self) -> Outcome;
}

impl Observed for Decision {
    fn outcome(&self) -> Outcome {
        if self.is_allowed() { Outcome::Allowed } else { Outcome::Denied }
    }
}

impl Observed for Breakdown {
    fn outcome(&self) -> Outcome {
        self.decision().outcome()
    }
}

impl<T: Observed> Observed for Result<T> {
    fn outcome(&self) -> Outcome {
        self.as_ref().map_or(Outcome::Error, Observed::outcome)
    }
}

/// One limiter's name and metric handles.
pub(crate) struct Observer {
    name: Cow<'static, str>,
    #[cfg(feature = "metrics")]
    metrics: handles::Lazy,
    /// The Redis failures a failure policy answered, rate limited per kind.
    #[cfg(feature = "redis")]
    failures: failures::Failures,
}

impl Observer {
    pub(crate) fn new(name: Cow<'static, str>) -> Self {
        Self {
            name,
            #[cfg(feature = "metrics")]
            metrics: handles::Lazy::default(),
            #[cfg(feature = "redis")]
            failures: failures::Failures::new(),
        }
    }

    /// The limiter's name: the `limiter` label and field.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Starts observing one check of `cost` for `key`.
    #[inline]
    pub(crate) fn start<'a>(&'a self, key: &'a str, cost: u64) -> Observation<'a> {
        Observation {
            observer: self,
            key,
            cost,
            #[cfg(feature = "metrics")]
            // The limiter's own calibrated counter: quanta's `Instant::now`
            // also looks up a thread-local mock clock, twice as dear.
            started: crate::clock::counter().now(),
        }
    }

    /// Runs the check `check` of `cost` for `key`, and records its outcome.
    #[inline]
    pub(crate) fn observe<T: Observed>(&self, key: &str, cost: u64, check: impl FnOnce() -> T) -> T {
        let observation = self.start(key, cost);
        observation.answered(check())
    }

    /// Sets the gauge of keys held in memory to `keys()`, which is called
    /// only when the feature `metrics` is on.
    #[inline]
    pub(crate) fn keys_held(&self, keys: impl FnOnce() -> usize) {
        #[cfg(feature = "metrics")]
        self.metrics.keys(&self.name).set(keys() as f64);
        #[cfg(not(feature = "metrics"))]
        let _ = keys;
    }

    /// Counts one Redis call that the local deny cache saved: a check it
    /// answered denied without asking Redis, whose own outcome
    /// (`denied`) the check's [`Observation`] records as any other's.
    /// Feeds `tollgate_redis_calls_saved_total{limiter}`; nothing without
    /// the feature `metrics`.
    #[cfg(feature = "redis")]
    #[inline]
    pub(crate) fn deny_cache_saved(&self) {
        #[cfg(feature = "metrics")]
        self.metrics.saved(&self.name).increment(1);
    }

    /// On every check: inlined, so that what is off costs a load and a
    /// compare (the level filter) and builds nothing.
    #[inline(always)]
    fn record(&self, observation: &Observation<'_>, outcome: Outcome) {
        if tracing::level_enabled!(tracing::Level::TRACE) {
            self.trace(observation.key, observation.cost, outcome);
        }
        #[cfg(feature = "metrics")]
        {
            // Read first: the first check also registers the handles.
            let seconds = crate::clock::counter().now().duration_since(observation.started).as_secs_f64();
            let checks = self.metrics.checks(&self.name);
            checks.by_outcome[outcome as usize].increment(1);
            checks.duration.record(seconds);
        }
    }

    /// The per-check event, out of line: only a subscriber that wants some
    /// `trace` event gets here, and its callsite filter decides on this one.
    #[cold]
    #[inline(never)]
    fn trace(&self, key: &str, cost: u64, outcome: Outcome) {
        tracing::trace!(
            target: CHECK_TARGET,
            limiter = %self.name,
            key,
            cost,
            outcome = outcome.as_str(),
            "rate limit check"
        );
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer").field("name", &self.name).finish_non_exhaustive()
    }
}

/// One check being observed: recorded by the method that says who answered.
#[must_use = "an observation records nothing until it is answered"]
pub(crate) struct Observation<'a> {
    observer: &'a Observer,
    key: &'a str,
    cost: u64,
    #[cfg(feature = "metrics")]
    started: quanta::Instant,
}

impl Observation<'_> {
    /// The limiter answered `answer` (or failed with it): passes it on.
    #[inline]
    pub(crate) fn answered<T: Observed>(self, answer: T) -> T {
        self.observer.record(&self, answer.outcome());
        answer
    }

    /// Redis failed with `error` and `policy` answered `answer` instead:
    /// passes it on, after a `warn` (at most one a minute per kind of
    /// error; `debug` for the rest, and for an open breaker, whose opening
    /// was a `warn` of its own).
    #[cfg(feature = "redis")]
    pub(crate) fn by_policy<T>(self, answer: T, policy: crate::FailurePolicy, error: &crate::Error) -> T {
        self.observer.failures.answered(&self.observer.name, policy, error);
        self.observer.record(&self, Outcome::FailurePolicy);
        answer
    }
}

#[cfg(feature = "metrics")]
mod handles {
    //! The metric handles of one limiter, registered at first use.

    use std::sync::OnceLock;

    use metrics::{Counter, Gauge, Histogram, SharedString, Unit};

    use super::Outcome;

    pub(super) const CHECKS: &str = "tollgate_checks_total";
    pub(super) const DURATION: &str = "tollgate_check_duration_seconds";
    pub(super) const KEYS: &str = "tollgate_memory_keys";
    #[cfg(feature = "redis")]
    pub(super) const SAVED: &str = "tollgate_redis_calls_saved_total";

    /// Each family apart, so that a limiter shows only the series it feeds:
    /// no keys gauge for Redis without a fallback, no saved calls in memory.
    #[derive(Default)]
    pub(super) struct Lazy {
        checks: OnceLock<Checks>,
        keys: OnceLock<Gauge>,
        #[cfg(feature = "redis")]
        saved: OnceLock<Counter>,
    }

    pub(super) struct Checks {
        pub(super) by_outcome: [Counter; 4],
        pub(super) duration: Histogram,
    }

    fn label(name: &str) -> SharedString {
        SharedString::from_owned(name.to_owned())
    }

    impl Lazy {
        #[inline]
        pub(super) fn checks(&self, name: &str) -> &Checks {
            self.checks.get_or_init(|| {
                metrics::describe_counter!(CHECKS, Unit::Count, "rate limit checks, by limiter and outcome");
                metrics::describe_histogram!(DURATION, Unit::Seconds, "how long a rate limit check took");
                let name = label(name);
                Checks {
                    by_outcome: Outcome::ALL.map(
                        |outcome| metrics::counter!(CHECKS, "limiter" => name.clone(), "outcome" => outcome.as_str()),
                    ),
                    duration: metrics::histogram!(DURATION, "limiter" => name),
                }
            })
        }

        pub(super) fn keys(&self, name: &str) -> &Gauge {
            self.keys.get_or_init(|| {
                metrics::describe_gauge!(KEYS, Unit::Count, "keys held in memory, idle ones not yet swept included");
                metrics::gauge!(KEYS, "limiter" => label(name))
            })
        }

        #[cfg(feature = "redis")]
        pub(super) fn saved(&self, name: &str) -> &Counter {
            self.saved.get_or_init(|| {
                metrics::describe_counter!(SAVED, Unit::Count, "Redis calls the local deny cache answered instead");
                metrics::counter!(SAVED, "limiter" => label(name))
            })
        }
    }
}

#[cfg(feature = "redis")]
mod failures {
    //! The Redis failures that a failure policy answered.

    use tokio::time::Instant;

    use super::Gate;
    use crate::{Error, FailurePolicy};

    /// One gate per kind of failure: a timeout and a refused connection are
    /// different causes.
    pub(super) struct Failures {
        /// tokio's `Instant`, so that tests with paused time can step over
        /// an interval.
        start: Instant,
        gates: [Gate; 3],
    }

    impl Failures {
        pub(super) fn new() -> Self {
            Self { start: Instant::now(), gates: std::array::from_fn(|_| Gate::new()) }
        }

        pub(super) fn answered(&self, limiter: &str, policy: FailurePolicy, error: &Error) {
            let gate = match error {
                // The breaker said so when it opened: one warn per outage is its.
                Error::Unavailable { .. } => None,
                Error::Timeout(_) => Some(&self.gates[0]),
                Error::Backend { .. } => Some(&self.gates[1]),
                _ => Some(&self.gates[2]),
            };
            let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            match gate.and_then(|gate| gate.pass(now_ms)) {
                Some(suppressed) => tracing::warn!(
                    target: "tollgate::redis",
                    limiter,
                    ?policy,
                    %error,
                    suppressed,
                    "Redis failed and the failure policy answered the check \
                     (at most one warning a minute for this kind of error; the rest are at debug)"
                ),
                None => tracing::debug!(
                    target: "tollgate::redis",
                    limiter,
                    ?policy,
                    %error,
                    "Redis failed and the failure policy answered the check"
                ),
            }
        }
    }
}

/// How the HTTP layer answered a request, the `outcome` label of
/// `tollgate_http_requests_total`.
#[cfg(feature = "tower")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// Passed on to the inner service.
    Allowed,
    /// 429 Too Many Requests.
    Denied,
    /// 400 Bad Request: the request had no key.
    NoKey,
    /// The limiter failed: 503 Service Unavailable (500 for a plan it does
    /// not have).
    Error,
}

/// The HTTP layer's request counter, labelled with its policy name: its
/// own family, so that a check is counted once in `tollgate_checks_total`
/// (by the limiter, under the limiter's name) and a request once here
/// (under the layer's), and no sum over either counts anything twice.
#[cfg(feature = "tower")]
#[derive(Debug, Clone, Default)]
pub(crate) struct Requests {
    #[cfg(feature = "metrics")]
    counters: std::sync::OnceLock<[metrics::Counter; 4]>,
}

#[cfg(feature = "tower")]
impl Requests {
    /// Counts one request of the layer whose policy is `policy`.
    #[inline]
    pub(crate) fn answered(&self, policy: &str, answered: Answered) {
        #[cfg(feature = "metrics")]
        self.counters.get_or_init(|| {
            const REQUESTS: &str = "tollgate_http_requests_total";
            metrics::describe_counter!(
                REQUESTS,
                metrics::Unit::Count,
                "requests the HTTP layer answered, by policy and outcome"
            );
            let policy = metrics::SharedString::from_owned(policy.to_owned());
            ["allowed", "denied", "no_key", "error"]
                .map(|outcome| metrics::counter!(REQUESTS, "policy" => policy.clone(), "outcome" => outcome))
        })[answered as usize]
            .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = (policy, answered);
    }
}

/// At most one `warn` per cause in this long.
#[cfg(any(feature = "tower", feature = "redis"))]
pub(crate) const WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Lets one event through per [`WARN_INTERVAL`] and counts the others: what
/// keeps a cause that repeats on every request from flooding the log.
#[cfg(any(feature = "tower", feature = "redis"))]
#[derive(Debug)]
pub(crate) struct Gate {
    /// Milliseconds since the caller's start of the last event let through;
    /// `NEVER` before the first.
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

#[cfg(any(feature = "tower", feature = "redis"))]
impl Gate {
    const NEVER: u64 = u64::MAX;

    pub(crate) fn new() -> Self {
        Self {
            last_ms: std::sync::atomic::AtomicU64::new(Self::NEVER),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether the event at `now_ms` is the one to warn about, and if so how
    /// many were held back since the last. Of two threads racing for the
    /// same interval, one wins.
    pub(crate) fn pass(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_ms.load(Relaxed);
        let due = last == Self::NEVER || now_ms.saturating_sub(last) >= WARN_INTERVAL.as_millis() as u64;
        if due && self.last_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).is_ok() {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(any(feature = "tower", feature = "redis"))]
    #[test]
    fn a_gate_lets_one_event_through_per_interval_and_counts_the_rest() {
        use super::{Gate, WARN_INTERVAL};
        let gate = Gate::new();
        let interval = WARN_INTERVAL.as_millis() as u64;
        assert_eq!(gate.pass(5), Some(0), "the first event");
        assert_eq!(gate.pass(6), None);
        assert_eq!(gate.pass(5 + interval - 1), None);
        assert_eq!(gate.pass(5 + interval), Some(2), "a minute later, with the two held back");
        assert_eq!(gate.pass(5 + interval + 1), None);
    }
}
