//! The circuit breakers around a limiter's calls: which breaker a key's call
//! goes through, what a call's outcome says about Redis, and the probes that
//! close an open breaker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};

use super::breaker::{Breaker, CircuitBreaker, Health, Outcome, Reason};
use crate::{Error, Result};

/// A limiter's breakers.
#[derive(Debug)]
pub(crate) struct Guard {
    scope: Scope,
    /// How many times any of them has opened.
    times_opened: Arc<AtomicU64>,
    /// What bounds a probe: the check timeout.
    timeout: Duration,
}

#[derive(Debug)]
enum Scope {
    /// The breaker is disabled.
    Off,
    /// One breaker for the whole connection.
    One(Arc<Breaker>),
    /// One breaker per cluster master.
    #[cfg(feature = "cluster")]
    Nodes(Arc<super::cluster::Nodes>),
}

impl Guard {
    /// The breakers of a limiter on `connection`, whose checks time out
    /// after `timeout`: one per master on a [`ClusterConnection`](super::ClusterConnection),
    /// else one.
    pub(crate) fn new<C: 'static>(config: &CircuitBreaker, timeout: Duration, prefix: &str, connection: &C) -> Self {
        let times_opened = Arc::new(AtomicU64::new(0));
        let scope = if !config.is_enabled() {
            Scope::Off
        } else {
            #[cfg(feature = "cluster")]
            let nodes = (connection as &dyn std::any::Any).downcast_ref::<super::ClusterConnection>().map(|cluster| {
                let nodes = super::cluster::Nodes::new(cluster, prefix, *config, timeout, Arc::clone(&times_opened));
                Scope::Nodes(Arc::new(nodes))
            });
            #[cfg(not(feature = "cluster"))]
            let nodes = {
                let _ = (connection, prefix);
                None
            };
            nodes
                .unwrap_or_else(|| Scope::One(Arc::new(Breaker::new(None, config, timeout, Arc::clone(&times_opened)))))
        };
        Self { scope, times_opened, timeout }
    }

    /// Lets a call for `redis_key` (computed only if the breakers need it)
    /// through, or answers [`Error::Unavailable`] at once if its breaker is
    /// open.
    pub(crate) fn admit(&self, redis_key: impl FnOnce() -> String) -> Result<Pass> {
        let breaker = match &self.scope {
            Scope::Off => return Ok(Pass { breaker: None, sent: None }),
            Scope::One(breaker) => Arc::clone(breaker),
            #[cfg(feature = "cluster")]
            Scope::Nodes(nodes) => nodes.breaker_for(&redis_key()),
        };
        #[cfg(not(feature = "cluster"))]
        let _ = redis_key;
        match breaker.admit() {
            Ok(()) => Ok(Pass { breaker: Some(breaker), sent: Some(Instant::now()) }),
            Err(retry_in) => Err(Error::Unavailable { backend: "redis", retry_in }),
        }
    }

    /// Records a call's result. If that opened its breaker, starts probing,
    /// through `connection` when there is one breaker.
    pub(crate) fn record<T, C>(&self, pass: Pass, result: &Result<T>, connection: &C)
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let (Some(breaker), Some(sent)) = (pass.breaker, pass.sent) else { return };
        if breaker.record(sent, outcome(result)) {
            self.probe(breaker, connection);
        }
    }

    /// Opens every breaker because Redis could not be reached at all (when
    /// the limiter was made), and starts probing.
    pub(crate) fn open_unreachable<C>(&self, connection: &C)
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let breaker = match &self.scope {
            Scope::Off => return,
            Scope::One(breaker) => Arc::clone(breaker),
            #[cfg(feature = "cluster")]
            Scope::Nodes(nodes) => nodes.unmapped(),
        };
        if breaker.force_open(Reason::Unreachable) {
            self.probe(breaker, connection);
        }
    }

    /// On a cluster, reads the slot map that tells each key's breaker.
    #[cfg(feature = "cluster")]
    pub(crate) async fn load_slot_map(&self) {
        if let Scope::Nodes(nodes) = &self.scope {
            nodes.refresh().await;
        }
    }

    /// Starts the task that probes `breaker` until it closes.
    fn probe<C>(&self, breaker: Arc<Breaker>, connection: &C)
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        match &self.scope {
            Scope::Off => {}
            Scope::One(_) => {
                let connection = connection.clone();
                tokio::spawn(probe_until_closed(Arc::downgrade(&breaker), self.timeout, move || {
                    let mut connection = connection.clone();
                    async move { ping(&mut connection).await }
                }));
            }
            #[cfg(feature = "cluster")]
            Scope::Nodes(nodes) => nodes.probe(breaker),
        }
    }

    pub(crate) fn health(&self) -> Health {
        let breakers = match &self.scope {
            Scope::Off => Vec::new(),
            Scope::One(breaker) => vec![breaker.health()],
            #[cfg(feature = "cluster")]
            Scope::Nodes(nodes) => nodes.health(),
        };
        Health { breakers, times_opened: self.times_opened.load(Ordering::Relaxed) }
    }
}

