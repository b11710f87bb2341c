//! Composite: several named limits on one key, all or nothing; and the step
//! that [`Plans`](super::Plans) shares with it.

use std::sync::Arc;
use std::time::Duration;

use super::sealed::{Shape, Step};
use super::{Algorithm, Configuration, Limit, LimitState, Parts};
use crate::error::invalid;
use crate::{Decision, Result};

/// Several limits on the same key, checked all or nothing: "10 a second and
/// 1000 a day", as Bucket4j's bandwidths are.
///
/// Each limit has a name (what the `RateLimit` headers call its policy, and
/// part of its Redis key) and any algorithm; they can be mixed. A request is
/// admitted only if every limit admits it, and then it takes its cost from
/// every one; a denial takes nothing from any of them. So a daily quota is
/// not spent by requests that the per-second limit turned away, as it would
/// be with one limiter layered outside another.
///
/// A composite is an [`Algorithm`]: `InMemory::new(composite)` and
/// `Redis::builder(composite)` take it as they take one algorithm, and decide
/// it in one step (in memory, under one lock; on Redis, in one script call,
/// with every limit's state under the user key's hash tag).
///
/// ```
/// use tollgate::{Composite, FixedWindow, InMemory, ManualClock, Rate, TokenBucket};
///
/// let api = Composite::new("per-second", TokenBucket::new(10, Rate::per_second(10))?)?
///     .with("per-day", FixedWindow::new(Rate::per_day(1_000))?)?;
/// let limiter = InMemory::with_clock(api, ManualClock::new());
/// let admitted = (0..100).filter(|_| limiter.check_sync("alice").is_allowed()).count();
/// assert_eq!(admitted, 10);
/// // The 90 denied took nothing from the day.
/// let now = limiter.check_detailed_sync("alice", 0, None)?;
/// assert_eq!(now.get("per-day").map(|day| day.decision().remaining()), Some(990));
/// # Ok::<(), tollgate::Error>(())
/// ```
///
/// The [`Decision`] of a composite:
///
/// - allowed if every limit allows the request;
/// - `limit`: the smallest limit, which is also the largest cost that can
///   ever be admitted (a larger one is [`Error::CostTooHigh`](crate::Error::CostTooHigh));
/// - `remaining`: the smallest remaining;
/// - `retry_after`: the longest of the denying limits' own: each of them
///   admits the request from its own `retry_after` on and keeps admitting it
///   (waiting only frees capacity), and the limits that admit now keep
///   admitting it too, so from the longest on every limit admits it, absent
///   other traffic; and not before, since that limit does not;
/// - `reset_after` and `wait`: the longest.
///
/// Each limit's own figures are in
/// [`RateLimiter::check_detailed`](crate::RateLimiter::check_detailed)'s
/// [`Breakdown`](crate::Breakdown): for a denied request, the denying limits'
/// denials and the others' figures as they stand (nothing was taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composite {
    limits: Arc<[Named]>,
    limit: u64,
}

/// A limit with its name, as composites and plans hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub(crate) name: Arc<str>,
    pub(crate) limit: Limit,
    /// [`Limit::window`], computed once.
    pub(crate) window: Duration,
}

impl Named {
    pub(crate) fn new(name: Arc<str>, limit: Limit) -> Self {
        Self { name, window: limit.window(), limit }
    }
}

impl Composite {
    /// The most limits a composite holds: each is a few reads in one script
    /// call on Redis, and this bounds the call.
    pub const MAX_LIMITS: usize = 16;

    /// A composite of one limit, named `name`; add more with
    /// [`with`](Self::with).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a name that
    /// is empty, longer than 64 bytes, or has anything but printable ASCII
    /// without `"`, `\`, `{` and `}` (names go into HTTP headers and Redis
    /// keys).
    pub fn new(name: impl Into<String>, limit: impl Into<Limit>) -> Result<Self> {
        Self::from_limits([(name, limit)])
    }

    /// This composite and one more limit.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a bad name
    /// (as [`new`](Self::new)), a name already taken, or more than
    /// [`MAX_LIMITS`](Self::MAX_LIMITS) limits.
    pub fn with(self, name: impl Into<String>, limit: impl Into<Limit>) -> Result<Self> {
        let added = (name.into(), limit.into());
        let limits = self.limits.iter().map(|named| (named.name.to_string(), named.limit));
        Self::from_limits(limits.chain([added]))
    }

