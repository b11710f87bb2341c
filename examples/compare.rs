//! Every algorithm on the same traffic, measured instead of described.
//!
//! ```text
//! cargo run --release --example compare
//! ```
//!
//! prints the tables (markdown) and writes `docs/compare.svg`. The
//! algorithms are those of the tests' registry (tests/support/algorithms.rs),
//! each configured through its `Spec` as "10 a second": a fixed window, a
//! sliding log and a sliding window counter of 10 per second, a token bucket
//! of capacity 10 refilled at 10 a second, and a leaky bucket draining 10 a
//! second with 9 waiting places (so that, like the others, it admits 10 at
//! once). The traffic is replayed on a
//! `ManualClock`, so the outcome is deterministic; a leaky bucket's request
//! passes when its wait is over (arrival + `Decision::wait`), the others' on
//! arrival.
//!
//! Bytes per idle key are counted by a global allocator that tracks live
//! heap bytes, for tollgate's store and for governor's keyed store alike, at
//! 100k, 500k, 1M and 2M keys. The nanoseconds per check are measured here
//! too, with the real clock (so build with `--release`), on the same three
//! loads as the criterion benches `memory/hot_key`, `memory/100k_keys_held`
//! and `memory/100k_keys_refilled`: every store is run in turn, round after
//! round, and each ratio to governor is taken within a round, so that a busy
//! machine slows both sides of it alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use tollgate::{Algorithm, InMemory, ManualClock, Rate};

// The list of algorithms and their specs, shared with the tests and benches.
#[allow(dead_code, unused_imports, unused_macros, unreachable_pub)]
#[path = "../tests/support/algorithms.rs"]
mod algorithms;
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/models.rs"]
mod models;

use models::Spec;

/// Live heap bytes, as requested (not as rounded up by the allocator).
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes.
struct Counting;

// SAFETY: every call is passed unchanged to the system allocator; the counter
// is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SECOND: u64 = 1_000_000;
/// `period`: the window the limit is stated for.
const WINDOW: u64 = SECOND;
/// `period / amount`: the gap between requests of perfectly smooth traffic.
const SLOT: u64 = WINDOW / 10;
/// The replays start at a whole second, so windows start at whole seconds of
/// scenario time.
const START: Duration = Duration::from_secs(1_800_000_000);
/// Keys checked in turn on the many-key loads; held when counting bytes per
/// key after ten requests.
const KEYS: usize = 100_000;
/// Keys held when counting bytes per idle key.
const SIZES: [usize; 4] = [100_000, 500_000, 1_000_000, 2_000_000];

/// A client's requests: arrival times in µs from the start of the scenario.
struct Traffic {
    name: &'static str,
    arrivals: Vec<u64>,
    /// How much of the timeline the plot shows.
    shown_us: u64,
}

fn traffic() -> Vec<Traffic> {
    let every = |from: u64, until: u64, gap: u64| (from..until).step_by(gap as usize);
    vec![
        Traffic {
            name: "steady: 40/s for 5 s",
            arrivals: every(0, 5 * SECOND, 25_000).collect(),
            shown_us: 6 * SECOND,
        },
        Traffic {
            name: "across a window boundary: 100/s from 0.8 s to 1.2 s",
            arrivals: every(800_000, 1_200_000, 10_000).collect(),
            shown_us: 3 * SECOND,
        },
        Traffic {
            name: "idle, then a burst: 5/s for 2 s, idle, 30 at 8.5 s within 3 ms, then 40/s",
            arrivals: every(0, 2 * SECOND, 200_000)
                .chain(every(8_500_000, 8_503_000, 100))
                .chain(every(8_600_000, 10 * SECOND, 25_000))
                .collect(),
            shown_us: 11 * SECOND,
        },
    ]
}

/// What one algorithm did with one scenario.
struct Outcome {
    /// When each admitted request passed, µs from the start.
    passed: Vec<u64>,
}

impl Outcome {
    /// A line of the table.
    fn row(&self, traffic: &str, algorithm: &str) -> String {
        let (admitted, window, slot) = (self.passed.len(), self.most_within(WINDOW), self.most_within(SLOT));
        format!("| {traffic} | {algorithm} | {admitted} | {window} | {slot} |\n")
    }

