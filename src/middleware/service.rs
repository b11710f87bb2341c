//! [`RateLimit`]: the service, and the future of its response.

use std::borrow::Cow;
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
use super::headers::{Answer, Fields, limiter_failed, missing_key, retry_after_secs, too_many_requests};
use super::key::Key;
use super::layer::Config;
use super::log::Log;
use crate::observe::Answered;
use crate::{Breakdown, Error, Result};

/// A service that admits requests through a rate limiter; made by
/// [`RateLimitLayer`](super::RateLimitLayer).
///
/// Cloning it is cheap, and every clone draws on the same limiter: the
/// allowance is the layer's, not the clone's (unlike tower's own `RateLimit`,
/// tower issue #794).
///
/// Its responses have the inner service's body type: the ones the middleware
/// writes itself (400, 429, 500, 503, with a JSON problem body) are made with
/// `From<String>`, which axum's `Body`, `http_body_util::Full<Bytes>` and
/// `String` implement. A body of its own type, rather than a wrapper around
/// the inner one, is what axum passes on as it is; it boxes any other, on
/// every response. (A service with another body, such as hyper's `Incoming`
/// in a proxy, can map its body into axum's `Body` first.)
///
/// `poll_ready` only asks the inner service; it takes nothing from the
/// limiter. `call` asks the limiter at once, without a future when the
/// limiter can answer at once
/// ([`check_now`](crate::RateLimiter::check_now),
/// [`check_detailed_now`](crate::RateLimiter::check_detailed_now): in
/// memory it always can). When the answer is there, the request goes straight to the
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

type Check = Pin<Box<dyn Future<Output = Result<Breakdown>> + Send>>;

/// What a check means for its request.
enum Verdict {
    /// Pass it on after `wait` (the leaky bucket's hold), and add `fields`
    /// to the response.
    Pass { wait: Duration, fields: Fields },
    /// Answer it with this (429, 500 or 503).
    Respond(Response<String>),
}

impl Config {
    /// Asks the limiter about `key` in `plan`, for a limiter that could not
    /// answer at once: within the check timeout if one is set.
    fn check(&self, key: Key, plan: Option<Cow<'static, str>>) -> Check {
        let limiter = Arc::clone(&self.limiter);
        let timeout = self.check_timeout;
        Box::pin(async move {
            let check = limiter.check_detailed(key.as_str(), 1, plan.as_deref());
            match timeout {
                None => check.await,
                Some(limit) => tokio::time::timeout(limit, check).await.unwrap_or(Err(Error::Timeout(limit))),
            }
        })
    }

    fn verdict(&self, result: Result<Answer>) -> Verdict {
        let name = &self.naming.name;
        let answer = match result {
            Ok(answer) => {
                self.log.limiter_answered(name);
                answer
            }
            Err(error) => {
                let mut response = limiter_failed(&error);
                self.log.limiter_failed(name, &error, response.status());
                self.requests.answered(name, Answered::Error);
                response.extensions_mut().insert(Arc::new(error));
                return Verdict::Respond(response);
            }
        };
        self.shapes.with(&answer, &self.naming, |shape| {
            let decision = answer.decision();
            if decision.is_allowed() {
                self.requests.answered(name, Answered::Allowed);
                return Verdict::Pass { wait: decision.wait(), fields: Fields::new(self.headers, shape, &answer) };
            }
            let retry_after = retry_after_secs(&decision);
            Log::denied(name, retry_after);
            self.requests.answered(name, Answered::Denied);
            let mut response = too_many_requests(shape, &answer, retry_after);
            Fields::new(self.headers, shape, &answer).write(response.headers_mut());
            Verdict::Respond(response)
        })
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
        let config = &*self.config;
        // The built-in extractors read the request where it is; functions
        // of `&Parts` (a public signature) have its head moved out and back.
        let mut request = request;
        let (key, plan) = if config.plan.is_some() || config.key.reads_parts() {
            let (parts, body) = request.into_parts();
            let key = config.key.key(&parts);
            let plan = config.plan.as_ref().and_then(|plan| plan.plan(&parts));
            request = Request::from_parts(parts, body);
            (key, plan)
        } else {
            (config.key.key(&request), None)
        };
        let key = key.or_else(|| match &config.missing_key {
            MissingKey::Fallback(key) => Some(Key::from(key.as_str())),
            MissingKey::Reject => None,
        });
        let Some(key) = key else {
            config.log.missing_key(&config.naming.name, &config.key);
            config.requests.answered(&config.naming.name, Answered::NoKey);
            return ResponseFuture::respond(missing_key());
        };
        // A limiter that answers at once (in memory) answers here, with no
        // future boxed for it; the request goes to the inner service that
        // `poll_ready` made ready, with no clone of it and no state kept
        // for later. A plain one answers with its decision alone, once a
        // breakdown has told the layer its window.
        let plain = match plan {
            None if config.shapes.knows_plain() => config.limiter.check_now(key.as_str(), 1),
            _ => None,
        };
        let now = match plain {
            Some(result) => Some(result.map(Answer::Plain)),
            None => config
                .limiter
                .check_detailed_now(key.as_str(), 1, plan.as_deref())
                .map(|result| result.map(Answer::Detailed)),
        };
        let verdict = match now {
            Some(result) => config.verdict(result),
            None => {
                // Polled once here all the same: an answer may be there
                // already. A check that waits is polled again with the
                // task's waker when the response future is, and a future
                // wakes the waker of its latest poll.
                let mut check = config.check(key, plan);
                match check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(result) => config.verdict(result.map(Answer::Detailed)),
                    Poll::Pending => {
                        let held = Some((self.take_ready(), request));
                        let config = Arc::clone(&self.config);
                        return ResponseFuture { state: State::Checking { check, held, config } };
                    }
                }
            }
        };
        let state = match verdict {
            // Returned from here, the response future is built in place:
            // not moved once more through `state`.
            Verdict::Pass { wait, fields } if wait.is_zero() => {
                return ResponseFuture {
                    state: State::Calling { response: self.inner.call(request), fields: Some(fields) },
                };
            }
            Verdict::Pass { wait, fields } => State::Holding {
                sleep: tokio::time::sleep(wait),
                held: Some((self.take_ready(), request)),
                fields: Some(fields),
            },
            Verdict::Respond(response) => State::Respond { response: Some(response) },
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
                    match config.verdict(result.map(Answer::Detailed)) {
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
