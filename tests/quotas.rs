//! Composites and plans in memory (issue 11): every decision, and every
//! limit's part in it, as the composite's model says (each limit's own
//! model, all or nothing); a `retry_after` after which the same request
//! really passes, and not before; the sweep keeping each state as long as
//! the plan that wrote it says; and bad input. The conformance suite runs
//! the scenarios on every backend; `quotas_differential.rs` holds
//! Redis to this.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tollgate::{
    Algorithm, Composite, Error, FixedWindow, InMemory, ManualClock, Plans, Rate, RateLimiter, SlidingLog, TokenBucket,
};

use crate::models_match::{KEYS, Step, steps};
use crate::support::composites::{CompositeModel, composites, longest_period_us, verdicts};
use crate::support::proptest_config;

fn with_steps() -> impl Strategy<Value = (Composite, Vec<Step>)> {
    composites().prop_flat_map(|composite| {
        let steps = steps(composite.limit(), longest_period_us(&composite));
        (Just(composite), steps)
    })
}

proptest! {
    #![proptest_config(proptest_config(300))]

    /// Every field of every decision, and of each limit's, as the model of
    /// the composite says; a cost over the smallest limit is an error.
    #[test]
    fn a_composite_in_memory_matches_its_model((composite, steps) in with_steps(), start in 0..10_000_000_000_000u64) {
        let clock = ManualClock::starting_at(Duration::from_micros(start));
        let mut models: Vec<CompositeModel> = KEYS.iter().map(|_| CompositeModel::new(&composite)).collect();
        let limit = composite.limit();
        let limiter = InMemory::with_clock(composite.clone(), clock.clone());
        let mut now = start;
        for (n, step) in steps.iter().enumerate() {
            clock.advance(Duration::from_micros(step.advance_us));
            now += step.advance_us;
            let got = limiter.check_detailed_sync(KEYS[step.key], step.cost, None);
            if step.cost > limit {
                let too_high = matches!(got, Err(Error::CostTooHigh { cost, max }) if cost == step.cost && max == limit);
                prop_assert!(too_high, "{:?}", got);
                continue;
            }
            let expected = models[step.key].decide(now, step.cost);
            prop_assert_eq!(verdicts(&got.unwrap()), expected, "step {}: {:?} at {} µs", n, step, now);
        }
    }

    /// A denied request passes once its `retry_after` is over, and not a
    /// microsecond before: the longest of the denying limits' waits is the
    /// time after which every limit admits it.
    #[test]
    fn retry_after_is_exactly_when_the_same_request_passes((composite, steps) in with_steps()) {
        let start = 1_700_000_000_000_000;
        let clock = ManualClock::starting_at(Duration::from_micros(start));
        let limiter = InMemory::with_clock(composite.clone(), clock.clone());
        for step in steps.iter().filter(|step| step.cost <= composite.limit()) {
            clock.advance(Duration::from_micros(step.advance_us));
            let decision = limiter.check_n_sync("key", step.cost).unwrap();
            let Some(retry_after) = decision.retry_after() else { continue };
            clock.advance(retry_after - Duration::from_micros(1));
            prop_assert!(!limiter.check_n_sync("key", step.cost).unwrap().is_allowed(), "passed before {:?}", retry_after);
            clock.advance(Duration::from_micros(1));
            prop_assert!(limiter.check_n_sync("key", step.cost).unwrap().is_allowed(), "denied after {:?}", retry_after);
        }
    }
}

/// The first complaint: a day's layer outside a second's spends 100
/// of the day on 100 requests, of which 10 pass. A composite spends 10.
#[tokio::test]
async fn a_composite_spends_the_day_only_on_what_it_admits_where_layers_spend_it_on_everything() {
    let clock = ManualClock::starting_at(Duration::from_secs(1_700_000_000));
    let per_second = TokenBucket::new(10, Rate::per_second(10)).unwrap();
    let per_day = FixedWindow::new(Rate::per_day(1_000)).unwrap();

    let outer_day = InMemory::with_clock(per_day, clock.clone());
    let inner_second = InMemory::with_clock(per_second, clock.clone());
    let mut layered = 0;
    for _ in 0..100 {
        if outer_day.check("k").await.unwrap().is_allowed() && inner_second.check("k").await.unwrap().is_allowed() {
            layered += 1;
        }
    }
    assert_eq!((layered, outer_day.check_n("k", 0).await.unwrap().remaining()), (10, 900));

    let composite = Composite::new("per-second", per_second).unwrap().with("per-day", per_day).unwrap();
    let limiter: Arc<dyn RateLimiter> = Arc::new(InMemory::with_clock(composite, clock));
    let mut admitted = 0;
    for _ in 0..100 {
        admitted += u32::from(limiter.check("k").await.unwrap().is_allowed());
    }
    let day = limiter.check_detailed("k", 0, None).await.unwrap();
    assert_eq!((admitted, day.get("per-day").unwrap().decision().remaining()), (10, 990));
}