    /// The most requests that passed in any interval `[t, t + length)`.
    fn most_within(&self, length: u64) -> usize {
        let mut most = 0;
        let mut first = 0;
        for (last, &at) in self.passed.iter().enumerate() {
            while self.passed[first] + length <= at {
                first += 1;
            }
            most = most.max(last + 1 - first);
        }
        most
    }
}

/// One store, measured: an algorithm, or governor.
struct Contender {
    name: String,
    /// What it did with each traffic shape; none for governor.
    outcomes: Vec<Outcome>,
    /// After one request, at each of `SIZES` keys.
    bytes_per_key: Vec<f64>,
    /// After ten requests, at `KEYS` keys.
    bytes_per_key_after_ten: f64,
    /// For each `Load`: ns per check in each round.
    ns_per_check: Vec<Vec<f64>>,
}

/// `A` at 10 a second (admitting 10 at once) on `traffic`, named as in
/// prose: "sliding window".
fn measure<A: Spec>(traffic: &[Traffic]) -> Contender {
    let algorithm = A::with_limit(10, Duration::from_secs(1));
    let outcomes = traffic.iter().map(|traffic| replay(algorithm.clone(), &traffic.arrivals)).collect();
    Contender {
        name: algorithm.name().replace('_', " "),
        outcomes,
        bytes_per_key: SIZES.iter().map(|&keys| bytes_per_key(algorithm.clone(), keys, 1)).collect(),
        bytes_per_key_after_ten: bytes_per_key(algorithm, KEYS, 10),
        ns_per_check: Vec::new(),
    }
}

fn measure_governor() -> Contender {
    Contender {
        name: "governor keyed (GCRA)".to_owned(),
        outcomes: Vec::new(),
        bytes_per_key: SIZES.iter().map(|&keys| governor_bytes_per_key(keys, 1)).collect(),
        bytes_per_key_after_ten: governor_bytes_per_key(KEYS, 10),
        ns_per_check: Vec::new(),
    }
}

fn replay<A: Algorithm>(algorithm: A, arrivals: &[u64]) -> Outcome {
    let clock = ManualClock::starting_at(START);
    let limiter = InMemory::with_clock(algorithm, clock.clone());
    let mut passed = Vec::new();
    for &at in arrivals {
        clock.set(START + Duration::from_micros(at));
        let decision = limiter.check_sync("client");
        if decision.is_allowed() {
            passed.push(at + u64::try_from(decision.wait().as_micros()).unwrap());
        }
    }
    passed.sort_unstable();
    Outcome { passed }
}

/// Live heap bytes per key with `keys` keys held, each after `requests`
/// requests (the key's copy and its table slot included).
fn bytes_per_key<A: Algorithm>(algorithm: A, keys: usize, requests: u64) -> f64 {
    let limiter = InMemory::with_clock(algorithm, ManualClock::starting_at(START));
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for n in 0..keys {
        let key = user(n);
        for _ in 0..requests {
            assert!(limiter.check_sync(&key).is_allowed());
        }
    }
    assert_eq!(limiter.len(), keys);
    (LIVE_BYTES.load(Ordering::Relaxed) - before) as f64 / keys as f64
}

fn governor_bytes_per_key(keys: usize, requests: u64) -> f64 {
    let limiter = DefaultKeyedRateLimiter::<String>::keyed(Quota::per_second(NonZeroU32::new(10).unwrap()));
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for n in 0..keys {
        let key = user(n);
        for _ in 0..requests {
            assert!(limiter.check_key(&key).is_ok());
        }
    }
    assert_eq!(limiter.len(), keys);
    (LIVE_BYTES.load(Ordering::Relaxed) - before) as f64 / keys as f64
}

/// `user:000042`: 11 bytes below a million, 12 from there.
fn user(n: usize) -> String {
    format!("user:{n:06}")
}

