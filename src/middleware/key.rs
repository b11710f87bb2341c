//! Which allowance a request draws on: [`KeyExtractor`] and [`MissingKey`].

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderName, Request};

/// Finds the rate-limit key of a request: whose allowance it draws on.
///
/// ```
/// use std::net::SocketAddr;
/// use http::HeaderName;
/// use tollgate::middleware::KeyExtractor;
///
/// // One allowance per client address (see `peer_ip`, `ip_from_extension`
/// // and `ip_from_fn`).
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
type IpFn = dyn Fn(&Parts) -> Option<IpAddr> + Send + Sync;
type ExtensionIpFn = dyn Fn(&Extensions) -> Option<IpAddr> + Send + Sync;

#[derive(Clone)]
enum Kind {
    PeerIp,
    Ip(Arc<IpFn>),
    /// The function reads an extension of the type named.
    IpFromExtension(Arc<ExtensionIpFn>, &'static str),
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
    /// server inserts it. axum stores a `ConnectInfo<SocketAddr>` instead
    /// (when the app is served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`), which this
    /// does not see: read that with [`ip_from_extension`](Self::ip_from_extension).
    ///
    /// Behind a reverse proxy the peer is the proxy: key on the header it
    /// sets (such as `x-forwarded-for`, trusted only from the proxy) instead.
    pub fn peer_ip() -> Self {
        Self { kind: Kind::PeerIp }
    }

    /// The client IP address that `ip` reads from the request's extension of
    /// type `T`; a request without one has no key. Keyed as
    /// [`peer_ip`](Self::peer_ip) keys it (IPv4-mapped IPv6 as IPv4), and
    /// formatted without an allocation.
    ///
    /// With axum, whose `into_make_service_with_connect_info::<SocketAddr>()`
    /// stores the peer address as a `ConnectInfo<SocketAddr>`:
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::extract::ConnectInfo;
    /// use tollgate::middleware::KeyExtractor;
    ///
    /// let by_ip = KeyExtractor::ip_from_extension(|ConnectInfo(addr): &ConnectInfo<SocketAddr>| addr.ip());
    /// ```
    ///
    /// This reads the extension where it is. [`ip_from_fn`](Self::ip_from_fn),
    /// which can read anything in the head, is given it as [`Parts`]: the
    /// layer moves the head out of the request and back for it, one more
    /// copy of it per request.
    pub fn ip_from_extension<T, F>(ip: F) -> Self
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> IpAddr + Send + Sync + 'static,
    {
        let find = move |extensions: &Extensions| extensions.get::<T>().map(&ip);
        Self { kind: Kind::IpFromExtension(Arc::new(find), std::any::type_name::<T>()) }
    }

    /// The client IP address that `find` returns; `None` means the request
    /// has no key. Keyed as [`peer_ip`](Self::peer_ip) keys it (IPv4-mapped
    /// IPv6 as IPv4), and formatted without an allocation, so this is cheaper
    /// than a [`from_fn`](Self::from_fn) that calls `to_string()`.
    ///
    /// For an address in an extension (axum's `ConnectInfo<SocketAddr>`),
    /// [`ip_from_extension`](Self::ip_from_extension) is cheaper still. This
    /// is for the rest of the head, such as a header a trusted proxy sets:
    ///
    /// ```
    /// use tollgate::middleware::KeyExtractor;
    ///
    /// // Only behind a proxy that sets it, and that clients cannot reach past.
    /// let by_ip = KeyExtractor::ip_from_fn(|parts| parts.headers.get("x-real-ip")?.to_str().ok()?.parse().ok());
    /// ```
    pub fn ip_from_fn<F>(find: F) -> Self
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        Self { kind: Kind::Ip(Arc::new(find)) }
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
        self.key(parts).map(|key| key.as_str().to_owned())
    }

    /// Whether this is a function of the whole head ([`Parts`]), which the
    /// layer then moves out of the request and back; the others read the
    /// request in place.
    pub(crate) fn reads_parts(&self) -> bool {
        matches!(self.kind, Kind::Ip(_) | Kind::Function(_))
    }

