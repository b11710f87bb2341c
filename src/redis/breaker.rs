//! The circuit breaker: while Redis is away, checks are answered by the
//! failure policy at once instead of each waiting out its timeout.
//!
//! This file holds the breaker's configuration ([`CircuitBreaker`]), what it
//! reports ([`Health`]), a state machine ([`Machine`]) that reads no clock
//! and does no I/O (every method is given `now`, so its rules are tested
//! below on made-up instants), and [`Breaker`], the machine shared between
//! tasks, which logs its transitions. `guard.rs` feeds it the outcome of each
//! call and runs its probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::Result;
use crate::error::invalid;

/// How a [`Redis`](super::Redis) limiter stops calling a Redis that is away,
/// and how it finds it again. On by default; set with
/// [`RedisBuilder::circuit_breaker`](super::RedisBuilder::circuit_breaker).
///
/// **When it opens.** The breaker opens when the failures show that Redis
/// is away, and never merely because it is slow or busy:
///
/// - at once when a connection is *refused*: nothing listens on the
///   address, so the operating system answers for Redis;
/// - or when [`failures_to_open`](Self::failures_to_open) calls in a row
///   (default 3) have timed out or lost their connection, with nothing
///   answered in between, and the first and the last of them were *sent* at
///   least twice the check timeout apart (and at least 200 ms apart).
///
/// The second rule is what keeps a busy Redis closed: when a loaded machine
/// stalls, every call then in flight times out together, but those calls
/// were all sent within one timeout of each other, and the calls sent after
/// the stall are answered. It takes Redis saying nothing for about three
/// timeouts while it is being asked (300 ms at the default 100 ms timeout).
/// Any answer from Redis, an error reply included, starts the count afresh.
///
/// **While it is open**, checks do not touch the network: the failure policy
/// answers at once (with [`FailurePolicy::ReturnError`](super::FailurePolicy::ReturnError),
/// [`Error::Unavailable`](crate::Error::Unavailable)).
///
/// **Recovery.** A background task sends one `PING` at a time, bounded by
/// the check timeout: the first about 50 ms after opening, then with the
/// wait doubling up to about 1 s, each wait drawn between half of it and
/// all of it (jitter, so that many processes do not probe in step). The
/// first `PING` answered closes the breaker, and the next check goes to
/// Redis: within about a second of Redis coming back, and the limiter is
/// never rebuilt.
///
/// On a Redis Cluster reached through [`ClusterConnection`](super::ClusterConnection),
/// each master has a breaker of its own: a dead master opens only the
/// breaker of the keys it holds.
///
/// ```
/// use std::time::Duration;
/// use tollgate::{CircuitBreaker, Rate, Redis, TokenBucket};
///
/// # fn run() -> tollgate::Result<()> {
/// let builder = Redis::builder(TokenBucket::new(100, Rate::per_second(10))?)
///     .circuit_breaker(CircuitBreaker::new().failures_to_open(5));
/// let without = Redis::builder(TokenBucket::new(100, Rate::per_second(10))?)
///     .circuit_breaker(CircuitBreaker::disabled());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircuitBreaker {
    enabled: bool,
    failures_to_open: u32,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl CircuitBreaker {
    /// Failed calls in a row that open the breaker, by default.
    pub const DEFAULT_FAILURES_TO_OPEN: u32 = 3;
    /// The wait before the first probe, by default (drawn between half of it
    /// and all of it).
    pub const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_millis(50);
    /// The longest wait between probes, by default.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);

    /// A breaker with the default settings.
    pub const fn new() -> Self {
        Self {
            enabled: true,
            failures_to_open: Self::DEFAULT_FAILURES_TO_OPEN,
            first_backoff: Self::DEFAULT_FIRST_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
        }
    }

    /// No breaker: every check goes to Redis and, when Redis is away, waits
    /// out its timeout. [`Redis::health`](super::Redis::health) then reports
    /// nothing.
    pub const fn disabled() -> Self {
        Self { enabled: false, ..Self::new() }
    }

    /// How many calls in a row must time out or lose their connection to
    /// open the breaker (default 3). The first and the last of them must have
    /// been sent at least twice the check timeout apart, so it is at least 2.
    /// A refused connection opens it whatever this says.
    pub const fn failures_to_open(mut self, failures: u32) -> Self {
        self.failures_to_open = failures;
        self
    }

    /// The waits between probes while the breaker is open: `first`, then
    /// doubling up to `max` (defaults 50 ms and 1 s), each drawn between half
    /// of it and all of it. `first` must be more than zero and at most `max`.
    pub const fn probe_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max;
        self
    }

    /// Whether the breaker is on.
    pub const fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.failures_to_open < 2 {
            return Err(invalid(format!(
                "a circuit breaker opens after failures sent two timeouts apart, so at least 2, not {}",
                self.failures_to_open
            )));
        }
        if self.first_backoff.is_zero() || self.first_backoff > self.max_backoff {
            return Err(invalid(format!(
                "the circuit breaker's first probe backoff must be more than zero and at most its longest, \
                 not {:?} and {:?}",
                self.first_backoff, self.max_backoff
            )));
        }
        Ok(())
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new()
    }
}

