//! Plans: each key's limits chosen per request, as API gateways' usage
//! plans are ("free" and "pro").

use std::fmt;
use std::sync::Arc;

use super::composite::{Named, Stamps, check_name, decide_all};
use super::sealed::{Shape, Step};
use super::{Algorithm, Configuration, Limit, Parts};
use crate::error::invalid;
use crate::{Decision, Result};

/// Named plans, each with its own limits (a [`Composite`](crate::Composite)
/// or one algorithm), and the plan each key is on, chosen per request.
///
/// The first plan is the default. A request's plan is, in order:
///
/// 1. the one the caller names, through
///    [`RateLimiter::check_detailed`](crate::RateLimiter::check_detailed)
///    (a name the limiter does not have is
///    [`Error::UnknownPlan`](crate::Error::UnknownPlan));
/// 2. else the one your [`resolve`](Self::resolve) function gives for the
///    key (such as a lookup of the customer's plan);
/// 3. else, or if the resolver names a plan there is not, the default.
///
/// ```
/// use tollgate::{Composite, FixedWindow, InMemory, ManualClock, Plans, Rate, RateLimiter, TokenBucket};
///
/// let free = Composite::new("per-second", TokenBucket::new(2, Rate::per_second(2))?)?
///     .with("per-day", FixedWindow::new(Rate::per_day(100))?)?;
/// let pro = Composite::new("per-second", TokenBucket::new(20, Rate::per_second(20))?)?
///     .with("per-day", FixedWindow::new(Rate::per_day(10_000))?)?;
/// let plans = Plans::new("free", free)?
///     .plan("pro", pro)?
///     .resolve(|key: &str| if key.starts_with("pro-") { "pro" } else { "free" });
/// let limiter = InMemory::with_clock(plans, ManualClock::new());
/// assert_eq!(limiter.check_sync("alice").limit(), 2);
/// assert_eq!(limiter.check_sync("pro-bob").limit(), 20);
/// // The caller may say the plan itself.
/// let carol = limiter.check_detailed_sync("carol", 1, Some("pro"))?;
/// assert_eq!((carol.plan(), carol.decision().remaining()), (Some("pro"), 19));
/// # Ok::<(), tollgate::Error>(())
/// ```
///
/// ## A key that moves to another plan
///
/// State belongs to the key and the limit, not to the plan: a limit with the
/// same name and algorithm in two plans is one state (on Redis, one key), so
/// a key that moves keeps its usage, read by the new plan's configuration as
/// a deploy that changes the configuration reads it (the rules of
/// `docs/redis.md`): a day's count stays counted, tokens taken stay taken.
/// A limit that only the old plan has is left as it is, and expires as it
/// would have; if the key moves back before then, it still counts. A limit
/// only the new plan has starts afresh. Give limits the same names in every
/// plan to carry usage over; a plan of one plain algorithm shares its state
/// with other plans' plain algorithms of the same kind.
///
/// `Plans` is an [`Algorithm`]: `InMemory::new(plans)` and
/// `Redis::builder(plans)` take it. Its [`limit`](Algorithm::limit) is the
/// default plan's; a request's cost is checked against its own plan's.
#[derive(Clone)]
pub struct Plans {
    plans: Vec<Plan>,
    /// Each slot's (name, algorithm): a limit's state is in the slot of its pair.
    slots: Vec<(Option<Arc<str>>, &'static str)>,
    resolver: Option<Resolver>,
}

/// The user's function from a key to its plan's name, which it hands to a
/// callback, so that it may return a `&'static str` or a `String` alike.
type Resolver = Arc<dyn Fn(&str, &mut dyn FnMut(&str)) + Send + Sync>;

#[derive(Debug, Clone)]
struct Plan {
    name: Arc<str>,
    /// A plain algorithm (its state is the key's own, as a lone limiter's
    /// is), rather than a composite of named limits.
    plain: bool,
    limits: Arc<[Named]>,
    /// The slot of each limit.
    slots: Vec<usize>,
    limit: u64,
}

impl Plans {
    /// The default plan, named `name`, with `limits`: a
    /// [`Composite`](crate::Composite) or one algorithm.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a bad name
    /// (the rules of [`Composite::new`](crate::Composite::new)), or `limits`
    /// that are plans themselves.
    pub fn new(name: impl Into<String>, limits: impl Algorithm) -> Result<Self> {
        Self { plans: Vec::new(), slots: Vec::new(), resolver: None }.plan(name, limits)
    }

