//! Reference models: each algorithm as its textbook description, in exact
//! rational arithmetic over an explicit history. Slow, and obviously right;
//! every backend is held to them decision by decision. Beside each model,
//! the algorithm's [`Spec`]: the configurations the suites try and the
//! promise it makes.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use tollgate::{Algorithm, Decision, FixedWindow, LeakyBucket, Rate, SlidingLog, SlidingWindow, TokenBucket};

/// Every field of a decision, comparable with `assert_eq!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub retry_after: Option<Duration>,
    pub reset_after: Duration,
    pub wait: Duration,
}

impl From<Decision> for Verdict {
    fn from(decision: Decision) -> Self {
        Self {
            allowed: decision.is_allowed(),
            limit: decision.limit(),
            remaining: decision.remaining(),
            retry_after: decision.retry_after(),
            reset_after: decision.reset_after(),
            wait: decision.wait(),
        }
    }
}

fn us(micros: i128) -> Duration {
    Duration::from_micros(u64::try_from(micros).expect("a model duration is never negative"))
}

/// A count of units left is never negative: reservations may have taken
/// more than there is now.
fn left(remaining: i128) -> u64 {
    remaining.max(0) as u64
}

pub fn allowed(limit: u64, remaining: impl Into<i128>, reset_after: impl Into<i128>, wait: impl Into<i128>) -> Verdict {
    Verdict {
        allowed: true,
        limit,
        remaining: left(remaining.into()),
        retry_after: None,
        reset_after: us(reset_after.into()),
        wait: us(wait.into()),
    }
}

pub fn denied(
    limit: u64,
    remaining: impl Into<i128>,
    retry_after: impl Into<i128>,
    reset_after: impl Into<i128>,
) -> Verdict {
    Verdict {
        allowed: false,
        limit,
        remaining: left(remaining.into()),
        retry_after: Some(us(retry_after.into())),
        reset_after: us(reset_after.into()),
        wait: Duration::ZERO,
    }
}

/// A realistic epoch time at the start of a second, so windows are easy to read.
pub const EPOCH: Duration = Duration::from_secs(1_700_000_000);
pub const MS: u64 = 1_000;
pub const SECOND: u64 = 1_000_000;

/// A worked example, every figure in it computed by hand: one key of
/// `algorithm`, on a clock starting at `start`; each step moves the clock on
/// by some µs, asks for a cost, and expects a decision.
#[derive(Debug, Clone)]
pub struct Example<A> {
    pub algorithm: A,
    pub start: Duration,
    pub steps: Vec<(u64, u64, Verdict)>,
}

/// A reference model of one algorithm for one key. `now` never goes back.
pub trait Model: Clone {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict;

    /// A reservation of a slot at most `max_wait` µs away: allowed with the
    /// wait until the slot, or denied with the wait it would have needed.
    /// An algorithm that reserves nothing ahead decides as a check.
    fn reserve(&mut self, now: u64, cost: u64, max_wait: u64) -> Verdict {
        let _ = max_wait;
        self.decide(now, cost)
    }
}

/// What the suites need of each algorithm (see `algorithms.rs` for the
/// list they expand).
pub trait Spec: Algorithm + PartialEq {
    type Model: Model;

    /// The model of this configuration, for a key never seen.
    fn model(&self) -> Self::Model;

    /// The model of this configuration for a key whose history `written`
    /// (the model of another configuration) recorded: what a deploy that
    /// changes the configuration does to the key's usage.
    fn model_after(&self, written: &Self::Model) -> Self::Model;

    /// Admits `limit` at once and about `limit` a `period` after that.
    fn with_limit(limit: u64, period: Duration) -> Self {
        Self::try_new(limit, Rate::new(limit, period)).unwrap()
    }

    /// The algorithm's constructor, given a capacity (for those that have
    /// one; a window or a log takes its amount from `rate`) and a rate: the
    /// constructor's own error for bad ones. A leaky bucket's `capacity` is
    /// what it admits at once, one more than those that wait.
    fn try_new(capacity: u64, rate: Rate) -> tollgate::Result<Self>;

    /// The period of its rate, µs: the suites scale time steps with it.
    fn period_us(&self) -> u64;

    /// Whether a key's state keeps each admission for a period (a log), so
    /// that it grows with the amount: a bench that holds many keys gives such
    /// an algorithm a short period, or its store would grow without bound.
    #[allow(dead_code, reason = "read by the benches and examples/compare.rs, which include this file")]
    const STATE_GROWS_WITH_AMOUNT: bool;

    /// This configuration with what it admits at once scaled by `scale`
    /// and its pace kept: a window's or a log's amount over the same period,
    /// a bucket's capacity at the same rate. The variants a plan has of
    /// another's limit.
    fn scaled(&self, scale: impl Fn(u64) -> u64) -> Self;

    /// The longest wait (retry-after, reset-after, hold, TTL) it can itself
    /// produce, µs, when time does not go back: a window's or a log's
    /// period; the time a bucket takes to drain from full.
    fn longest_wait_us(&self) -> u64 {
        self.period_us()
    }

    /// Configurations of everyday size: limits up to 12, periods from 1 µs
    /// to 20 s, fractions of a µs per unit included.
    fn everyday() -> BoxedStrategy<Self>;