/// The state of one circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Checks go to Redis.
    Closed,
    /// Redis is taken to be away: checks are answered by the failure policy
    /// without touching the network while a probe at a time looks for Redis.
    Open,
}

/// What [`Redis::health`](super::Redis::health) reports: the state of the
/// limiter's circuit breakers, for a readiness probe or a dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// One breaker for a server (or any connection given to
    /// [`build`](super::RedisBuilder::build)); one per master on a cluster.
    /// Empty when the breaker is [disabled](CircuitBreaker::disabled).
    pub breakers: Vec<BreakerHealth>,
    /// How many times any of the limiter's breakers has opened since it was
    /// built.
    pub times_opened: u64,
}

impl Health {
    /// Whether no breaker is open: every check goes to Redis. (With the
    /// breaker disabled, always true: nothing is known.)
    pub fn is_up(&self) -> bool {
        self.breakers.iter().all(|breaker| breaker.state == BreakerState::Closed)
    }
}

/// The state of one breaker, within [`Health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerHealth {
    /// The cluster master it stands for (`host:port`), or `None` for a
    /// limiter's one breaker.
    pub node: Option<String>,
    /// Open or closed.
    pub state: BreakerState,
    /// While open: how long it has been open.
    pub open_for: Option<Duration>,
    /// While open: how long until its next probe (or until the probe under
    /// way times out).
    pub next_probe_in: Option<Duration>,
}

/// What became of one call to Redis, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Redis answered, if only with an error: it is there.
    Answered,
    /// The connection was refused: nothing listens on the address.
    Refused,
    /// The call timed out or lost its connection.
    Failed,
}

/// Why a breaker opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A connection was refused.
    Refused,
    /// `count` calls in a row failed, the first and last sent `over` apart.
    Failures { count: u32, over: Duration },
    /// Redis could not be reached when the limiter was made.
    Unreachable,
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened(Reason),
    /// Closed after being open for this long.
    Closed(Duration),
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// `failures` calls in a row have failed, sent between `first_sent` and
    /// `last_sent` (meaningless while `failures` is 0).
    Closed { failures: u32, first_sent: Instant, last_sent: Instant },
    /// Open since `since`; the next probe is due at `next_probe` (while
    /// `probing`, the probe under way times out then), and the wait after
    /// a failed one is drawn from `backoff`.
    Open { since: Instant, next_probe: Instant, backoff: Duration, probing: bool },
}

/// The least time between the sending of the first and the last of the
/// failures that open a breaker: with a short check timeout, a busy machine
/// can stall for several timeouts.
const MIN_SPREAD: Duration = Duration::from_millis(200);

/// The breaker's rules, with no clock and no I/O: every method is given
/// `now`.
#[derive(Debug)]
pub(crate) struct Machine {
    failures_to_open: u32,
    /// How far apart the failures must have been sent: twice the check
    /// timeout, and at least [`MIN_SPREAD`].
    spread: Duration,
    first_backoff: Duration,
    max_backoff: Duration,
    state: State,
    /// xorshift64 state, for jitter.
    random: u64,
}

impl Machine {
    /// A closed breaker configured by `config`, whose checks time out after
    /// `timeout`; `seed` drives the jitter.
    pub(crate) fn new(config: &CircuitBreaker, timeout: Duration, now: Instant, seed: u64) -> Self {
        Self {
            failures_to_open: config.failures_to_open.max(2),
            spread: timeout.saturating_mul(2).max(MIN_SPREAD),
            first_backoff: config.first_backoff,
            max_backoff: config.max_backoff.max(config.first_backoff),
            state: State::Closed { failures: 0, first_sent: now, last_sent: now },
            // xorshift never leaves zero.
            random: seed | 1,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
        }
    }

