//! A mock OpenAI-compatible LLM server, served on a shard by
//! [`crate::server::Server`]: the embedded default LLM of examples, tests and
//! load tests.
//!
//! `POST …/chat/completions` waits a delay drawn from a log-normal
//! distribution (median [`MockLlm::latency`], shape [`MockLlm::sigma`]) and
//! answers [`MockLlm::tokens`] tokens, as JSON or, when the request asks
//! `"stream": true` (or [`MockLlm::stream_by_default`] is set and the request
//! does not say), as server-sent events, one token per event. Each answer
//! reports the delay it waited in the [`DELAY_HEADER`] header (µs), so a
//! client can tell its own overhead from the server's.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use serde::Deserialize;

use super::wire::{self, ChatMessage, Role, Usage};
use crate::server::Server;

/// The response header carrying the delay the mock waited, in microseconds.
pub const DELAY_HEADER: &str = "x-mock-delay-us";

/// HTTP/2 streams per connection the mock accepts: enough for a load test
/// that multiplexes every agent's request on one connection per shard.
pub const MAX_STREAMS: u32 = 1 << 20;

/// The mock's HTTP/2 connection window (see [`Server::connection_window`]).
pub const CONNECTION_WINDOW: u32 = 1 << 30;

/// Largest request body the mock reads.
const MAX_REQUEST: usize = 1 << 20;

type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// The mock's behaviour (see the module docs).
#[derive(Debug, Clone)]
pub struct MockLlm {
    /// Median delay before answering.
    pub latency: Duration,
    /// Shape of the log-normal delay (σ of its logarithm); 0 gives exactly
    /// `latency` every time.
    pub sigma: f64,
    /// Tokens in every answer.
    pub tokens: usize,
    /// Stream when the request does not say.
    pub stream_by_default: bool,
}

impl Default for MockLlm {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            sigma: 0.0,
            tokens: 16,
            stream_by_default: false,
        }
    }
}

/// What the mock reads of a request.
#[derive(Deserialize)]
struct MockRequest {
    #[serde(default)]
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
}

impl MockLlm {
    /// Binds `addr` on the current shard and serves there in a detached
    /// task; returns the bound address.
    pub fn spawn(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let server = Server::bind(addr)?;
        let bound = server.local_addr()?;
        glommio::spawn_local(self.serve(server)).detach();
        Ok(bound)
    }

    /// Serves on `shards` new glommio shards of this process (threads, not
    /// pinned), all listening on `addr` through `SO_REUSEPORT`. Shard 0 binds
    /// first, so a port 0 is resolved once and shared.
    pub fn serve_on_shards(self, addr: SocketAddr, shards: usize) -> std::io::Result<MockShards> {
        let (bound_tx, bound_rx) = flume::bounded(1);
        let mut handles = vec![self.clone().start_shard(0, addr, Some(bound_tx))?];
        let addr = bound_rx.recv().map_err(|_| {
            std::io::Error::other("the mock's first shard stopped before listening")
        })??;
        for shard in 1..shards {
            handles.push(self.clone().start_shard(shard, addr, None)?);
        }
        Ok(MockShards { addr, handles })
    }

    fn start_shard(
        self,
        shard: usize,
        addr: SocketAddr,
        bound: Option<flume::Sender<std::io::Result<SocketAddr>>>,
    ) -> std::io::Result<glommio::ExecutorJoinHandle<std::io::Result<()>>> {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&format!("mock-llm-{shard}"))
            .io_memory(256 << 10)
            .spawn(move || async move {
                let server = Server::bind(addr).and_then(|s| Ok((s.local_addr()?, s)));
                let server = match server {
                    Ok((local, server)) => {
                        if let Some(bound) = bound {
                            let _ = bound.send(Ok(local));
                        }
                        server
                    }
                    Err(e) => {
                        if let Some(bound) = bound {
                            let _ = bound.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        }
                        return Err(e);
                    }
                };
                self.serve(server).await
            })
            .map_err(|e| std::io::Error::other(format!("cannot start mock shard {shard}: {e}")))
    }

    /// Serves on `server` until accepting fails.
    /// Raises the server's HTTP/2 stream limit to [`MAX_STREAMS`] and its
    /// connection window to [`CONNECTION_WINDOW`].
    pub async fn serve(self, server: Server) -> std::io::Result<()> {
        let server = server
            .max_concurrent_streams(MAX_STREAMS)
            .connection_window(CONNECTION_WINDOW);
        let text: Rc<str> = self.answer_text().into();
        let mock = Rc::new(self);
        let rng = Rc::new(RefCell::new(SmallRng::from_os_rng()));
        server
            .serve(hyper::service::service_fn(move |request| {
                let (mock, rng, text) = (mock.clone(), rng.clone(), text.clone());
                async move { Ok::<_, Infallible>(mock.answer(&rng, &text, request).await) }
            }))
            .await
    }

    /// The text of every answer, `w0 w1 … ` ([`tokens`](Self::tokens) words,
    /// each with its space): the same for every request, so made once.
    fn answer_text(&self) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        for i in 0..self.tokens {
            // Writing to a String cannot fail.
            let _ = write!(text, "w{i} ");
        }
        text
    }

    /// A delay drawn from the configured distribution.
    pub fn draw_delay(&self, rng: &mut SmallRng) -> Duration {
        if self.latency.is_zero() {
            return Duration::ZERO;
        }
        match LogNormal::new(self.latency.as_secs_f64().ln(), self.sigma) {
            Ok(dist) if self.sigma > 0.0 => {
                Duration::try_from_secs_f64(dist.sample(rng)).unwrap_or(self.latency)
            }
            _ => self.latency,
        }
    }

    async fn answer(
        &self,
        rng: &RefCell<SmallRng>,
        text: &str,
        request: http::Request<Incoming>,
    ) -> http::Response<MockBody> {
        if request.method() != http::Method::POST
            || !request.uri().path().ends_with("/chat/completions")
        {
            return error(
                http::StatusCode::NOT_FOUND,
                "only POST /chat/completions is served",
            );
        }
        let body = match Limited::new(request.into_body(), MAX_REQUEST)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) => return error(http::StatusCode::BAD_REQUEST, &format!("request body: {e}")),
        };
        let parsed: MockRequest = match serde_json::from_slice(&body) {
            Ok(parsed) => parsed,
            Err(e) => return error(http::StatusCode::BAD_REQUEST, &format!("request JSON: {e}")),
        };
        let delay = self.draw_delay(&mut rng.borrow_mut());
        if !delay.is_zero() {
            glommio::timer::Timer::new(delay).await;
        }
        let prompt_tokens: usize = parsed
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count())
            .sum();
        let usage = Usage {
            prompt_tokens: prompt_tokens as u32,
            completion_tokens: self.tokens as u32,
            total_tokens: (prompt_tokens + self.tokens) as u32,
        };
        let stream = parsed.stream.unwrap_or(self.stream_by_default);
        let mut response = if stream {
            sse_answer(text.split_inclusive(' ').map(str::to_owned), usage)
        } else {
            json_answer(&parsed.model, text.to_owned(), usage)
        };
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        response
            .headers_mut()
            .insert(DELAY_HEADER, http::HeaderValue::from(micros));
        response
    }
}