    /// The key of the request whose head is `head`, if it has one; short
    /// keys (any IP address, most API keys) without an allocation. A
    /// request that is not [`Parts`] has no key for an extractor that
    /// [`reads_parts`](Self::reads_parts).
    pub(crate) fn key(&self, head: &impl Head) -> Option<Key> {
        match &self.kind {
            Kind::PeerIp => head.extensions().get::<SocketAddr>().map(|addr| Key::ip(addr.ip())),
            Kind::Ip(find) => find(head.parts()?).map(Key::ip),
            Kind::IpFromExtension(find, _) => find(head.extensions()).map(Key::ip),
            Kind::Header(name) => {
                let value = head.headers().get(name)?.to_str().ok()?;
                (!value.is_empty()).then(|| Key::from(value))
            }
            Kind::Global(key) => Some(Key::from(key.as_str())),
            Kind::Function(extract) => extract(head.parts()?).map(Key::Owned),
        }
    }

    /// The likely reason a request has no key, for the log.
    pub(crate) fn missing_cause(&self) -> MissingCause<'_> {
        MissingCause(&self.kind)
    }
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::PeerIp => f.write_str("KeyExtractor::PeerIp"),
            Kind::Ip(_) => f.write_str("KeyExtractor::Ip(..)"),
            Kind::IpFromExtension(_, type_name) => write!(f, "KeyExtractor::IpFromExtension::<{type_name}>(..)"),
            Kind::Header(name) => f.debug_tuple("KeyExtractor::Header").field(name).finish(),
            Kind::Global(key) => f.debug_tuple("KeyExtractor::Global").field(key).finish(),
            Kind::Function(_) => f.write_str("KeyExtractor::Function(..)"),
        }
    }
}

/// Why a [`KeyExtractor`] found no key, in words an operator can act on.
pub(crate) struct MissingCause<'a>(&'a Kind);

impl fmt::Display for MissingCause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Kind::PeerIp => f.write_str(
                "KeyExtractor::peer_ip() found no SocketAddr in the request's extensions: the server did not put \
                 one there. axum keeps the peer address in a ConnectInfo<SocketAddr> instead (when served with \
                 into_make_service_with_connect_info::<SocketAddr>()): read it with \
                 KeyExtractor::ip_from_extension (or ip_from_fn)",
            ),
            Kind::IpFromExtension(_, type_name) => write!(
                f,
                "KeyExtractor::ip_from_extension found no {type_name} in the request's extensions; with axum's \
                 ConnectInfo that usually means the app was not served with \
                 into_make_service_with_connect_info::<SocketAddr>()"
            ),
            Kind::Ip(_) => f.write_str(
                "the KeyExtractor::ip_from_fn function found no client address; with axum that usually means \
                 the app was not served with into_make_service_with_connect_info::<SocketAddr>()",
            ),
            Kind::Header(name) => {
                write!(f, "the request has no {name} header, or its value is empty or not visible ASCII")
            }
            Kind::Global(_) => f.write_str("a global key is never missing"),
            Kind::Function(_) => f.write_str("the KeyExtractor::from_fn function returned None"),
        }
    }
}

/// A request's head as the key and plan extractors read it: moved out of
/// the request as [`Parts`], or the request itself, read in place by the
/// extractors that need no more than its headers and extensions.
pub(crate) trait Head {
    fn headers(&self) -> &HeaderMap;
    fn extensions(&self) -> &Extensions;
    /// The whole head, for functions of [`Parts`]; `None` for a request.
    fn parts(&self) -> Option<&Parts>;
}

impl Head for Parts {
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    fn parts(&self) -> Option<&Parts> {
        Some(self)
    }
}

impl<B> Head for Request<B> {
    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn extensions(&self) -> &Extensions {
        self.extensions()
    }

    fn parts(&self) -> Option<&Parts> {
        None
    }
}

/// A request's key: inline when short, which an IP address always is.
#[derive(Debug)]
pub(crate) enum Key {
    Inline { bytes: InlineBytes, len: u8 },
    Owned(String),
}

/// A short key's bytes, word-aligned: `str::from_utf8` checks ASCII that
/// starts on a word boundary in a tight loop, and one that does not a byte
/// at a time until it reaches one.
#[derive(Debug)]
#[repr(C, align(8))]
pub(crate) struct InlineBytes([u8; INLINE]);

/// Each octet of an IPv4 address as text: its digits then a dot, padded to
/// four bytes, and how many of them are digits and dot.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut table = [([0; 4], 0); 256];
    let mut octet = 0;
    while octet < 256 {
        let (digits, value) = (&mut table[octet].0, octet as u8);
        let len = if value >= 100 {
            *digits = [b'0' + value / 100, b'0' + value / 10 % 10, b'0' + value % 10, b'.'];
            4
        } else if value >= 10 {
            *digits = [b'0' + value / 10, b'0' + value % 10, b'.', 0];
            3
        } else {
            *digits = [b'0' + value, b'.', 0, 0];
            2
        };
        table[octet].1 = len;
        octet += 1;
    }
    table
};

