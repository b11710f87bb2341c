//! Real redis-server processes for the tests: each on a free loopback port,
//! with persistence off, killed when dropped.
//!
//! Without a `redis-server` binary (or `TOLLGATE_REDIS_SERVER`, a path to
//! one) the Redis tests skip with a printed reason, unless `CI` or
//! `TOLLGATE_REQUIRE_REDIS` is set: then they fail.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server this test started, killed on drop.
#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port, or `None` (after saying why) when
    /// there is no redis-server and Redis is not required.
    pub(crate) fn start() -> Option<Self> {
        if let Err(reason) = Command::new(binary()).arg("--version").stdout(Stdio::null()).status() {
            let required = ["CI", "TOLLGATE_REQUIRE_REDIS"].iter().any(|name| std::env::var_os(name).is_some());
            assert!(!required, "Redis is required (CI or TOLLGATE_REQUIRE_REDIS is set) but {}: {reason}", binary());
            eprintln!("skipped: no redis-server ({}: {reason}); install Redis to run this test", binary());
            return None;
        }
        // A free port can be taken between asking for it and binding it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self { port, child: None };
            if server.spawn().is_ok() {
                return Some(server);
            }
        }
        panic!("could not start redis-server on any of five free ports");
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server: connections fail until [`restart`](Self::restart).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server with SIGSTOP: it keeps its port and its
    /// connections (the kernel still accepts new ones) but answers nothing
    /// until [`resume`](Self::resume).
    pub(crate) fn pause(&self) {
        self.signal("STOP");
    }

    /// Wakes a [`pause`](Self::pause)d server with SIGCONT.
    pub(crate) fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -{signal} {} failed", child.id());
    }

    /// Starts the server again on the same port, empty.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|error| panic!("redis-server did not restart on port {}: {error}", self.port));
    }

    /// A plain connection for looking at what the limiters wrote.
    pub(crate) async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        // Setting up and inspecting, not limiting: redis-rs's default 500 ms
        // for a reply is too short for a large setup script on a loaded machine.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        client.get_multiplexed_async_connection_with_config(&config).await.unwrap()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(debug_command_args())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| error.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited: {status}"));
            }
            if answers_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("redis-server did not answer PING within 10 s".to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lets tests run DEBUG SLEEP (a slow server), which Redis 7 turned off by
/// default; older servers allow it and know no such option.
pub(crate) fn debug_command_args() -> &'static [&'static str] {
    static MAJOR: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let major = *MAJOR.get_or_init(|| {
        let output = Command::new(binary()).arg("--version").output().map(|o| o.stdout).unwrap_or_default();
        // "Redis server v=7.0.15 sha=..."
        String::from_utf8_lossy(&output)
            .split_whitespace()
            .find_map(|word| word.strip_prefix("v="))
            .and_then(|version| version.split('.').next()?.parse().ok())
            .unwrap_or(0)
    });
    if major >= 7 { &["--enable-debug-command", "yes"] } else { &[] }
}

/// How many script calls (`EVALSHA` and `EVAL`) the server has run, from
/// `INFO commandstats`.
pub(crate) async fn script_calls(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(connection).await.unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| line.split([':', ',']).find_map(|field| field.strip_prefix("calls=")))
        .map(|calls| calls.parse::<u64>().unwrap())
        .sum()
}

/// The redis-server to run: `TOLLGATE_REDIS_SERVER`, or `redis-server` on PATH.
pub(crate) fn binary() -> String {
    std::env::var("TOLLGATE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reply = [0; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
