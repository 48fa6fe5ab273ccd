//! The LLM client against the mock LLM and against scripted servers.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use myriad_http::io::with_timeout;
use myriad_http::llm::mock::{MockLlm, DELAY_HEADER};
use myriad_http::llm::{ChatMessage, ChatRequest, LlmClient, LlmConfig, LlmError, Usage};
use support::{loopback, on_shard, serve};

fn hello() -> ChatRequest {
    ChatRequest::new(vec![
        ChatMessage::system("be brief"),
        ChatMessage::user("say three words"),
    ])
}

fn client_for(addr: std::net::SocketAddr) -> LlmConfig {
    let mut config = LlmConfig::new(format!("http://{addr}/v1"), "mock");
    config.backoff = Duration::from_millis(1);
    config
}

#[test]
fn a_chat_against_the_mock_returns_its_answer_usage_and_delay() {
    on_shard(|| async {
        let mock = MockLlm {
            tokens: 5,
            ..MockLlm::default()
        };
        let addr = mock.spawn(loopback()).unwrap();
        let llm = LlmClient::new(client_for(addr));
        let answer = llm.chat(&hello()).await.unwrap();
        assert_eq!(answer.content, "w0 w1 w2 w3 w4 ");
        assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
        let usage = answer.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 5));
        assert_eq!(answer.headers[DELAY_HEADER], "0");
    });
}

#[test]
fn a_streamed_chat_arrives_token_by_token_with_usage_last() {
    on_shard(|| async {
        let mock = MockLlm {
            tokens: 4,
            ..MockLlm::default()
        };
        let addr = mock.spawn(loopback()).unwrap();
        let llm = LlmClient::new(client_for(addr));
        let mut stream = llm.chat_stream(&hello()).await.unwrap();
        let mut tokens = Vec::new();
        while let Some(token) = stream.next_token().await {
            assert_eq!(stream.usage(), None, "usage comes after the last token");
            tokens.push(token.unwrap());
        }
        assert_eq!(tokens, ["w0 ", "w1 ", "w2 ", "w3 "]);
        assert_eq!(
            stream.usage(),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 4,
                total_tokens: 9
            })
        );
    });
}

/// A chat-completion reply as an OpenAI server would send it.
fn reply(content: &str) -> http::Response<Full<Bytes>> {
    let body = serde_json::json!({
        "model": "scripted",
        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    });
    http::Response::new(Full::new(Bytes::from(body.to_string())))
}

fn status(code: u16, retry_after: Option<&'static str>) -> http::Response<Full<Bytes>> {
    let body = r#"{"error": {"message": "try later"}}"#;
    let mut response = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, seconds.parse().unwrap());
    }
    response
}

/// A server that answers its n-th request (from 0) with `script(n)`;
/// returns its address and the number of requests it saw.
fn scripted(
    script: impl Fn(u32) -> http::Response<Full<Bytes>> + Clone + 'static,
) -> (std::net::SocketAddr, Rc<Cell<u32>>) {
    let seen = Rc::new(Cell::new(0));
    let counter = seen.clone();
    let (addr, _) = serve(move |_| {
        let n = counter.get();
        counter.set(n + 1);
        let response = script(n);
        async move { response }
    });
    (addr, seen)
}

#[test]
fn a_5xx_is_retried_until_success() {
    on_shard(|| async {
        let (addr, seen) = scripted(|n| {
            if n < 2 {
                status(503, None)
            } else {
                reply("fine")
            }
        });
        let llm = LlmClient::new(client_for(addr));
        assert_eq!(llm.chat(&hello()).await.unwrap().content, "fine");
        assert_eq!(seen.get(), 3);
    });
}