/// A call let through: record its result with [`Guard::record`].
#[derive(Debug)]
#[must_use = "a call let through must be recorded"]
pub(crate) struct Pass {
    breaker: Option<Arc<Breaker>>,
    sent: Option<Instant>,
}

/// What a call's result says about Redis.
pub(crate) fn outcome<T>(result: &Result<T>) -> Outcome {
    match result {
        Err(Error::Timeout(_)) => Outcome::Failed,
        Err(Error::Backend { source, .. }) => match source.downcast_ref::<RedisError>() {
            Some(error) => redis_outcome(error),
            None => Outcome::Failed,
        },
        // A reply, an error reply, or one tollgate does not understand: Redis is there.
        _ => Outcome::Answered,
    }
}

/// A refused connection refuses; a lost one, a timeout, or a cluster that
/// says it cannot serve the key (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`)
/// fails; any other error is a reply.
fn redis_outcome(error: &RedisError) -> Outcome {
    if error.is_connection_refusal() {
        Outcome::Refused
    } else if error.is_io_error()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain | ServerErrorKind::MasterDown
                )
        )
    {
        Outcome::Failed
    } else {
        Outcome::Answered
    }
}

/// What a probe's result says about Redis.
pub(crate) fn probe_outcome<T>(result: &RedisResult<T>) -> Outcome {
    match result {
        Ok(_) => Outcome::Answered,
        Err(error) => redis_outcome(error),
    }
}

/// Sends `PING`. A [`ConnectionManager`](redis::aio::ConnectionManager)
/// answers the first request after a failed reconnection with that failure,
/// and only then starts a new attempt: a probe that fails to connect asks
/// once more, so that it learns whether Redis is there now rather than
/// whether it was at the last probe.
pub(crate) async fn ping<C: ConnectionLike>(connection: &mut C) -> Outcome {
    let mut outcome = Outcome::Failed;
    for _ in 0..2 {
        let result = redis::cmd("PING").exec_async(connection).await;
        outcome = probe_outcome(&result);
        if outcome == Outcome::Answered || result.is_err_and(|error| !error.is_io_error()) {
            break;
        }
    }
    outcome
}

/// Probes an open `breaker` (one probe at a time, each bounded by `timeout`,
/// the waits between them set by the breaker) until a probe is answered and
/// closes it, or the limiter is dropped.
pub(crate) async fn probe_until_closed<P, F>(breaker: Weak<Breaker>, timeout: Duration, mut probe: P)
where
    P: FnMut() -> F,
    F: Future<Output = Outcome>,
{
    loop {
        let Some(wait) = breaker.upgrade().and_then(|breaker| breaker.until_probe()) else { return };
        tokio::time::sleep(wait).await;
        let Some(breaker) = breaker.upgrade() else { return };
        breaker.start_probe(timeout);
        let outcome = tokio::time::timeout(timeout, probe()).await.unwrap_or(Outcome::Failed);
        tracing::trace!(target: "tollgate::redis", node = breaker.node(), ?outcome, "circuit breaker probe");
        if breaker.finish_probe(outcome == Outcome::Answered) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_lost_connections_fail_refusals_refuse_and_replies_answer() {
        let io = |kind| Error::backend("redis", RedisError::from(std::io::Error::from(kind)));
        assert_eq!(outcome::<()>(&Err(Error::Timeout(Duration::from_millis(100)))), Outcome::Failed);
        assert_eq!(outcome::<()>(&Err(io(std::io::ErrorKind::ConnectionRefused))), Outcome::Refused);
        for kind in [std::io::ErrorKind::ConnectionReset, std::io::ErrorKind::BrokenPipe, std::io::ErrorKind::TimedOut]
        {
            assert_eq!(outcome::<()>(&Err(io(kind))), Outcome::Failed, "{kind:?}");
        }
        let reply = RedisError::from((ErrorKind::Server(redis::ServerErrorKind::NoScript), "NOSCRIPT"));
        assert_eq!(outcome::<()>(&Err(Error::backend("redis", reply))), Outcome::Answered);
        assert_eq!(outcome::<()>(&Err(Error::UnexpectedReply("?".into()))), Outcome::Answered);
        assert_eq!(outcome(&Ok(())), Outcome::Answered);
    }
}
