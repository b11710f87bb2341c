//! Redis Cluster: [`RedisBuilder::connect_cluster`], the
//! [`ClusterConnection`] it builds on, and the breakers of a limiter on a
//! cluster, one per master.
//!
//! Nothing else changes on a cluster: each script touches one key,
//! `<prefix><tag>:{<user key>}`, or for a composite one per limit, all with
//! the user key as their hash tag: one slot, whatever the user key is.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use super::breaker::{Breaker, BreakerHealth, BreakerState, CircuitBreaker, Outcome};
use super::guard::{probe_outcome, probe_until_closed};
use super::{FailurePolicy, Redis, RedisBuilder};
use crate::Result;
use crate::algorithm::Algorithm;
use crate::error::redis_error;

/// How long redis-rs waits before retrying a request the cluster could not
/// serve yet (CLUSTERDOWN during a failover, TRYAGAIN), at least and at
/// most, in milliseconds. redis-rs's defaults (1.28 s and up) outlast any
/// sensible check timeout, and every retry left waiting is a request held in
/// memory.
const MIN_RETRY_WAIT_MS: u64 = 10;
const MAX_RETRY_WAIT_MS: u64 = 200;
/// Retries of one request inside redis-rs (redirections included).
const RETRIES: u32 = 8;
/// How many times [`ClusterConnection`] sends again a command that redis-rs
/// gave up redirecting.
const RESENDS: usize = 3;
/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;
/// How old the breakers' slot map may grow before a check asks for a fresh
/// one (in the background): slots move when a cluster is resharded.
const MAP_MAX_AGE: Duration = Duration::from_secs(30);
/// The least time between two failed attempts to read the slot map.
const MAP_RETRY: Duration = Duration::from_secs(1);

impl<A: Algorithm> RedisBuilder<A> {
    /// Connects to a Redis Cluster through any of `nodes` (URLs such as
    /// `redis://10.0.0.1:6379`; one is enough, more survive one being down)
    /// and builds the limiter on a [`ClusterConnection`].
    ///
    /// redis-rs discovers the other nodes, follows `MOVED` and `ASK` during
    /// resharding and failover, and reconnects to nodes that come back. Each
    /// node's requests are answered within the [`timeout`](Self::timeout);
    /// requests the cluster cannot serve yet are retried a few times, at most
    /// 200 ms apart, and the check's timeout bounds it all. Each master has a
    /// [circuit breaker](CircuitBreaker) of its own, so a dead master costs
    /// only the checks of the keys it holds.
    ///
    /// Connecting takes at most the [connect timeout](Self::connect_timeout).
    /// When no node can be reached, a limiter with a failure policy other
    /// than [`FailurePolicy::ReturnError`] is returned all the same, as
    /// [`connect`](Self::connect) does: its checks follow the policy until
    /// the cluster answers.
    ///
    /// ```no_run
    /// use tollgate::{Rate, Redis, SlidingLog};
    ///
    /// # async fn run() -> tollgate::Result<()> {
    /// let limiter = Redis::builder(SlidingLog::new(Rate::per_minute(100))?)
    ///     .prefix("api:")
    ///     .connect_cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) as
    /// [`build`](Self::build) (checked before connecting), and
    /// [`Error::Backend`](crate::Error::Backend) for a bad URL, whatever the
    /// policy. With [`FailurePolicy::ReturnError`], also
    /// [`Error::Backend`](crate::Error::Backend) when no node can be reached,
    /// or [`Error::Timeout`](crate::Error::Timeout) when none answered within
    /// the connect timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connections being made; nothing else
    /// happens.
    pub async fn connect_cluster<I>(self, nodes: I) -> Result<Redis<A, ClusterConnection>>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        self.validate()?;
        let client = ClusterClient::builder(nodes)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.timeout)
            .retries(RETRIES)
            .min_retry_wait(MIN_RETRY_WAIT_MS)
            .max_retry_wait(MAX_RETRY_WAIT_MS)
            .build()
            .map_err(redis_error)?;
        let connected = tokio::time::timeout(self.connect_timeout, client.get_async_connection()).await;
        let error = match connected {
            Ok(Ok(connection)) => {
                let limiter = self.build(ClusterConnection::from(connection))?;
                limiter.inner.guard.load_slot_map().await;
                return Ok(limiter);
            }
            Ok(Err(error)) => redis_error(error),
            Err(_) => crate::Error::Timeout(self.connect_timeout),
        };
        if self.failure_policy == FailurePolicy::ReturnError {
            return Err(error);
        }
        // Connects in the background, and again on demand.
        let config =
            ClusterConfig::new().set_connection_timeout(self.connect_timeout).set_response_timeout(self.timeout);
        let limiter = self.build(ClusterConnection::from(client.get_pending_async_connection_with_config(config)))?;
        limiter.inner.guard.open_unreachable(&limiter.connection);
        Ok(limiter)
    }
}

