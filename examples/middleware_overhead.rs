//! What the tower middleware costs end to end: wrk against an axum "hello"
//! server on loopback, one server process per variant, in interleaved rounds.
//!
//! ```text
//! apt-get install wrk
//! cargo run --release --example middleware_overhead --features tower
//! cargo run --release --example middleware_overhead --features tower -- --rounds 5 --seconds 5 bare static tollgate
//! cargo run --release --example middleware_overhead --features tower -- serve tollgate   # one server, for perf
//! apt-get install valgrind
//! cargo run --release --example middleware_overhead --features tower -- count [--requests 2000] [variants...]
//! ```
//!
//! The variants (`bare`, `static`, `tollgate`, `governor`, ... ) are in
//! `middleware_overhead/variants.rs`, shared with the `middleware` criterion
//! bench. Each server runs in its own process (a multi-threaded tokio
//! runtime, as `#[tokio::main]` makes).
//!
//! The parent runs `wrk -t1 -c<connections>` for a one-second warm-up and
//! then for `--seconds` against each variant in turn, rotating the order
//! every round. For each run it notes wrk's requests per second and the
//! server's CPU time per request (every thread's, from
//! `/proc/<pid>/task/*/schedstat`: Linux only). It prints the medians over
//! rounds and each variant's ratios to others within a round. wrk and the
//! server share the machine, so only ratios within a run mean much, and on
//! a machine shared with other work the CPU time per request is the steadier
//! of the two: other processes slow the server down but do not add to it.
//!
//! `count` runs the same variants under callgrind instead (see `count.rs`):
//! instructions and allocations per request, in process and end to end,
//! the same from run to run.

#[path = "middleware_overhead/count.rs"]
mod count;
#[path = "middleware_overhead/variants.rs"]
mod variants;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use variants::VARIANTS;

/// The pairs the reports compare: each layer against the floor of its own
/// bytes, and against tower_governor.
const COMPARISONS: [(&str, &str); 8] = [
    ("tollgate", "static"),
    ("tollgate-composite", "tollgate"),
    ("tollgate-ietf", "static-ietf"),
    ("tollgate-x", "static-x"),
    ("tollgate-ietf", "governor-headers"),
    ("tollgate-x", "governor-headers"),
    ("tollgate", "governor-headers"),
    ("tollgate-denied", "governor-denied"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).ok_or("serve needs a variant")?),
        Some("inprocess") => {
            let variant = args.get(1).ok_or("inprocess needs a variant")?;
            count::in_process_loop(variant, args.get(2).ok_or("inprocess needs a count")?.parse()?)
        }
        Some("count") => {
            let options = options(&args[1..])?;
            count::count(&std::env::current_exe()?, &options.variants, options.requests)
        }
        _ => compare(&args),
    }
}

/// One server: binds a free port on loopback, prints it, serves forever.
fn serve(variant: &str) -> Result<(), Box<dyn std::error::Error>> {
    let app = variants::router(variant)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
        Ok(())
    })
}

/// Options of the comparison.
struct Options {
    rounds: usize,
    seconds: u64,
    connections: u32,
    /// For `count`.
    requests: u64,
    variants: Vec<String>,
}

fn options(args: &[String]) -> Result<Options, Box<dyn std::error::Error>> {
    let mut options = Options { rounds: 3, seconds: 5, connections: 32, requests: 2000, variants: Vec::new() };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => options.rounds = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--connections" => options.connections = value()?.parse()?,
            "--requests" => options.requests = value()?.parse()?,
            variant if VARIANTS.contains(&variant) => options.variants.push(variant.to_owned()),
            other => return Err(format!("unknown argument {other:?}; variants are {VARIANTS:?}").into()),
        }
    }
    if options.variants.is_empty() {
        options.variants = VARIANTS.iter().map(|&v| v.to_owned()).collect();
    }
    Ok(options)
}

/// One wrk run against one server.
struct Run {
    requests_per_second: f64,
    /// Responses that were not 2xx or 3xx.
    non_2xx: u64,
    requests: u64,
    /// The server's CPU time per request (all its threads, from
    /// /proc/<pid>/task/*/schedstat), in microseconds; `None` off Linux.
    server_cpu_us: Option<f64>,
}

