//! One Redis server or one Redis Cluster, behind one interface, so that the
//! conformance suite and each fault and load test is written once and run on
//! both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use tollgate::{Algorithm, Health, ManualClock, RateLimiter, Redis, RedisBuilder};

#[cfg(feature = "cluster")]
use super::cluster::Cluster;
use super::redis_server::RedisServer;
use crate::conformance::Backend;

/// A limiter whose circuit breakers a test can read: a [`Redis`] limiter,
/// on whatever connection.
pub(crate) trait Watched: RateLimiter {
    fn health(&self) -> Health;
}

impl<A: Algorithm, C: ConnectionLike + Clone + Send + Sync + 'static> Watched for Redis<A, C> {
    fn health(&self) -> Health {
        Redis::health(self)
    }
}

/// Where limiters keep their state, and the faults a test can inflict on it.
pub(crate) trait Deployment {
    /// For messages: "redis" or "cluster".
    fn name(&self) -> &'static str;

    /// `builder`'s limiter, connected to this deployment.
    async fn limiter<A: Algorithm>(&self, builder: RedisBuilder<A>) -> Arc<dyn Watched>;

    /// kill -9 the server (on a cluster: the master) that holds `redis_key`.
    async fn kill_holder_of(&mut self, redis_key: &str);

    /// Starts the killed server again, on its port, and waits until it (on a
    /// cluster: the whole cluster) is healthy. On a multi-threaded runtime,
    /// as [`on_a_server_and_a_cluster`]'s tests are.
    async fn restart(&mut self);

    /// SCRIPT FLUSH on every server.
    async fn flush_scripts(&mut self);

    /// Makes the server that holds `redis_key` stop answering for `duration`;
    /// returns once it has. The task ends when the server wakes.
    async fn stall_holder_of(&self, redis_key: &str, duration: Duration) -> tokio::task::JoinHandle<()>;

    /// Every key matching `pattern`, with its PTTL in ms (-1: no TTL).
    async fn keys_with_ttl(&self, pattern: &str) -> Vec<(Vec<u8>, i64)>;
}

/// One redis-server.
pub(crate) struct Single {
    server: RedisServer,
}

impl Single {
    pub(crate) fn start() -> Option<Self> {
        Some(Self { server: RedisServer::start()? })
    }
}

impl Deployment for Single {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn limiter<A: Algorithm>(&self, builder: RedisBuilder<A>) -> Arc<dyn Watched> {
        Arc::new(builder.connect(&self.server.url()).await.expect("connect to redis-server"))
    }

    // Killing and starting a server wait for the process (and, starting, for
    // its first PONG) on this thread: off the runtime's worker, whose other
    // tasks are the load whose every check the fault tests time.
    async fn kill_holder_of(&mut self, _redis_key: &str) {
        tokio::task::block_in_place(|| self.server.stop());
    }

    async fn restart(&mut self) {
        tokio::task::block_in_place(|| self.server.restart());
    }

    async fn flush_scripts(&mut self) {
        let mut connection = self.server.connection().await;
        let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut connection).await.expect("SCRIPT FLUSH");
    }

    async fn stall_holder_of(&self, _redis_key: &str, duration: Duration) -> tokio::task::JoinHandle<()> {
        stall(&self.server.url(), duration).await
    }

    async fn keys_with_ttl(&self, pattern: &str) -> Vec<(Vec<u8>, i64)> {
        keys_with_ttl(&mut self.server.connection().await, pattern).await
    }
}

/// A Redis Cluster of three masters and three replicas.
#[cfg(feature = "cluster")]
pub(crate) struct OnCluster {
    cluster: Cluster,
    killed: Option<usize>,
}

#[cfg(feature = "cluster")]
impl OnCluster {
    pub(crate) async fn start() -> Option<Self> {
        Some(Self { cluster: Cluster::start().await?, killed: None })
    }
}