/// A connection to a Redis Cluster, for [`Redis`]: redis-rs's
/// [`cluster_async::ClusterConnection`](redis::cluster_async::ClusterConnection),
/// with `ASK` redirections made safe for concurrent checks.
///
/// While a slot moves between masters, the old master answers `ASK` for its
/// keys that have moved already, and the command must be sent to the new
/// master right after `ASKING`. redis-rs sends the two as separate requests
/// on the node's shared connection, so another check's command can come
/// between them and use the `ASKING` up; the redirected command then
/// bounces between the two masters until redis-rs gives up with `ASK` or
/// `MOVED`. This connection sends such a command again (up to three times)
/// to the node the error names, with `ASKING` in one pipeline with it, so
/// that nothing can come between.
///
/// Made by [`RedisBuilder::connect_cluster`]; wrap a connection of your own
/// [`ClusterClient`] with `From` and pass it to
/// [`RedisBuilder::build`]. Cloning is cheap: clones share the connections
/// to the nodes.
#[derive(Clone)]
pub struct ClusterConnection {
    inner: redis::cluster_async::ClusterConnection,
}

impl From<redis::cluster_async::ClusterConnection> for ClusterConnection {
    fn from(inner: redis::cluster_async::ClusterConnection) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConnection").finish_non_exhaustive()
    }
}

impl ClusterConnection {
    /// `command` on the node that `redirect` (an `ASK` or `MOVED` error)
    /// names, after `ASKING` in the same pipeline: needed after `ASK`,
    /// harmless after `MOVED` (a node that owns the slot ignores it).
    async fn send_redirected(&mut self, command: &Cmd, redirect: RedisError) -> redis::RedisResult<Value> {
        let Some((host, port)) = redirect.redirect_node().and_then(|(address, _slot)| {
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        }) else {
            return Err(redirect);
        };
        let mut pipeline = Pipeline::new();
        pipeline.cmd("ASKING").add_command(command.clone());
        let mut replies =
            self.inner.route_pipeline(pipeline, 0, 2, SingleNodeRoutingInfo::ByAddress { host, port }).await?;
        match (replies.pop(), replies.pop()) {
            (Some(reply), Some(_asking)) => Ok(reply),
            _ => Err(redirect),
        }
    }
}

/// Whether redis-rs gave up on a redirection.
fn is_redirect(error: &RedisError) -> bool {
    matches!(error.kind(), ErrorKind::Server(ServerErrorKind::Ask | ServerErrorKind::Moved))
}

impl ConnectionLike for ClusterConnection {
    fn req_packed_command<'a>(&'a mut self, command: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut reply = self.inner.req_packed_command(command).await;
            for _ in 0..RESENDS {
                match reply {
                    Err(error) if is_redirect(&error) => reply = self.send_redirected(command, error).await,
                    reply => return reply,
                }
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// The hash slot of a Redis key on a cluster: the CRC16 (XMODEM) of its
/// hash tag (what lies between the first `{` and the next `}`, if not
/// empty), or of the whole key, modulo 16384. Computed here, as Redis does,
/// because redis-rs does not expose it.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&byte| byte == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&byte| byte == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tag.unwrap_or(key)) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    const TABLE: [u16; 256] = {
        let mut table = [0; 256];
        let mut n = 0;
        while n < 256 {
            let mut crc = (n as u16) << 8;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
                bit += 1;
            }
            table[n] = crc;
            n += 1;
        }
        table
    };
    bytes.iter().fold(0, |crc, &byte| (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ byte)])
}

/// The slot ranges of each master, from `CLUSTER SLOTS`: `(first, last,
/// "host:port")`. `None` for a reply of another shape.
fn parse_slots(reply: &Value) -> Option<Vec<(u16, u16, String)>> {
    let Value::Array(ranges) = reply else { return None };
    let mut parsed = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else { return None };
        let [Value::Int(first), Value::Int(last), Value::Array(master), ..] = fields.as_slice() else { return None };
        let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(*last)) else { return None };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => String::new(),
        };
        let Some(Value::Int(port)) = master.get(1) else { return None };
        // "?": a master whose address is not known; its slots stay unmapped.
        if host != "?" && first <= last && last < SLOTS {
            parsed.push((first, last, format!("{host}:{port}")));
        }
    }
    Some(parsed)
}

/// A key in a slot that `owns` accepts, under `prefix`: what a probe asks
/// about (`EXISTS`, which writes nothing).
fn probe_key(prefix: &str, owns: impl Fn(u16) -> bool) -> Option<String> {
    (0..1_000_000_u32).map(|n| format!("{prefix}{{tollgate-probe-{n}}}")).find(|key| owns(key_slot(key.as_bytes())))
}