/// The loads ns per check are measured on: those of the criterion benches
/// of the same names (benches/benches/memory.rs), each of which admits every
/// check.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// One key at 10^8 a second in bursts of 1 000.
    HotKey,
    /// `KEYS` keys in turn at 65 536 per 10 hours in bursts of 65 536: no key
    /// ever drains back to full, so none is forgotten.
    Held,
    /// `KEYS` keys in turn at one a 100 µs in bursts of two: each key is full
    /// again long before it comes round, so tollgate forgets it in between
    /// and creates it again (governor keeps it).
    Refilled,
}

const LOADS: [Load; 3] = [Load::HotKey, Load::Held, Load::Refilled];

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::HotKey => "hot key",
            Load::Held => "100k keys held",
            Load::Refilled => "100k keys refilled",
        }
    }

    fn keys(self) -> Rc<[String]> {
        match self {
            Load::HotKey => Rc::from([user(0)]),
            Load::Held | Load::Refilled => (0..KEYS).map(user).collect(),
        }
    }

    /// What a bucket admits at once, the rate, and the rate of an algorithm
    /// whose state grows with its amount, a log (the rate itself, except
    /// where it would grow a log per key without bound).
    fn allowance(self) -> (u32, Rate, Rate) {
        match self {
            Load::HotKey => {
                (1_000, Rate::new(1_000, Duration::from_micros(10)), Rate::new(1_000, Duration::from_micros(10)))
            }
            Load::Held => {
                (65_536, Rate::new(65_536, Duration::from_secs(36_000)), Rate::new(1_024, Duration::from_secs(1)))
            }
            // Bursts of two: the least a leaky bucket admits at once.
            Load::Refilled => (2, Rate::new(1, Duration::from_micros(100)), Rate::new(1, Duration::from_micros(100))),
        }
    }
}

/// Runs `checks` checks, each on the next key.
type Timed = Box<dyn FnMut(u32)>;

/// Checks `keys` in turn, on the real clock, with an `A` given what a
/// bucket admits at once and the rate (or the log's rate).
fn timed<A: Spec>((capacity, rate, log_rate): (u32, Rate, Rate), keys: &Rc<[String]>) -> Timed {
    let rate = if A::STATE_GROWS_WITH_AMOUNT { log_rate } else { rate };
    let limiter = InMemory::new(A::try_new(u64::from(capacity), rate).unwrap());
    let (keys, mut next) = (Rc::clone(keys), 0);
    Box::new(move |checks| {
        for _ in 0..checks {
            let _ = std::hint::black_box(limiter.check_sync(&keys[next]));
            next = if next + 1 == keys.len() { 0 } else { next + 1 };
        }
    })
}

/// governor's keyed limiter with the same rate and burst as a token bucket
/// of `capacity` at `rate`.
fn governor_timed(capacity: u32, rate: Rate, keys: &Rc<[String]>) -> Timed {
    let per_cell = rate.period() / u32::try_from(rate.amount()).unwrap();
    let quota = Quota::with_period(per_cell).unwrap().allow_burst(NonZeroU32::new(capacity).unwrap());
    let limiter = DefaultKeyedRateLimiter::<String>::keyed(quota);
    let (keys, mut next) = (Rc::clone(keys), 0);
    Box::new(move |checks| {
        for _ in 0..checks {
            let _ = std::hint::black_box(limiter.check_key(&keys[next]));
            next = if next + 1 == keys.len() { 0 } else { next + 1 };
        }
    })
}

/// Every algorithm and governor, in the order of the contenders, on `load`.
fn subjects(load: Load) -> Vec<Timed> {
    let keys = load.keys();
    let allowance = load.allowance();
    let mut subjects = Vec::new();
    macro_rules! push {
        ($name:ident, $algorithm:ident, $subjects:ident, $allowance:ident, $keys:ident) => {
            $subjects.push(timed::<tollgate::$algorithm>($allowance, &$keys));
        };
    }
    algorithms::for_each_algorithm!(push, subjects, allowance, keys);
    let (capacity, rate, _) = allowance;
    subjects.push(governor_timed(capacity, rate, &keys));
    subjects
}

/// Rounds measured (after one to warm up).
const ROUNDS: usize = 21;

