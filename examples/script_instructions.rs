//! What one decision costs Redis, counted in instructions: the callgrind
//! figures of docs/redis.md ("What a decision costs Redis").
//!
//! The `redis_cost` bench times each script on the server's own clock, which
//! a busy machine moves by a fifth from run to run. Instructions do not move:
//! this runs a redis-server of its own under
//! `valgrind --tool=callgrind --toggle-collect=evalShaCommand`, so that only
//! the work inside `EVALSHA` is counted, and for each script (the floor,
//! `benches/benches/floor.lua`, then every algorithm's, exactly as the crate
//! sends it, admitting a million a second) writes each of its keys once, then
//! counts `--calls` more calls over those keys, every one admitted and
//! written. Needs valgrind (`apt-get install valgrind`) and redis-server
//! (`TOLLGATE_REDIS_SERVER` names the binary).
//!
//! ```sh
//! cargo run --release --features redis --example script_instructions -- --calls 20000
//! ```
//!
//! `--only NAME` (as often as wanted) counts the floor and the scripts named.
//! `--entries N` gives the sliding log a window of an hour, so that nothing
//! expires, and writes each of its keys N times before its calls are
//! counted: with `--calls 10000` every counted call finds a log of N entries
//! (docs/redis.md, "The sliding log, by the size of its log").
//! `--keep DIR` copies each subject's dump there, for `callgrind_annotate`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::{FixedWindow, LeakyBucket, Rate, Redis, SlidingLog, SlidingWindow, TokenBucket};

/// Each script's keys, written once before its calls are counted.
const KEYS: usize = 10_000;
/// Calls per pipeline.
const PIPELINE: usize = 256;
const AMOUNT: u64 = 1_000_000;

/// One script and the arguments it is sent.
struct Subject {
    name: &'static str,
    source: String,
    tag: &'static str,
    args: Vec<Vec<u8>>,
}

/// A redis-server under callgrind, and the directory of its dumps.
struct Server {
    process: Child,
    dumps: PathBuf,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dumps = std::env::temp_dir().join(format!("tollgate-script-instructions-{port}"));
        let _ = std::fs::remove_dir_all(&dumps);
        std::fs::create_dir_all(&dumps).unwrap();
        let binary = std::env::var("TOLLGATE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let process = Command::new("valgrind")
            .args(["--tool=callgrind", "--toggle-collect=evalShaCommand"])
            .arg(format!("--callgrind-out-file={}", dumps.join("callgrind.out").display()))
            .arg(binary)
            .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("valgrind runs (apt-get install valgrind)");
        Server { process, dumps, port }
    }

    /// Asks callgrind to write what it counted since the last dump, and
    /// returns that count and the dump.
    fn dump(&self) -> (u64, PathBuf) {
        let before = self.dump_files().len();
        let status = Command::new("callgrind_control")
            .args(["-d", &self.process.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "callgrind_control -d");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let files = self.dump_files();
            if files.len() > before {
                // Give callgrind a moment to finish writing the file.
                std::thread::sleep(Duration::from_millis(500));
                let dump = files.last().unwrap().clone();
                return (instructions(&dump), dump);
            }
            assert!(Instant::now() < deadline, "no callgrind dump");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The numbered dumps, oldest first.
    fn dump_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dumps)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|n| n.to_str().is_some_and(|n| n.parse::<u32>().is_ok())))
            .collect();
        files.sort_by_key(|path| path.extension().unwrap().to_str().unwrap().parse::<u32>().unwrap());
        files
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dumps);
    }
}

