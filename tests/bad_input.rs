//! Bad input gets a clear error or a sensible answer, never a panic.

use std::time::Duration;

use tollgate::{Error, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, RateLimiter, SlidingLog, TokenBucket};

fn reason(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::InvalidConfig(reason)) => reason,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn every_constructor_rejects_a_zero_amount_or_period() {
    for rate in [Rate::per_second(0), Rate::new(5, Duration::ZERO), Rate::new(5, Duration::from_nanos(999))] {
        let reasons = [
            reason(FixedWindow::new(rate)),
            reason(SlidingLog::new(rate)),
            reason(TokenBucket::new(5, rate)),
            reason(LeakyBucket::new(5, rate)),
        ];
        for reason in reasons {
            assert!(reason.contains("amount") || reason.contains("period"), "{rate:?}: {reason}");
        }
    }
}

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

#[tokio::test]
async fn a_cost_that_can_never_fit_is_an_error_not_a_denial_to_retry_forever() {
    let clock = ManualClock::new();
    let limiters: [(Box<dyn RateLimiter>, u64); 4] = [
        (Box::new(InMemory::with_clock(FixedWindow::new(Rate::per_second(5)).unwrap(), clock.clone())), 5),
        (Box::new(InMemory::with_clock(SlidingLog::new(Rate::per_second(5)).unwrap(), clock.clone())), 5),
        (Box::new(InMemory::with_clock(TokenBucket::new(5, Rate::per_second(1)).unwrap(), clock.clone())), 5),
        (Box::new(InMemory::with_clock(LeakyBucket::new(5, Rate::per_second(1)).unwrap(), clock.clone())), 6),
    ];
    for (limiter, max) in limiters {
        assert!(limiter.check_n("key", max).await.unwrap().is_allowed(), "{limiter:?}");
        let error = limiter.check_n("key", max + 1).await.unwrap_err();
        assert!(matches!(error, Error::CostTooHigh { cost, max: m } if cost == max + 1 && m == max));
        assert!(error.to_string().contains("can never be admitted"));
        assert!(limiter.check_n("key", u64::MAX).await.is_err());
    }
}

#[test]
fn a_clock_moved_backwards_neither_panics_nor_admits_extra() {
    let clock = ManualClock::starting_at(Duration::from_secs(100));
    let fixed = InMemory::with_clock(FixedWindow::new(Rate::per_second(2)).unwrap(), clock.clone());
    let sliding = InMemory::with_clock(SlidingLog::new(Rate::per_second(2)).unwrap(), clock.clone());
    let token = InMemory::with_clock(TokenBucket::new(2, Rate::per_second(2)).unwrap(), clock.clone());
    let leaky = InMemory::with_clock(LeakyBucket::new(1, Rate::per_second(2)).unwrap(), clock.clone());
    let mut admitted = [0; 4];
    for second in [100, 50, 99, 0, 100] {
        clock.set(Duration::from_secs(second));
        for _ in 0..3 {
            admitted[0] += u32::from(fixed.check_sync("k").is_allowed());
            admitted[1] += u32::from(sliding.check_sync("k").is_allowed());
            admitted[2] += u32::from(token.check_sync("k").is_allowed());
            admitted[3] += u32::from(leaky.check_sync("k").is_allowed());
        }
    }
    // Time never got past where it started, so each admitted one allowance.
    assert_eq!(admitted, [2, 2, 2, 2]);
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