/// Nanoseconds per check for each of `subjects` in each of `ROUNDS` rounds,
/// in each of which every subject runs 200 000 checks, one after the other.
fn ns_per_check(subjects: &mut [Timed]) -> Vec<Vec<f64>> {
    const CHECKS: u32 = 200_000;
    let mut runs = vec![Vec::new(); subjects.len()];
    for round in 0..=ROUNDS {
        for (subject, runs) in subjects.iter_mut().zip(&mut runs) {
            let start = Instant::now();
            subject(CHECKS);
            let ns = start.elapsed().as_nanos() as f64 / f64::from(CHECKS);
            if round > 0 {
                runs.push(ns); // round 0 warms up
            }
        }
    }
    runs
}

/// The median of `values`, and their least and greatest.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn main() {
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; ns per check mean nothing without --release");
    }
    let traffic = traffic();
    let mut contenders = Vec::new();
    macro_rules! push {
        ($name:ident, $algorithm:ident, $contenders:ident, $traffic:ident) => {
            $contenders.push(measure::<tollgate::$algorithm>(&$traffic));
        };
    }
    algorithms::for_each_algorithm!(push, contenders, traffic);
    contenders.push(measure_governor());
    for load in LOADS {
        for (contender, rounds) in contenders.iter_mut().zip(ns_per_check(&mut subjects(load))) {
            contender.ns_per_check.push(rounds);
        }
    }
    print!("{}", tables(&traffic, &contenders));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/compare.svg");
    std::fs::write(path, svg(&traffic, &contenders[..contenders.len() - 1])).expect("docs/ is writable");
    println!("\nwrote {path}");
}

