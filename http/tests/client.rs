//! The HTTP client against real servers on loopback.

mod support;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use myriad_http::io::with_timeout;
use myriad_http::server::Server;
use myriad_http::{Client, ClientConfig, Error};
use support::{ok, on_shard, serve, serve_on};

fn url(addr: std::net::SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[test]
fn a_timeout_cuts_only_a_future_that_has_to_wait_past_it() {
    on_shard(|| async {
        // Ready when first polled: no timer is made, so even a zero limit
        // lets it through.
        assert_eq!(with_timeout(Duration::ZERO, async { 7 }).await, Some(7));
        assert_eq!(
            with_timeout(Duration::ZERO, std::future::pending::<()>()).await,
            None
        );
        let mut waited = false;
        let ready_on_the_second_poll = std::future::poll_fn(|cx| {
            if std::mem::replace(&mut waited, true) {
                std::task::Poll::Ready(3)
            } else {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        });
        let limit = Duration::from_secs(60);
        assert_eq!(with_timeout(limit, ready_on_the_second_poll).await, Some(3));
    });
}

#[test]
fn a_get_returns_status_headers_and_body() {
    on_shard(|| async {
        let (addr, _) = serve(|request| async move {
            assert_eq!(request.uri().path(), "/hello");
            assert!(request.headers().contains_key(http::header::HOST));
            ok("hi there")
        });
        let client = Client::new(ClientConfig::default());
        let response = client.get(&url(addr, "/hello")).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_11);
        assert_eq!(response.bytes().await.unwrap(), "hi there");
    });
}

#[test]
fn sequential_requests_reuse_one_keep_alive_connection() {
    on_shard(|| async {
        let (addr, accepted) = serve(|_| async { ok("x") });
        let client = Client::new(ClientConfig::default());
        for _ in 0..10 {
            let body = client
                .get(&url(addr, "/"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(body, "x");
        }
        assert_eq!(accepted.get(), 1);
        assert_eq!(client.stats().connections_opened, 1);
    });
}

#[test]
fn concurrent_requests_never_open_more_than_the_cap() {
    on_shard(|| async {
        // Every request is held until two are inside the server at once, so
        // the client must run two connections in parallel, and the other 18
        // requests must wait for them rather than dial.
        let inside = Rc::new(Cell::new(0u32));
        let both_inside = Rc::new(glommio::sync::Semaphore::new(0));
        let (addr, accepted) = serve(move |_| {
            let (inside, both_inside) = (inside.clone(), both_inside.clone());
            async move {
                inside.set(inside.get() + 1);
                if inside.get() == 2 {
                    both_inside.signal(1_000);
                }
                drop(both_inside.acquire_permit(1).await.unwrap());
                ok("x")
            }
        });
        let client = Client::new(ClientConfig {
            max_connections_per_host: 2,
            ..ClientConfig::default()
        });
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let client = client.clone();
                let target = url(addr, "/");
                glommio::spawn_local(async move {
                    client.get(&target).await.unwrap().bytes().await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await, "x");
        }
        assert_eq!(accepted.get(), 2);
        assert_eq!(client.stats().connections_opened, 2);
        assert_eq!(client.stats().open_connections, 2);
    });
}

/// A loopback server that logs the path of each request in order of
/// arrival and holds `/hold` until [`Gated::open`]; with `close`, every
/// response says `Connection: close`.
struct Gated {
    addr: std::net::SocketAddr,
    accepted: Rc<Cell<u64>>,
    paths: Rc<RefCell<Vec<String>>>,
    arrived: Rc<Semaphore>,
    gate: Rc<Semaphore>,
}

impl Gated {
    fn start(close: bool) -> Gated {
        let paths = Rc::new(RefCell::new(Vec::new()));
        let (arrived, gate) = (Rc::new(Semaphore::new(0)), Rc::new(Semaphore::new(0)));
        let (log, at, held) = (paths.clone(), arrived.clone(), gate.clone());
        let (addr, accepted) = serve(move |request| {
            let (log, at, held) = (log.clone(), at.clone(), held.clone());
            async move {
                let path = request.uri().path().to_owned();
                log.borrow_mut().push(path.clone());
                if path == "/hold" {
                    at.signal(1);
                    held.acquire(1).await.unwrap();
                }
                let mut response = ok("x");
                if close {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        });
        Gated {
            addr,
            accepted,
            paths,
            arrived,
            gate,
        }
    }

    /// Starts `GET /hold` and returns once the server holds it: the
    /// client's only connection is then in use.
    async fn hold(&self, client: &Client) -> glommio::Task<Bytes> {
        let holder = glommio::spawn_local(get_body(client.clone(), url(self.addr, "/hold")));
        self.arrived.acquire(1).await.unwrap();
        holder
    }

    /// Lets `/hold` answer.
    fn open(&self) {
        self.gate.signal(1);
    }

    fn paths(&self) -> Vec<String> {
        self.paths.borrow().clone()
    }
}

async fn get_body(client: Client, target: String) -> Bytes {
    client.get(&target).await.unwrap().bytes().await.unwrap()
}

/// A client of one HTTP/1.1 connection per origin.
fn one_connection() -> Client {
    Client::new(ClientConfig {
        max_connections_per_host: 1,
        ..ClientConfig::default()
    })
}

/// Starts `GET path` and polls it once: it must be left waiting in line.
async fn queue_up(
    client: &Client,
    server: &Gated,
    path: &str,
) -> Pin<Box<impl Future<Output = Bytes>>> {
    let mut request = Box::pin(get_body(client.clone(), url(server.addr, path)));
    assert!(futures_lite::future::poll_once(&mut request)
        .await
        .is_none());
    request
}

/// Fails the test instead of hanging if a connection was lost.
async fn within_a_minute<T>(work: impl Future<Output = T>) -> T {
    with_timeout(Duration::from_secs(60), work)
        .await
        .expect("finished: no slot or connection was lost")
}

#[test]
fn requests_waiting_for_a_connection_get_it_in_order_of_arrival() {
    on_shard(|| async {
        let server = Gated::start(false);
        let client = one_connection();
        let holder = server.hold(&client).await;
        let mut waiting = Vec::new();
        for i in 0..5 {
            waiting.push(queue_up(&client, &server, &format!("/{i}")).await);
        }
        server.open();
        let tasks: Vec<_> = waiting.into_iter().map(glommio::spawn_local).collect();
        assert_eq!(holder.await, "x");
        for task in tasks {
            assert_eq!(task.await, "x");
        }
        assert_eq!(server.paths(), ["/hold", "/0", "/1", "/2", "/3", "/4"]);
        assert_eq!(
            client.stats().connections_opened,
            1,
            "one connection, handed on"
        );
    });
}

#[test]
fn a_request_cancelled_while_waiting_passes_its_turn_on() {
    on_shard(|| async {
        let server = Gated::start(false);
        let client = one_connection();
        let holder = server.hold(&client).await;
        let cancelled = queue_up(&client, &server, "/cancelled").await;
        let next = queue_up(&client, &server, "/next").await;
        drop(cancelled);
        server.open();
        assert_eq!(holder.await, "x");
        assert_eq!(within_a_minute(next).await, "x");
        assert_eq!(server.paths(), ["/hold", "/next"]);
        assert_eq!(client.stats().connections_opened, 1);
    });
}

#[test]
fn a_waiter_whose_connection_the_server_closed_dials_a_new_one() {
    on_shard(|| async {
        let server = Gated::start(true);
        let client = one_connection();
        let holder = server.hold(&client).await;
        let next = queue_up(&client, &server, "/next").await;
        server.open();
        assert_eq!(holder.await, "x");
        assert_eq!(within_a_minute(next).await, "x");
        assert_eq!(server.paths(), ["/hold", "/next"]);
        assert_eq!(server.accepted.get(), 2);
        assert_eq!(client.stats().connections_opened, 2);
    });
}

#[test]
fn a_failed_request_passes_its_connection_slot_on() {
    on_shard(|| async {
        // Nothing listens here: the holder's dial fails, and the waiter
        // behind it gets the slot (and fails to dial in turn).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = one_connection();
        let target = url(addr, "/");
        let both = futures_lite::future::zip(client.get(&target), client.get(&target));
        let (first, second) = within_a_minute(both).await;
        assert!(matches!(first.map(|_| ()), Err(Error::Connect { .. })));
        assert!(matches!(second.map(|_| ()), Err(Error::Connect { .. })));
    });
}

#[test]
fn a_response_dropped_half_read_does_not_go_back_to_the_pool() {
    on_shard(|| async {
        let (addr, accepted) = serve(|_| async { ok("some body") });
        let client = Client::new(ClientConfig::default());
        drop(client.get(&url(addr, "/")).await.unwrap());
        client
            .get(&url(addr, "/"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(accepted.get(), 2);
    });
}

#[test]
fn a_server_that_does_not_answer_times_out() {
    on_shard(|| async {
        let (addr, _) = serve(|_| async {
            futures_lite::future::pending::<()>().await;
            ok("never")
        });
        let client = Client::new(ClientConfig {
            request_timeout: Duration::from_millis(100),
            ..ClientConfig::default()
        });
        match client.get(&url(addr, "/")).await {
            Err(Error::Timeout { during, .. }) => assert!(during.contains("response head")),
            other => panic!("expected a timeout, got {:?}", other.map(|r| r.status())),
        }
    });
}

#[test]
fn a_closed_port_is_a_connect_error() {
    on_shard(|| async {
        // Bind, learn the port, close: nothing listens there any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client::new(ClientConfig::default());
        match client.get(&url(addr, "/")).await {
            Err(Error::Connect { authority, .. }) => assert_eq!(authority, addr.to_string()),
            other => panic!(
                "expected a connect error, got {:?}",
                other.map(|r| r.status())
            ),
        }
    });
}

/// A raw TCP server that answers one request with `reply` and closes.
fn raw_server(reply: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    glommio::spawn_local(async move {
        let mut stream = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await.unwrap();
        stream.write_all(reply).await.unwrap();
        stream.close().await.unwrap();
    })
    .detach();
    addr
}

#[test]
fn a_server_closing_mid_body_is_a_body_error() {
    on_shard(|| async {
        let addr = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part");
        let client = Client::new(ClientConfig::default());
        let response = client.get(&url(addr, "/")).await.unwrap();
        assert!(matches!(response.bytes().await, Err(Error::Body(_))));
    });
}

/// A client that accepts bodies of at most 100 bytes.
fn bounded_to_100_bytes() -> Client {
    Client::new(ClientConfig {
        max_body_bytes: 100,
        ..ClientConfig::default()
    })
}

#[test]
fn a_declared_oversize_body_is_refused_before_reading() {
    on_shard(|| async {
        let addr = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        let client = bounded_to_100_bytes();
        assert!(matches!(
            client.get(&url(addr, "/")).await.map(|_| ()),
            Err(Error::TooLarge { limit: 100 })
        ));
    });
}

#[test]
fn a_chunked_body_growing_past_the_bound_is_refused() {
    on_shard(|| async {
        let addr = raw_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n\
              40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n\
              0\r\n\r\n",
        );
        let client = bounded_to_100_bytes();
        let response = client.get(&url(addr, "/")).await.unwrap();
        assert!(matches!(
            response.bytes().await,
            Err(Error::TooLarge { limit: 100 })
        ));
    });
}

#[test]
fn a_streamed_body_arrives_piece_by_piece() {
    on_shard(|| async {
        let addr = raw_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n",
        );
        let client = Client::new(ClientConfig::default());
        let mut response = client.get(&url(addr, "/")).await.unwrap();
        let mut all = Vec::new();
        while let Some(piece) = response.chunk().await {
            all.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(all, b"firstsecond");
    });
}

#[test]
fn a_whole_body_is_joined_in_order_from_any_number_of_pieces() {
    on_shard(|| async {
        let client = Client::new(ClientConfig::default());
        for (reply, body) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
                &b""[..],
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none", b"one"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n0\r\n\r\n",
                b"abcdef",
            ),
        ] {
            let response = client.get(&url(raw_server(reply), "/")).await.unwrap();
            assert_eq!(response.bytes().await.unwrap(), body);
        }
    });
}

#[test]
fn a_body_many_reads_long_arrives_intact() {
    on_shard(|| async {
        // 200 KiB: many reads through the connection's one read buffer.
        let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        let mut reply =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        reply.extend_from_slice(&body);
        let addr = raw_server(Vec::leak(reply));
        let client = Client::new(ClientConfig::default());
        let response = client.get(&url(addr, "/")).await.unwrap();
        assert_eq!(response.bytes().await.unwrap(), body);
    });
}

#[test]
fn error_for_status_turns_a_5xx_into_a_status_error() {
    on_shard(|| async {
        let (addr, _) = serve(|_| async {
            let mut response = ok("down");
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            response
        });
        let client = Client::new(ClientConfig::default());
        let response = client.get(&url(addr, "/")).await.unwrap();
        assert!(matches!(
            response.error_for_status(),
            Err(Error::Status { status }) if status == http::StatusCode::SERVICE_UNAVAILABLE
        ));
    });
}

#[test]
fn http2_multiplexes_concurrent_requests_on_one_connection() {
    on_shard(|| async {
        let (addr, accepted) = serve(|request| async move {
            assert_eq!(request.version(), http::Version::HTTP_2);
            ok("over h2")
        });
        let client = Client::new(ClientConfig {
            http2: true,
            ..ClientConfig::default()
        });
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let client = client.clone();
                let target = url(addr, "/");
                glommio::spawn_local(async move {
                    let response = client.get(&target).await.unwrap();
                    assert_eq!(response.version(), http::Version::HTTP_2);
                    response.bytes().await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await, Bytes::from_static(b"over h2"));
        }
        assert_eq!(accepted.get(), 1);
        assert_eq!(client.stats().connections_opened, 1);
    });
}

#[test]
fn https_with_a_self_signed_certificate_trusted_by_the_test() {
    on_shard(|| async {
        let (tls, roots) = support::self_signed();
        let server = Server::bind(support::loopback()).unwrap().with_tls(tls);
        let (addr, _) = serve_on(server, |_| async { ok("secret") });
        let target = format!("https://localhost:{}/", addr.port());
        for http2 in [false, true] {
            let client = Client::new(ClientConfig {
                http2,
                tls_roots: Some(roots.clone()),
                ..ClientConfig::default()
            });
            let response = client.get(&target).await.unwrap();
            let expected = if http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            };
            assert_eq!(response.version(), expected);
            assert_eq!(response.bytes().await.unwrap(), "secret");
        }
        // The default roots (webpki) do not know this certificate.
        let untrusting = Client::new(ClientConfig::default());
        assert!(matches!(
            untrusting.get(&target).await.map(|_| ()),
            Err(Error::Connect { .. })
        ));
    });
}

#[test]
fn an_https_server_declining_h2_is_spoken_to_over_the_http1_pool() {
    on_shard(|| async {
        let (tls, roots) = support::self_signed();
        let mut h1_only = (*tls).clone();
        h1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server = Server::bind(support::loopback())
            .unwrap()
            .with_tls(std::sync::Arc::new(h1_only));
        let (addr, accepted) = serve_on(server, |_| async { ok("plain") });
        let target = format!("https://localhost:{}/", addr.port());
        let client = Client::new(ClientConfig {
            http2: true,
            tls_roots: Some(roots),
            ..ClientConfig::default()
        });
        for _ in 0..3 {
            let response = client.get(&target).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_11);
            assert_eq!(response.bytes().await.unwrap(), "plain");
        }
        // The connection dialled to learn the protocol is pooled and reused.
        assert_eq!(accepted.get(), 1);
        assert_eq!(client.stats().connections_opened, 1);
    });
}
