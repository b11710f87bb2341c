//! A metrics recorder that keeps every value, for tests that assert what
//! was recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, LocalRecorderGuard, Metadata, Recorder, SharedString, Unit,
};

/// Every series registered with it, and their values.
#[derive(Debug, Default)]
pub struct Recorded {
    counters: Mutex<Vec<(Key, Arc<AtomicU64>)>>,
    gauges: Mutex<Vec<(Key, Arc<AtomicU64>)>>,
    histograms: Mutex<Vec<(Key, Arc<Samples>)>>,
}

/// A histogram's samples, in the order recorded.
#[derive(Debug, Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// The series `name` with exactly the labels `labels`, in any order.
fn is(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && key.labels().count() == labels.len()
        && labels.iter().all(|(label, value)| key.labels().any(|l| l.key() == *label && l.value() == *value))
}

fn find<T>(series: &Mutex<Vec<(Key, Arc<T>)>>, name: &str, labels: &[(&str, &str)]) -> Option<Arc<T>> {
    series.lock().unwrap().iter().find(|(key, _)| is(key, name, labels)).map(|(_, value)| Arc::clone(value))
}

/// The series of `key`, registered on first use.
fn register<T: Default>(series: &Mutex<Vec<(Key, Arc<T>)>>, key: &Key) -> Arc<T> {
    let mut series = series.lock().unwrap();
    if let Some((_, value)) = series.iter().find(|(held, _)| held == key) {
        return Arc::clone(value);
    }
    let value = Arc::new(T::default());
    series.push((key.clone(), Arc::clone(&value)));
    value
}

impl Recorded {
    /// Records this thread's metrics until the guard is dropped: with
    /// `#[tokio::test]`'s one-thread runtime, the handles a limiter
    /// registers at its first check, which then record here from any thread.
    pub fn install(&self) -> LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(self)
    }

    /// The counter's value, `None` if it was never registered.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        find(&self.counters, name, labels).map(|value| value.load(Ordering::Relaxed))
    }

    /// The gauge's value, `None` if it was never registered.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        find(&self.gauges, name, labels).map(|value| f64::from_bits(value.load(Ordering::Relaxed)))
    }

    /// The histogram's samples, `None` if it was never registered.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Vec<f64>> {
        find(&self.histograms, name, labels).map(|samples| samples.0.lock().unwrap().clone())
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(register(&self.counters, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(register(&self.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(register(&self.histograms, key))
    }
}