#[test]
fn retries_give_up_with_the_servers_message() {
    on_shard(|| async {
        let (addr, seen) = scripted(|_| status(502, None));
        let mut config = client_for(addr);
        config.max_retries = 2;
        let llm = LlmClient::new(config);
        match llm.chat(&hello()).await {
            Err(LlmError::Api { status, message }) => {
                assert_eq!(status, http::StatusCode::BAD_GATEWAY);
                assert_eq!(message, "try later");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
        assert_eq!(seen.get(), 3);
    });
}

#[test]
fn a_4xx_other_than_429_is_not_retried() {
    on_shard(|| async {
        let (addr, seen) = scripted(|_| status(400, None));
        let llm = LlmClient::new(client_for(addr));
        assert!(matches!(
            llm.chat(&hello()).await,
            Err(LlmError::Api { .. })
        ));
        assert_eq!(seen.get(), 1);
    });
}

#[test]
fn retry_after_zero_overrides_a_long_backoff() {
    on_shard(|| async {
        let (addr, seen) = scripted(|n| {
            if n == 0 {
                status(429, Some("0"))
            } else {
                reply("now")
            }
        });
        let mut config = client_for(addr);
        config.backoff = Duration::from_secs(3600);
        config.max_backoff = Duration::from_secs(7200);
        let llm = LlmClient::new(config);
        // Ignoring Retry-After would wait an hour; the bound only has to be
        // far below that.
        let answer = with_timeout(Duration::from_secs(60), llm.chat(&hello())).await;
        assert_eq!(
            answer
                .expect("Retry-After: 0 was honoured")
                .unwrap()
                .content,
            "now"
        );
        assert_eq!(seen.get(), 2);
    });
}

#[test]
fn retry_after_one_second_waits_at_least_that_long() {
    on_shard(|| async {
        let (addr, _) = scripted(|n| {
            if n == 0 {
                status(429, Some("1"))
            } else {
                reply("later")
            }
        });
        let llm = LlmClient::new(client_for(addr)); // backoff 1 ms
        let start = Instant::now();
        assert_eq!(llm.chat(&hello()).await.unwrap().content, "later");
        // A timer never fires early, so this lower bound cannot flake.
        assert!(start.elapsed() >= Duration::from_secs(1));
    });
}

#[test]
fn the_concurrency_limit_holds_requests_back() {
    on_shard(|| async {
        let inside = Rc::new(Cell::new(0u32));
        let most = Rc::new(Cell::new(0u32));
        let both_inside = Rc::new(glommio::sync::Semaphore::new(0));
        let (addr, _) = {
            let (inside, most) = (inside.clone(), most.clone());
            serve(move |_| {
                let (inside, most, both_inside) =
                    (inside.clone(), most.clone(), both_inside.clone());
                async move {
                    inside.set(inside.get() + 1);
                    most.set(most.get().max(inside.get()));
                    if inside.get() == 2 {
                        both_inside.signal(1_000);
                    }
                    drop(both_inside.acquire_permit(1).await.unwrap());
                    inside.set(inside.get() - 1);
                    reply("ok")
                }
            })
        };
        let mut config = client_for(addr);
        config.max_concurrent = 2;
        let llm = LlmClient::new(config);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let llm = llm.clone();
                glommio::spawn_local(async move { llm.chat(&hello()).await.unwrap().content })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await, "ok");
        }
        assert_eq!(most.get(), 2);
    });
}

/// A request that arrives while others wait goes behind them, even when it
/// comes just as a request in flight ends: three agents each chatting three
/// times in a row through one permit take turns (with a barging semaphore,
/// the first would take the permit it just gave back, three times over).
#[test]
fn the_concurrency_limit_serves_waiting_requests_in_order_of_arrival() {
    on_shard(|| async {
        let seen = Rc::new(std::cell::RefCell::new(Vec::new()));
        let (addr, _) = {
            let seen = seen.clone();
            serve(move |request| {
                let seen = seen.clone();
                async move {
                    use http_body_util::BodyExt;
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let said = body["messages"][0]["content"].as_str().unwrap().to_owned();
                    seen.borrow_mut().push(said);
                    reply("ok")
                }
            })
        };
        let mut config = client_for(addr);
        config.max_concurrent = 1;
        let llm = LlmClient::new(config);
        let agents: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|agent| {
                let llm = llm.clone();
                glommio::spawn_local(async move {
                    for turn in 1..=3 {
                        let said = format!("{agent}{turn}");
                        let request = ChatRequest::new(vec![ChatMessage::user(said)]);
                        assert_eq!(llm.chat(&request).await.unwrap().content, "ok");
                    }
                })
            })
            .collect();
        for agent in agents {
            agent.await;
        }
        assert_eq!(
            *seen.borrow(),
            ["a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"]
        );
    });
}

#[test]
fn a_refused_connection_is_retried_then_reported() {
    on_shard(|| async {
        let addr = glommio::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut config = client_for(addr);
        config.max_retries = 1;
        let llm = LlmClient::new(config);
        assert!(matches!(
            llm.chat(&hello()).await,
            Err(LlmError::Http(myriad_http::Error::Connect { .. }))
        ));
    });
}

#[test]
fn the_mock_serves_one_address_from_several_shards() {
    let serving = MockLlm::default()
        .serve_on_shards(loopback(), 2)
        .expect("the mock serves");
    assert_eq!(serving.shards(), 2);
    let addr = serving.addr();
    assert_ne!(addr.port(), 0);
    on_shard(move || async move {
        let llm = LlmClient::new(client_for(addr));
        for _ in 0..4 {
            assert_eq!(
                llm.chat(&hello()).await.unwrap().finish_reason.as_deref(),
                Some("stop")
            );
        }
    });
    // The serving shards run until the test process ends.
}
