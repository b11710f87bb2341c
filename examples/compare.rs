//! The four algorithms on the same traffic, measured instead of described.
//!
//! ```text
//! cargo run --release --example compare
//! ```
//!
//! prints the tables (markdown) and writes `docs/compare.svg`. Every
//! algorithm is configured as "10 a second": a fixed window and a sliding log
//! of 10 per second, a token bucket of capacity 10 refilled at 10 a second,
//! and a leaky bucket draining 10 a second with 9 waiting places (so that,
//! like the others, it admits 10 at once). The traffic is replayed on a
//! `ManualClock`, so the outcome is deterministic; a leaky bucket's request
//! passes when its wait is over (arrival + `Decision::wait`), the others' on
//! arrival.
//!
//! Bytes per key are counted by a global allocator that tracks live heap
//! bytes, for tollgate's store and for governor's keyed store alike. The
//! nanoseconds per check are measured here too, on one key with the real
//! clock and an allowance that admits every check (so build with
//! `--release`); `cargo bench --bench benches -- memory/` measures them with
//! criterion.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use tollgate::{Algorithm, FixedWindow, InMemory, LeakyBucket, ManualClock, Rate, SlidingLog, TokenBucket};

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
/// Keys held when counting bytes per key.
const KEYS: usize = 100_000;

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

/// One algorithm, measured.
struct Contender {
    name: &'static str,
    outcomes: Vec<Outcome>,
    bytes_per_key: (f64, f64),
    /// On one key, and on 100 000 keys in turn.
    ns_per_check: (f64, f64),
}