    /// Whether a call may go to Redis now, or else how long until the next
    /// probe (rounded up to a millisecond, never zero).
    pub(crate) fn admit(&self, now: Instant) -> Result<(), Duration> {
        match self.state {
            State::Closed { .. } => Ok(()),
            State::Open { next_probe, .. } => Err(round_up_to_ms(next_probe.saturating_duration_since(now))),
        }
    }

    /// Takes in the outcome of a call sent at `sent` that ended at `now`.
    pub(crate) fn record(&mut self, sent: Instant, now: Instant, outcome: Outcome) -> Option<Transition> {
        let State::Closed { failures, first_sent, last_sent } = self.state else {
            // Calls sent before it opened, ending late: the probe decides.
            return None;
        };
        match outcome {
            Outcome::Answered => {
                self.state = State::Closed { failures: 0, first_sent: now, last_sent: now };
                None
            }
            Outcome::Refused => Some(self.open(now, Reason::Refused)),
            Outcome::Failed => {
                let (first_sent, last_sent) =
                    if failures == 0 { (sent, sent) } else { (first_sent.min(sent), last_sent.max(sent)) };
                let failures = failures.saturating_add(1);
                let over = last_sent.saturating_duration_since(first_sent);
                if failures >= self.failures_to_open && over >= self.spread {
                    return Some(self.open(now, Reason::Failures { count: failures, over }));
                }
                self.state = State::Closed { failures, first_sent, last_sent };
                None
            }
        }
    }

    /// Opens the breaker (if it is not open already), for `reason`.
    pub(crate) fn open(&mut self, now: Instant, reason: Reason) -> Transition {
        let backoff = self.first_backoff;
        let next_probe = now + self.jittered(backoff);
        self.state = State::Open { since: now, next_probe, backoff, probing: false };
        Transition::Opened(reason)
    }

    /// How long until a probe is due: `None` while closed or while a probe is
    /// under way.
    pub(crate) fn until_probe(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Open { next_probe, probing: false, .. } => Some(next_probe.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// A probe starts now and will have its answer within `timeout`.
    pub(crate) fn start_probe(&mut self, now: Instant, timeout: Duration) {
        if let State::Open { ref mut next_probe, ref mut probing, .. } = self.state {
            *next_probe = now + timeout;
            *probing = true;
        }
    }

    /// The probe under way ended now: answered, it closes the breaker; else
    /// the next one is due after a longer wait.
    pub(crate) fn finish_probe(&mut self, now: Instant, answered: bool) -> Option<Transition> {
        let State::Open { since, backoff, .. } = self.state else { return None };
        if answered {
            self.state = State::Closed { failures: 0, first_sent: now, last_sent: now };
            return Some(Transition::Closed(now.saturating_duration_since(since)));
        }
        let backoff = backoff.saturating_mul(2).min(self.max_backoff);
        let next_probe = now + self.jittered(backoff);
        self.state = State::Open { since, next_probe, backoff, probing: false };
        None
    }

    /// What [`Health`] says of this breaker.
    pub(crate) fn health(&self, node: Option<String>, now: Instant) -> BreakerHealth {
        let (open_for, next_probe_in) = match self.state {
            State::Closed { .. } => (None, None),
            State::Open { since, next_probe, .. } => {
                (Some(now.saturating_duration_since(since)), Some(next_probe.saturating_duration_since(now)))
            }
        };
        BreakerHealth { node, state: self.state(), open_for, next_probe_in }
    }

    /// A wait drawn between half of `backoff` and all of it.
    fn jittered(&mut self, backoff: Duration) -> Duration {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let half = backoff / 2;
        let spread_us = (backoff - half).as_micros() as u64;
        half + Duration::from_micros(self.random % (spread_us + 1))
    }
}

fn round_up_to_ms(duration: Duration) -> Duration {
    let ms = duration.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(ms as u64)
}

/// A [`Machine`] shared by every task using a limiter (or, on a cluster, by
/// every check of one master's keys). A closed breaker costs a check one
/// atomic load before the call and, unless calls have been failing, one
/// after it.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// The cluster master it stands for, for the logs and [`Health`].
    node: Option<String>,
    /// Mirrors the machine's state, so that a closed breaker admits without
    /// taking the lock.
    open: AtomicBool,
    /// Whether calls have been failing: only then must an answer take the
    /// lock to start the count afresh.
    failing: AtomicBool,
    machine: Mutex<Machine>,
    /// How many times the limiter's breakers have opened: shared by them all.
    times_opened: Arc<AtomicU64>,
}

impl Breaker {
    pub(crate) fn new(
        node: Option<String>,
        config: &CircuitBreaker,
        timeout: Duration,
        times_opened: Arc<AtomicU64>,
    ) -> Self {
        let seed = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(&node)
        };
        Self {
            node,
            open: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            machine: Mutex::new(Machine::new(config, timeout, Instant::now(), seed)),
            times_opened,
        }
    }