fn compare(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let options = options(args)?;
    let exe = std::env::current_exe()?;
    let variants = &options.variants;
    // runs[variant][round]
    let mut runs: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    println!(
        "wrk -t1 -c{} -d{}s per variant after a 1 s warm-up, {} rounds, order rotated each round",
        options.connections, options.seconds, options.rounds
    );
    for round in 0..options.rounds {
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            let variant = &variants[index];
            let mut server = Command::new(&exe).args(["serve", variant]).stdout(Stdio::piped()).spawn()?;
            let mut line = String::new();
            BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
            let url = format!("http://{}/", line.trim());
            let result = wrk(&url, options.connections, 1).and_then(|_| {
                let before = cpu_ns(server.id());
                let mut run = wrk(&url, options.connections, options.seconds)?;
                if let (Some(before), Some(after)) = (before, cpu_ns(server.id())) {
                    run.server_cpu_us = Some((after - before) as f64 / 1000.0 / run.requests as f64);
                }
                Ok(run)
            });
            server.kill()?;
            server.wait()?;
            let run = result?;
            println!(
                "round {} {variant:>17}: {:>7.0} req/s, {:>6.2} µs server CPU per request ({} requests, {} not 2xx)",
                round + 1,
                run.requests_per_second,
                run.server_cpu_us.unwrap_or(f64::NAN),
                run.requests,
                run.non_2xx
            );
            runs[index].push(run);
        }
    }
    report(variants, &runs);
    Ok(())
}

/// CPU time used so far by every thread of process `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn wrk(url: &str, connections: u32, seconds: u64) -> Result<Run, Box<dyn std::error::Error>> {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), url])
        .output()
        .map_err(|error| format!("running wrk (apt-get install wrk): {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| text.lines().find_map(|line| line.trim().strip_prefix(prefix).map(str::trim));
    let requests_per_second =
        field("Requests/sec:").ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let requests = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in ").map(|(count, _)| count.trim().to_owned()))
        .ok_or("no request count in wrk's output")?;
    Ok(Run {
        requests_per_second: requests_per_second.parse()?,
        non_2xx: field("Non-2xx or 3xx responses:").map_or(Ok(0), str::parse)?,
        requests: requests.parse()?,
        server_cpu_us: None,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

/// The median of `values` and their range, as `median [low–high]`.
fn spread(values: Vec<f64>, decimals: usize) -> String {
    let (low, high) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    format!("{:.decimals$} [{low:.decimals$}–{high:.decimals$}]", median(values))
}

/// Each variant's medians, and its ratios to other variants round by round
/// (median and range over rounds), so that the machine's slow and fast
/// moments cancel: throughput (higher is better) and server CPU per
/// request (lower is better).
fn report(variants: &[String], runs: &[Vec<Run>]) {
    let position = |name: &str| variants.iter().position(|v| v == name);
    let throughput = |index: usize| runs[index].iter().map(|run| run.requests_per_second).collect::<Vec<_>>();
    let cpu = |index: usize| runs[index].iter().map(|run| run.server_cpu_us.unwrap_or(f64::NAN)).collect::<Vec<_>>();
    let ratio = |values: &dyn Fn(usize) -> Vec<f64>, index: usize, reference: &str| -> String {
        position(reference).map_or_else(String::new, |reference| {
            spread(values(index).iter().zip(values(reference)).map(|(v, r)| v / r).collect(), 3)
        })
    };
    println!(
        "\n| variant | req/s | × bare | × static | server CPU µs/request | × bare | × static |\n|---|---|---|---|---|---|---|"
    );
    for (index, variant) in variants.iter().enumerate() {
        println!(
            "| {variant} | {} | {} | {} | {} | {} | {} |",
            spread(throughput(index), 0),
            ratio(&throughput, index, "bare"),
            ratio(&throughput, index, "static"),
            spread(cpu(index), 2),
            ratio(&cpu, index, "bare"),
            ratio(&cpu, index, "static"),
        );
    }
    println!("\n| comparison | req/s ratio | server CPU ratio |\n|---|---|---|");
    for (subject, reference) in COMPARISONS {
        if let (Some(index), Some(_)) = (position(subject), position(reference)) {
            println!(
                "| {subject} / {reference} | {} | {} |",
                ratio(&throughput, index, reference),
                ratio(&cpu, index, reference)
            );
        }
    }
}
