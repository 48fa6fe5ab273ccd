//! An OpenAI-compatible chat-completions client for a shard (facade:
//! `myriad::llm`).
//!
//! [`LlmClient`] posts to `{base_url}/chat/completions` over the shard's
//! HTTP [`Client`], either waiting for the whole answer ([`LlmClient::chat`])
//! or reading it token by token from server-sent events
//! ([`LlmClient::chat_stream`]). A 429 or 5xx answer, and a failed or
//! timed-out connection, are retried with exponential backoff, waiting
//! instead as long as a `Retry-After` header (in seconds) asks. At most
//! [`LlmConfig::max_concurrent`] requests of one client are in flight; the
//! others wait their turn, first come first served (a request that arrives
//! while others wait never overtakes them).
//!
//! [`mock`] is a server that speaks the same API with a configurable
//! latency, for tests and load tests.

pub mod mock;
mod sse;
mod wire;

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::handoff::{Permits, Slot};
use crate::{Client, ClientConfig, Error, Response};
pub use sse::SseParser;
pub use wire::{ChatMessage, Role, Usage};

/// Where the LLM is and how to talk to it.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// The API root, e.g. `https://api.openai.com/v1` (no trailing slash
    /// needed).
    pub base_url: String,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Model name.
    pub model: String,
    /// Retries after the first attempt (on 429, 5xx, connect errors and
    /// timeouts).
    pub max_retries: u32,
    /// The first backoff; it doubles with every retry.
    pub backoff: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// Most requests of one client in flight at once (at least one); the
    /// others wait in order of arrival. A request holds its place through
    /// its retries and, streamed, until its stream is dropped.
    pub max_concurrent: usize,
    /// The HTTP client's configuration.
    pub http: ClientConfig,
}

impl LlmConfig {
    /// OpenAI's API root, the default base URL.
    pub const OPENAI: &'static str = "https://api.openai.com/v1";

    /// A configuration for `base_url` and `model`, without a key.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            max_retries: 3,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_concurrent: 256,
            http: ClientConfig::default(),
        }
    }

    /// From the environment: `OPENAI_BASE_URL` (default [`Self::OPENAI`]),
    /// `OPENAI_API_KEY` (optional) and `OPENAI_MODEL` (default
    /// `gpt-4o-mini`).
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let mut config = Self::new(
            var("OPENAI_BASE_URL").unwrap_or_else(|| Self::OPENAI.to_owned()),
            var("OPENAI_MODEL").unwrap_or_else(|| "gpt-4o-mini".to_owned()),
        );
        config.api_key = var("OPENAI_API_KEY");
        config
    }
}

/// What can go wrong asking the LLM.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The HTTP exchange failed (after the retries, where it is retried).
    #[error(transparent)]
    Http(#[from] Error),
    /// The server refused the request (after the retries, for 429 and 5xx).
    #[error("the LLM API answered {status}: {message}")]
    Api {
        /// The status.
        status: http::StatusCode,
        /// The server's error message, or its body.
        message: String,
    },
    /// The answer is not the JSON of a chat completion.
    #[error("the LLM API sent malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The answer has no choices.
    #[error("the LLM API sent no choices")]
    NoChoice,
}

/// One chat request: the conversation and optional generation settings.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request with these messages and no other settings.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The answer's text.
    pub content: String,
    /// Why generation stopped, as the server says.
    pub finish_reason: Option<String>,
    /// Token counts, when the server sends them.
    pub usage: Option<Usage>,
    /// The response headers (e.g. a mock's reported delay).
    pub headers: http::HeaderMap,
}

/// An OpenAI-compatible chat-completions client (see the module docs).
/// Cheap to clone; clones share the concurrency limit.
#[derive(Clone)]
pub struct LlmClient {
    config: Rc<LlmConfig>,
    url: Rc<str>,
    /// The request head every chat request starts from, made once; the
    /// reason it could not be made (a bad URL or key) fails each request.
    head: Rc<Result<http::request::Parts, String>>,
    http: Client,
    in_flight: Rc<Permits>,
}

/// The right to have one request in flight (see [`LlmConfig::max_concurrent`]).
type Permit = Slot<std::convert::Infallible>;

impl LlmClient {
    /// A client with its own HTTP pool.
    pub fn new(config: LlmConfig) -> Self {
        let http = Client::new(config.http.clone());
        Self::with_http(config, http)
    }