/// The breakers of a limiter on a cluster: one per master, found from the
/// slot map that `CLUSTER SLOTS` gives, so that the breaker of each check
/// follows from its key's slot. Keys whose slot is not in the map (before it
/// is first read) share one more breaker.
///
/// A master's breaker is probed with `EXISTS` on a key in one of its slots,
/// sent like any check: redis-rs routes it by the slot, so the probe asks
/// whoever serves those slots now (after a failover, the promoted replica).
/// Each probe also reads the map again, in the background; a master that no
/// longer serves any slot loses its breaker.
pub(crate) struct Nodes {
    connection: ClusterConnection,
    prefix: String,
    config: CircuitBreaker,
    timeout: Duration,
    times_opened: Arc<AtomicU64>,
    map: RwLock<SlotMap>,
    unmapped: Arc<Breaker>,
    /// Whether a task is reading the map.
    refreshing: AtomicBool,
}

#[derive(Debug, Default)]
struct SlotMap {
    /// `(first slot, last slot, index into shards)`, sorted.
    ranges: Vec<(u16, u16, usize)>,
    shards: Vec<Shard>,
    read_at: Option<Instant>,
}

/// A master and what its breaker needs.
#[derive(Debug)]
struct Shard {
    master: String,
    breaker: Arc<Breaker>,
    /// A key in one of its slots.
    probe_key: Option<String>,
}

impl fmt::Debug for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nodes")
            .field("map", &*self.map.read())
            .field("unmapped", &self.unmapped)
            .finish_non_exhaustive()
    }
}

impl Nodes {
    pub(crate) fn new(
        connection: &ClusterConnection,
        prefix: &str,
        config: CircuitBreaker,
        timeout: Duration,
        times_opened: Arc<AtomicU64>,
    ) -> Self {
        Self {
            connection: connection.clone(),
            prefix: prefix.to_owned(),
            config,
            timeout,
            unmapped: Arc::new(Breaker::new(None, &config, timeout, Arc::clone(&times_opened))),
            times_opened,
            map: RwLock::new(SlotMap::default()),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The breaker of the master that serves `redis_key`. Asks for a fresh
    /// slot map in the background when it is missing or old.
    pub(crate) fn breaker_for(self: &Arc<Self>, redis_key: &str) -> Arc<Breaker> {
        let slot = key_slot(redis_key.as_bytes());
        let map = self.map.read();
        if map.read_at.is_none_or(|read_at| read_at.elapsed() > MAP_MAX_AGE) {
            self.refresh_in_background();
        }
        let after = map.ranges.partition_point(|&(first, _, _)| first <= slot);
        match after.checked_sub(1).map(|index| map.ranges[index]) {
            Some((_, last, shard)) if slot <= last => Arc::clone(&map.shards[shard].breaker),
            _ => Arc::clone(&self.unmapped),
        }
    }

    /// The breaker of keys whose slot is not in the map.
    pub(crate) fn unmapped(&self) -> Arc<Breaker> {
        Arc::clone(&self.unmapped)
    }

    pub(crate) fn health(&self) -> Vec<BreakerHealth> {
        let map = self.map.read();
        let mut breakers: Vec<BreakerHealth> = map.shards.iter().map(|shard| shard.breaker.health()).collect();
        let unmapped = self.unmapped.health();
        if breakers.is_empty() || unmapped.state == BreakerState::Open {
            breakers.push(unmapped);
        }
        breakers
    }

    /// Reads the slot map: from a random node, up to three tries, each
    /// bounded by the check timeout. False if no node answered.
    pub(crate) async fn refresh(&self) -> bool {
        for _ in 0..3 {
            let mut connection = self.connection.inner.clone();
            let mut command = Cmd::new();
            command.arg("CLUSTER").arg("SLOTS");
            let read = connection.route_command(command, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random));
            if let Ok(Ok(reply)) = tokio::time::timeout(self.timeout, read).await
                && let Some(ranges) = parse_slots(&reply)
                && !ranges.is_empty()
            {
                self.install(ranges);
                return true;
            }
        }
        false
    }

    /// Replaces the slot map, keeping the breakers of the masters still in it.
    fn install(&self, ranges: Vec<(u16, u16, String)>) {
        let kept: Vec<(String, Arc<Breaker>)> =
            self.map.read().shards.iter().map(|shard| (shard.master.clone(), Arc::clone(&shard.breaker))).collect();
        let mut shards: Vec<Shard> = Vec::new();
        let mut indexed = Vec::with_capacity(ranges.len());
        for (first, last, master) in ranges {
            let index = match shards.iter().position(|shard| shard.master == master) {
                Some(index) => index,
                None => {
                    let breaker = match kept.iter().find(|(kept, _)| *kept == master) {
                        Some((_, breaker)) => Arc::clone(breaker),
                        None => Arc::new(Breaker::new(
                            Some(master.clone()),
                            &self.config,
                            self.timeout,
                            Arc::clone(&self.times_opened),
                        )),
                    };
                    shards.push(Shard { master, breaker, probe_key: None });
                    shards.len() - 1
                }
            };
            indexed.push((first, last, index));
        }
        indexed.sort_unstable();
        for (index, shard) in shards.iter_mut().enumerate() {
            let owns = |slot| indexed.iter().any(|&(first, last, of)| of == index && (first..=last).contains(&slot));
            shard.probe_key = probe_key(&self.prefix, owns);
        }
        for (master, breaker) in kept.iter().filter(|(old, _)| !shards.iter().any(|shard| shard.master == *old)) {
            if breaker.health().state == BreakerState::Open {
                tracing::info!(
                    target: "tollgate::redis",
                    node = master,
                    "circuit breaker dropped: the master serves no slot any more; its keys go to their new master"
                );
            }
        }
        *self.map.write() = SlotMap { ranges: indexed, shards, read_at: Some(Instant::now()) };
    }

    /// Reads the slot map in a task of its own, unless one is already at it.
    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let nodes = Arc::clone(self);
        tokio::spawn(async move {
            if !nodes.refresh().await {
                tokio::time::sleep(MAP_RETRY).await;
            }
            nodes.refreshing.store(false, Ordering::Release);
        });
    }