    pub(crate) fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// `Ok` if a call may go to Redis, else how long until the next probe.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        if !self.open.load(Ordering::Acquire) {
            return Ok(());
        }
        self.machine.lock().admit(Instant::now())
    }

    /// Takes in the outcome of a call sent at `sent`. True if this opened the
    /// breaker: the caller then starts the probes.
    pub(crate) fn record(&self, sent: Instant, outcome: Outcome) -> bool {
        if outcome == Outcome::Answered && !self.failing.load(Ordering::Acquire) {
            return false;
        }
        let mut machine = self.machine.lock();
        let transition = machine.record(sent, Instant::now(), outcome);
        self.failing.store(outcome != Outcome::Answered, Ordering::Release);
        self.apply(&machine, transition)
    }

    /// Opens the breaker for `reason` (unless it is open already). True if
    /// this opened it: the caller then starts the probes.
    pub(crate) fn force_open(&self, reason: Reason) -> bool {
        let mut machine = self.machine.lock();
        if machine.state() == BreakerState::Open {
            return false;
        }
        let transition = machine.open(Instant::now(), reason);
        self.apply(&machine, Some(transition))
    }

    /// How long until the next probe is due; `None` once closed.
    pub(crate) fn until_probe(&self) -> Option<Duration> {
        self.machine.lock().until_probe(Instant::now())
    }

    /// A probe bounded by `timeout` starts now.
    pub(crate) fn start_probe(&self, timeout: Duration) {
        self.machine.lock().start_probe(Instant::now(), timeout);
    }

    /// The probe ended: true if this closed the breaker.
    pub(crate) fn finish_probe(&self, answered: bool) -> bool {
        let mut machine = self.machine.lock();
        let transition = machine.finish_probe(Instant::now(), answered);
        self.apply(&machine, transition);
        matches!(transition, Some(Transition::Closed(_)))
    }

    pub(crate) fn health(&self) -> BreakerHealth {
        self.machine.lock().health(self.node.clone(), Instant::now())
    }

    /// Mirrors the machine's state in the flags and logs the transition: one
    /// event per transition, never one per call. True if it opened.
    fn apply(&self, machine: &Machine, transition: Option<Transition>) -> bool {
        let Some(transition) = transition else { return false };
        let node = self.node.as_deref().unwrap_or("redis");
        match transition {
            Transition::Opened(reason) => {
                self.open.store(true, Ordering::Release);
                self.failing.store(false, Ordering::Release);
                self.times_opened.fetch_add(1, Ordering::Relaxed);
                let next_probe_in = machine.until_probe(Instant::now()).unwrap_or_default();
                match reason {
                    Reason::Refused => tracing::warn!(
                        target: "tollgate::redis",
                        node, ?next_probe_in,
                        "circuit breaker opened: the connection to Redis was refused; \
                         checks are answered by the failure policy until a probe reaches it"
                    ),
                    Reason::Failures { count, over } => tracing::warn!(
                        target: "tollgate::redis",
                        node, failures = count, ?over, ?next_probe_in,
                        "circuit breaker opened: calls to Redis sent over {over:?} all failed; \
                         checks are answered by the failure policy until a probe reaches it"
                    ),
                    Reason::Unreachable => tracing::warn!(
                        target: "tollgate::redis",
                        node, ?next_probe_in,
                        "circuit breaker opened: Redis could not be reached when the limiter was made; \
                         checks are answered by the failure policy until a probe reaches it"
                    ),
                }
                true
            }
            Transition::Closed(open_for) => {
                self.open.store(false, Ordering::Release);
                tracing::info!(
                    target: "tollgate::redis",
                    node, ?open_for,
                    "circuit breaker closed: Redis answered a probe; checks go to Redis again"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn machine(config: CircuitBreaker, start: Instant) -> Machine {
        Machine::new(&config, TIMEOUT, start, 0x5EED)
    }

    #[test]
    fn a_refused_connection_opens_at_once() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new(), start);
        assert_eq!(breaker.admit(start), Ok(()));
        let opened = breaker.record(start, start + ms(1), Outcome::Refused);
        assert_eq!(opened, Some(Transition::Opened(Reason::Refused)));
        assert_eq!(breaker.state(), BreakerState::Open);
        let retry_in = breaker.admit(start + ms(1)).unwrap_err();
        assert!((ms(1)..=ms(50)).contains(&retry_in), "{retry_in:?}");
    }

    #[test]
    fn timeouts_sent_two_timeouts_apart_open_it() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new(), start);
        // One caller, one call at a time: sent at 0, 100 and 200 ms, each
        // failing at its timeout.
        assert_eq!(breaker.record(start, start + ms(100), Outcome::Failed), None);
        assert_eq!(breaker.record(start + ms(100), start + ms(200), Outcome::Failed), None);
        let opened = breaker.record(start + ms(200), start + ms(300), Outcome::Failed);
        assert_eq!(opened, Some(Transition::Opened(Reason::Failures { count: 3, over: ms(200) })));
    }

    #[test]
    fn a_stall_that_times_out_every_call_in_flight_at_once_does_not_open_it() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new(), start);
        // 64 calls sent within 90 ms of each other all time out together.
        for n in 0..64 {
            let sent = start + Duration::from_micros(n * 1_400);
            assert_eq!(breaker.record(sent, start + ms(200), Outcome::Failed), None, "call {n}");
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        // A call sent after the stall is answered: the count starts afresh, so
        // a later failure sent a timeout after the first does not open it.
        assert_eq!(breaker.record(start + ms(200), start + ms(201), Outcome::Answered), None);
        assert_eq!(breaker.record(start + ms(250), start + ms(350), Outcome::Failed), None);
        assert_eq!(breaker.record(start + ms(251), start + ms(351), Outcome::Failed), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn any_answer_starts_the_count_afresh() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new(), start);
        for round in 0..10 {
            let at = start + ms(300) * round;
            assert_eq!(breaker.record(at, at + ms(100), Outcome::Failed), None);
            assert_eq!(breaker.record(at + ms(100), at + ms(200), Outcome::Failed), None);
            assert_eq!(breaker.record(at + ms(200), at + ms(201), Outcome::Answered), None);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn failures_to_open_is_how_many_failures_it_takes() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new().failures_to_open(5), start);
        for n in 0..4 {
            let sent = start + ms(100) * n;
            assert_eq!(breaker.record(sent, sent + ms(100), Outcome::Failed), None);
        }
        assert!(breaker.record(start + ms(400), start + ms(500), Outcome::Failed).is_some());

        let mut eager = machine(CircuitBreaker::new().failures_to_open(2), start);
        assert_eq!(eager.record(start, start + ms(100), Outcome::Failed), None);
        // Two sent less than two timeouts apart: maybe one stall.
        assert_eq!(eager.record(start + ms(199), start + ms(299), Outcome::Failed), None);
        assert!(eager.record(start + ms(200), start + ms(300), Outcome::Failed).is_some());
    }

    #[test]
    fn with_a_short_timeout_the_failures_must_still_span_200_ms() {
        let start = Instant::now();
        let mut breaker = Machine::new(&CircuitBreaker::new(), ms(10), start, 1);
        for n in 0..19 {
            let sent = start + ms(10) * n;
            assert_eq!(breaker.record(sent, sent + ms(10), Outcome::Failed), None, "call {n}");
        }
        assert!(breaker.record(start + ms(200), start + ms(210), Outcome::Failed).is_some());
    }

    #[test]
    fn calls_ending_after_it_opened_change_nothing() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new(), start);
        breaker.record(start, start, Outcome::Refused);
        for outcome in [Outcome::Answered, Outcome::Failed, Outcome::Refused] {
            assert_eq!(breaker.record(start, start + ms(5), outcome), None);
            assert_eq!(breaker.state(), BreakerState::Open);
        }
    }

    #[test]
    fn probes_back_off_with_jitter_up_to_the_cap_and_one_answer_closes_it() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new(), start);
        breaker.open(start, Reason::Unreachable);
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let wait = breaker.until_probe(now).unwrap();
            waits.push(wait);
            now += wait;
            breaker.start_probe(now, TIMEOUT);
            assert_eq!(breaker.until_probe(now), None, "one probe at a time");
            assert_eq!(breaker.admit(now), Err(TIMEOUT), "while probing, retry when the probe is over");
            now += TIMEOUT;
            assert_eq!(breaker.finish_probe(now, false), None);
        }
        // Each wait is between half and all of 50 ms, 100 ms, ... capped at 1 s.
        for (n, wait) in waits.iter().enumerate() {
            let backoff = (ms(50) * 2_u32.pow(n as u32)).min(ms(1000));
            assert!((backoff / 2..=backoff).contains(wait), "wait {n}: {wait:?} for a backoff of {backoff:?}");
        }
        assert!(waits[6..].windows(2).any(|pair| pair[0] != pair[1]), "jittered: {waits:?}");

        let wait = breaker.until_probe(now).unwrap();
        breaker.start_probe(now + wait, TIMEOUT);
        let closed = breaker.finish_probe(now + wait + ms(1), true);
        assert_eq!(closed, Some(Transition::Closed(now + wait + ms(1) - start)));
        assert_eq!(breaker.admit(now + wait + ms(1)), Ok(()));
        assert_eq!(breaker.until_probe(now), None);
    }

    #[test]
    fn after_closing_it_takes_a_fresh_run_of_failures_to_open_again() {
        let start = Instant::now();
        let mut breaker = machine(CircuitBreaker::new(), start);
        breaker.record(start, start, Outcome::Failed);
        breaker.record(start + ms(150), start + ms(250), Outcome::Failed);
        breaker.record(start + ms(250), start + ms(251), Outcome::Refused);
        breaker.start_probe(start + ms(300), TIMEOUT);
        breaker.finish_probe(start + ms(301), true);
        // Two more failures, two timeouts apart: without the two before the
        // opening, that is not three.
        assert_eq!(breaker.record(start + ms(400), start + ms(500), Outcome::Failed), None);
        assert_eq!(breaker.record(start + ms(600), start + ms(700), Outcome::Failed), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_wait_to_retry_is_rounded_up_and_never_zero() {
        assert_eq!(round_up_to_ms(Duration::ZERO), ms(1));
        assert_eq!(round_up_to_ms(Duration::from_micros(1_001)), ms(2));
        assert_eq!(round_up_to_ms(ms(7)), ms(7));
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(CircuitBreaker::new().validate().is_ok());
        assert!(CircuitBreaker::disabled().validate().is_ok());
        assert!(!CircuitBreaker::disabled().is_enabled());
        for bad in [
            CircuitBreaker::new().failures_to_open(0),
            CircuitBreaker::new().failures_to_open(1),
            CircuitBreaker::new().probe_backoff(Duration::ZERO, ms(10)),
            CircuitBreaker::new().probe_backoff(ms(20), ms(10)),
        ] {
            assert!(matches!(bad.validate(), Err(crate::Error::InvalidConfig(_))), "{bad:?}");
        }
    }

    /// Counts the events at WARN and INFO: the breaker's transitions.
    #[derive(Default)]
    struct Transitions {
        opened: AtomicU64,
        closed: AtomicU64,
    }

    impl tracing::Subscriber for Transitions {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let counter = match *event.metadata().level() {
                tracing::Level::WARN => &self.opened,
                tracing::Level::INFO => &self.closed,
                _ => return,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn one_event_per_transition_never_one_per_call() {
        let transitions = Arc::new(Transitions::default());
        let times_opened = Arc::new(AtomicU64::new(0));
        let breaker = Breaker::new(None, &CircuitBreaker::new(), TIMEOUT, Arc::clone(&times_opened));
        tracing::subscriber::with_default(Arc::clone(&transitions), || {
            for _ in 0..1000 {
                breaker.record(Instant::now(), Outcome::Answered);
            }
            // Refused calls by the thousand: one opening.
            for _ in 0..1000 {
                breaker.record(Instant::now(), Outcome::Refused);
                assert!(breaker.admit().is_err());
            }
            for _ in 0..5 {
                breaker.start_probe(TIMEOUT);
                assert!(!breaker.finish_probe(false));
            }
            breaker.start_probe(TIMEOUT);
            assert!(breaker.finish_probe(true));
            for _ in 0..1000 {
                assert_eq!(breaker.admit(), Ok(()));
                breaker.record(Instant::now(), Outcome::Answered);
            }
        });
        assert_eq!(transitions.opened.load(Ordering::Relaxed), 1);
        assert_eq!(transitions.closed.load(Ordering::Relaxed), 1);
        assert_eq!(times_opened.load(Ordering::Relaxed), 1);
        assert_eq!(breaker.health().state, BreakerState::Closed);
    }
}