    /// A client over an existing HTTP client (its `config.http` is ignored).
    pub fn with_http(config: LlmConfig, http: Client) -> Self {
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Self {
            in_flight: Permits::new(config.max_concurrent),
            head: Rc::new(request_head(&url, config.api_key.as_deref())),
            url: url.into(),
            config: Rc::new(config),
            http,
        }
    }

    /// The HTTP client underneath (for its connection counts).
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// Asks for a whole answer.
    pub async fn chat(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        let (mut response, _permit) = self.post(request, false).await?;
        let headers = response.take_headers();
        let body = response.bytes().await?;
        let reply: wire::ChatReply = serde_json::from_slice(&body)?;
        let choice = reply.choices.into_iter().next().ok_or(LlmError::NoChoice)?;
        Ok(Completion {
            content: choice.message.content,
            finish_reason: choice.finish_reason,
            usage: reply.usage,
            headers,
        })
    }

    /// Asks for an answer streamed token by token.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        let (response, permit) = self.post(request, true).await?;
        Ok(ChatStream {
            response,
            parser: SseParser::default(),
            ready: std::collections::VecDeque::new(),
            usage: None,
            finish_reason: None,
            done: false,
            _permit: permit,
        })
    }

    /// Posts the request, retrying as the module docs say; returns a
    /// successful response and the concurrency permit it holds.
    async fn post(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<(Response, Permit), LlmError> {
        let permit = self.in_flight.acquire().await;
        let body = serde_json::to_vec(&wire::ChatBody {
            model: &self.config.model,
            messages: &request.messages,
            stream,
            stream_options: stream.then_some(wire::StreamOptions {
                include_usage: true,
            }),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        })?;
        let body = Bytes::from(body);
        let mut attempt = 0;
        loop {
            let (failure, retry_after) =
                match self.http.send(self.http_request(body.clone())?).await {
                    Ok(response) if response.status().is_success() => {
                        return Ok((response, permit))
                    }
                    Ok(response) if retryable(response.status()) => {
                        let wait = retry_after(response.headers());
                        (api_error(response).await, wait)
                    }
                    Ok(response) => return Err(api_error(response).await),
                    Err(e @ (Error::Connect { .. } | Error::Timeout { .. } | Error::Http(_))) => {
                        (LlmError::Http(e), None)
                    }
                    Err(e) => return Err(e.into()),
                };
            if attempt >= self.config.max_retries {
                return Err(failure);
            }
            let wait = backoff(&self.config, attempt, retry_after);
            tracing::debug!("LLM request failed ({failure}); retrying in {wait:?}");
            glommio::timer::Timer::new(wait).await;
            attempt += 1;
        }
    }

    fn http_request(&self, body: Bytes) -> Result<http::Request<Bytes>, Error> {
        match &*self.head {
            Ok(head) => Ok(http::Request::from_parts(head.clone(), body)),
            Err(reason) => Err(Error::Url {
                url: self.url.to_string(),
                reason: reason.clone(),
            }),
        }
    }
}