/// The mock running on shards of its own; see [`MockLlm::serve_on_shards`].
pub struct MockShards {
    addr: SocketAddr,
    handles: Vec<glommio::ExecutorJoinHandle<std::io::Result<()>>>,
}

impl MockShards {
    /// The address every shard listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many shards serve.
    pub fn shards(&self) -> usize {
        self.handles.len()
    }

    /// Waits for the shards; they stop only if accepting fails.
    pub fn join(self) -> std::io::Result<()> {
        for handle in self.handles {
            handle
                .join()
                .map_err(|e| std::io::Error::other(format!("a mock shard failed: {e}")))??;
        }
        Ok(())
    }
}

fn json_answer(model: &str, content: String, usage: Usage) -> http::Response<MockBody> {
    let reply = wire::ChatReply {
        model: model.to_owned(),
        choices: vec![wire::Choice {
            message: ChatMessage {
                role: Role::Assistant,
                content,
            },
            finish_reason: Some("stop".to_owned()),
        }],
        usage: Some(usage),
    };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    with_type(
        "application/json",
        Full::new(Bytes::from(body)).boxed_unsync(),
    )
}

fn sse_answer(tokens: impl Iterator<Item = String>, usage: Usage) -> http::Response<MockBody> {
    let event = |chunk: &wire::ChatChunk| {
        let json = serde_json::to_string(chunk).unwrap_or_default();
        Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: {json}\n\n"))))
    };
    let mut frames: Vec<_> = tokens
        .map(|token| {
            event(&wire::ChatChunk {
                choices: vec![wire::ChunkChoice {
                    delta: wire::Delta {
                        content: Some(token),
                    },
                    finish_reason: None,
                }],
                usage: None,
            })
        })
        .collect();
    frames.push(event(&wire::ChatChunk {
        choices: vec![wire::ChunkChoice {
            delta: wire::Delta::default(),
            finish_reason: Some("stop".to_owned()),
        }],
        usage: Some(usage),
    }));
    frames.push(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))));
    let body = StreamBody::new(futures_lite::stream::iter(frames)).boxed_unsync();
    with_type("text/event-stream", body)
}

fn error(status: http::StatusCode, message: &str) -> http::Response<MockBody> {
    let body = serde_json::json!({ "error": { "message": message } }).to_string();
    let mut response = with_type(
        "application/json",
        Full::new(Bytes::from(body)).boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

fn with_type(content_type: &'static str, body: MockBody) -> http::Response<MockBody> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_exact_without_spread_and_spread_around_the_median_with_it() {
        let mut rng = SmallRng::seed_from_u64(7);
        let fixed = MockLlm {
            latency: Duration::from_millis(100),
            ..MockLlm::default()
        };
        assert_eq!(fixed.draw_delay(&mut rng), Duration::from_millis(100));
        let spread = MockLlm {
            sigma: 0.5,
            ..fixed
        };
        let mut draws: Vec<Duration> = (0..1001).map(|_| spread.draw_delay(&mut rng)).collect();
        draws.sort();
        let median = draws[500].as_secs_f64();
        assert!((0.08..0.125).contains(&median), "median {median}");
        assert!(draws[0] < draws[1000]);
    }
}
