//! Which allowance a request draws on: [`KeyExtractor`] and [`MissingKey`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;

/// Finds the rate-limit key of a request: whose allowance it draws on.
///
/// ```
/// use std::net::SocketAddr;
/// use http::HeaderName;
/// use tollgate::middleware::KeyExtractor;
///
/// // One allowance per client address (see `peer_ip` for axum).
/// let by_ip = KeyExtractor::peer_ip();
/// // One per API key.
/// let by_api_key = KeyExtractor::header(HeaderName::from_static("x-api-key"));
/// // One for everybody.
/// let global = KeyExtractor::global("all");
/// // Anything else: a tenant from the path, for instance.
/// let by_tenant = KeyExtractor::from_fn(|parts| {
///     parts.uri.path().strip_prefix("/tenants/")?.split('/').next().map(str::to_owned)
/// });
/// ```
#[derive(Clone)]
pub struct KeyExtractor {
    kind: Kind,
}

type KeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

#[derive(Clone)]
enum Kind {
    PeerIp,
    Header(HeaderName),
    Global(String),
    Function(Arc<KeyFn>),
}

impl KeyExtractor {
    /// The client's IP address, from a [`SocketAddr`] in the request's
    /// extensions; a request without one has no key. An IPv4 client seen by
    /// a dual-stack listener (`::ffff:192.0.2.1`) is keyed as its IPv4
    /// address, so it has one allowance however it connects.
    ///
    /// hyper-based servers differ in how they expose the peer address, so the
    /// server inserts it. With axum, whose
    /// `into_make_service_with_connect_info::<SocketAddr>()` stores a
    /// `ConnectInfo<SocketAddr>` instead, read that with [`from_fn`](Self::from_fn):
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::extract::ConnectInfo;
    /// use tollgate::middleware::KeyExtractor;
    ///
    /// let by_ip = KeyExtractor::from_fn(|parts| {
    ///     let ConnectInfo(addr) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    ///     Some(addr.ip().to_canonical().to_string())
    /// });
    /// ```
    ///
    /// Behind a reverse proxy the peer is the proxy: key on the header it
    /// sets (such as `x-forwarded-for`, trusted only from the proxy) instead.
    pub fn peer_ip() -> Self {
        Self { kind: Kind::PeerIp }
    }

    /// The value of header `name`. A request without it, with an empty value,
    /// or with a value that is not visible ASCII has no key.
    pub fn header(name: HeaderName) -> Self {
        Self { kind: Kind::Header(name) }
    }

    /// The same key for every request: one allowance shared by all clients.
    pub fn global(key: impl Into<String>) -> Self {
        Self { kind: Kind::Global(key.into()) }
    }

    /// Whatever `extract` returns from the request's head; `None` means the
    /// request has no key.
    pub fn from_fn<F>(extract: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Self { kind: Kind::Function(Arc::new(extract)) }
    }

    /// The key of the request whose head is `parts`, if it has one.
    pub fn extract(&self, parts: &Parts) -> Option<String> {
        match &self.kind {
            Kind::PeerIp => parts.extensions.get::<SocketAddr>().map(|addr| addr.ip().to_canonical().to_string()),
            Kind::Header(name) => {
                let value = parts.headers.get(name)?.to_str().ok()?;
                (!value.is_empty()).then(|| value.to_owned())
            }
            Kind::Global(key) => Some(key.clone()),
            Kind::Function(extract) => extract(parts),
        }
    }
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::PeerIp => f.write_str("KeyExtractor::PeerIp"),
            Kind::Header(name) => f.debug_tuple("KeyExtractor::Header").field(name).finish(),
            Kind::Global(key) => f.debug_tuple("KeyExtractor::Global").field(key).finish(),
            Kind::Function(_) => f.write_str("KeyExtractor::Function(..)"),
        }
    }
}

/// What to do with a request the [`KeyExtractor`] found no key in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// Answer `400 Bad Request` without calling the inner service (the
    /// default).
    #[default]
    Reject,
    /// Draw on this key's allowance instead, shared by every request without
    /// a key of its own.
    Fallback(String),
}
