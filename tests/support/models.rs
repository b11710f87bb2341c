//! Reference models: each algorithm as its textbook description, in exact
//! rational arithmetic over an explicit history. Slow, and obviously right;
//! every backend is held to them decision by decision.

use std::time::Duration;

use tollgate::Decision;

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

fn allowed(limit: u64, remaining: i128, reset_after: i128, wait: i128) -> Verdict {
    Verdict {
        allowed: true,
        limit,
        remaining: remaining as u64,
        retry_after: None,
        reset_after: us(reset_after),
        wait: us(wait),
    }
}

fn denied(limit: u64, remaining: i128, retry_after: i128, reset_after: i128) -> Verdict {
    Verdict {
        allowed: false,
        limit,
        remaining: remaining as u64,
        retry_after: Some(us(retry_after)),
        reset_after: us(reset_after),
        wait: Duration::ZERO,
    }
}

/// A reference model of one algorithm for one key. `now` never goes back.
pub trait Model {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict;
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

/// At most `amount` per window `[k × period, (k + 1) × period)`.
pub struct FixedWindowModel {
    pub amount: u64,
    pub period: u64,
    pub admitted: Vec<(u64, u64)>,
}

impl FixedWindowModel {
    pub fn new(amount: u64, period: u64) -> Self {
        Self { amount, period, admitted: Vec::new() }
    }
}

impl Model for FixedWindowModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        let window = now / self.period;
        let window_end = ((window + 1) * self.period - now) as i128;
        let used: u64 = self.admitted.iter().filter(|(at, _)| at / self.period == window).map(|(_, c)| c).sum();
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

/// At most `amount` in any interval `[t, t + period)`.
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
        let used = self.used_at(now);
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
        self.admitted.push((now, cost));
        allowed(self.amount, amount - (used + cost) as i128, self.period as i128, 0)
    }
}

/// Tokens refill continuously at `amount / period` per µs up to `capacity`;
/// a new bucket is full.
pub struct TokenBucketModel {
    pub capacity: u64,
    pub rate: Ratio,
    pub tokens: Ratio,
    pub last: u64,
}

impl TokenBucketModel {
    pub fn new(capacity: u64, amount: u64, period: u64) -> Self {
        let rate = Ratio::new(amount as i128, period as i128);
        Self { capacity, rate, tokens: Ratio::int(capacity as i128), last: 0 }
    }
}

impl Model for TokenBucketModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        let capacity = Ratio::int(self.capacity as i128);
        let refilled = self.rate.mul(Ratio::int((now - self.last) as i128));
        let tokens = self.tokens.add(refilled).min(capacity);
        let until_full = |tokens: Ratio| capacity.sub(tokens).div(self.rate).ceil();
        let cost_r = Ratio::int(cost as i128);
        if !cost_r.le(tokens) {
            let retry = cost_r.sub(tokens).div(self.rate).ceil();
            return denied(self.capacity, tokens.floor(), retry, until_full(tokens));
        }
        let left = tokens.sub(cost_r);
        if cost > 0 {
            (self.tokens, self.last) = (left, now);
        }
        allowed(self.capacity, left.floor(), until_full(left), 0)
    }
}

/// A queue that lets one request out every `period / amount`: each admitted
/// request of cost `c` departs at the next free slot and takes `c` slots; one
/// whose last slot would be more than `capacity` slots away is refused.
pub struct LeakyBucketModel {
    pub capacity: u64,
    pub interval: Ratio,
    pub next_free: Ratio,
}

impl LeakyBucketModel {
    pub fn new(capacity: u64, amount: u64, period: u64) -> Self {
        Self { capacity, interval: Ratio::new(period as i128, amount as i128), next_free: Ratio::int(0) }
    }
}

impl Model for LeakyBucketModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        let now_r = Ratio::int(now as i128);
        let departs = self.next_free.max(now_r);
        let slots = |n: u64| self.interval.mul(Ratio::int(n as i128));
        let horizon = slots(self.capacity);
        let limit = self.capacity + 1;
        // How many unit requests would still fit if the next one departed at `free`.
        let fits = |free: Ratio| {
            let queued = free.sub(now_r);
            if queued.le(horizon) { horizon.sub(queued).div(self.interval).floor() + 1 } else { 0 }
        };
        let until_empty = |free: Ratio| free.sub(now_r).ceil();
        let last_slot = departs.add(slots(cost.saturating_sub(1)));
        if cost > 0 && !last_slot.sub(now_r).le(horizon) {
            let retry = last_slot.sub(now_r).sub(horizon).ceil();
            return denied(limit, fits(departs), retry, until_empty(departs));
        }
        if cost == 0 {
            return allowed(limit, fits(departs), until_empty(departs), 0);
        }
        self.next_free = departs.add(slots(cost));
        allowed(limit, fits(self.next_free), until_empty(self.next_free), departs.sub(now_r).ceil())
    }
}