    /// These plans and one more, named `name`, with `limits`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and for a name already taken.
    pub fn plan(mut self, name: impl Into<String>, limits: impl Algorithm) -> Result<Self> {
        let name = name.into();
        check_name("plan", &name)?;
        if self.plan_index(&name).is_some() {
            return Err(invalid(format!("there is one plan named {name:?}, not two")));
        }
        if limits.configurations() != 1 {
            return Err(invalid(format!("plan {name:?} holds plans: a plan holds a composite or one algorithm")));
        }
        let configuration = limits.configuration(0);
        let (plain, limits): (bool, Arc<[Named]>) = match configuration.parts {
            Parts::One(limit) => (true, Arc::new([Named::new(Arc::from(""), limit)])),
            Parts::Several(named) => (false, named.into()),
        };
        let slots = limits.iter().map(|named| self.slot((!plain).then_some(&named.name), &named.limit)).collect();
        self.plans.push(Plan { name: name.into(), plain, limits, slots, limit: configuration.limit });
        Ok(self)
    }

    /// Chooses each key's plan with `resolver`, which gives a plan's name
    /// for a key. It runs on every check that names no plan, so it should
    /// be quick (a lookup in memory, not a database query). A name no plan
    /// has is the default plan.
    pub fn resolve<F, R>(mut self, resolver: F) -> Self
    where
        F: Fn(&str) -> R + Send + Sync + 'static,
        R: AsRef<str>,
    {
        self.resolver = Some(Arc::new(move |key, plan| plan(resolver(key).as_ref())));
        self
    }

    /// The plans' names, the default first.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.plans.iter().map(|plan| &*plan.name)
    }

    /// The plan `key` is on when the caller names none.
    pub fn plan_of(&self, key: &str) -> &str {
        &self.plans[self.resolve(key)].name
    }

    /// The slot of a limit named `name` (`None` for a plan's plain
    /// algorithm) of `limit`'s algorithm: a new one unless a plan has one.
    fn slot(&mut self, name: Option<&Arc<str>>, limit: &Limit) -> usize {
        let key = (name.cloned(), limit.name());
        match self.slots.iter().position(|slot| *slot == key) {
            Some(slot) => slot,
            None => {
                self.slots.push(key);
                self.slots.len() - 1
            }
        }
    }

    fn plan_at(&self, index: usize) -> &Plan {
        // Backends ask only for indices from `resolve` or `plan_index`.
        self.plans.get(index).unwrap_or(&self.plans[0])
    }
}

impl fmt::Debug for Plans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plans")
            .field("plans", &self.plans)
            .field("resolver", &self.resolver.as_ref().map(|_| "Fn(&str) -> plan"))
            .finish()
    }
}

impl Algorithm for Plans {
    /// The default plan's.
    fn limit(&self) -> u64 {
        self.plans[0].limit
    }

    fn name(&self) -> &'static str {
        "plans"
    }
}

impl Step for Plans {
    type State = Stamps;

    /// In the default plan.
    fn step(&self, stamps: &mut Stamps, now_us: u64, cost: u64) -> Decision {
        self.step_in(0, stamps, now_us, cost, None)
    }

    /// The latest of each state's own expiry, by the plan that wrote it.
    fn expires_at(&self, stamps: &Stamps) -> u64 {
        stamps.expires_at()
    }

    fn step_in(
        &self,
        configuration: usize,
        stamps: &mut Stamps,
        now_us: u64,
        cost: u64,
        parts: Option<&mut Vec<Decision>>,
    ) -> Decision {
        let plan = self.plan_at(configuration);
        decide_all(&plan.limits, |j| plan.slots[j], plan.limit, stamps, now_us, cost, parts)
    }
}

impl Shape for Plans {
    fn configurations(&self) -> usize {
        self.plans.len()
    }

    fn resolve(&self, key: &str) -> usize {
        let Some(resolver) = &self.resolver else { return 0 };
        let mut index = 0;
        resolver(key, &mut |name| index = self.plan_index(name).unwrap_or(0));
        index
    }

    fn plan_index(&self, name: &str) -> Option<usize> {
        self.plans.iter().position(|plan| *plan.name == *name)
    }

    fn limit_in(&self, index: usize) -> u64 {
        self.plan_at(index).limit
    }

    fn configuration(&self, index: usize) -> Configuration<'_> {
        let plan = self.plan_at(index);
        let parts = if plan.plain { Parts::One(plan.limits[0].limit) } else { Parts::Several(&plan.limits) };
        Configuration { plan: Some(&plan.name), limit: plan.limit, parts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Composite, FixedWindow, Rate, SlidingLog, TokenBucket};

    const SECOND: u64 = 1_000_000;

