//! [`RateLimit`]: the service, and the future of its response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::MissingKey;
use super::headers::{limiter_failed, missing_key};
use super::layer::Config;
use crate::{Decision, Error, Result};

/// The body of a [`RateLimit`] response: the inner service's body, or the
/// JSON body of a response the middleware wrote itself (400, 429, 503).
///
/// Both halves have the inner body's `Data` type (`Bytes` for axum and
/// hyper), so axum's `Router::layer` accepts it as is.
pub type RateLimitBody<B> = Either<B, Full<<B as Body>::Data>>;

/// A service that admits requests through a rate limiter; made by
/// [`RateLimitLayer`](super::RateLimitLayer).
///
/// Cloning it is cheap, and every clone draws on the same limiter: the
/// allowance is the layer's, not the clone's (unlike tower's own `RateLimit`,
/// tower issue #794).
///
/// `poll_ready` only asks the inner service; it takes nothing from the
/// limiter. `call` takes the inner service that was made ready and leaves a
/// clone in its place, and the request keeps that ready service while it is
/// checked and, for the leaky bucket, held.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

type Check = Pin<Box<dyn Future<Output = Result<Decision>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Data: From<String>,
{
    type Response = Response<RateLimitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let key = self.config.key.extract(&parts).or_else(|| match &self.config.missing_key {
            MissingKey::Fallback(key) => Some(key.clone()),
            MissingKey::Reject => None,
        });
        let request = Request::from_parts(parts, body);
        // The service `poll_ready` made ready goes with this request; the
        // clone left behind is made ready by the next `poll_ready`.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let state = match key {
            None => State::Respond { response: Some(missing_key()) },
            Some(key) => {
                let limiter = Arc::clone(&self.config.limiter);
                let timeout = self.config.check_timeout;
                let check: Check = Box::pin(async move {
                    match timeout {
                        None => limiter.check(&key).await,
                        Some(limit) => {
                            tokio::time::timeout(limit, limiter.check(&key)).await.unwrap_or(Err(Error::Timeout(limit)))
                        }
                    }
                });
                State::Checking { check, held: Some((inner, request)) }
            }
        };
        ResponseFuture { state, config: Arc::clone(&self.config) }
    }
}

pin_project! {
    /// The response of a [`RateLimit`] service: checking the limiter,
    /// holding the request (leaky bucket), then calling the inner service.
    ///
    /// Dropping it at any point is safe: while checking, as the limiter's
    /// `check` says; while held, the request is admitted already and the
    /// inner service is simply never called.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
        config: Arc<Config>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Checking { check: Check, held: Option<(S, Request<ReqBody>)> },
        Holding { #[pin] sleep: Sleep, held: Option<(S, Request<ReqBody>)>, decision: Decision },
        Calling { #[pin] response: S::Future, decision: Decision },
        Respond { response: Option<Response<String>> },
    }
}

const POLLED_AFTER_COMPLETION: &str = "tollgate's ResponseFuture was polled after it completed";

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<String>,
{
    type Output = Result<Response<RateLimitBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let next = match this.state.project() {
                StateProj::Checking { check, held } => {
                    let decision = match ready!(check.as_mut().poll(cx)) {
                        Ok(decision) => decision,
                        Err(error) => {
                            let mut response = limiter_failed();
                            response.extensions_mut().insert(Arc::new(error));
                            return Poll::Ready(Ok(written(response)));
                        }
                    };
                    if !decision.is_allowed() {
                        return Poll::Ready(Ok(written(this.config.policy.too_many_requests(&decision))));
                    }
                    let (mut inner, request) = held.take().expect(POLLED_AFTER_COMPLETION);
                    if decision.wait().is_zero() {
                        State::Calling { response: inner.call(request), decision }
                    } else {
                        let sleep = tokio::time::sleep(decision.wait());
                        State::Holding { sleep, held: Some((inner, request)), decision }
                    }
                }
                StateProj::Holding { sleep, held, decision } => {
                    ready!(sleep.poll(cx));
                    let (mut inner, request) = held.take().expect(POLLED_AFTER_COMPLETION);
                    State::Calling { response: inner.call(request), decision: *decision }
                }
                StateProj::Calling { response, decision } => {
                    let mut response = ready!(response.poll(cx))?;
                    this.config.policy.write(response.headers_mut(), decision);
                    return Poll::Ready(Ok(response.map(Either::Left)));
                }
                StateProj::Respond { response } => {
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Ok(written(response)));
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "checking",
            State::Holding { .. } => "holding",
            State::Calling { .. } => "calling",
            State::Respond { .. } => "responding",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish_non_exhaustive()
    }
}

/// A response the middleware wrote, in the service's body type.
fn written<B>(response: Response<String>) -> Response<RateLimitBody<B>>
where
    B: Body,
    B::Data: From<String>,
{
    response.map(|body| Either::Right(Full::new(B::Data::from(body))))
}