fn tables(traffic: &[Traffic], contenders: &[Contender]) -> String {
    let (algorithms, governor) = contenders.split_at(contenders.len() - 1);
    let governor = &governor[0];
    let mut out = String::new();
    let _ = writeln!(out, "Every algorithm at 10 a second (the leaky bucket: 9 waiting + 1 departing).\n");
    let _ = writeln!(
        out,
        "| traffic | algorithm | admitted | most in any 1 s (limit 10) | most in any 100 ms (smooth: 1) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for (n, traffic) in traffic.iter().enumerate() {
        let offered = Outcome { passed: traffic.arrivals.clone() };
        out.push_str(&offered.row(traffic.name, "*offered*"));
        for contender in algorithms {
            out.push_str(&contender.outcomes[n].row("", &contender.name));
        }
    }

    let _ =
        writeln!(out, "\n| store | bytes per idle key: 100k keys | 500k | 1M | 2M | 100k keys, after 10 requests |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for contender in contenders {
        let mut row = format!("| {} |", store_name(contender, governor));
        let sizes = contender.bytes_per_key.iter().zip(&governor.bytes_per_key);
        let after_ten = (&contender.bytes_per_key_after_ten, &governor.bytes_per_key_after_ten);
        for (bytes, governor_bytes) in sizes.chain([after_ten]) {
            if std::ptr::eq(contender, governor) {
                let _ = write!(row, " {bytes:.1} |");
            } else {
                let _ = write!(row, " {bytes:.1} ({:.2}×) |", bytes / governor_bytes);
            }
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "\nLive heap bytes per key (as requested from the allocator), keys like `user:000042` held \
         (key copy and table slot included), each after one request at 10 a second unless said; \
         in brackets, ÷ governor's."
    );

    let _ = write!(out, "\n| store |");
    for load in LOADS {
        let _ = write!(out, " ns per check, {} | ÷ governor |", load.name());
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(2 * LOADS.len()));
    for contender in contenders {
        let mut row = format!("| {} |", store_name(contender, governor));
        for (rounds, governor_rounds) in contender.ns_per_check.iter().zip(&governor.ns_per_check) {
            let (ns, least, most) = spread(rounds.clone());
            let _ = write!(row, " {ns:.1} ({least:.0}–{most:.0}) |");
            if std::ptr::eq(contender, governor) {
                row.push_str(" 1 |");
            } else {
                let ratios = rounds.iter().zip(governor_rounds).map(|(ns, governor_ns)| ns / governor_ns).collect();
                let (ratio, least, most) = spread(ratios);
                let _ = write!(row, " **{ratio:.2}×** ({least:.2}–{most:.2}) |");
            }
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "\nReal clock, allowances that admit every check (the criterion benches memory/hot_key, \
         memory/100k_keys_held and memory/100k_keys_refilled), the {} stores interleaved: \
         {ROUNDS} rounds of 2*10^5 checks per store, in this process. ns: the median round (least–most); \
         ÷ governor: the median of the {ROUNDS} ratios taken within a round (least–most).",
        contenders.len()
    );
    out
}

fn store_name(contender: &Contender, governor: &Contender) -> String {
    if std::ptr::eq(contender, governor) { contender.name.clone() } else { format!("tollgate {}", contender.name) }
}

const LANE: f64 = 60.0;
const DOT: f64 = 4.0;
const LEFT: f64 = 110.0;
const PLOT_WIDTH: f64 = 860.0;
/// Dots a column shows; a count above it is written instead.
const MOST_DOTS: u64 = 10;

/// One panel per scenario; in each, a lane for the offered traffic and one
/// per algorithm. Each request that passed is a dot, stacked in its 100 ms
/// column: smooth traffic is a single row of dots.
fn svg(traffic: &[Traffic], contenders: &[Contender]) -> String {
    let lanes = contenders.len() as f64 + 1.0;
    let panel_height = 40.0 + lanes * LANE + 24.0;
    let height = panel_height * traffic.len() as f64 + 40.0;
    let width = LEFT + PLOT_WIDTH + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">Requests passed per 100 ms, each algorithm at 10/s (one dot each; grey lines: 1 s windows)</text>"#
    );
    for (n, traffic) in traffic.iter().enumerate() {
        let top = 40.0 + n as f64 * panel_height;
        let columns = traffic.shown_us.div_ceil(SLOT);
        let column_width = PLOT_WIDTH / columns as f64;
        let x = |at: u64| LEFT + at as f64 / traffic.shown_us as f64 * PLOT_WIDTH;
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            top + 16.0,
            traffic.name
        );
        let lanes_top = top + 28.0;
        let lanes_bottom = lanes_top + lanes * LANE;
        for second in 0..=traffic.shown_us / SECOND {
            let at = x(second * SECOND);
            let _ = writeln!(
                svg,
                r##"<line x1="{at:.1}" y1="{lanes_top}" x2="{at:.1}" y2="{lanes_bottom}" stroke="#ccc"/><text x="{at:.1}" y="{}" text-anchor="middle" fill="#555">{second} s</text>"##,
                lanes_bottom + 14.0
            );
        }
        let offered = Outcome { passed: traffic.arrivals.clone() };
        let rows = std::iter::once(("offered", &offered, "#999", "sent")).chain(
            contenders.iter().map(|contender| (contender.name.as_str(), &contender.outcomes[n], "#1f5fa8", "passed")),
        );
        for (lane, (name, outcome, colour, verb)) in rows.enumerate() {
            let bottom = lanes_top + (lane as f64 + 1.0) * LANE - 3.0;
            let _ = writeln!(
                svg,
                r##"<text x="10" y="{}" fill="#222">{name}</text><text x="10" y="{}" fill="#777" font-size="10">{} {verb}</text><line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#eee"/>"##,
                bottom - LANE / 2.0 + 4.0,
                bottom - LANE / 2.0 + 17.0,
                outcome.passed.len(),
                LEFT + PLOT_WIDTH
            );
            let mut column_counts = vec![0_u64; columns as usize + 1];
            for &at in &outcome.passed {
                column_counts[(at / SLOT) as usize] += 1;
            }
            for (column, &count) in column_counts.iter().enumerate() {
                let left = LEFT + column as f64 * column_width + (column_width - DOT.min(column_width - 1.0)) / 2.0;
                for dot in 0..count.min(MOST_DOTS) {
                    let _ = write!(
                        svg,
                        r#"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{DOT}" fill="{colour}"/>"#,
                        bottom - (dot as f64 + 1.0) * (DOT + 1.0),
                        DOT.min(column_width - 1.0)
                    );
                }
                if count > MOST_DOTS {
                    let _ = write!(
                        svg,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#b00">{count}</text>"##,
                        left + column_width,
                        bottom - LANE + 14.0
                    );
                }
            }
            svg.push('\n');
        }
    }
    svg.push_str("</svg>\n");
    svg
}