    fn per_second_and_day(per_second: u64, per_day: u64) -> Composite {
        Composite::new("per-second", TokenBucket::new(per_second, Rate::per_second(per_second)).unwrap())
            .unwrap()
            .with("per-day", FixedWindow::new(Rate::per_day(per_day)).unwrap())
            .unwrap()
    }

    #[test]
    fn limits_of_one_name_and_algorithm_share_a_slot_across_plans() {
        let plans = Plans::new("free", per_second_and_day(2, 100))
            .unwrap()
            .plan(
                "pro",
                per_second_and_day(20, 10_000)
                    .with("per-minute", SlidingLog::new(Rate::per_minute(600)).unwrap())
                    .unwrap(),
            )
            .unwrap()
            .plan("odd", Composite::new("per-day", SlidingLog::new(Rate::per_day(5)).unwrap()).unwrap())
            .unwrap()
            .plan("plain", TokenBucket::new(1, Rate::per_second(1)).unwrap())
            .unwrap();
        assert_eq!(
            plans.plans.iter().map(|plan| plan.slots.clone()).collect::<Vec<_>>(),
            [vec![0, 1], vec![0, 1, 2], vec![3], vec![4]]
        );
        assert!(plans.plans[3].plain);
    }

    #[test]
    fn a_key_moving_between_plans_keeps_its_usage() {
        let plans =
            Plans::new("free", per_second_and_day(2, 100)).unwrap().plan("pro", per_second_and_day(20, 1_000)).unwrap();
        let mut stamps = Stamps::default();
        assert!(plans.step_in(0, &mut stamps, 0, 2, None).is_allowed());
        assert!(!plans.step_in(0, &mut stamps, 0, 1, None).is_allowed());
        // On pro, the two tokens taken are still taken, and the day's two counted.
        let mut parts = Vec::new();
        assert!(plans.step_in(1, &mut stamps, 0, 18, Some(&mut parts)).is_allowed());
        assert_eq!(parts.iter().map(Decision::remaining).collect::<Vec<_>>(), [0, 980]);
        // Back on free: the day's 20 count against its 100; the bucket is empty.
        parts.clear();
        let peek = plans.step_in(0, &mut stamps, SECOND / 2, 0, Some(&mut parts));
        assert_eq!(parts.iter().map(Decision::remaining).collect::<Vec<_>>(), [1, 80]);
        assert_eq!(peek.limit(), 2);
    }

    #[test]
    fn the_resolver_picks_the_plan_and_an_unknown_name_is_the_default() {
        let plans = Plans::new("free", per_second_and_day(2, 100))
            .unwrap()
            .plan("pro", per_second_and_day(20, 1_000))
            .unwrap()
            .resolve(|key: &str| key.split_once('/').map_or(String::new(), |(plan, _)| plan.to_owned()));
        assert_eq!(
            [plans.plan_of("pro/a"), plans.plan_of("free/b"), plans.plan_of("gold/c"), plans.plan_of("d")],
            ["pro", "free", "free", "free"]
        );
        assert_eq!(plans.plan_index("pro"), Some(1));
        assert_eq!(plans.plan_index("gold"), None);
        assert_eq!((plans.limit(), plans.limit_in(1)), (2, 20));
    }

    #[test]
    fn plan_names_are_checked_and_taken_once_and_plans_do_not_nest() {
        let free = || per_second_and_day(1, 1);
        assert!(Plans::new("", free()).is_err());
        assert!(Plans::new("a{b}", free()).is_err());
        assert!(Plans::new("free", free()).unwrap().plan("free", free()).is_err());
        let nested = Plans::new("free", free()).unwrap().plan("pro", free()).unwrap();
        assert!(Plans::new("outer", nested).is_err());
    }

    #[test]
    fn a_state_another_plan_wrote_expires_by_that_plans_configuration() {
        // One per second on "burst", a thousand a day on "daily", both a fixed window named "window".
        let window = |rate| Composite::new("window", FixedWindow::new(rate).unwrap()).unwrap();
        let plans = Plans::new("burst", window(Rate::per_second(1)))
            .unwrap()
            .plan("daily", window(Rate::per_day(1_000)))
            .unwrap();
        let mut stamps = Stamps::default();
        assert!(plans.step_in(0, &mut stamps, 10 * SECOND, 1, None).is_allowed());
        assert_eq!(plans.expires_at(&stamps), 11 * SECOND, "by the plan that wrote it");
        // Read within its second, the daily plan counts it; after it, the state is gone (as its Redis key).
        assert_eq!(plans.step_in(1, &mut stamps, 10 * SECOND + 1, 0, None).remaining(), 999);
        assert_eq!(plans.step_in(1, &mut stamps, 11 * SECOND, 0, None).remaining(), 1_000);
    }
}