    /// Configurations at the edge of what validation allows, where a script
    /// computing carelessly in doubles would lose a microsecond.
    fn at_the_edge() -> BoxedStrategy<Self>;

    /// Whether what it admitted keeps its promise, independently of any
    /// model: admissions are (time µs, cost, wait µs), on one key.
    fn keeps_its_promise(&self, admitted: &[(u64, u64, u64)]) -> Result<(), String>;

    /// The most one key may admit, from new, at times no further apart than
    /// `span_us`: the load test's bound, where admissions are counted, not
    /// timed.
    fn most_admitted_in(&self, span_us: u64) -> u64;

    /// Its worked examples, which every backend must decide to the
    /// microsecond (the conformance suite): what it does, spelled out.
    fn worked_examples() -> Vec<Example<Self>>;

    /// How far past this configuration's own longest wait a model that
    /// starts as `model` may send a check, µs: the slots that another
    /// configuration reserved ahead and this one carried over (zero for
    /// the algorithms that reserve nothing ahead).
    fn reserved_ahead_us(&self, model: &Self::Model) -> u64 {
        let _ = model;
        0
    }
}

/// Periods that divide evenly, and ones that leave a fraction per request.
pub fn everyday_period_us() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1), Just(7), 1..=1_000_u64, 1_000..=20_000_000_u64, (1..=20_u64).prop_map(|s| s * 1_000_000)]
}

pub fn rate(amount: u64, period_us: u64) -> Rate {
    Rate::new(amount, Duration::from_micros(period_us))
}

fn period_us_of(rate: Rate) -> u64 {
    rate.period().as_micros() as u64
}

/// Units a `rate` adds (tokens) or frees (slots) in `span_us`, whole.
fn refilled_in(rate: Rate, span_us: u64) -> u64 {
    (u128::from(rate.amount()) * u128::from(span_us) / u128::from(period_us_of(rate))) as u64
}

/// Total cost admitted at times in `[from, until)`.
fn admitted_between(admitted: &[(u64, u64, u64)], from: u64, until: u64) -> u64 {
    admitted.iter().filter(|(at, _, _)| (from..until).contains(at)).map(|(_, cost, _)| cost).sum()
}

/// An exact fraction, always kept with a positive denominator.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    num: i128,
    den: i128,
}

impl Ratio {
    pub fn new(num: i128, den: i128) -> Self {
        assert!(den > 0);
        Self { num, den }
    }
    pub fn int(n: i128) -> Self {
        Self::new(n, 1)
    }
    pub fn add(self, other: Self) -> Self {
        Self::new(self.num * other.den + other.num * self.den, self.den * other.den).reduced()
    }
    pub fn sub(self, other: Self) -> Self {
        self.add(Self::new(-other.num, other.den))
    }
    pub fn mul(self, other: Self) -> Self {
        Self::new(self.num * other.num, self.den * other.den).reduced()
    }
    pub fn div(self, other: Self) -> Self {
        assert!(other.num > 0);
        Self::new(self.num * other.den, self.den * other.num).reduced()
    }
    pub fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }
    pub fn ceil(self) -> i128 {
        -(-self.num).div_euclid(self.den)
    }
    pub fn max(self, other: Self) -> Self {
        if self.le(other) { other } else { self }
    }
    pub fn min(self, other: Self) -> Self {
        if self.le(other) { self } else { other }
    }
    pub fn le(self, other: Self) -> bool {
        self.num * other.den <= other.num * self.den
    }
    fn reduced(self) -> Self {
        let divisor = gcd(self.num.abs(), self.den).max(1);
        Self { num: self.num / divisor, den: self.den / divisor }
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

// ---------------------------------------------------------------------------
// Fixed window

/// At most `amount` per window `[k × period, (k + 1) × period)`.
#[derive(Debug, Clone)]
pub struct FixedWindowModel {
    pub amount: u64,
    pub period: u64,
    pub admitted: Vec<(u64, u64)>,
    /// What another configuration counted in its last window: (the window's
    /// start, its count). It counts in this configuration's window if it
    /// was recorded from that window's start on.
    pub carried: Option<(u64, u64)>,
}

impl FixedWindowModel {
    pub fn new(amount: u64, period: u64) -> Self {
        Self { amount, period, admitted: Vec::new(), carried: None }
    }

    /// The last window that admitted anything, and its count.
    fn last_window(&self) -> Option<(u64, u64)> {
        let &(last, _) = self.admitted.last()?;
        let start = last / self.period * self.period;
        Some((start, self.admitted.iter().filter(|(at, _)| *at >= start).map(|(_, cost)| cost).sum()))
    }
}

impl Model for FixedWindowModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        let start = now / self.period * self.period;
        let window_end = (start + self.period - now) as i128;
        let carried = match self.carried {
            Some((carried_start, count)) if carried_start >= start => count.min(self.amount),
            _ => 0,
        };
        let own: u64 = self.admitted.iter().filter(|(at, _)| *at >= start).map(|(_, c)| c).sum();
        let used = carried + own;
        let (amount, reset) = (self.amount as i128, |used: u64| if used == 0 { 0 } else { window_end });
        if used + cost > self.amount {
            return denied(self.amount, amount - used as i128, window_end, reset(used));
        }
        if cost > 0 {
            self.admitted.push((now, cost));
        }
        allowed(self.amount, amount - (used + cost) as i128, reset(used + cost), 0)
    }
}