#[cfg(feature = "cluster")]
impl Deployment for OnCluster {
    fn name(&self) -> &'static str {
        "cluster"
    }

    async fn limiter<A: Algorithm>(&self, builder: RedisBuilder<A>) -> Arc<dyn Watched> {
        Arc::new(builder.connect_cluster(self.cluster.urls()).await.expect("connect to the cluster"))
    }

    async fn kill_holder_of(&mut self, redis_key: &str) {
        let master = self.cluster.master_of_key(redis_key.as_bytes()).await;
        self.cluster.kill(master);
        self.killed = Some(master);
    }

    async fn restart(&mut self) {
        if let Some(node) = self.killed.take() {
            self.cluster.restart(node).await;
        }
        self.cluster.wait_until_healthy().await;
    }

    async fn flush_scripts(&mut self) {
        self.cluster.flush_scripts().await;
    }

    async fn stall_holder_of(&self, redis_key: &str, duration: Duration) -> tokio::task::JoinHandle<()> {
        let master = self.cluster.master_of_key(redis_key.as_bytes()).await;
        self.cluster.stall(master, duration).await
    }

    async fn keys_with_ttl(&self, pattern: &str) -> Vec<(Vec<u8>, i64)> {
        self.cluster.keys_with_ttl(pattern).await
    }
}

/// Two `#[tokio::test]`s running `$check` (called with a [`Deployment`],
/// awaited): `$server` on one redis-server and, with feature `cluster`,
/// `$cluster` on a Redis Cluster. Each skips when Redis is not installed.
macro_rules! on_a_server_and_a_cluster {
    ($(#[$attribute:meta])* $server:ident, $cluster:ident, $check:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attribute])*
        async fn $server() {
            if let Some(deployment) = $crate::support::deployment::Single::start() {
                ($check)(deployment).await;
            }
        }

        #[cfg(feature = "cluster")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attribute])*
        async fn $cluster() {
            if let Some(deployment) = $crate::support::deployment::OnCluster::start().await {
                ($check)(deployment).await;
            }
        }
    };
}
pub(crate) use on_a_server_and_a_cluster;

/// The conformance suite's backend on a deployment: limiters each on a
/// connection of their own, each set under a fresh prefix.
pub(crate) struct Conformance<D> {
    deployment: D,
    prefixes: AtomicU64,
}

impl<D> Conformance<D> {
    pub(crate) fn new(deployment: D) -> Self {
        Self { deployment, prefixes: AtomicU64::new(0) }
    }
}

impl<D: Deployment> Backend for Conformance<D> {
    async fn limiters<A: Algorithm>(
        &self,
        algorithm: A,
        clock: Option<ManualClock>,
        count: usize,
    ) -> Vec<Arc<dyn RateLimiter>> {
        let prefix = format!("conformance:{}:", self.prefixes.fetch_add(1, Ordering::Relaxed));
        let mut limiters: Vec<Arc<dyn RateLimiter>> = Vec::with_capacity(count);
        for _ in 0..count {
            let mut builder = Redis::builder(algorithm.clone()).prefix(&prefix).timeout(Duration::from_secs(5));
            if let Some(clock) = &clock {
                builder = builder.client_time(clock.clone());
            }
            limiters.push(self.deployment.limiter(builder).await);
        }
        limiters
    }
}

/// Makes the server at `url` stop answering for `duration` (DEBUG SLEEP), in
/// the background; returns once it has stopped answering.
pub(crate) async fn stall(url: &str, duration: Duration) -> tokio::task::JoinHandle<()> {
    let client = redis::Client::open(url).expect("a server URL");
    // Both connected before the sleep, or connecting would wait it out.
    let quick = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_millis(20)));
    let mut probe = client.get_multiplexed_async_connection_with_config(&quick).await.expect("connect");
    let mut sleeper = client.get_multiplexed_async_connection().await.expect("connect");
    let task = tokio::spawn(async move {
        let () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(duration.as_secs_f64())
            .query_async(&mut sleeper)
            .await
            .expect("DEBUG SLEEP");
    });
    // Asleep once a PING goes unanswered.
    while redis::cmd("PING").query_async::<String>(&mut probe).await.is_ok() {
        assert!(!task.is_finished(), "the server slept and woke before a PING saw it asleep");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task
}

/// Every key matching `pattern` on one server, with its PTTL in ms.
pub(crate) async fn keys_with_ttl(connection: &mut MultiplexedConnection, pattern: &str) -> Vec<(Vec<u8>, i64)> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    {
        let mut scan = connection.scan_match::<_, Vec<u8>>(pattern).await.expect("SCAN");
        while let Some(key) = scan.next_item().await {
            keys.push(key.expect("a scanned key"));
        }
    }
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let mut pipeline = redis::pipe();
        for key in chunk {
            pipeline.pttl(key);
        }
        let ttls: Vec<i64> = pipeline.query_async(connection).await.expect("PTTL");
        found.extend(chunk.iter().cloned().zip(ttls));
    }
    found
}