    /// A composite of `limits`, (name, limit) pairs, such as a configuration
    /// file gives them.
    ///
    /// ```
    /// use tollgate::{Composite, FixedWindow, Limit, Rate, SlidingLog};
    ///
    /// let limits: Vec<(String, Limit)> = vec![
    ///     ("per-minute".into(), SlidingLog::new(Rate::per_minute(100))?.into()),
    ///     ("per-hour".into(), FixedWindow::new(Rate::per_hour(2_000))?.into()),
    /// ];
    /// let composite = Composite::from_limits(limits)?;
    /// assert_eq!(composite.limits().map(|(name, _)| name).collect::<Vec<_>>(), ["per-minute", "per-hour"]);
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for no limits,
    /// more than [`MAX_LIMITS`](Self::MAX_LIMITS), a bad name (as
    /// [`new`](Self::new)) or a name given twice.
    pub fn from_limits<N, L>(limits: impl IntoIterator<Item = (N, L)>) -> Result<Self>
    where
        N: Into<String>,
        L: Into<Limit>,
    {
        let mut named: Vec<Named> = Vec::new();
        for (name, limit) in limits {
            let name = name.into();
            check_name("limit", &name)?;
            if named.iter().any(|other| *other.name == *name) {
                return Err(invalid(format!("a composite has one limit named {name:?}, not two")));
            }
            named.push(Named::new(name.into(), limit.into()));
        }
        if named.is_empty() {
            return Err(invalid("a composite needs at least one limit"));
        }
        if named.len() > Self::MAX_LIMITS {
            return Err(invalid(format!("a composite holds at most {} limits, not {}", Self::MAX_LIMITS, named.len())));
        }
        let limit = smallest_limit(&named);
        Ok(Self { limits: named.into(), limit })
    }

    /// The limits, by name, in the order they were given.
    pub fn limits(&self) -> impl ExactSizeIterator<Item = (&str, &Limit)> {
        self.limits.iter().map(|named| (&*named.name, &named.limit))
    }
}

/// The smallest of the limits: the most a composite of them admits at once.
pub(crate) fn smallest_limit(limits: &[Named]) -> u64 {
    limits.iter().map(|named| named.limit.limit()).min().unwrap_or(0)
}

/// Checks the name of a limit or a plan, once: it becomes an HTTP
/// structured-field string (so no `"` or `\`), part of a Redis key before
/// the user key's hash tag (so no braces), and a JSON string in a 429 body.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    const LONGEST: usize = 64;
    if name.is_empty() || name.len() > LONGEST {
        return Err(invalid(format!("a {what} name has 1 to {LONGEST} bytes, not {}: {name:?}", name.len())));
    }
    match name.chars().find(|&c| !(' '..='~').contains(&c) || matches!(c, '"' | '\\' | '{' | '}')) {
        Some(c) => Err(invalid(format!(
            "the {what} name {name:?} has {c:?}: use printable ASCII without '\"', '\\', '{{' or '}}'"
        ))),
        None => Ok(()),
    }
}

impl Algorithm for Composite {
    /// The smallest of its limits: the most that can be admitted at once.
    fn limit(&self) -> u64 {
        self.limit
    }

    fn name(&self) -> &'static str {
        "composite"
    }
}

impl Step for Composite {
    type State = Stamps;

    fn step(&self, stamps: &mut Stamps, now_us: u64, cost: u64) -> Decision {
        decide_all(&self.limits, |j| j, self.limit, stamps, now_us, cost, None)
    }

    fn expires_at(&self, stamps: &Stamps) -> u64 {
        stamps.expires_at()
    }

    fn step_in(
        &self,
        _: usize,
        stamps: &mut Stamps,
        now_us: u64,
        cost: u64,
        parts: Option<&mut Vec<Decision>>,
    ) -> Decision {
        decide_all(&self.limits, |j| j, self.limit, stamps, now_us, cost, parts)
    }
}

impl Shape for Composite {
    fn limit_in(&self, _: usize) -> u64 {
        self.limit
    }

    fn configuration(&self, _: usize) -> Configuration<'_> {
        Configuration { plan: None, limit: self.limit, parts: Parts::Several(&self.limits) }
    }
}

