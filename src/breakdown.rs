//! [`Breakdown`]: a decision with each limit's own part in it.

use std::sync::Arc;
use std::time::Duration;

use crate::Decision;
use crate::algorithm::{Configuration, Parts};

/// A [`Decision`] and each limit's own decision behind it: what
/// [`RateLimiter::check_detailed`](crate::RateLimiter::check_detailed)
/// answers, and what HTTP middleware writes one `RateLimit-Policy` and one
/// `RateLimit` item per limit from.
///
/// One limit for a plain algorithm (unnamed); one per limit, named and in
/// order, for a [`Composite`](crate::Composite); and the plan's name for
/// [`Plans`](crate::Plans). When the request was denied, the limits that
/// denied it report their denial (with their own `retry_after`), and the
/// others their figures as they stand: nothing was taken from any.
#[must_use = "a Breakdown says whether the request may proceed"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breakdown {
    decision: Decision,
    plan: Option<Arc<str>>,
    limits: Vec<LimitDecision>,
}

/// One limit's part in a [`Breakdown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDecision {
    name: Option<Arc<str>>,
    window: Option<Duration>,
    decision: Decision,
}

impl Breakdown {
    /// The breakdown of `decision`, from the configuration that made it and
    /// its limits' decisions, in order.
    pub(crate) fn new(decision: Decision, configuration: &Configuration<'_>, parts: &[Decision]) -> Self {
        let limits = match configuration.parts {
            Parts::One(limit) => {
                let decision = parts.first().copied().unwrap_or(decision);
                vec![LimitDecision { name: None, window: Some(limit.window()), decision }]
            }
            Parts::Several(named) => named
                .iter()
                .zip(parts)
                .map(|(named, &decision)| LimitDecision {
                    name: Some(Arc::clone(&named.name)),
                    window: Some(named.window),
                    decision,
                })
                .collect(),
        };
        Self { decision, plan: configuration.plan.cloned(), limits }
    }

    /// The decision of all the limits together, as
    /// [`check_n`](crate::RateLimiter::check_n) gives it.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// The plan the request was decided in, for [`Plans`](crate::Plans).
    pub fn plan(&self) -> Option<&str> {
        self.plan.as_deref()
    }

    /// Each limit's decision, in the order of the composite's limits (one
    /// for a plain algorithm). Never empty.
    pub fn limits(&self) -> &[LimitDecision] {
        &self.limits
    }

    /// The limit named `name`.
    pub fn get(&self, name: &str) -> Option<&LimitDecision> {
        self.limits.iter().find(|limit| limit.name() == Some(name))
    }

    /// The limit that decided: when denied, the one whose `retry_after` is
    /// the request's (the longest); when allowed, the one with the fewest
    /// remaining. The first such, on a tie.
    pub fn binding(&self) -> &LimitDecision {
        let binding = if self.decision.is_allowed() {
            self.limits.iter().min_by_key(|limit| limit.decision.remaining())
        } else {
            // max_by_key keeps the last of equals: reversed, the first.
            self.limits.iter().rev().max_by_key(|limit| limit.decision.retry_after())
        };
        binding.unwrap_or(&self.limits[0])
    }
}

impl From<Decision> for Breakdown {
    /// A breakdown of one unnamed limit of unknown window: what a limiter
    /// that knows no more tells.
    fn from(decision: Decision) -> Self {
        Self { decision, plan: None, limits: vec![LimitDecision { name: None, window: None, decision }] }
    }
}

impl LimitDecision {
    /// The limit's name in its composite; `None` for a plain algorithm.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The time in which the limit's whole allowance comes back
    /// ([`Limit::window`](crate::Limit::window)): a `RateLimit-Policy`
    /// item's window. `None` when the limiter did not say.
    pub fn window(&self) -> Option<Duration> {
        self.window
    }

    /// This limit's own decision.
    pub fn decision(&self) -> Decision {
        self.decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::sealed::Shape;
    use crate::{Composite, FixedWindow, Rate, TokenBucket};

    #[test]
    fn the_binding_limit_is_the_longest_denial_or_the_fewest_remaining() {
        let composite = Composite::new("a", FixedWindow::new(Rate::per_second(5)).unwrap())
            .unwrap()
            .with("b", TokenBucket::new(5, Rate::per_second(5)).unwrap())
            .unwrap()
            .with("c", FixedWindow::new(Rate::per_minute(5)).unwrap())
            .unwrap();
        let configuration = composite.configuration(0);
        let denied = [Decision::denied(5, 0, 7, 9), Decision::allowed(5, 4, 1, 0), Decision::denied(5, 0, 7, 9)];
        let breakdown = Breakdown::new(crate::algorithm::combine(&denied, 5), &configuration, &denied);
        assert_eq!(breakdown.binding().name(), Some("a"));
        assert_eq!(breakdown.decision().retry_after(), Some(Duration::from_micros(7)));
        assert_eq!(breakdown.get("c").map(LimitDecision::window), Some(Some(Duration::from_secs(60))));
        let allowed = [Decision::allowed(5, 3, 1, 0), Decision::allowed(5, 2, 1, 0), Decision::allowed(5, 2, 1, 0)];
        let breakdown = Breakdown::new(crate::algorithm::combine(&allowed, 5), &configuration, &allowed);
        assert_eq!(breakdown.binding().name(), Some("b"));
        assert_eq!(breakdown.decision().remaining(), 2);
        assert_eq!(breakdown.plan(), None);
    }
}