impl Spec for FixedWindow {
    type Model = FixedWindowModel;

    /// Every window the span touches: one more than the periods it spans, and one for the start.
    fn most_admitted_in(&self, span_us: u64) -> u64 {
        self.limit() * (span_us / self.period_us() + 2)
    }

    fn worked_examples() -> Vec<Example<Self>> {
        vec![Example {
            algorithm: FixedWindow::new(Rate::per_second(3)).unwrap(),
            start: EPOCH + Duration::from_millis(250),
            steps: vec![
                (0, 1, allowed(3, 2, 750 * MS, 0)),
                (0, 2, allowed(3, 0, 750 * MS, 0)),
                (500 * MS, 1, denied(3, 0, 250 * MS, 250 * MS)),
                (0, 0, allowed(3, 0, 250 * MS, 0)),
                (250 * MS, 3, allowed(3, 0, SECOND, 0)),
            ],
        }]
    }

    fn model(&self) -> FixedWindowModel {
        FixedWindowModel::new(self.limit(), self.period_us())
    }

    fn model_after(&self, written: &FixedWindowModel) -> FixedWindowModel {
        // The state holds the writer's last window; before the writer ever
        // admitted, whatever it carried itself.
        FixedWindowModel { carried: written.last_window().or(written.carried), ..self.model() }
    }

    fn try_new(_: u64, rate: Rate) -> tollgate::Result<Self> {
        FixedWindow::new(rate)
    }

    const STATE_GROWS_WITH_AMOUNT: bool = false;

    fn scaled(&self, scale: impl Fn(u64) -> u64) -> Self {
        let rate = self.rate();
        Self::new(Rate::new(scale(rate.amount()), rate.period())).unwrap()
    }

    fn period_us(&self) -> u64 {
        period_us_of(self.rate())
    }

    fn everyday() -> BoxedStrategy<Self> {
        (1..=12_u64, everyday_period_us()).prop_map(|(amount, period)| Self::new(rate(amount, period)).unwrap()).boxed()
    }

    fn at_the_edge() -> BoxedStrategy<Self> {
        (1..=1_u64 << 53, 1_u64 << 40..=1 << 52)
            .prop_map(|(amount, period)| Self::new(rate(amount, period)).unwrap())
            .boxed()
    }

