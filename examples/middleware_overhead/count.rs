//! `count`: instructions (and allocations) per request under callgrind,
//! which stay the same from run to run whatever else the machine is doing,
//! where times on a shared machine move by ±15 %.
//!
//! - in process: `inprocess <variant> <n>` drives the router `n` times
//!   exactly as the `middleware` criterion bench does, with collection on
//!   only inside `measured_requests`;
//! - end to end: `serve <variant>` under callgrind, answering `n`
//!   keep-alive requests from one connection on loopback, counted from after
//!   a warm-up (`callgrind_control --zero`) to a dump (`--dump`). This is
//!   every user-space instruction of the server (hyper, axum, the layer);
//!   the kernel's share (the socket calls) is not counted, and is the same
//!   for the same bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::variants;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `inprocess <variant> <n>`: the loop callgrind counts.
pub fn in_process_loop(variant: &str, n: u64) -> Result<()> {
    let mut router = variants::router(variant)?;
    let client: SocketAddr = "192.0.2.7:40000".parse()?;
    // Warm: first-use costs (the denying variants' first, admitted request,
    // the values a layer makes once) are not what is measured.
    for _ in 0..100 {
        variants::request(&mut router, client);
    }
    measured_requests(&mut router, client, n);
    Ok(())
}

#[inline(never)]
fn measured_requests(router: &mut axum::Router, client: SocketAddr, n: u64) {
    for _ in 0..n {
        std::hint::black_box(variants::request(router, client));
    }
}

/// One variant's counts.
struct Counts {
    in_process: f64,
    mallocs: f64,
    end_to_end: f64,
}

/// `count [--requests N] [variants...]`.
pub fn count(exe: &Path, variants: &[String], requests: u64) -> Result<()> {
    println!("callgrind, {requests} requests per variant; instructions and mallocs per request\n");
    println!("| variant | in process: instructions | in process: mallocs | end to end: user-space instructions |");
    println!("|---|---|---|---|");
    let mut all = Vec::new();
    for variant in variants {
        let (in_process, mallocs) = in_process(exe, variant, requests)?;
        let end_to_end = end_to_end(exe, variant, requests)?;
        println!("| {variant} | {in_process:.0} | {mallocs:.1} | {end_to_end:.0} |");
        all.push((variant.as_str(), Counts { in_process, mallocs, end_to_end }));
    }
    println!("\n| comparison | in process: instructions | mallocs | end to end: instructions |\n|---|---|---|---|");
    let find = |name: &str| all.iter().find(|(variant, _)| *variant == name).map(|(_, counts)| counts);
    for (subject, reference) in super::COMPARISONS {
        if let (Some(subject_counts), Some(reference_counts)) = (find(subject), find(reference)) {
            println!(
                "| {subject} / {reference} | {:.3} ({:+.0}) | {:+.1} | {:.3} ({:+.0}) |",
                subject_counts.in_process / reference_counts.in_process,
                subject_counts.in_process - reference_counts.in_process,
                subject_counts.mallocs - reference_counts.mallocs,
                subject_counts.end_to_end / reference_counts.end_to_end,
                subject_counts.end_to_end - reference_counts.end_to_end,
            );
        }
    }
    Ok(())
}

fn out_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tollgate-callgrind-{}-{name}", std::process::id()))
}

fn in_process(exe: &Path, variant: &str, requests: u64) -> Result<(f64, f64)> {
    let out = out_file(&format!("{variant}.in-process"));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--toggle-collect=*measured_requests*")
        .arg(exe)
        .args(["inprocess", variant, &requests.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|error| format!("running valgrind (apt-get install valgrind): {error}"))?;
    if !status.success() {
        return Err(format!("callgrind on {variant} failed: {status}").into());
    }
    let (instructions, mallocs) = parse(&out)?;
    std::fs::remove_file(&out)?;
    Ok((instructions as f64 / requests as f64, mallocs as f64 / requests as f64))
}

fn end_to_end(exe: &Path, variant: &str, requests: u64) -> Result<f64> {
    let out = out_file(&format!("{variant}.end-to-end"));
    let mut server = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["serve", variant])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut address = String::new();
    BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut address)?;
    let pid = server.id().to_string();
    let result = (|| -> Result<()> {
        let mut connection = BufReader::new(TcpStream::connect(address.trim())?);
        for _ in 0..200 {
            get(&mut connection)?;
        }
        callgrind_control(&["--zero", &pid])?;
        for _ in 0..requests {
            get(&mut connection)?;
        }
        callgrind_control(&["--dump", &pid])
    })();
    server.kill()?;
    server.wait()?;
    result?;
    // The dump after the zeroing is the first numbered part.
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let (instructions, _) = parse(&dump)?;
    for file in [out, dump] {
        let _ = std::fs::remove_file(file);
    }
    Ok(instructions as f64 / requests as f64)
}

fn callgrind_control(args: &[&str]) -> Result<()> {
    let status = Command::new("callgrind_control").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if status.success() { Ok(()) } else { Err(format!("callgrind_control {args:?}: {status}").into()) }
}

/// One keep-alive `GET /`, its response read whole.
fn get(connection: &mut BufReader<TcpStream>) -> Result<()> {
    connection.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if connection.read_line(&mut line)? == 0 {
            return Err("the server closed the connection".into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    connection.read_exact(&mut vec![0; length])?;
    Ok(())
}

/// The instructions a callgrind output file counted, and the calls to
/// `malloc` in it.
fn parse(file: &Path) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(file)?;
    let mut instructions = None;
    let mut malloc_ids = Vec::new();
    let mut calling_malloc = false;
    let mut mallocs = 0;
    for line in text.lines() {
        if let Some(total) = line.strip_prefix("totals:").or_else(|| line.strip_prefix("summary:")) {
            instructions = Some(total.split_whitespace().next().unwrap_or("0").parse()?);
            continue;
        }
        // Functions are named once, `fn=(id) name` or `cfn=(id) name`, and
        // by `(id)` alone after that.
        let (function, callee) = match (line.strip_prefix("fn="), line.strip_prefix("cfn=")) {
            (Some(function), _) => (function, false),
            (_, Some(function)) => (function, true),
            _ => {
                if let Some(calls) = line.strip_prefix("calls=")
                    && calling_malloc
                {
                    mallocs += calls.split_whitespace().next().unwrap_or("0").parse::<u64>()?;
                }
                calling_malloc = false;
                continue;
            }
        };
        let (id, name) = function.split_once(' ').unwrap_or((function, ""));
        if name == "malloc" {
            malloc_ids.push(id.to_owned());
        }
        calling_malloc = callee && malloc_ids.iter().any(|known| known == id);
    }
    Ok((instructions.ok_or_else(|| format!("no totals in {}", file.display()))?, mallocs))
}
