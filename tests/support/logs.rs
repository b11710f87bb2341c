//! A tracing subscriber that keeps every event, for tests that assert what
//! was logged.

use std::sync::{Arc, Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{DefaultGuard, Interest};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event: its level, target, message and other fields as text.
#[derive(Debug, Clone)]
pub struct Logged {
    pub level: Level,
    pub target: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Logged {
    /// The field `name`, as text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(field, _)| field == name).map(|(_, value)| value.as_str())
    }
}

/// Keeps the events of the thread it is installed on.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    events: Arc<Mutex<Vec<Logged>>>,
}

impl Capture {
    /// Captures this thread's events until the guard is dropped. With
    /// `#[tokio::test]`'s one-thread runtime that is everything the test
    /// polls, and nothing from the tests that run beside it.
    pub fn install(&self) -> DefaultGuard {
        static UNDECIDED: Once = Once::new();
        UNDECIDED.call_once(|| {
            tracing::subscriber::set_global_default(Undecided).expect("no other global subscriber in the tests")
        });
        tracing::subscriber::set_default(self.clone())
    }

    /// The events at `level`.
    pub fn at(&self, level: Level) -> Vec<Logged> {
        self.events.lock().unwrap().iter().filter(|event| event.level == level).cloned().collect()
    }
}

impl Subscriber for Capture {
    // Asked per event: other threads run without this subscriber.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut logged = Logged {
            level: *metadata.level(),
            target: metadata.target().to_owned(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut logged));
        self.events.lock().unwrap().push(logged);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

struct Fields<'a>(&'a mut Logged);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields<'_> {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.0.message = value;
        } else {
            self.0.fields.push((field.name().to_owned(), value));
        }
    }
}

/// The global subscriber while captures run: it takes no event, and asks
/// for every callsite to be asked again per event. tracing caches a
/// callsite's interest process-wide when a thread first reaches it, and
/// while a single subscriber is alive it asks only the reaching thread's:
/// a test thread without a capture would cache "never" and hide that
/// callsite's events from every capture from then on.
struct Undecided;

impl Subscriber for Undecided {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