    fn keeps_its_promise(&self, admitted: &[(u64, u64, u64)]) -> Result<(), String> {
        let period = self.period_us();
        for &(at, _, _) in admitted {
            let window_start = at / period * period;
            let total = admitted_between(admitted, window_start, window_start + period);
            if total > self.limit() {
                return Err(format!("{total} admitted in the window starting at {window_start}"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Sliding log

/// At most `amount` in any interval `[t, t + period)`.
#[derive(Debug, Clone)]
pub struct SlidingLogModel {
    pub amount: u64,
    pub period: u64,
    pub admitted: Vec<(u64, u64)>,
}

impl SlidingLogModel {
    pub fn new(amount: u64, period: u64) -> Self {
        Self { amount, period, admitted: Vec::new() }
    }

    /// What was admitted in `(at - period, at]`.
    fn used_at(&self, at: u64) -> u64 {
        self.admitted.iter().filter(|(t, _)| t + self.period > at && *t <= at).map(|(_, c)| c).sum()
    }
}

impl Model for SlidingLogModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        // More than the amount only if another configuration admitted it.
        let used = self.used_at(now).min(self.amount);
        let until_empty = self
            .admitted
            .iter()
            .filter(|(t, _)| t + self.period > now)
            .map(|(t, _)| (t + self.period - now) as i128)
            .max()
            .unwrap_or(0);
        let amount = self.amount as i128;
        if used + cost > self.amount {
            // The earliest moment, among those when an entry leaves, at which it fits.
            let mut leaving: Vec<u64> =
                self.admitted.iter().map(|(t, _)| t + self.period).filter(|&at| at > now).collect();
            leaving.sort_unstable();
            let fits_at = leaving.into_iter().find(|&at| self.used_at(at) + cost <= self.amount).unwrap();
            return denied(self.amount, amount - used as i128, (fits_at - now) as i128, until_empty);
        }
        if cost == 0 {
            return allowed(self.amount, amount - used as i128, until_empty, 0);
        }
        // The log forgets at most 64 requests that have left the window per
        // write, and keeps requests of one µs as one: that decides what
        // another configuration reads, never what this one decides.
        let expired = self.admitted.iter().take_while(|(t, _)| t + self.period <= now).count();
        self.admitted.drain(..expired.min(64));
        match self.admitted.last_mut() {
            Some((t, total)) if *t == now => *total += cost,
            _ => self.admitted.push((now, cost)),
        }
        allowed(self.amount, amount - (used + cost) as i128, self.period as i128, 0)
    }
}

impl Spec for SlidingLog {
    type Model = SlidingLogModel;

    /// Any interval of one period: the span fits in one more of them than the periods it spans.
    fn most_admitted_in(&self, span_us: u64) -> u64 {
        self.limit() * (span_us / self.period_us() + 1)
    }

    fn worked_examples() -> Vec<Example<Self>> {
        vec![Example {
            algorithm: SlidingLog::new(Rate::per_second(2)).unwrap(),
            start: EPOCH,
            steps: vec![
                (0, 1, allowed(2, 1, SECOND, 0)),
                (400 * MS, 1, allowed(2, 0, SECOND, 0)),
                (500 * MS, 1, denied(2, 0, 100 * MS, 500 * MS)),
                // The first entry has left; two more need the second to leave too.
                (100 * MS, 2, denied(2, 1, 400 * MS, 400 * MS)),
                (0, 1, allowed(2, 0, SECOND, 0)),
                (0, 0, allowed(2, 0, SECOND, 0)),
            ],
        }]
    }

    fn model(&self) -> SlidingLogModel {
        SlidingLogModel::new(self.limit(), self.period_us())
    }

    fn model_after(&self, written: &SlidingLogModel) -> SlidingLogModel {
        // Times of admission mean the same to every configuration.
        SlidingLogModel { admitted: written.admitted.clone(), ..self.model() }
    }

    fn try_new(_: u64, rate: Rate) -> tollgate::Result<Self> {
        SlidingLog::new(rate)
    }

    /// One entry per admission (of one µs) for a period.
    const STATE_GROWS_WITH_AMOUNT: bool = true;

    fn scaled(&self, scale: impl Fn(u64) -> u64) -> Self {
        let rate = self.rate();
        Self::new(Rate::new(scale(rate.amount()), rate.period())).unwrap()
    }

    fn period_us(&self) -> u64 {
        period_us_of(self.rate())
    }

    fn everyday() -> BoxedStrategy<Self> {
        (1..=12_u64, everyday_period_us()).prop_map(|(amount, period)| Self::new(rate(amount, period)).unwrap()).boxed()
    }

    fn at_the_edge() -> BoxedStrategy<Self> {
        (1..=64_u64, 1_u64 << 40..=1 << 53)
            .prop_map(|(amount, period)| Self::new(rate(amount, period)).unwrap())
            .boxed()
    }

    fn keeps_its_promise(&self, admitted: &[(u64, u64, u64)]) -> Result<(), String> {
        // The busiest interval starts at an admission.
        for &(from, _, _) in admitted {
            let total = admitted_between(admitted, from, from + self.period_us());
            if total > self.limit() {
                return Err(format!("{total} admitted in one period from {from}"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Token bucket

/// Tokens refill continuously at `amount / period` per µs up to `capacity`;
/// a new bucket is full.
#[derive(Debug, Clone)]
pub struct TokenBucketModel {
    pub capacity: u64,
    pub period: u64,
    pub rate: Ratio,
    pub tokens: Ratio,
    pub last: u64,
}

impl TokenBucketModel {
    pub fn new(capacity: u64, amount: u64, period: u64) -> Self {
        let rate = Ratio::new(amount as i128, period as i128);
        Self { capacity, period, rate, tokens: Ratio::int(capacity as i128), last: 0 }
    }
}

impl Model for TokenBucketModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        let capacity = Ratio::int(self.capacity as i128);
        let refilled = self.rate.mul(Ratio::int((now - self.last) as i128));
        let tokens = self.tokens.add(refilled).min(capacity);
        let until_full = |tokens: Ratio| capacity.sub(tokens).div(self.rate).ceil();
        let cost_r = Ratio::int(cost as i128);
        // A peek is always allowed, even when reservations have taken more than there is.
        if cost > 0 && !cost_r.le(tokens) {
            let retry = cost_r.sub(tokens).div(self.rate).ceil();
            return denied(self.capacity, tokens.floor(), retry, until_full(tokens));
        }
        let left = tokens.sub(cost_r);
        if cost > 0 {
            (self.tokens, self.last) = (left, now);
        }
        allowed(self.capacity, left.floor(), until_full(left), 0)
    }

    /// The tokens are taken at the first whole µs at which the bucket holds
    /// them (if that is at most `max_wait` away), on credit: the bucket goes
    /// below zero until then.
    fn reserve(&mut self, now: u64, cost: u64, max_wait: u64) -> Verdict {
        let capacity = Ratio::int(self.capacity as i128);
        let tokens = self.tokens.add(self.rate.mul(Ratio::int((now - self.last) as i128))).min(capacity);
        let cost_r = Ratio::int(cost as i128);
        if cost == 0 || cost_r.le(tokens) {
            return self.decide(now, cost);
        }
        let until_full = |tokens: Ratio| capacity.sub(tokens).div(self.rate).ceil();
        let wait = cost_r.sub(tokens).div(self.rate).ceil();
        if wait > max_wait as i128 {
            return denied(self.capacity, tokens.floor(), wait, until_full(tokens));
        }
        // At the slot the bucket holds what `wait` refilled, never more than full.
        let refill = self.rate.mul(Ratio::int(wait));
        let at_slot = tokens.add(refill).min(capacity).sub(cost_r);
        (self.tokens, self.last) = (at_slot.sub(refill), now);
        allowed(self.capacity, self.tokens.floor(), until_full(self.tokens), wait)
    }
}

/// Units used (tokens taken, or slots queued) as another configuration
/// recorded them, as this one counts them: as they are if the unit is the
/// same (the same period), else rounded up to whole units; never more than
/// `most`, unless the writer had reserved ahead (used more than its own
/// `written_most`): slots promised to waiters carry over whole.
fn carried_units(used: Ratio, written_period: u64, written_most: u64, period: u64, most: u64) -> Ratio {
    let used_r = if written_period == period { used } else { Ratio::int(used.ceil()) };
    if !used.le(Ratio::int(written_most as i128)) {
        return used_r;
    }
    used_r.min(Ratio::int(most as i128))
}

/// The µs to drain `units` of `period` at `amount` a period, rounded up.
fn drain_us(units: Ratio, amount: u64, period: u64) -> u64 {
    units.max(Ratio::int(0)).mul(Ratio::new(period as i128, amount as i128)).ceil() as u64
}

impl Spec for TokenBucket {
    type Model = TokenBucketModel;

    /// A full bucket, then the refill.
    fn most_admitted_in(&self, span_us: u64) -> u64 {
        self.limit() + refilled_in(self.rate(), span_us)
    }

    fn worked_examples() -> Vec<Example<Self>> {
        vec![
            Example {
                algorithm: TokenBucket::new(3, Rate::per_second(10)).unwrap(),
                start: EPOCH,
                steps: vec![
                    (0, 3, allowed(3, 0, 300 * MS, 0)),
                    (50 * MS, 1, denied(3, 0, 50 * MS, 250 * MS)),
                    (50 * MS, 1, allowed(3, 0, 300 * MS, 0)),
                    (0, 0, allowed(3, 0, 300 * MS, 0)),
                    (SECOND, 0, allowed(3, 3, 0, 0)),
                ],
            },
            // A token every 333 333.3 µs: waits are rounded up, never down.
            Example {
                algorithm: TokenBucket::new(1, Rate::per_second(3)).unwrap(),
                start: EPOCH,
                steps: vec![
                    (0, 1, allowed(1, 0, 333_334, 0)),
                    (0, 1, denied(1, 0, 333_334, 333_334)),
                    (333_333, 1, denied(1, 0, 1, 1)),
                    (1, 1, allowed(1, 0, 333_334, 0)),
                ],
            },
        ]
    }

    fn model(&self) -> TokenBucketModel {
        TokenBucketModel::new(self.capacity(), self.rate().amount(), self.period_us())
    }

    fn model_after(&self, written: &TokenBucketModel) -> TokenBucketModel {
        // Tokens taken as of the writer's last admission, before any refill.
        let used = Ratio::int(written.capacity as i128).sub(written.tokens);
        let used = carried_units(used, written.period, written.capacity, self.period_us(), self.capacity());
        TokenBucketModel { tokens: Ratio::int(self.capacity() as i128).sub(used), last: written.last, ..self.model() }
    }

    fn reserved_ahead_us(&self, model: &TokenBucketModel) -> u64 {
        drain_us(model.tokens.mul(Ratio::int(-1)), self.rate().amount(), self.period_us())
    }

    fn try_new(capacity: u64, rate: Rate) -> tollgate::Result<Self> {
        TokenBucket::new(capacity, rate)
    }

    const STATE_GROWS_WITH_AMOUNT: bool = false;

    fn scaled(&self, scale: impl Fn(u64) -> u64) -> Self {
        Self::new(scale(self.capacity()), self.rate()).unwrap()
    }

    fn period_us(&self) -> u64 {
        period_us_of(self.rate())
    }

    fn longest_wait_us(&self) -> u64 {
        (u128::from(self.limit()) * u128::from(self.period_us())).div_ceil(u128::from(self.rate().amount())) as u64
    }

    fn everyday() -> BoxedStrategy<Self> {
        (1..=12_u64, 1..=12_u64, everyday_period_us())
            .prop_map(|(capacity, amount, period)| Self::new(capacity, rate(amount, period)).unwrap())
            .boxed()
    }

    fn at_the_edge() -> BoxedStrategy<Self> {
        (1..=4_u64, 1..=1_u64 << 45, 1_u64 << 40..=1 << 51)
            .prop_map(|(capacity, amount, period)| {
                Self::new(capacity, rate(amount, period.min((1 << 53) / capacity))).unwrap()
            })
            .boxed()
    }

    fn keeps_its_promise(&self, admitted: &[(u64, u64, u64)]) -> Result<(), String> {
        let (capacity, amount, period) = (self.capacity(), self.rate().amount(), self.period_us());
        for (i, &(from, _, _)) in admitted.iter().enumerate() {
            for &(until, _, _) in &admitted[i..] {
                let total = admitted_between(admitted, from, until + 1);
                // total ≤ capacity + amount × elapsed / period, without division.
                if u128::from(total) * u128::from(period)
                    > u128::from(capacity) * u128::from(period) + u128::from(amount) * u128::from(until - from)
                {
                    return Err(format!("{total} admitted from {from} to {until}"));
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Leaky bucket

/// A queue that lets one request out every `period / amount`: each admitted
/// request of cost `c` departs at the next free slot and takes `c` slots; one
/// whose last slot would be more than `capacity` slots away is refused.
#[derive(Debug, Clone)]
pub struct LeakyBucketModel {
    pub capacity: u64,
    pub period: u64,
    pub interval: Ratio,
    pub next_free: Ratio,
    /// When the last request was admitted.
    pub last: u64,
}

impl LeakyBucketModel {
    pub fn new(capacity: u64, amount: u64, period: u64) -> Self {
        let interval = Ratio::new(period as i128, amount as i128);
        Self { capacity, period, interval, next_free: Ratio::int(0), last: 0 }
    }
}

impl LeakyBucketModel {
    /// How many unit requests would still fit at `now` if the next one
    /// departed at `free`: none when reservations queued past the capacity.
    fn fits(&self, free: Ratio, now: Ratio) -> i128 {
        let horizon = self.interval.mul(Ratio::int(self.capacity as i128));
        let queued = free.sub(now);
        if queued.le(horizon) { horizon.sub(queued).div(self.interval).floor() + 1 } else { 0 }
    }

    /// Queues `cost` to depart at `departs`.
    fn queue(&mut self, now: u64, cost: u64, departs: Ratio) -> Verdict {
        let now_r = Ratio::int(now as i128);
        self.next_free = departs.add(self.interval.mul(Ratio::int(cost as i128)));
        self.last = now;
        let until_empty = self.next_free.sub(now_r).ceil();
        allowed(self.capacity + 1, self.fits(self.next_free, now_r), until_empty, departs.sub(now_r).ceil())
    }
}

impl Model for LeakyBucketModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        let now_r = Ratio::int(now as i128);
        let departs = self.next_free.max(now_r);
        let slots = |n: u64| self.interval.mul(Ratio::int(n as i128));
        let horizon = slots(self.capacity);
        let limit = self.capacity + 1;
        let until_empty = departs.sub(now_r).ceil();
        let last_slot = departs.add(slots(cost.saturating_sub(1)));
        if cost > 0 && !last_slot.sub(now_r).le(horizon) {
            let retry = last_slot.sub(now_r).sub(horizon).ceil();
            return denied(limit, self.fits(departs, now_r), retry, until_empty);
        }
        if cost == 0 {
            return allowed(limit, self.fits(departs, now_r), until_empty, 0);
        }
        self.queue(now, cost, departs)
    }

    /// The slot is the departure, if it is at most `max_wait` away; the
    /// queue may grow past its capacity.
    fn reserve(&mut self, now: u64, cost: u64, max_wait: u64) -> Verdict {
        let now_r = Ratio::int(now as i128);
        let departs = self.next_free.max(now_r);
        let wait = departs.sub(now_r).ceil();
        if cost == 0 {
            return self.decide(now, cost);
        }
        if wait > max_wait as i128 {
            return denied(self.capacity + 1, self.fits(departs, now_r), wait, wait);
        }
        self.queue(now, cost, departs)
    }
}

impl Spec for LeakyBucket {
    type Model = LeakyBucketModel;

    /// A full queue, then the drain.
    fn most_admitted_in(&self, span_us: u64) -> u64 {
        self.limit() + refilled_in(self.rate(), span_us)
    }

    fn worked_examples() -> Vec<Example<Self>> {
        vec![Example {
            algorithm: LeakyBucket::new(2, Rate::per_second(10)).unwrap(),
            start: EPOCH,
            steps: vec![
                (0, 1, allowed(3, 2, 100 * MS, 0)),
                (0, 1, allowed(3, 1, 200 * MS, 100 * MS)),
                (0, 1, allowed(3, 0, 300 * MS, 200 * MS)),
                (0, 1, denied(3, 0, 100 * MS, 300 * MS)),
                (150 * MS, 1, allowed(3, 0, 250 * MS, 150 * MS)),
                (0, 0, allowed(3, 0, 250 * MS, 0)),
            ],
        }]
    }

    fn model(&self) -> LeakyBucketModel {
        LeakyBucketModel::new(self.capacity(), self.rate().amount(), self.period_us())
    }

    fn model_after(&self, written: &LeakyBucketModel) -> LeakyBucketModel {
        // Slots queued as of the writer's last admission, before any drain.
        let last = Ratio::int(written.last as i128);
        let queued = written.next_free.max(last).sub(last).div(written.interval);
        let queued = carried_units(queued, written.period, written.capacity + 1, self.period_us(), self.capacity() + 1);
        let model = self.model();
        LeakyBucketModel { next_free: last.add(model.interval.mul(queued)), last: written.last, ..model }
    }

    fn reserved_ahead_us(&self, model: &LeakyBucketModel) -> u64 {
        let last = Ratio::int(model.last as i128);
        let queued = model.next_free.max(last).sub(last).div(model.interval);
        drain_us(queued.sub(Ratio::int(self.capacity() as i128 + 1)), self.rate().amount(), self.period_us())
    }

    fn try_new(capacity: u64, rate: Rate) -> tollgate::Result<Self> {
        LeakyBucket::new(capacity.saturating_sub(1), rate)
    }

    const STATE_GROWS_WITH_AMOUNT: bool = false;

    fn scaled(&self, scale: impl Fn(u64) -> u64) -> Self {
        Self::new(scale(self.capacity()), self.rate()).unwrap()
    }

    fn period_us(&self) -> u64 {
        period_us_of(self.rate())
    }

    fn longest_wait_us(&self) -> u64 {
        (u128::from(self.limit()) * u128::from(self.period_us())).div_ceil(u128::from(self.rate().amount())) as u64
    }

    fn everyday() -> BoxedStrategy<Self> {
        (1..=12_u64, 1..=12_u64, everyday_period_us())
            .prop_map(|(capacity, amount, period)| Self::new(capacity, rate(amount, period)).unwrap())
            .boxed()
    }

    fn at_the_edge() -> BoxedStrategy<Self> {
        (1..=4_u64, 1..=1_u64 << 45, 1_u64 << 40..=1 << 51)
            .prop_map(|(capacity, amount, period)| {
                Self::new(capacity, rate(amount, period.min((1 << 53) / (capacity + 1)))).unwrap()
            })
            .boxed()
    }

    fn keeps_its_promise(&self, admitted: &[(u64, u64, u64)]) -> Result<(), String> {
        let (amount, period) = (u128::from(self.rate().amount()), u128::from(self.period_us()));
        // A request of cost c departs when its wait is over and takes c slots of period / amount:
        // the next departs no sooner. Departures are whole microseconds rounded up from exact
        // slots, so they are less than a microsecond short of that, never more.
        for (i, &(at, _, wait)) in admitted.iter().enumerate() {
            let mut slots = 0_u128;
            for (j, &(later_at, _, later_wait)) in admitted.iter().enumerate().skip(i + 1) {
                slots += u128::from(admitted[j - 1].1);
                let (first, later) = (at + wait, later_at + later_wait);
                if later < first || u128::from(later - first + 1) * amount <= slots * period {
                    return Err(format!("request {j} departs at {later}, too soon after request {i} at {first}"));
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Sliding window

/// Aligned windows `[k × period, (k + 1) × period)`. At `now`, `elapsed`
/// into the current window, the weighted count is the previous window's
/// count × `(period - elapsed) / period` (the part of it still inside the
/// sliding window, as if its requests had been spread evenly) plus the
/// current window's count; a cost is admitted if the weighted count plus
/// the cost is at most `amount`. A peek is always answered.
#[derive(Debug, Clone)]
pub struct SlidingWindowModel {
    pub amount: u64,
    pub period: u64,
    pub admitted: Vec<(u64, u64)>,
    /// What another configuration recorded: (the start of its last window,
    /// the count there, the count in its window before). Each count belongs
    /// to this configuration's window in which it began to be counted: the
    /// last window's count to the window holding its start, the one before
    /// it to the window before that.
    pub carried: Option<(u64, u64, u64)>,
}

impl SlidingWindowModel {
    pub fn new(amount: u64, period: u64) -> Self {
        Self { amount, period, admitted: Vec::new(), carried: None }
    }

    fn window_start(&self, at: u64) -> u64 {
        at / self.period * self.period
    }

    /// (previous, current): the counts of the window before the one holding
    /// `at`, and of that one up to `at`, with what was carried over (each
    /// carried count cut to this amount).
    fn counts_at(&self, at: u64) -> (u64, u64) {
        let start = self.window_start(at);
        let admitted_in = |from: u64, until: u64| -> u64 {
            self.admitted.iter().filter(|(t, _)| (from..until).contains(t)).map(|(_, cost)| cost).sum()
        };
        let (mut previous, mut current) =
            (admitted_in(start.saturating_sub(self.period), start), admitted_in(start, at + 1));
        match self.carried {
            Some((carried_start, count, before)) if carried_start >= start => {
                previous += before.min(self.amount);
                current += count.min(self.amount);
            }
            Some((carried_start, count, _)) if carried_start + self.period >= start => {
                previous += count.min(self.amount);
            }
            _ => {}
        }
        (previous, current)
    }

    fn weighted_at(&self, at: u64) -> Ratio {
        let (previous, current) = self.counts_at(at);
        let still_inside = Ratio::new((self.window_start(at) + self.period - at) as i128, self.period as i128);
        Ratio::int(previous as i128).mul(still_inside).add(Ratio::int(current as i128))
    }

    /// The starts of the window holding `now` and of the two after it, from
    /// `now`: by the third, nothing admitted so far is left to weigh.
    fn windows_from(&self, now: u64) -> [u64; 3] {
        let start = self.window_start(now);
        [now, start + self.period, start + 2 * self.period]
    }

    /// The first whole µs from `now` on at which `cost` fits, if nothing is
    /// admitted meanwhile. Within a window the weighted count falls linearly:
    /// solved exactly, then rounded up.
    fn fits_at(&self, now: u64, cost: u64) -> u64 {
        for from in self.windows_from(now) {
            let (previous, current) = self.counts_at(from);
            let end = self.window_start(from) + self.period;
            let Some(room) = self.amount.checked_sub(current + cost) else { continue };
            if previous == 0 {
                return from;
            }
            // previous × (end - t) / period ≤ room  ⟺  t ≥ end - room × period / previous
            let earliest = Ratio::int(end as i128).sub(Ratio::new((room * self.period) as i128, previous as i128));
            let at = earliest.ceil().max(from as i128) as u64;
            if at < end {
                return at;
            }
        }
        unreachable!("nothing is left to weigh two windows on")
    }

    /// The first µs from `now` on at which the weighted count is zero.
    fn empty_at(&self, now: u64) -> u64 {
        let empty = self.windows_from(now).into_iter().find(|&from| self.counts_at(from) == (0, 0));
        empty.expect("nothing is left to weigh two windows on")
    }

    /// What the state holds: the counts as of the last admission, by the
    /// start of its window.
    fn recorded(&self) -> Option<(u64, u64, u64)> {
        let &(last, _) = self.admitted.last()?;
        let (previous, current) = self.counts_at(last);
        Some((self.window_start(last), current, previous))
    }
}

impl Model for SlidingWindowModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        let amount = Ratio::int(self.amount as i128);
        let remaining = |weighted: Ratio| amount.sub(weighted).floor().max(0);
        let weighted = self.weighted_at(now);
        let since = |at: u64| (at - now) as i128;
        if cost > 0 && !weighted.add(Ratio::int(cost as i128)).le(amount) {
            let retry = since(self.fits_at(now, cost));
            return denied(self.amount, remaining(weighted), retry, since(self.empty_at(now)));
        }
        if cost > 0 {
            self.admitted.push((now, cost));
        }
        allowed(self.amount, remaining(self.weighted_at(now)), since(self.empty_at(now)), 0)
    }
}

impl Spec for SlidingWindow {
    type Model = SlidingWindowModel;

    /// At most the amount in every aligned window the span touches.
    fn most_admitted_in(&self, span_us: u64) -> u64 {
        self.limit() * (span_us / self.period_us() + 2)
    }

    fn worked_examples() -> Vec<Example<Self>> {
        vec![Example {
            algorithm: SlidingWindow::new(Rate::per_second(4)).unwrap(),
            start: EPOCH + Duration::from_millis(500),
            steps: vec![
                (0, 4, allowed(4, 0, 1_500 * MS, 0)),
                // The four weigh at most three a quarter into the next window.
                (0, 1, denied(4, 0, 750 * MS, 1_500 * MS)),
                (750 * MS, 1, allowed(4, 0, 1_750 * MS, 0)),
                (0, 0, allowed(4, 0, 1_750 * MS, 0)),
                // Half way: 4 × 1/2 + 1 = 3, so one fits, and two once the four weigh one.
                (250 * MS, 2, denied(4, 1, 250 * MS, 1_500 * MS)),
                (0, 1, allowed(4, 0, 1_500 * MS, 0)),
                // Two windows on, nothing is left to weigh.
                (1_500 * MS, 0, allowed(4, 4, 0, 0)),
            ],
        }]
    }

    fn model(&self) -> SlidingWindowModel {
        SlidingWindowModel::new(self.limit(), self.period_us())
    }

    fn model_after(&self, written: &SlidingWindowModel) -> SlidingWindowModel {
        // The state holds the writer's counts as of its last admission;
        // before the writer ever admitted, whatever it carried itself.
        SlidingWindowModel { carried: written.recorded().or(written.carried), ..self.model() }
    }

    fn try_new(_: u64, rate: Rate) -> tollgate::Result<Self> {
        SlidingWindow::new(rate)
    }

    const STATE_GROWS_WITH_AMOUNT: bool = false;

    fn scaled(&self, scale: impl Fn(u64) -> u64) -> Self {
        let rate = self.rate();
        Self::new(Rate::new(scale(rate.amount()), rate.period())).unwrap()
    }

    fn period_us(&self) -> u64 {
        period_us_of(self.rate())
    }

    /// The whole amount, asked for just after a window that admitted
    /// anything began, waits for the window after next.
    fn longest_wait_us(&self) -> u64 {
        2 * self.period_us()
    }

    fn everyday() -> BoxedStrategy<Self> {
        (1..=12_u64, everyday_period_us()).prop_map(|(amount, period)| Self::new(rate(amount, period)).unwrap()).boxed()
    }

    fn at_the_edge() -> BoxedStrategy<Self> {
        (1..=1_u64 << 20, 1_u64 << 33..=1 << 52)
            .prop_map(|(amount, period)| Self::new(rate(amount, period.min((1 << 53) / amount))).unwrap())
            .boxed()
    }

    /// At each admission, the weighted count (its own cost included) is at
    /// most the amount; and in any interval of one period, at most
    /// `2 × amount - ⌈2 × amount / period⌉` are admitted (for a period of
    /// 2 µs or more; of 1 µs, an interval is one window): the bound the docs
    /// give, which the sliding log's `amount` is to be compared with.
    fn keeps_its_promise(&self, admitted: &[(u64, u64, u64)]) -> Result<(), String> {
        let (amount, period) = (u128::from(self.limit()), self.period_us());
        let most_in_a_period =
            if period == 1 { self.limit() } else { 2 * self.limit() - (2 * self.limit()).div_ceil(period) };
        for &(at, _, _) in admitted {
            let start = at / period * period;
            let previous = u128::from(admitted_between(admitted, start.saturating_sub(period), start));
            let current = u128::from(admitted_between(admitted, start, at + 1));
            let overlap = u128::from(start + period - at);
            if previous * overlap + current * u128::from(period) > amount * u128::from(period) {
                return Err(format!("a weighted count of {previous} × {overlap} / {period} + {current} at {at}"));
            }
            let total = admitted_between(admitted, at, at + period);
            if total > most_in_a_period {
                return Err(format!("{total} admitted in one period from {at}, more than {most_in_a_period}"));
            }
        }
        Ok(())
    }
}
