//! Bad input gets a clear error or a sensible answer, never a panic.

use std::time::Duration;

use tollgate::{
    Error, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, RateLimiter, SlidingLog, SlidingWindow, TokenBucket,
};

use crate::support::algorithms::for_each_algorithm;
use crate::support::models::Spec;

fn reason(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::InvalidConfig(reason)) => reason,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

fn rejects_a_zero_amount_or_period<A: Spec>() {
    for rate in [Rate::per_second(0), Rate::new(5, Duration::ZERO), Rate::new(5, Duration::from_nanos(999))] {
        let reason = reason(A::try_new(5, rate));
        assert!(reason.contains("amount") || reason.contains("period"), "{rate:?}: {reason}");
    }
}

/// A cost of more than the limit is an error, not a denial a client would
/// retry forever; the limit itself fits.
async fn a_cost_that_can_never_fit_is_an_error<A: Spec>() {
    let algorithm = A::with_limit(5, Duration::from_secs(1));
    let max = algorithm.limit();
    let limiter = InMemory::with_clock(algorithm, ManualClock::new());
    assert!(limiter.check_n("key", max).await.unwrap().is_allowed(), "{limiter:?}");
    let error = limiter.check_n("key", max + 1).await.unwrap_err();
    assert!(matches!(error, Error::CostTooHigh { cost, max: m } if cost == max + 1 && m == max));
    assert!(error.to_string().contains("can never be admitted"));
    assert!(limiter.check_n("key", u64::MAX).await.is_err());
}

/// Time never gets past where it started, so one allowance is all there is.
fn a_clock_moved_backwards_neither_panics_nor_admits_extra<A: Spec>() {
    let clock = ManualClock::starting_at(Duration::from_secs(100));
    let limiter = InMemory::with_clock(A::with_limit(2, Duration::from_secs(1)), clock.clone());
    let mut admitted = 0;
    for second in [100, 50, 99, 0, 100] {
        clock.set(Duration::from_secs(second));
        for _ in 0..3 {
            admitted += u32::from(limiter.check_sync("k").is_allowed());
        }
    }
    assert_eq!(admitted, 2);
}

macro_rules! bad_input {
    ($name:ident, $algorithm:ident) => {
        mod $name {
            #[test]
            fn the_constructor_rejects_a_zero_amount_or_period() {
                super::rejects_a_zero_amount_or_period::<tollgate::$algorithm>();
            }

            #[tokio::test]
            async fn a_cost_that_can_never_fit_is_an_error_not_a_denial_to_retry_forever() {
                super::a_cost_that_can_never_fit_is_an_error::<tollgate::$algorithm>().await;
            }

            #[test]
            fn a_clock_moved_backwards_neither_panics_nor_admits_extra() {
                super::a_clock_moved_backwards_neither_panics_nor_admits_extra::<tollgate::$algorithm>();
            }
        }
    };
}

for_each_algorithm!(bad_input);

#[test]
fn bucket_constructors_reject_a_zero_capacity() {
    assert!(reason(TokenBucket::new(0, Rate::per_second(1))).contains("capacity must be at least 1"));
    assert!(reason(LeakyBucket::new(0, Rate::per_second(1))).contains("capacity must be at least 1"));
}

#[test]
fn numbers_too_large_for_exact_arithmetic_are_rejected_not_wrapped() {
    let huge = Rate::new(u64::MAX, Duration::from_secs(1));
    assert!(reason(FixedWindow::new(huge)).contains("2^53"));
    assert!(reason(TokenBucket::new(u64::MAX, Rate::per_second(1))).contains("2^53"));
    assert!(reason(LeakyBucket::new(u64::MAX, Rate::per_second(1))).contains("2^53"));
    assert!(reason(FixedWindow::new(Rate::new(1, Duration::from_secs(u64::MAX)))).contains("period"));
    assert!(reason(SlidingLog::new(Rate::per_second(SlidingLog::MAX_AMOUNT + 1))).contains("at most"));
    assert!(SlidingLog::new(Rate::per_second(SlidingLog::MAX_AMOUNT)).is_ok());
    assert!(reason(SlidingWindow::new(huge)).contains("2^53"));
    let one_second_us = 1_000_000;
    let too_many = Rate::new((1 << 53) / one_second_us + 1, Duration::from_secs(1));
    assert!(reason(SlidingWindow::new(too_many)).contains("amount × period must be at most 2^53"));
    assert!(reason(SlidingWindow::new(Rate::new(1, Duration::from_micros((1 << 52) + 1)))).contains("2^52"));
}

#[test]
fn invalid_configuration_says_so_in_its_message() {
    let message = FixedWindow::new(Rate::per_second(0)).unwrap_err().to_string();
    assert_eq!(message, "invalid configuration: the rate's amount must be at least 1");
}

#[tokio::test]
async fn a_cost_of_zero_peeks_and_takes_nothing() {
    let limiter = InMemory::with_clock(TokenBucket::new(3, Rate::per_second(1)).unwrap(), ManualClock::new());
    let _ = limiter.check_n("key", 2).await.unwrap();
    for _ in 0..3 {
        let peek = limiter.check_n("key", 0).await.unwrap();
        assert!(peek.is_allowed());
        assert_eq!(peek.remaining(), 1);
    }
    assert!(limiter.check("key").await.unwrap().is_allowed());
    assert_eq!(limiter.check_n("never seen", 0).await.unwrap().remaining(), 3);
    assert_eq!(limiter.len(), 1, "a peek at a new key stores nothing");
}

#[test]
fn the_empty_key_and_a_ten_kilobyte_key_are_ordinary_keys() {
    let limiter = InMemory::with_clock(FixedWindow::new(Rate::per_second(1)).unwrap(), ManualClock::new());
    let long = "k".repeat(10 * 1024);
    let longer = format!("{long}!");
    for key in ["", long.as_str(), longer.as_str()] {
        assert!(limiter.check_sync(key).is_allowed());
        assert!(!limiter.check_sync(key).is_allowed());
    }
    assert_eq!(limiter.len(), 3);
    limiter.reset_sync(&long);
    assert!(limiter.check_sync(&long).is_allowed());
}