    /// Starts the task that probes `breaker` until it closes.
    pub(crate) fn probe(self: &Arc<Self>, breaker: Arc<Breaker>) {
        let nodes = Arc::downgrade(self);
        let master = breaker.node().map(str::to_owned);
        tokio::spawn(probe_until_closed(Arc::downgrade(&breaker), self.timeout, move || {
            let (nodes, master) = (Weak::clone(&nodes), master.clone());
            async move {
                match nodes.upgrade() {
                    Some(nodes) => nodes.probe_once(master.as_deref()).await,
                    None => Outcome::Failed,
                }
            }
        }));
    }

    /// One probe of `master`'s keys (or, for `None`, of the slot map).
    async fn probe_once(self: &Arc<Self>, master: Option<&str>) -> Outcome {
        let Some(master) = master else {
            return if self.refresh().await { Outcome::Answered } else { Outcome::Failed };
        };
        self.refresh_in_background();
        let probe_key = {
            let map = self.map.read();
            map.shards.iter().find(|shard| shard.master == master).and_then(|shard| shard.probe_key.clone())
        };
        // A master that serves no slot any more: its breaker is dropped with
        // the old map, which ends this task.
        let Some(probe_key) = probe_key else { return Outcome::Failed };
        let mut connection = self.connection.clone();
        probe_outcome(&redis::cmd("EXISTS").arg(probe_key).exec_async(&mut connection).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Rate, TokenBucket};

    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn cluster_limiters_are_send_sync_clone_and_static() {
        assert_shareable::<Redis<TokenBucket, ClusterConnection>>();
    }

    #[test]
    fn slots_are_the_crc16_of_the_hash_tag_as_redis_computes_them() {
        // The CRC16/XMODEM check value, and slots from the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first `{` and the next `}` count.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert!(key_slot(b"") < SLOTS);
    }

    #[test]
    fn cluster_slots_replies_become_ranges_and_other_replies_none() {
        let node = |host: &str, port| Value::Array(vec![Value::BulkString(host.into()), Value::Int(port)]);
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), node("10.0.0.1", 7000), node("10.0.0.4", 7003)]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node("10.0.0.2", 7001)]),
            Value::Array(vec![Value::Int(7), Value::Int(7), node("?", 7002)]),
        ]);
        assert_eq!(
            parse_slots(&reply).unwrap(),
            [(0, 5460, "10.0.0.1:7000".to_owned()), (5461, 16383, "10.0.0.2:7001".to_owned())]
        );
        assert_eq!(parse_slots(&Value::Int(3)), None);
        assert_eq!(parse_slots(&Value::Array(vec![Value::Array(vec![Value::Int(0)])])), None);
    }

    #[test]
    fn a_probe_key_lies_in_the_slots_asked_for_and_under_the_prefix() {
        for wanted in [0, 5461, 16383] {
            let key = probe_key("api:", |slot| slot == wanted).unwrap();
            assert_eq!(key_slot(key.as_bytes()), wanted);
            assert!(key.starts_with("api:{"), "{key}");
        }
    }

    #[test]
    fn a_bad_prefix_is_rejected_before_connecting_to_a_cluster() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let builder = Redis::builder(TokenBucket::new(1, Rate::per_second(1)).unwrap()).prefix("{tag}:");
        // No node listens there: the configuration is rejected first.
        let error = runtime.block_on(builder.connect_cluster(["redis://127.0.0.1:1"])).unwrap_err();
        assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    }
}