/// One key's state under a composite or plans: each limit's state in its
/// slot, with the limit that wrote it (another plan may read it, and the
/// sweep must know when it expires).
///
/// A composite's slots are its limits, in order. Plans give one slot to each
/// (name, algorithm) found in any plan, so that plans sharing a limit share
/// its state, as they share its Redis key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stamps {
    slots: Vec<Option<Stamped>>,
}

/// A limit's state and the configuration that wrote it.
#[derive(Debug, Clone, PartialEq)]
struct Stamped {
    written_by: Limit,
    state: LimitState,
}

impl Stamps {
    /// When every state has expired, each by the configuration that wrote
    /// it: what Redis's TTLs do, key by key.
    pub(crate) fn expires_at(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .map(|stamped| stamped.written_by.expires_at_state(&stamped.state))
            .max()
            .unwrap_or(0)
    }

    fn put(&mut self, slot: usize, stamped: Stamped) {
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, None);
        }
        self.slots[slot] = Some(stamped);
    }
}

/// Decides `cost` for every limit of `limits` (the state of limit `j` in
/// slot `slot(j)` of `stamps`), all or nothing; `limit` is theirs together.
///
/// First each limit's state as this limit reads it: its own, in place; or a
/// copy of another configuration's, adopted (unless that one's own TTL has
/// run out: Redis would have dropped the key), or a new one; and a peek of
/// each. Every limit admits the cost if it is at most every peek's
/// `remaining` (the promise of [`Step::step`]): then each takes it, and the
/// copies are written with this configuration as their writer. Otherwise
/// nothing is written: the limits it does not fit report their denial, the
/// others their peek.
pub(crate) fn decide_all(
    limits: &[Named],
    slot: impl Fn(usize) -> usize,
    limit: u64,
    stamps: &mut Stamps,
    now_us: u64,
    cost: u64,
    parts: Option<&mut Vec<Decision>>,
) -> Decision {
    // Validation keeps a composite within MAX_LIMITS; a longer list would be a bug, cut rather than panic.
    let limits = &limits[..limits.len().min(Composite::MAX_LIMITS)];
    // The states this request reads but does not own, by limit: none on a key's own states.
    let mut copies: Vec<(usize, LimitState)> = Vec::new();
    let mut decisions = [Decision::allowed(0, 0, 0, 0); Composite::MAX_LIMITS];
    let mut fits = true;
    for (j, named) in limits.iter().enumerate() {
        let stored = stamps.slots.get(slot(j)).and_then(Option::as_ref);
        if !stored.is_some_and(|stamped| stamped.written_by == named.limit) {
            copies.push((j, read_as(stored, &named.limit, now_us)));
        }
        let peek = match state_of(stamps, &mut copies, j, slot(j)) {
            Some(state) => named.limit.step_state(state, now_us, 0),
            None => named.limit.step_state(&mut named.limit.fresh_state(), now_us, 0),
        };
        fits &= cost <= peek.remaining();
        decisions[j] = peek;
    }
    if cost > 0 {
        for (j, named) in limits.iter().enumerate() {
            if (fits || decisions[j].remaining() < cost)
                && let Some(state) = state_of(stamps, &mut copies, j, slot(j))
            {
                decisions[j] = named.limit.step_state(state, now_us, cost);
                debug_assert_eq!(decisions[j].is_allowed(), fits, "{named:?} broke the promise of Step::step");
            }
        }
        if fits {
            for (j, state) in copies {
                stamps.put(slot(j), Stamped { written_by: limits[j].limit, state });
            }
        }
    }
    let decisions = &decisions[..limits.len()];
    if let Some(parts) = parts {
        parts.extend_from_slice(decisions);
    }
    combine(decisions, limit)
}

/// A state `stored` by another configuration (or none), as `limit` reads it.
fn read_as(stored: Option<&Stamped>, limit: &Limit, now_us: u64) -> LimitState {
    match stored {
        Some(stamped) if stamped.written_by.expires_at_state(&stamped.state) > now_us => {
            limit.adopt_state(stamped.state.clone(), &stamped.written_by)
        }
        _ => limit.fresh_state(),
    }
}

/// Limit `j`'s state: its copy, or else its own in its slot.
fn state_of<'s>(
    stamps: &'s mut Stamps,
    copies: &'s mut [(usize, LimitState)],
    j: usize,
    slot: usize,
) -> Option<&'s mut LimitState> {
    match copies.iter_mut().find(|(limit, _)| *limit == j) {
        Some((_, state)) => Some(state),
        None => stamps.slots.get_mut(slot)?.as_mut().map(|stamped| &mut stamped.state),
    }
}