/// Long enough for any IP address (IPv6: at most 39 characters) and the
/// 32- to 40-character API keys of most services.
const INLINE: usize = 46;

impl Key {
    fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                // Four bytes copied per octet, its digits and a dot, from a
                // table; the last dot is left out of the length.
                let (mut bytes, mut len) = (InlineBytes([0; INLINE]), 0);
                for octet in v4.octets() {
                    let (text, text_len) = OCTETS[usize::from(octet)];
                    if let Some(room) = bytes.0.get_mut(len..len + 4) {
                        room.copy_from_slice(&text);
                        len += usize::from(text_len);
                    }
                }
                Key::Inline { bytes, len: len as u8 - 1 }
            }
            // IPv6 is less common, and its shortest form has rules of its own.
            IpAddr::V6(v6) => {
                use std::fmt::Write;
                let mut key = Key::Inline { bytes: InlineBytes([0; INLINE]), len: 0 };
                let _ = write!(key, "{v6}");
                key
            }
        }
    }

    /// Appends `more`: whole `str`s or ASCII digits, so the key stays UTF-8.
    fn push(&mut self, more: &[u8]) {
        match self {
            Key::Inline { bytes, len } if usize::from(*len) + more.len() <= INLINE => {
                let start = usize::from(*len);
                bytes.0[start..start + more.len()].copy_from_slice(more);
                *len += more.len() as u8;
            }
            Key::Inline { bytes, len } => {
                let mut owned = Vec::with_capacity(usize::from(*len) + more.len());
                owned.extend_from_slice(&bytes.0[..usize::from(*len)]);
                owned.extend_from_slice(more);
                *self = Key::Owned(String::from_utf8(owned).unwrap_or_default());
            }
            Key::Owned(owned) => owned.push_str(std::str::from_utf8(more).unwrap_or_default()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Only ever filled from `str`s, whole: never the fallback.
            Key::Inline { bytes, len } => std::str::from_utf8(&bytes.0[..usize::from(*len)]).unwrap_or_default(),
            Key::Owned(key) => key,
        }
    }
}

impl From<&str> for Key {
    fn from(key: &str) -> Self {
        let mut inline = Key::Inline { bytes: InlineBytes([0; INLINE]), len: 0 };
        if key.len() <= INLINE {
            inline.push(key.as_bytes());
            inline
        } else {
            Key::Owned(key.to_owned())
        }
    }
}

impl fmt::Write for Key {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// The layer's function from a request's head to its plan's name.
#[derive(Clone)]
pub(crate) struct PlanExtractor(Arc<PlanFn>);

type PlanFn = dyn Fn(&Parts) -> Option<Cow<'static, str>> + Send + Sync;

impl PlanExtractor {
    pub(crate) fn new<F, R>(plan: F) -> Self
    where
        F: Fn(&Parts) -> Option<R> + Send + Sync + 'static,
        R: Into<Cow<'static, str>>,
    {
        Self(Arc::new(move |parts| plan(parts).map(Into::into)))
    }

    /// The plan the request whose head is `parts` names, if any.
    pub(crate) fn plan(&self, parts: &Parts) -> Option<Cow<'static, str>> {
        (self.0)(parts)
    }
}

impl fmt::Debug for PlanExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlanExtractor(..)")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_read_as_the_canonical_address() {
        for (ip, key) in [
            ("0.0.0.0", "0.0.0.0"),
            ("10.0.0.1", "10.0.0.1"),
            ("192.168.100.255", "192.168.100.255"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            ("2001:db8::1", "2001:db8::1"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(Key::ip(ip).as_str(), key);
            assert_eq!(key, ip.to_canonical().to_string());
        }
    }

    #[test]
    fn keys_longer_than_the_inline_room_are_kept_whole() {
        let long = "k".repeat(INLINE + 1);
        for key in ["", "alice", &"k".repeat(INLINE), &long] {
            assert_eq!(Key::from(key).as_str(), key);
        }
        let mut spilled = Key::from("k".repeat(INLINE - 1).as_str());
        spilled.push(b"xy");
        assert_eq!(spilled.as_str(), format!("{}xy", "k".repeat(INLINE - 1)));
    }
}
