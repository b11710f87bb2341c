//! Composites and plans for the suites: random ones of every algorithm (the
//! list of `algorithms.rs`), and the model of a composite, built of each
//! limit's own model (`models.rs`) by the rules, written out plainly:
//! try the request on a copy of every limit; if all admit, take it from
//! each; if not, take nothing, and report each limit that would have
//! admitted as it stands.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use tollgate::{Algorithm, Breakdown, Composite, Limit};

use super::algorithms::for_each_algorithm;
use super::models::{Model, Spec, Verdict};

/// A model of any algorithm, behind one type.
pub trait AnyModel {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict;
    fn boxed(&self) -> Box<dyn AnyModel>;
}

impl<M: Model + 'static> AnyModel for M {
    fn decide(&mut self, now: u64, cost: u64) -> Verdict {
        Model::decide(self, now, cost)
    }

    fn boxed(&self) -> Box<dyn AnyModel> {
        Box::new(self.clone())
    }
}

/// What the suites need of any one algorithm, behind one type.
pub trait AnySpec {
    fn model(&self) -> Box<dyn AnyModel>;
    fn period_us(&self) -> u64;
}

impl<A: Spec> AnySpec for A
where
    A::Model: 'static,
{
    fn model(&self) -> Box<dyn AnyModel> {
        Box::new(Spec::model(self))
    }

    fn period_us(&self) -> u64 {
        Spec::period_us(self)
    }
}

/// The spec of `limit`'s algorithm.
pub fn spec_of(limit: &Limit) -> &dyn AnySpec {
    macro_rules! arm {
        ($name:ident, $algorithm:ident, $limit:ident) => {
            if let Limit::$algorithm(algorithm) = $limit {
                return algorithm;
            }
        };
    }
    for_each_algorithm!(arm, limit);
    panic!("{limit:?}: an algorithm missing from tests/support/algorithms.rs")
}

/// Everyday configurations of every algorithm.
pub fn any_limit() -> BoxedStrategy<Limit> {
    let mut strategies: Vec<BoxedStrategy<Limit>> = Vec::new();
    macro_rules! push {
        ($name:ident, $algorithm:ident, $strategies:ident) => {
            $strategies.push(<tollgate::$algorithm as Spec>::everyday().prop_map(Limit::from).boxed());
        };
    }
    for_each_algorithm!(push, strategies);
    Union::new(strategies).boxed()
}

/// Composites of one to four everyday limits of any algorithms, named
/// `l0`, `l1`, ...
pub fn composites() -> BoxedStrategy<Composite> {
    prop::collection::vec(any_limit(), 1..=4)
        .prop_map(|limits| {
            Composite::from_limits(limits.into_iter().enumerate().map(|(n, l)| (format!("l{n}"), l))).unwrap()
        })
        .boxed()
}

/// The longest period of a composite's limits, µs: the suites scale time steps with it.
pub fn longest_period_us(composite: &Composite) -> u64 {
    composite.limits().map(|(_, limit)| spec_of(limit).period_us()).max().unwrap_or(1)
}

/// A composite's model: each limit's model, all or nothing.
pub struct CompositeModel {
    limits: Vec<Box<dyn AnyModel>>,
    limit: u64,
}

impl CompositeModel {
    pub fn new(composite: &Composite) -> Self {
        Self { limits: composite.limits().map(|(_, limit)| spec_of(limit).model()).collect(), limit: composite.limit() }
    }

    /// The composite's verdict, and each limit's.
    pub fn decide(&mut self, now: u64, cost: u64) -> (Verdict, Vec<Verdict>) {
        let tried: Vec<Verdict> = self.limits.iter().map(|model| model.boxed().decide(now, cost)).collect();
        let parts = if tried.iter().all(|verdict| verdict.allowed) {
            for model in &mut self.limits {
                model.decide(now, cost);
            }
            tried
        } else {
            // Nothing taken: the limits that would have admitted it report what they have.
            let peeks = self.limits.iter().map(|model| model.boxed().decide(now, 0));
            tried.into_iter().zip(peeks).map(|(tried, peek)| if tried.allowed { peek } else { tried }).collect()
        };
        (together(&parts, self.limit), parts)
    }
}

/// Several limits' verdicts as one: allowed if all are; the smallest
/// remaining; the longest retry-after of those that deny; the longest reset
/// and wait; and `limit`, the smallest of their limits.
pub fn together(parts: &[Verdict], limit: u64) -> Verdict {
    let allowed = parts.iter().all(|part| part.allowed);
    Verdict {
        allowed,
        limit,
        remaining: parts.iter().map(|part| part.remaining).min().unwrap(),
        retry_after: if allowed { None } else { parts.iter().filter_map(|part| part.retry_after).max() },
        reset_after: parts.iter().map(|part| part.reset_after).max().unwrap(),
        wait: if allowed { parts.iter().map(|part| part.wait).max().unwrap() } else { Duration::ZERO },
    }
}

/// A breakdown as verdicts: the whole, and each limit's.
pub fn verdicts(breakdown: &Breakdown) -> (Verdict, Vec<Verdict>) {
    let parts = breakdown.limits().iter().map(|limit| Verdict::from(limit.decision())).collect();
    (Verdict::from(breakdown.decision()), parts)
}