/// The decision of several limits together, from each one's: allowed if
/// all allow; the smallest `remaining`; the longest `retry_after` of those
/// that deny; the longest `reset_after` and `wait`. `limit` is theirs
/// together, the smallest of their limits. The Redis backend combines its
/// script's per-limit replies with it too.
pub(crate) fn combine(decisions: &[Decision], limit: u64) -> Decision {
    let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    let remaining = decisions.iter().map(Decision::remaining).min().unwrap_or(0).min(limit);
    let reset_after_us = decisions.iter().map(|d| micros(d.reset_after())).max().unwrap_or(0);
    if decisions.iter().all(Decision::is_allowed) {
        let wait_us = decisions.iter().map(|d| micros(d.wait())).max().unwrap_or(0);
        Decision::allowed(limit, remaining, reset_after_us, wait_us)
    } else {
        let retry_after_us = decisions.iter().filter_map(Decision::retry_after).map(micros).max().unwrap_or(0);
        Decision::denied(limit, remaining, retry_after_us, reset_after_us)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{FixedWindow, LeakyBucket, Rate, SlidingLog, TokenBucket};

    const SECOND: u64 = 1_000_000;
    const DAY: u64 = 86_400 * SECOND;

    fn ten_a_second_and_a_thousand_a_day() -> Composite {
        Composite::new("per-second", TokenBucket::new(10, Rate::per_second(10)).unwrap())
            .unwrap()
            .with("per-day", FixedWindow::new(Rate::per_day(1_000)).unwrap())
            .unwrap()
    }

    #[test]
    fn a_hundred_requests_at_ten_a_second_and_a_thousand_a_day_admit_ten_and_spend_ten_of_the_day() {
        let composite = ten_a_second_and_a_thousand_a_day();
        let mut stamps = Stamps::default();
        let now = 3 * DAY + 5 * SECOND;
        let admitted = (0..100).filter(|_| composite.step(&mut stamps, now, 1).is_allowed()).count();
        assert_eq!(admitted, 10);
        let mut parts = Vec::new();
        let peek = composite.step_in(0, &mut stamps, now, 0, Some(&mut parts));
        assert_eq!(parts.iter().map(Decision::remaining).collect::<Vec<_>>(), [0, 990]);
        assert_eq!((peek.limit(), peek.remaining()), (10, 0));
    }

    #[test]
    fn a_denial_reports_the_binding_limits_wait_and_the_others_as_they_stand() {
        let composite = ten_a_second_and_a_thousand_a_day();
        let mut stamps = Stamps::default();
        let _ = composite.step(&mut stamps, 0, 10);
        let before = stamps.clone();
        let mut parts = Vec::new();
        let denied = composite.step_in(0, &mut stamps, 50_000, 1, Some(&mut parts));
        assert_eq!(stamps, before, "a denial writes nothing");
        assert!(!parts[0].is_allowed() && parts[1].is_allowed());
        assert_eq!(parts[1].remaining(), 990, "the day's figures as they stand, nothing taken");
        assert_eq!(denied.retry_after(), parts[0].retry_after());
        assert_eq!(denied.retry_after(), Some(Duration::from_millis(50)));
        assert_eq!(denied.reset_after(), Duration::from_micros(DAY - 50_000), "until the day is full again");
    }

    #[test]
    fn retry_after_is_the_longest_denial_and_the_request_passes_then_and_not_before() {
        // Two limits that both deny, with different waits.
        let composite = Composite::new("burst", TokenBucket::new(2, Rate::per_second(1)).unwrap())
            .unwrap()
            .with("minute", SlidingLog::new(Rate::per_minute(3)).unwrap())
            .unwrap();
        let mut stamps = Stamps::default();
        assert!(composite.step(&mut stamps, 0, 2).is_allowed());
        assert!(composite.step(&mut stamps, 2 * SECOND, 1).is_allowed());
        let denied = composite.step(&mut stamps, 2 * SECOND, 2);
        // The bucket has 1 of 2 after 3 s; the log frees two units 60 s after the first request.
        assert_eq!(denied.retry_after(), Some(Duration::from_secs(58)));
        let retry = 2 * SECOND + 58 * SECOND;
        assert!(!composite.step(&mut stamps.clone(), retry - 1, 2).is_allowed());
        assert!(composite.step(&mut stamps, retry, 2).is_allowed());
    }

    #[test]
    fn the_limit_is_the_smallest_and_a_leaky_buckets_wait_is_the_composites() {
        let composite = Composite::new("queue", LeakyBucket::new(4, Rate::per_second(10)).unwrap())
            .unwrap()
            .with("hour", FixedWindow::new(Rate::per_hour(3)).unwrap())
            .unwrap();
        assert_eq!(composite.limit(), 3);
        let mut stamps = Stamps::default();
        let waits: Vec<_> =
            (0..4).map(|_| composite.step(&mut stamps, 0, 1)).map(|d| (d.is_allowed(), d.wait())).collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [(true, ms(0)), (true, ms(100)), (true, ms(200)), (false, ms(0))]);
    }

    #[test]
    fn names_are_checked_once_and_a_composite_has_one_to_sixteen_distinct_ones() {
        let limit = || FixedWindow::new(Rate::per_second(1)).unwrap();
        for bad in ["", "a\"b", "back\\slash", "{tag}", "é", "tab\t", &"x".repeat(65)] {
            assert!(Composite::new(bad, limit()).is_err(), "{bad:?}");
        }
        assert!(Composite::new("per-second 1/s:ok", limit()).is_ok());
        assert!(Composite::new("a", limit()).unwrap().with("a", limit()).is_err());
        assert!(Composite::from_limits(Vec::<(String, Limit)>::new()).is_err());
        let many = |n: usize| Composite::from_limits((0..n).map(|i| (format!("l{i}"), limit())));
        assert!(many(Composite::MAX_LIMITS).is_ok());
        assert!(many(Composite::MAX_LIMITS + 1).is_err());
    }

    #[test]
    fn a_window_is_the_time_the_whole_allowance_takes_to_come_back() {
        let window = |limit: Limit| limit.window();
        assert_eq!(window(FixedWindow::new(Rate::per_day(5)).unwrap().into()), Duration::from_secs(86_400));
        assert_eq!(window(SlidingLog::new(Rate::per_minute(5)).unwrap().into()), Duration::from_secs(60));
        assert_eq!(window(TokenBucket::new(100, Rate::per_second(10)).unwrap().into()), Duration::from_secs(10));
        assert_eq!(window(LeakyBucket::new(9, Rate::per_second(10)).unwrap().into()), Duration::from_secs(1));
        assert_eq!(window(TokenBucket::new(1, Rate::per_second(3)).unwrap().into()), Duration::from_micros(333_334));
    }

    /// Everyday configurations of every algorithm, as `Limit`s.
    fn any_limit() -> impl Strategy<Value = Limit> {
        let rate =
            (1..=8_u64, 1..=2_000_u64).prop_map(|(amount, period)| Rate::new(amount, Duration::from_micros(period)));
        prop_oneof![
            rate.clone().prop_map(|rate| FixedWindow::new(rate).unwrap().into()),
            rate.clone().prop_map(|rate| SlidingLog::new(rate).unwrap().into()),
            (1..=8_u64, rate.clone()).prop_map(|(capacity, rate)| TokenBucket::new(capacity, rate).unwrap().into()),
            (1..=8_u64, rate).prop_map(|(capacity, rate)| LeakyBucket::new(capacity, rate).unwrap().into()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The promise a composite is built on: every algorithm admits a cost
        /// exactly when a peek at the same moment says that much remains.
        #[test]
        fn every_algorithm_admits_exactly_what_a_peek_says_remains(
            limit in any_limit(),
            traffic in prop::collection::vec((0..3_000_u64, 1..=8_u64), 0..40),
            gap in 0..3_000_u64,
        ) {
            let mut state = limit.fresh_state();
            let mut now = 1_000_000;
            for (advance, cost) in traffic {
                now += advance;
                let _ = limit.step_state(&mut state, now, cost.min(limit.limit()));
            }
            now += gap;
            let remaining = limit.step_state(&mut state.clone(), now, 0).remaining();
            for cost in 0..=limit.limit() {
                let admitted = limit.step_state(&mut state.clone(), now, cost).is_allowed();
                prop_assert_eq!(admitted, cost <= remaining, "{:?}: cost {} with {} remaining", limit, cost, remaining);
            }
        }
    }
}
