//! What observing a check costs, in instructions: a loop of in-memory
//! checks of one hot key, for callgrind. docs/observability.md has the
//! figures and the commands.
//!
//! ```text
//! cargo build --release --example observe_overhead [--features metrics]
//! valgrind --tool=callgrind target/release/examples/observe_overhead VARIANT CHECKS
//! ```
//!
//! VARIANT is `bare` (no subscriber, no recorder), `fmt_at_info`
//! (tracing-subscriber's fmt at `info`: the per-check `trace` event is
//! filtered out) or `prometheus` (that, and Prometheus's recorder receiving
//! every check's count and latency). Two runs of different CHECKS give the
//! instructions per check, without the set-up.

use std::hint::black_box;
use std::time::Duration;

use tollgate::{InMemory, Rate, TokenBucket};

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "bare".to_owned());
    let checks: u64 = args.next().map_or(1_000_000, |n| n.parse().expect("CHECKS is a number"));
    // 100 million a second, bursts of 1 000: every check is admitted.
    let limiter = InMemory::new(TokenBucket::new(1_000, Rate::new(1_000, Duration::from_micros(10))).unwrap());
    let info = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).finish();
    let _subscriber = (variant != "bare").then(|| tracing::subscriber::set_default(info));
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    if variant == "prometheus" {
        // The first check registers the limiter's handles with this recorder.
        let _ = metrics::with_local_recorder(&prometheus, || limiter.check_sync("user:42"));
    }
    let mut allowed = 0_u64;
    for _ in 0..checks {
        allowed += u64::from(limiter.check_sync(black_box("user:42")).is_allowed());
    }
    println!("{variant}: {allowed} of {checks} checks allowed");
}
