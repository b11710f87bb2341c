//! Redis Cluster: [`RedisBuilder::connect_cluster`] and the
//! [`ClusterConnection`] it builds on.
//!
//! Nothing else changes on a cluster: each script touches one key,
//! `<prefix><tag>:{<user key>}`, or for a composite one per limit, all with
//! the user key as their hash tag: one slot, whatever the user key is.

use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use super::{Redis, RedisBuilder};
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
/// The least time given to open a connection to a node.
const MIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

impl<A: Algorithm> RedisBuilder<A> {
    /// Connects to a Redis Cluster through any of `nodes` (URLs such as
    /// `redis://10.0.0.1:6379`; one is enough, more survive one being down)
    /// and builds the limiter on a [`ClusterConnection`].
    ///
    /// redis-rs discovers the other nodes, follows `MOVED` and `ASK` during
    /// resharding and failover, and reconnects to nodes that come back. Each
    /// node's requests are answered within the [`timeout`](Self::timeout);
    /// requests the cluster cannot serve yet are retried a few times, at most
    /// 200 ms apart, and the check's timeout bounds it all.
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
    /// [`Error::Backend`](crate::Error::Backend) for a bad URL or when no node
    /// can be reached.
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
            .connection_timeout(self.timeout.max(MIN_CONNECTION_TIMEOUT))
            .response_timeout(self.timeout)
            .retries(RETRIES)
            .min_retry_wait(MIN_RETRY_WAIT_MS)
            .max_retry_wait(MAX_RETRY_WAIT_MS)
            .build()
            .map_err(redis_error)?;
        let connection = client.get_async_connection().await.map_err(redis_error)?;
        self.build(ClusterConnection::from(connection))
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
    fn a_bad_prefix_is_rejected_before_connecting_to_a_cluster() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let builder = Redis::builder(TokenBucket::new(1, Rate::per_second(1)).unwrap()).prefix("{tag}:");
        // No node listens there: the configuration is rejected first.
        let error = runtime.block_on(builder.connect_cluster(["redis://127.0.0.1:1"])).unwrap_err();
        assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    }
}