/// The instructions a callgrind dump counted: its `summary:` (or `totals:`) line.
fn instructions(dump: &Path) -> u64 {
    let text = std::fs::read_to_string(dump).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:")))
        .and_then(|count| count.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no instruction count in {}", dump.display()))
}

fn subjects(connection: &redis::aio::MultiplexedConnection, entries: usize) -> tollgate::Result<Vec<Subject>> {
    let rate = Rate::per_second(AMOUNT);
    let mut subjects = vec![Subject {
        name: "floor",
        source: include_str!("../benches/benches/floor.lua").to_owned(),
        tag: "gc",
        args: vec![b"1".to_vec(), AMOUNT.to_string().into_bytes()],
    }];
    macro_rules! subject {
        ($name:literal, $tag:literal, $algorithm:expr) => {
            subject!($name, $tag, $algorithm, false)
        };
        ($name:literal, $tag:literal, $algorithm:expr, $compact:expr) => {{
            let call = Redis::builder($algorithm).compact_state($compact).build(connection.clone())?.script_call();
            subjects.push(Subject { name: $name, source: call.source.to_owned(), tag: $tag, args: call.args });
        }};
    }
    subject!("fixed_window", "fw", FixedWindow::new(rate)?);
    // The counters' compact layouts (`RedisBuilder::compact_state`), on keys of their own.
    subject!("fixed_window_compact", "fwc", FixedWindow::new(rate)?, true);
    subject!("sliding_window", "sw", SlidingWindow::new(rate)?);
    subject!("sliding_window_compact", "swc", SlidingWindow::new(rate)?, true);
    subject!("token_bucket", "tb", TokenBucket::new(AMOUNT, rate)?);
    subject!("leaky_bucket", "lb", LeakyBucket::new(AMOUNT - 1, rate)?);
    if entries == 0 {
        subject!("sliding_log", "sl", SlidingLog::new(rate)?);
    } else {
        subject!("sliding_log", "sl", SlidingLog::new(Rate::per_hour(AMOUNT))?);
    }
    Ok(subjects)
}

/// `calls` calls of `subject`'s script over its keys, in pipelines.
async fn call(connection: &mut redis::aio::MultiplexedConnection, subject: &Subject, sha: &str, calls: usize) {
    let mut sent = 0;
    while sent < calls {
        let mut pipeline = redis::pipe();
        for n in sent..calls.min(sent + PIPELINE) {
            let key = format!("tollgate:{}:{{user:{:06}}}", subject.tag, n % KEYS);
            pipeline.cmd("EVALSHA").arg(sha).arg(1).arg(key).arg(&subject.args).ignore();
        }
        let () = pipeline.query_async(connection).await.expect("every call succeeds");
        sent = calls.min(sent + PIPELINE);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut calls = 20_000;
    let mut only = Vec::new();
    let mut entries = 0;
    let mut keep = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => calls = args.next().ok_or("--calls N")?.parse()?,
            "--only" => only.push(args.next().ok_or("--only NAME")?),
            "--entries" => entries = args.next().ok_or("--entries N")?.parse()?,
            "--keep" => keep = Some(PathBuf::from(args.next().ok_or("--keep DIR")?)),
            other => {
                let usage = "[--calls N] [--only NAME]... [--entries N] [--keep DIR]";
                return Err(format!("unknown argument {other}; usage: {usage}").into());
            }
        }
    }
    let server = Server::start();
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", server.port))?;
    // Under valgrind a pipeline takes seconds, past redis-rs's default 500 ms for a reply.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(120)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut connection = loop {
        match client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(connection) => break connection,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(error) => return Err(error.into()),
        }
    };
    let subjects = subjects(&connection, entries)?;
    println!("instructions inside EVALSHA per call, {calls} calls over {KEYS} keys each (callgrind):");
    let mut floor = None;
    // The floor, then every script or those named by --only.
    let chosen =
        |subject: &&Subject| subject.name == "floor" || only.is_empty() || only.iter().any(|name| name == subject.name);
    for subject in subjects.iter().filter(chosen) {
        let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(&subject.source).query_async(&mut connection).await?;
        let written = if subject.name == "sliding_log" { KEYS * entries.max(1) } else { KEYS };
        call(&mut connection, subject, &sha, written).await;
        server.dump();
        call(&mut connection, subject, &sha, calls).await;
        let (counted, dump) = server.dump();
        if let Some(keep) = &keep {
            std::fs::create_dir_all(keep)?;
            std::fs::copy(&dump, keep.join(format!("{}.callgrind", subject.name)))?;
        }
        let per_call = counted as f64 / calls as f64;
        let floor = *floor.get_or_insert(per_call);
        println!("  {:<22} {per_call:>8.0}   {:.3}× the floor", subject.name, per_call / floor);
    }
    Ok(())
}