fn measure<A: Algorithm>(name: &'static str, algorithm: A, traffic: &[Traffic]) -> Contender {
    let outcomes = traffic.iter().map(|traffic| replay(algorithm.clone(), &traffic.arrivals)).collect();
    let limit = 10;
    let bytes_per_key = (bytes_per_key(algorithm.clone(), 1), bytes_per_key(algorithm, limit));
    Contender { name, outcomes, bytes_per_key, ns_per_check: (f64::NAN, f64::NAN) }
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

/// Live heap bytes per key with `KEYS` keys held, each after `requests`
/// requests (the key's copy and its table slot included).
fn bytes_per_key<A: Algorithm>(algorithm: A, requests: u64) -> f64 {
    let limiter = InMemory::with_clock(algorithm, ManualClock::starting_at(START));
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for n in 0..KEYS {
        let key = user(n);
        for _ in 0..requests {
            assert!(limiter.check_sync(&key).is_allowed());
        }
    }
    assert_eq!(limiter.len(), KEYS);
    let bytes = (LIVE_BYTES.load(Ordering::Relaxed) - before) as f64 / KEYS as f64;
    drop(limiter);
    bytes
}

fn governor_bytes_per_key(requests: u64) -> f64 {
    let limiter = DefaultKeyedRateLimiter::<String>::keyed(Quota::per_second(NonZeroU32::new(10).unwrap()));
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for n in 0..KEYS {
        let key = user(n);
        for _ in 0..requests {
            assert!(limiter.check_key(&key).is_ok());
        }
    }
    assert_eq!(limiter.len(), KEYS);
    (LIVE_BYTES.load(Ordering::Relaxed) - before) as f64 / KEYS as f64
}

fn user(n: usize) -> String {
    format!("user:{n:06}")
}

/// Runs `checks` checks on one key.
type Timed = Box<dyn FnMut(u32)>;

/// Checks `keys` in turn, on the real clock.
fn timed<A: Algorithm>(algorithm: A, keys: &Rc<[String]>) -> Timed {
    let limiter = InMemory::new(algorithm);
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

/// The four algorithms and governor, in the order of the table's rows, on
/// `keys`: the allowances of the criterion benches `memory/hot_key` (one key)
/// and `memory/100k_keys`, which admit every check.
fn subjects(keys: &Rc<[String]>) -> Vec<Timed> {
    let (capacity, rate, sliding_log_rate) = if keys.len() == 1 {
        let hot = Rate::new(1_000, Duration::from_micros(10));
        (1_000, hot, hot)
    } else {
        (65_536, Rate::new(65_536, Duration::from_secs(36_000)), Rate::new(1_024, Duration::from_secs(1)))
    };
    vec![
        timed(FixedWindow::new(rate).unwrap(), keys),
        timed(SlidingLog::new(sliding_log_rate).unwrap(), keys),
        timed(TokenBucket::new(u64::from(capacity), rate).unwrap(), keys),
        timed(LeakyBucket::new(u64::from(capacity), rate).unwrap(), keys),
        governor_timed(capacity, rate, keys),
    ]
}

/// Nanoseconds per check for each of `subjects`: the median of 21 rounds, in
/// each of which every subject runs 200 000 checks, so that a busy machine
/// slows all of them alike.
fn ns_per_check(subjects: &mut [Timed]) -> Vec<f64> {
    const CHECKS: u32 = 200_000;
    let mut runs = vec![Vec::new(); subjects.len()];
    for round in 0..22 {
        for (subject, runs) in subjects.iter_mut().zip(&mut runs) {
            let start = Instant::now();
            subject(CHECKS);
            let ns = start.elapsed().as_nanos() as f64 / f64::from(CHECKS);
            if round > 0 {
                runs.push(ns); // round 0 warms up
            }
        }
    }
    runs.into_iter()
        .map(|mut runs| {
            runs.sort_by(f64::total_cmp);
            runs[runs.len() / 2]
        })
        .collect()
}

fn main() {
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; ns per check mean nothing without --release");
    }
    let traffic = traffic();
    let per_second = Rate::per_second(10);
    let mut contenders = [
        measure("fixed window", FixedWindow::new(per_second).unwrap(), &traffic),
        measure("sliding log", SlidingLog::new(per_second).unwrap(), &traffic),
        measure("token bucket", TokenBucket::new(10, per_second).unwrap(), &traffic),
        measure("leaky bucket", LeakyBucket::new(9, per_second).unwrap(), &traffic),
    ];
    // The same allowance as the hot-key bench: 10^8 a second, so every check is admitted.
    let one_key: Rc<[String]> = Rc::from([user(0)]);
    let many_keys: Rc<[String]> = (0..KEYS).map(user).collect();
    let one_key_ns = ns_per_check(&mut subjects(&one_key));
    let many_keys_ns = ns_per_check(&mut subjects(&many_keys));
    for (n, contender) in contenders.iter_mut().enumerate() {
        contender.ns_per_check = (one_key_ns[n], many_keys_ns[n]);
    }
    let governor_ns = (one_key_ns[4], many_keys_ns[4]);
    print!("{}", tables(&traffic, &contenders, governor_ns));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/compare.svg");
    std::fs::write(path, svg(&traffic, &contenders)).expect("docs/ is writable");
    println!("\nwrote {path}");
}

fn tables(traffic: &[Traffic], contenders: &[Contender], governor_ns: (f64, f64)) -> String {
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
        for contender in contenders {
            out.push_str(&contender.outcomes[n].row("", contender.name));
        }
    }
    let _ = writeln!(
        out,
        "\n| store | bytes per idle key, after 1 request | after 10 requests | ns per check, one key | ns per check, 100k keys |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let row = |name: &str, (one, ten): (f64, f64), (hot, many): (f64, f64)| {
        format!("| {name} | {one:.0} | {ten:.0} | {hot:.1} | {many:.1} |\n")
    };
    for contender in contenders {
        out.push_str(&row(&format!("tollgate {}", contender.name), contender.bytes_per_key, contender.ns_per_check));
    }
    let governor_bytes = (governor_bytes_per_key(1), governor_bytes_per_key(10));
    out.push_str(&row("governor keyed (GCRA)", governor_bytes, governor_ns));
    let _ = writeln!(
        out,
        "\nBytes: live heap per key with {KEYS} keys like `user:000042` held (key copy and table slot included). \
         ns: real clock, allowances that admit every check (as in the criterion benches memory/hot_key and memory/100k_keys), all five stores interleaved: the median of 21 rounds of 2*10^5 checks each, in this process."
    );
    out
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
        let rows = std::iter::once(("offered", &offered, "#999", "sent"))
            .chain(contenders.iter().map(|contender| (contender.name, &contender.outcomes[n], "#1f5fa8", "passed")));
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
