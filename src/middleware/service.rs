//! [`RateLimit`]: the service, and the future of its response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::MissingKey;
use super::headers::{Fields, limiter_failed, missing_key, retry_after_secs, too_many_requests};
use super::key::Key;
use super::layer::Config;
use super::log::Log;
use crate::observe::Answered;
use crate::{Decision, Error, Result};

/// A service that admits requests through a rate limiter; made by
/// [`RateLimitLayer`](super::RateLimitLayer).
///
/// Cloning it is cheap, and every clone draws on the same limiter: the
/// allowance is the layer's, not the clone's (unlike tower's own `RateLimit`,
/// tower issue #794).
///
/// Its responses have the inner service's body type: the ones the middleware
/// writes itself (400, 429, 503, with a JSON problem body) are made with
/// `From<String>`, which axum's `Body`, `http_body_util::Full<Bytes>` and
/// `String` implement. A body of its own type, rather than a wrapper around
/// the inner one, is what axum passes on as it is; it boxes any other, on
/// every response. (A service with another body, such as hyper's `Incoming`
/// in a proxy, can map its body into axum's `Body` first.)
///
/// `poll_ready` only asks the inner service; it takes nothing from the
/// limiter. `call` asks the limiter at once. When the answer is there
/// already, as it always is in memory, the request goes straight to the
/// inner service that `poll_ready` made ready (or is answered 429). When the
/// limiter has to wait (Redis), or the leaky bucket holds the request, `call`
/// takes that ready service with the request and leaves a clone in its
/// place. Since the check starts in `call`, `call` runs in a tokio runtime's
/// context, as it does under hyper and axum (a check timeout and the leaky
/// bucket's hold are tokio timers).
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

impl<S: Clone> RateLimit<S> {
    /// The inner service that `poll_ready` made ready, for a request that
    /// goes on later; the clone left behind is made ready by the next
    /// `poll_ready`.
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

type Check = Pin<Box<dyn Future<Output = Result<Decision>> + Send>>;

/// What a check means for its request.
enum Verdict {
    /// Pass it on after `wait` (the leaky bucket's hold), and add `fields`
    /// to the response.
    Pass { wait: Duration, fields: Fields },
    /// Answer it with this (429 or 503).
    Respond(Response<String>),
}

impl Config {
    /// Asks the limiter about `key`, within the check timeout if one is set.
    fn check(&self, key: Key) -> Check {
        let limiter = Arc::clone(&self.limiter);
        let timeout = self.check_timeout;
        Box::pin(async move {
            let check = limiter.check(key.as_str());
            match timeout {
                None => check.await,
                Some(limit) => tokio::time::timeout(limit, check).await.unwrap_or(Err(Error::Timeout(limit))),
            }
        })
    }

    fn verdict(&self, result: Result<Decision>) -> Verdict {
        let name = &self.policy.name;
        let decision = match result {
            Ok(decision) => {
                self.log.limiter_answered(name);
                decision
            }
            Err(error) => {
                self.log.limiter_failed(name, &error);
                self.requests.answered(name, Answered::Error);
                let mut response = limiter_failed();
                response.extensions_mut().insert(Arc::new(error));
                return Verdict::Respond(response);
            }
        };
        let policies = [self.policy.state(&decision)];
        if decision.is_allowed() {
            self.requests.answered(name, Answered::Allowed);
            return Verdict::Pass {
                wait: decision.wait(),
                fields: Fields::new(self.headers, &policies, &self.constant),
            };
        }
        let retry_after = retry_after_secs(&decision);
        Log::denied(name, retry_after);
        self.requests.answered(name, Answered::Denied);
        let mut response = too_many_requests(&policies, retry_after);
        Fields::new(self.headers, &policies, &self.constant).write(response.headers_mut());
        Verdict::Respond(response)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body + From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let key = self.config.key.key(&parts).or_else(|| match &self.config.missing_key {
            MissingKey::Fallback(key) => Some(Key::from(key.as_str())),
            MissingKey::Reject => None,
        });
        let request = Request::from_parts(parts, body);
        let Some(key) = key else {
            self.config.log.missing_key(&self.config.policy.name, &self.config.key);
            self.config.requests.answered(&self.config.policy.name, Answered::NoKey);
            return ResponseFuture::respond(missing_key());
        };
        // Polled once here: an answer that is there already (in memory it
        // always is) lets the request go to the ready inner service now,
        // with no clone of it and no state kept for later. A check that
        // waits is polled again with the task's waker when the response
        // future is, and a future wakes the waker of its latest poll.
        let mut check = self.config.check(key);
        let state = match check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => match self.config.verdict(result) {
                Verdict::Pass { wait, fields } if wait.is_zero() => {
                    State::Calling { response: self.inner.call(request), fields: Some(fields) }
                }
                Verdict::Pass { wait, fields } => State::Holding {
                    sleep: tokio::time::sleep(wait),
                    held: Some((self.take_ready(), request)),
                    fields: Some(fields),
                },
                Verdict::Respond(response) => State::Respond { response: Some(response) },
            },
            Poll::Pending => {
                State::Checking { check, held: Some((self.take_ready(), request)), config: Arc::clone(&self.config) }
            }
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// The response of a [`RateLimit`] service: waiting for the limiter's
    /// answer (if it did not come at once), holding the request (leaky
    /// bucket), then calling the inner service.
    ///
    /// Dropping it at any point is safe: while the check waits, as the
    /// limiter's `check` says (a remote check may have taken its cost); while
    /// held, the request is admitted already and the inner service is simply
    /// never called.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Checking { check: Check, held: Option<(S, Request<ReqBody>)>, config: Arc<Config> },
        Holding { #[pin] sleep: Sleep, held: Option<(S, Request<ReqBody>)>, fields: Option<Fields> },
        Calling { #[pin] response: S::Future, fields: Option<Fields> },
        Respond { response: Option<Response<String>> },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn respond(response: Response<String>) -> Self {
        Self { state: State::Respond { response: Some(response) } }
    }
}

const POLLED_AFTER_COMPLETION: &str = "tollgate's ResponseFuture was polled after it completed";

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + From<String>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Checking { check, held, config } => {
                    let result = ready!(check.as_mut().poll(cx));
                    let (mut inner, request) = held.take().expect(POLLED_AFTER_COMPLETION);
                    match config.verdict(result) {
                        Verdict::Pass { wait, fields } if wait.is_zero() => {
                            State::Calling { response: inner.call(request), fields: Some(fields) }
                        }
                        Verdict::Pass { wait, fields } => State::Holding {
                            sleep: tokio::time::sleep(wait),
                            held: Some((inner, request)),
                            fields: Some(fields),
                        },
                        Verdict::Respond(response) => return Poll::Ready(Ok(written(response))),
                    }
                }
                StateProj::Holding { sleep, held, fields } => {
                    ready!(sleep.poll(cx));
                    let (mut inner, request) = held.take().expect(POLLED_AFTER_COMPLETION);
                    State::Calling { response: inner.call(request), fields: fields.take() }
                }
                StateProj::Calling { response, fields } => {
                    let mut response = ready!(response.poll(cx))?;
                    if let Some(fields) = fields.take() {
                        fields.write(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
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
fn written<B>(response: Response<String>) -> Response<B>
where
    B: Body + From<String>,
{
    response.map(B::from)
}
