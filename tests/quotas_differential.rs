//! Redis decides composites and plans exactly like `InMemory`: random
//! composites of every algorithm, and random plans sharing limits, run
//! through both backends on one `ManualClock` (client-time mode) must give
//! equal breakdowns (the decision, the plan, and each limit's name, window
//! and every field of its decision) or equal errors; and each limit's key
//! that a request wrote must expire exactly when that limit's state reads as
//! new. `InMemory` runs the pure steps, so this holds `lua/composite.lua`
//! and the modules it calls to them.

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tollgate::{Algorithm, Breakdown, Clock, Composite, Limit, Plans, RateLimiter};

use crate::differential::{EVERYDAY_STEP_US, HUGE_STEP_US, KEYS, Op, alike, check_ttl, offset, ops};
use crate::support::algorithms::for_each_algorithm;
use crate::support::composites::{any_limit, composites, longest_period_us};
use crate::support::models::Spec;

/// Runs `cases` of `strategy`'s composites or plans (whose plans, by index,
/// are `plans`) and sequences through both backends.
fn decide_alike<A: Algorithm>(cases: u32, strategy: impl Strategy<Value = (A, u64, Vec<Op>)>, plans: &[&str]) {
    alike(cases, strategy, file!(), |pair, n, op| {
        let Op::Check { key, cost, plan } = *op else { return Ok(()) };
        let (key, plan) = (KEYS[key], plan.map(|plan| plans[plan]));
        let expected = pair.memory.check_detailed_sync(key, cost, plan).map_err(|error| error.to_string());
        let written = Instant::now();
        let actual = pair.runtime.block_on(pair.redis.check_detailed(key, cost, plan)).map_err(|e| e.to_string());
        prop_assert_eq!(&actual, &expected, "op {} ({:?}) at {:?}", n, op, pair.clock.now());
        match actual {
            Ok(breakdown) if breakdown.decision().is_allowed() && cost > 0 && !pair.went_back => {
                for limit in breakdown.limits() {
                    let redis_key = key_of(pair.redis.prefix(), &pair.redis.redis_keys(key), limit.name(), &breakdown)?;
                    check_ttl(pair.runtime, pair.connection, &redis_key, &limit.decision(), written)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    });
}

/// The key, of `keys`, of the limit named `name` (`None`: a plan's plain
/// algorithm): `<prefix><name>:<tag>:{<key>}`, or `<prefix><tag>:{<key>}`.
/// Names in these plans always go with one algorithm, so a name finds one key.
fn key_of(prefix: &str, keys: &[String], name: Option<&str>, breakdown: &Breakdown) -> Result<String, TestCaseError> {
    let head = |key: &String| key[prefix.len()..].split(":{").next().unwrap_or_default().to_owned();
    let found = keys.iter().find(|key| match name {
        Some(name) => head(key).strip_prefix(name).is_some_and(|rest| rest.starts_with(':')),
        None => !head(key).contains(':'),
    });
    found.cloned().ok_or_else(|| TestCaseError::fail(format!("no key for {name:?} in {keys:?}: {breakdown:?}")))
}

#[test]
fn composites_of_every_algorithm_decide_alike_on_both_backends() {
    let strategy = composites().prop_flat_map(|composite| {
        let period_us = longest_period_us(&composite);
        let ops = ops(composite.limit(), period_us, EVERYDAY_STEP_US, 0);
        (Just(composite), offset(period_us), ops)
    });
    decide_alike(128, strategy, &[]);
}

/// Composites of configurations at the edge of what validation allows.
#[test]
fn composites_at_the_limits_of_exact_arithmetic_decide_alike_on_both_backends() {
    let mut edges: Vec<BoxedStrategy<Limit>> = Vec::new();
    macro_rules! push {
        ($name:ident, $algorithm:ident, $edges:ident) => {
            $edges.push(<tollgate::$algorithm as Spec>::at_the_edge().prop_map(Limit::from).boxed());
        };
    }
    crate::support::algorithms::for_each_algorithm!(push, edges);
    let limits = prop::collection::vec(proptest::strategy::Union::new(edges), 1..=3);
    let strategy = limits.prop_flat_map(|limits| {
        let composite =
            Composite::from_limits(limits.into_iter().enumerate().map(|(n, l)| (format!("e{n}"), l))).unwrap();
        let period_us = longest_period_us(&composite);
        let ops = ops(composite.limit(), period_us, HUGE_STEP_US, 0);
        (Just(composite), offset(period_us), ops)
    });
    decide_alike(48, strategy, &[]);
}

/// `limit` with its allowance scaled by `factor` (up or down), the same
/// rate for a bucket and the same period for a window or a log: the
/// variants a plan has of another's limit. (A variant with another rate is
/// a configuration change, which `shared_state.rs` checks on Redis against
/// the models; here memory and Redis must also agree when a state outlives
/// its writer's TTL, which holds when the two configurations drain alike.)
fn variant(limit: Limit, up: bool, factor: u64) -> Limit {
    let scale = |n: u64| if up { n * factor } else { n.div_ceil(factor) };
    macro_rules! scaled {
        ($name:ident, $algorithm:ident, $limit:ident, $scale:ident) => {
            if let Limit::$algorithm(algorithm) = $limit {
                return Spec::scaled(&algorithm, $scale).into();
            }
        };
    }
    for_each_algorithm!(scaled, limit, scale);
    panic!("{limit:?}: an algorithm missing from tests/support/algorithms.rs")
}

/// What plan "b" does with each of plan "a"'s limits.
#[derive(Debug, Clone)]
enum Change {
    Scale {
        up: bool,
        factor: u64,
    },
    Drop,
    /// Another limit, under a name of its own.
    Replace(Limit),
}

const PLANS: [&str; 3] = ["a", "b", "c"];

/// Three plans: "a" a random composite, "b" its variant (each limit scaled,
/// dropped or replaced, sharing state where names and algorithms agree), and
/// "c" one plain algorithm; alice is on "a", bob on "b", carol on "c", and
/// any check may name a plan instead: a move.
fn plans() -> impl Strategy<Value = (Plans, u64, Vec<Op>)> {
    let change = prop_oneof![
        3 => (any::<bool>(), 1..=3_u64).prop_map(|(up, factor)| Change::Scale { up, factor }),
        1 => Just(Change::Drop),
        1 => any_limit().prop_map(Change::Replace),
    ];
    (composites(), prop::collection::vec(change, 4), any_limit()).prop_flat_map(|(a, changes, plain)| {
        let mut b: Vec<(String, Limit)> = Vec::new();
        for ((name, limit), change) in a.limits().zip(changes) {
            match change {
                Change::Scale { up, factor } => b.push((name.to_owned(), variant(*limit, up, factor))),
                Change::Drop => {}
                Change::Replace(other) => b.push((format!("x{name}"), other)),
            }
        }
        if b.is_empty() {
            b.push(("only-b".to_owned(), plain));
        }
        let b = Composite::from_limits(b).unwrap();
        let c = Composite::new("c", plain).unwrap();
        let limit = a.limit().max(b.limit()).max(c.limit());
        let period_us = [&a, &b, &c].into_iter().map(longest_period_us).max().unwrap();
        let plans = Plans::new(PLANS[0], a).unwrap().plan(PLANS[1], b).unwrap();
        let plans = with_plain_plan(plans, PLANS[2], plain).resolve(|key: &str| match key {
            "alice" => PLANS[0],
            "bob" => PLANS[1],
            _ => PLANS[2],
        });
        (Just(plans), offset(period_us), ops(limit, period_us, EVERYDAY_STEP_US, PLANS.len()))
    })
}

/// `plans` and a plan named `name` of `limit`'s algorithm alone, unnamed:
/// its state is the key's own, as a lone limiter's is.
fn with_plain_plan(plans: Plans, name: &str, limit: Limit) -> Plans {
    macro_rules! plain {
        ($module:ident, $algorithm:ident, $plans:ident, $name:ident, $limit:ident) => {
            if let Limit::$algorithm(algorithm) = $limit {
                return $plans.plan($name, algorithm).unwrap();
            }
        };
    }
    for_each_algorithm!(plain, plans, name, limit);
    panic!("{limit:?}: not in tests/support/algorithms.rs")
}

#[test]
fn plans_sharing_limits_decide_alike_on_both_backends_whichever_plan_a_key_is_in() {
    decide_alike(96, plans(), &PLANS);
}
