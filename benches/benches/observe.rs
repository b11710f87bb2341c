//! What observing a check costs: one hot token-bucket key, admitted, as
//! `memory/hot_key/sync/token_bucket`, with what an application has
//! installed around it.
//!
//! - `observe/check_sync/bare`: no tracing subscriber and no metrics
//!   recorder (with feature `metrics`, the handles are no-ops).
//! - `observe/check_sync/fmt_at_info`: tracing-subscriber's fmt layer at
//!   `info`, the per-check `trace` event filtered out at its callsite.
//! - `observe/check_sync/prometheus`: that subscriber, and Prometheus's
//!   recorder receiving the counter and the latency sample of every check.
//!
//! Built without feature `metrics` the three measure the trace callsite
//! alone; with it, what the metrics add. docs/observability.md has the
//! figures of both builds and their commands.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use metrics_exporter_prometheus::PrometheusBuilder;
use tollgate::{InMemory, Rate, TokenBucket};

/// 100 million a second, bursts of 1 000: the key is always admitted.
fn hot() -> InMemory<TokenBucket> {
    InMemory::new(TokenBucket::new(1_000, Rate::new(1_000, Duration::from_micros(10))).unwrap()).named("bench")
}

pub(crate) fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe/check_sync");
    group.throughput(Throughput::Elements(1));
    let key = "user:42".to_owned();

    let bare = hot();
    group.bench_function("bare", |b| b.iter(|| bare.check_sync(black_box(&key))));

    let info = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).finish();
    let _subscriber = tracing::subscriber::set_default(info);
    let at_info = hot();
    group.bench_function("fmt_at_info", |b| b.iter(|| at_info.check_sync(black_box(&key))));

    let prometheus = PrometheusBuilder::new().build_recorder();
    let recorded = hot();
    // The first check registers the limiter's handles with this recorder.
    let _ = metrics::with_local_recorder(&prometheus, || recorded.check_sync(&key));
    group.bench_function("prometheus", |b| b.iter(|| recorded.check_sync(black_box(&key))));
    assert!(prometheus.handle().render().contains("tollgate_checks_total"), "the checks reached the recorder");
    group.finish();
}