/// Plans in one store: a state written by a plan whose window is a day
/// outlives a sweep after a second (the sweep reads each state's writer),
/// and one written by a plan of a second goes with it.
#[test]
fn the_in_memory_sweep_keeps_each_state_as_long_as_the_plan_that_wrote_it() {
    let window = |rate| Composite::new("window", FixedWindow::new(rate).unwrap()).unwrap();
    let plans = Plans::new("daily", window(Rate::per_day(1_000)))
        .unwrap()
        .plan("burst", window(Rate::per_second(1_000)))
        .unwrap()
        .resolve(|key: &str| if key.starts_with("burst") { "burst" } else { "daily" });
    let clock = ManualClock::starting_at(Duration::from_secs(1_700_000_000));
    let limiter = InMemory::with_clock(plans, clock.clone());
    assert!(limiter.check_n_sync("alice", 5).unwrap().is_allowed());
    assert!(limiter.check_n_sync("burst:bob", 5).unwrap().is_allowed());
    clock.advance(Duration::from_secs(2));
    assert_eq!(limiter.cleanup(), 1, "bob's second is over; alice's day is not");
    assert_eq!(limiter.len(), 1);
    assert_eq!(limiter.check_n_sync("alice", 0).unwrap().remaining(), 995);
    // The burst plan reads the day's count as a deploy to a window of a second would: it was
    // not counted in this second, so the second has its full thousand.
    assert_eq!(limiter.check_detailed_sync("alice", 0, Some("burst")).unwrap().decision().remaining(), 1_000);
}

#[tokio::test]
async fn a_plan_must_exist_when_the_caller_names_it_and_a_resolver_that_names_none_gets_the_default() {
    let one = |amount| Composite::new("per-minute", SlidingLog::new(Rate::per_minute(amount)).unwrap()).unwrap();
    let plans = Plans::new("free", one(2)).unwrap().plan("pro", one(20)).unwrap().resolve(|key: &str| key.to_owned());
    let limiter: Arc<dyn RateLimiter> = Arc::new(InMemory::new(plans));
    assert_eq!(limiter.check("pro").await.unwrap().limit(), 20);
    assert_eq!(limiter.check("gold").await.unwrap().limit(), 2, "a plan no one configured: the default");
    let error = limiter.check_detailed("anyone", 1, Some("gold")).await.unwrap_err();
    assert!(matches!(&error, Error::UnknownPlan { plan } if plan == "gold"), "{error}");
    assert!(matches!(limiter.check_n("free", 3).await, Err(Error::CostTooHigh { cost: 3, max: 2 })));
    assert!(limiter.check_n("pro", 3).await.unwrap().is_allowed());

    // A limiter without plans has none to name, but its breakdown is one unnamed limit with its window.
    let plain: Arc<dyn RateLimiter> = Arc::new(InMemory::new(TokenBucket::new(10, Rate::per_second(5)).unwrap()));
    assert!(matches!(plain.check_detailed("k", 1, Some("free")).await, Err(Error::UnknownPlan { .. })));
    let breakdown = plain.check_detailed("k", 1, None).await.unwrap();
    let only = &breakdown.limits()[0];
    assert_eq!((breakdown.limits().len(), only.name(), only.window()), (1, None, Some(Duration::from_secs(2))));
    assert_eq!((breakdown.plan(), only.decision()), (None, breakdown.decision()));
}

#[test]
fn a_composite_plans_and_their_limiters_can_be_shared_across_threads_and_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<InMemory<Composite>>();
    shareable::<InMemory<Plans, ManualClock>>();
    shareable::<Composite>();
    shareable::<Plans>();
}