/// The head of a chat request to `url`: `POST`, JSON, and the key if any.
fn request_head(url: &str, api_key: Option<&str>) -> Result<http::request::Parts, String> {
    let mut builder =
        http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
    if let Some(key) = api_key {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let (head, ()) = builder.body(()).map_err(|e| e.to_string())?.into_parts();
    Ok(head)
}

/// An answer arriving token by token; see [`ChatStream::next_token`].
pub struct ChatStream {
    response: Response,
    parser: SseParser,
    ready: std::collections::VecDeque<String>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    done: bool,
    _permit: Permit,
}

impl ChatStream {
    /// The next piece of text as the server sent it, `None` at the end.
    pub async fn next_token(&mut self) -> Option<Result<String, LlmError>> {
        loop {
            if let Some(token) = self.ready.pop_front() {
                return Some(Ok(token));
            }
            if self.done {
                return None;
            }
            let bytes = match self.response.chunk().await {
                Some(Ok(bytes)) => bytes,
                Some(Err(e)) => return Some(Err(e.into())),
                None => {
                    self.done = true;
                    continue;
                }
            };
            for data in self.parser.feed(&bytes) {
                if data == "[DONE]" {
                    self.done = true;
                    break;
                }
                let chunk: wire::ChatChunk = match serde_json::from_str(&data) {
                    Ok(chunk) => chunk,
                    Err(e) => return Some(Err(e.into())),
                };
                self.usage = chunk.usage.or(self.usage);
                if let Some(choice) = chunk.choices.into_iter().next() {
                    self.finish_reason = choice.finish_reason.or(self.finish_reason.take());
                    self.ready
                        .extend(choice.delta.content.filter(|c| !c.is_empty()));
                }
            }
        }
    }

    /// Reads the rest of the stream and returns the whole answer.
    pub async fn collect(mut self) -> Result<Completion, LlmError> {
        let mut content = String::new();
        while let Some(token) = self.next_token().await {
            content.push_str(&token?);
        }
        Ok(Completion {
            content,
            finish_reason: self.finish_reason,
            usage: self.usage,
            headers: self.response.headers().clone(),
        })
    }

    /// Token usage, once the server has sent it (with the last event).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// 429 (too many requests) and 5xx are worth another try.
fn retryable(status: http::StatusCode) -> bool {
    status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in (possibly fractional) seconds; an HTTP date is not
/// understood and falls back to the backoff.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds = value.trim().parse::<f64>().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// The wait before retry number `attempt + 1`: what the server asked, or
/// `backoff * 2^attempt`, at most `max_backoff`.
fn backoff(config: &LlmConfig, attempt: u32, asked: Option<Duration>) -> Duration {
    let doubled = config
        .backoff
        .saturating_mul(2u32.saturating_pow(attempt.min(16)));
    asked.unwrap_or(doubled).min(config.max_backoff)
}

/// The error a refused request stands for, with the server's message.
async fn api_error(response: Response) -> LlmError {
    let status = response.status();
    let message = match response.bytes().await {
        Ok(body) => match serde_json::from_slice::<wire::ErrorBody>(&body) {
            Ok(parsed) => parsed.error.message,
            Err(_) => String::from_utf8_lossy(&body).into_owned(),
        },
        Err(e) => format!("(body unreadable: {e})"),
    };
    LlmError::Api { status, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_dates_are_ignored() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(http::header::RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(500)));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "-1".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_yields_to_retry_after() {
        let mut config = LlmConfig::new("http://x", "m");
        config.backoff = Duration::from_millis(100);
        config.max_backoff = Duration::from_secs(1);
        assert_eq!(backoff(&config, 0, None), Duration::from_millis(100));
        assert_eq!(backoff(&config, 2, None), Duration::from_millis(400));
        assert_eq!(backoff(&config, 30, None), Duration::from_secs(1));
        let asked = Some(Duration::from_millis(700));
        assert_eq!(backoff(&config, 0, asked), Duration::from_millis(700));
        assert_eq!(
            backoff(&config, 0, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn every_request_is_a_json_post_with_the_key_from_one_head() {
        let mut config = LlmConfig::new("http://127.0.0.1:9/v1/", "m");
        config.api_key = Some("sk-test".to_owned());
        let client = LlmClient::new(config);
        for body in ["{}", "{\"a\":1}"] {
            let request = client.http_request(Bytes::from(body)).unwrap();
            assert_eq!(request.method(), http::Method::POST);
            assert_eq!(request.uri(), "http://127.0.0.1:9/v1/chat/completions");
            let headers = request.headers();
            assert_eq!(headers[http::header::CONTENT_TYPE], "application/json");
            assert_eq!(headers[http::header::AUTHORIZATION], "Bearer sk-test");
            assert_eq!(request.body(), body);
        }
    }

    #[test]
    fn a_bad_url_or_key_fails_each_request_with_a_url_error() {
        let bad_url = LlmClient::new(LlmConfig::new("http://exa mple/v1", "m"));
        let mut config = LlmConfig::new("http://127.0.0.1:9/v1", "m");
        config.api_key = Some("line\nbreak".to_owned());
        let bad_key = LlmClient::new(config);
        for client in [bad_url, bad_key] {
            for _ in 0..2 {
                assert!(matches!(
                    client.http_request(Bytes::new()),
                    Err(Error::Url { .. })
                ));
            }
        }
    }

    #[test]
    fn only_429_and_5xx_are_retried() {
        assert!(retryable(http::StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(http::StatusCode::BAD_GATEWAY));
        assert!(!retryable(http::StatusCode::BAD_REQUEST));
        assert!(!retryable(http::StatusCode::UNAUTHORIZED));
    }
}
