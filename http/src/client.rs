//! The HTTP client of a shard: pooled HTTP/1.1 and HTTP/2 over glommio.
//!
//! A [`Client`] belongs to one shard (it is `!Send`); clone it freely within
//! the shard (clones share the pool). It keeps, per origin (scheme, host,
//! port):
//!
//! * **HTTP/1.1**: idle keep-alive connections, at most
//!   [`ClientConfig::max_connections_per_host`] open at once. A request takes
//!   an idle connection or opens one while under the cap, and otherwise waits
//!   in line. A connection comes back when its response body has been read
//!   to the end, and goes straight to the request that has waited longest
//!   (a fair hand-off, see the `handoff` module); a response dropped half-read
//!   closes it, and the waiter then opens a new one.
//! * **HTTP/2** ([`ClientConfig::http2`]): one connection that multiplexes all
//!   requests (prior knowledge for `http`, ALPN for `https`; an `https` server
//!   that declines h2 is then spoken to over the HTTP/1.1 pool).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use crate::connect::{self, Origin, Scheme};
use crate::handoff::{Pool, Reusable, Slot};
use crate::io::{with_timeout, HyperIo, LocalExec};
use crate::Error;

/// The request body type the client sends.
type ReqBody = Full<Bytes>;

/// How a [`Client`] connects, pools and bounds its exchanges.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Deadline for DNS + TCP + TLS + HTTP handshake of a new connection.
    pub connect_timeout: Duration,
    /// Deadline for the response head after a request is sent, and for each
    /// following piece of the body.
    pub request_timeout: Duration,
    /// An idle connection older than this is not reused (it is closed when
    /// the pool next looks at it).
    pub idle_timeout: Duration,
    /// Most HTTP/1.1 connections open at once to one origin.
    pub max_connections_per_host: usize,
    /// Largest response body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Speak HTTP/2: prior knowledge on `http`, offered by ALPN on `https`.
    pub http2: bool,
    /// Roots trusted for `https`; `None` trusts the webpki roots (Mozilla's).
    pub tls_roots: Option<Arc<rustls::RootCertStore>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(90),
            max_connections_per_host: 64,
            max_body_bytes: 16 << 20,
            http2: false,
            tls_roots: None,
        }
    }
}

/// Connection counts of a [`Client`], for tests and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Connections open now.
    pub open_connections: usize,
    /// Connections opened since the client was made.
    pub connections_opened: u64,
}

/// A shard's HTTP client (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    config: ClientConfig,
    tls: Arc<rustls::ClientConfig>,
    hosts: RefCell<HashMap<Origin, Rc<HostPool>>>,
    counts: Rc<Counts>,
}

#[derive(Default)]
struct Counts {
    open: Cell<usize>,
    opened: Cell<u64>,
}

/// The connections of one origin.
struct HostPool {
    origin: Origin,
    /// One slot per HTTP/1.1 connection, idle or lent to a request, so open
    /// h1 connections never exceed the cap; handed on in order of arrival.
    h1: Rc<Pool<IdleConn>>,
    h2: RefCell<Option<http2::SendRequest<ReqBody>>>,
    /// Held while dialling the h2 connection, so concurrent requests share it.
    h2_dial: Semaphore,
    /// The origin declined h2 in ALPN: use the HTTP/1.1 pool.
    h1_only: Cell<bool>,
}

/// An HTTP/1.1 connection between two requests.
struct IdleConn {
    sender: http1::SendRequest<ReqBody>,
    /// Past this it is not reused (the configured idle timeout).
    expires: Instant,
}

impl IdleConn {
    fn new(sender: http1::SendRequest<ReqBody>, idle_timeout: Duration) -> Self {
        Self {
            sender,
            expires: Instant::now() + idle_timeout,
        }
    }
}

impl Reusable for IdleConn {
    fn reusable(&self) -> bool {
        !self.sender.is_closed() && Instant::now() <= self.expires
    }
}

enum Conn {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

thread_local! {
    static SHARD_DEFAULT: Client = Client::new(ClientConfig::default());
}

impl Client {
    /// A client with its own, empty pool.
    pub fn new(config: ClientConfig) -> Self {
        let tls = connect::tls_config(config.tls_roots.clone(), config.http2);
        Self {
            inner: Rc::new(Inner {
                config,
                tls,
                hosts: RefCell::default(),
                counts: Rc::default(),
            }),
        }
    }

    /// This shard's shared client with the default configuration (one per
    /// thread, made on first use).
    pub fn shard_default() -> Self {
        SHARD_DEFAULT.with(Client::clone)
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// How many connections are open and have been opened.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            open_connections: self.inner.counts.open.get(),
            connections_opened: self.inner.counts.opened.get(),
        }
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        let request = http::Request::get(url)
            .body(Bytes::new())
            .map_err(|e| url_error(url, e))?;
        self.send(request).await
    }

    /// Sends `request` (its URI must be absolute: `http://` or `https://`)
    /// and returns the response once its head has arrived; the body is read
    /// from the [`Response`]. Any status is returned as is; see
    /// [`Response::error_for_status`].
    pub async fn send(&self, request: http::Request<Bytes>) -> Result<Response, Error> {
        let origin = origin_of(request.uri())?;
        let host = self.host(origin);
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        if self.inner.config.http2 && !host.h1_only.get() {
            if let Some(sender) = self.h2_sender(&host).await? {
                return self.send_h2(&host, sender, request).await;
            }
        }
        self.send_h1(&host, origin_form(request)).await
    }

    fn host(&self, origin: Origin) -> Rc<HostPool> {
        let mut hosts = self.inner.hosts.borrow_mut();
        hosts
            .entry(origin)
            .or_insert_with_key(|origin| {
                Rc::new(HostPool {
                    origin: origin.clone(),
                    h1: Pool::new(self.inner.config.max_connections_per_host),
                    h2: RefCell::default(),
                    h2_dial: Semaphore::new(1),
                    h1_only: Cell::new(false),
                })
            })
            .clone()
    }

    async fn send_h1(
        &self,
        host: &HostPool,
        mut request: http::Request<ReqBody>,
    ) -> Result<Response, Error> {
        // Dropped on any early return (error, timeout, cancellation), the
        // slot goes on to the next waiter, which then dials.
        let mut slot = host.h1.acquire().await;
        loop {
            let (mut sender, reused) = match Self::ready_idle(&mut slot).await {
                Some(sender) => (sender, true),
                None => match self.dial(host).await? {
                    Conn::H1(sender) => (sender, false),
                    Conn::H2(_) => unreachable_h2(),
                },
            };
            let limit = self.inner.config.request_timeout;
            match with_timeout(limit, sender.try_send_request(request)).await {
                None => return Err(timeout("waiting for the response head", limit)),
                Some(Ok(response)) => {
                    let lease = Lease {
                        sender: Some(sender),
                        slot,
                        idle_timeout: self.inner.config.idle_timeout,
                        finished: false,
                    };
                    return Response::new(response, Some(lease), &self.inner.config);
                }
                Some(Err(mut failed)) => match failed.take_message() {
                    // A pooled connection closed as it was picked; the request
                    // never left, so it goes on a new connection.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Error::Http(failed.into_error())),
                },
            }
        }
    }

    /// The slot's pooled connection, once ready for a request; `None` if
    /// it came without one or the connection has failed since (dial then).
    async fn ready_idle(slot: &mut Slot<IdleConn>) -> Option<http1::SendRequest<ReqBody>> {
        let mut sender = slot.take()?.sender;
        sender.ready().await.ok()?;
        Some(sender)
    }

    async fn h2_sender(
        &self,
        host: &HostPool,
    ) -> Result<Option<http2::SendRequest<ReqBody>>, Error> {
        if let Some(sender) = host.live_h2() {
            return Ok(Some(sender));
        }
        let _turn = host
            .h2_dial
            .acquire_permit(1)
            .await
            .expect("a pool never closes its semaphore");
        if let Some(sender) = host.live_h2() {
            return Ok(Some(sender));
        }
        match self.dial(host).await? {
            Conn::H2(sender) => {
                *host.h2.borrow_mut() = Some(sender.clone());
                Ok(Some(sender))
            }
            Conn::H1(sender) => {
                host.h1_only.set(true);
                host.h1
                    .offer(IdleConn::new(sender, self.inner.config.idle_timeout));
                Ok(None)
            }
        }
    }

    async fn send_h2(
        &self,
        host: &HostPool,
        mut sender: http2::SendRequest<ReqBody>,
        request: http::Request<ReqBody>,
    ) -> Result<Response, Error> {
        let limit = self.inner.config.request_timeout;
        let sent = with_timeout(limit, async {
            sender.ready().await?;
            sender.send_request(request).await
        })
        .await;
        if sender.is_closed() {
            host.h2.borrow_mut().take();
        }
        match sent {
            None => Err(timeout("waiting for the response head", limit)),
            Some(Err(e)) => Err(Error::Http(e)),
            Some(Ok(response)) => Response::new(response, None, &self.inner.config),
        }
    }

    /// [`connect`](Self::connect) in a box of its own. Dialling (DNS, TCP,
    /// TLS and HTTP handshakes) has far more state than a request on a pooled
    /// connection; held inline it would make every request's future, and the
    /// future of every caller that awaits one, that large, to be moved and
    /// allocated on each request. Boxed, it costs an allocation per dial.
    async fn dial(&self, host: &HostPool) -> Result<Conn, Error> {
        Box::pin(self.connect(host)).await
    }

    /// Opens a connection to the host's origin and starts its driver task.
    async fn connect(&self, host: &HostPool) -> Result<Conn, Error> {
        let limit = self.inner.config.connect_timeout;
        let prior_knowledge_h2 = self.inner.config.http2 && host.origin.scheme == Scheme::Http;
        let work = async {
            let (stream, alpn_h2) = connect::dial(&host.origin, &self.inner.tls).await?;
            let io = HyperIo::new(stream);
            if alpn_h2 || prior_knowledge_h2 {
                let (sender, conn) = http2::Builder::new(LocalExec)
                    .handshake(io)
                    .await
                    .map_err(std::io::Error::other)?;
                self.drive(conn);
                Ok(Conn::H2(sender))
            } else {
                let (sender, conn) = http1::handshake(io).await.map_err(std::io::Error::other)?;
                self.drive(conn);
                Ok(Conn::H1(sender))
            }
        };
        match with_timeout(limit, work).await {
            None => Err(timeout("connecting", limit)),
            Some(Err(source)) => Err(Error::Connect {
                authority: host.origin.authority(),
                source,
            }),
            Some(Ok(conn)) => Ok(conn),
        }
    }

    /// Runs a connection's driver on the shard, counting it while it lives.
    fn drive<F: std::future::Future + 'static>(&self, conn: F) {
        let counts = self.inner.counts.clone();
        counts.open.set(counts.open.get() + 1);
        counts.opened.set(counts.opened.get() + 1);
        glommio::spawn_local(async move {
            let _ = conn.await;
            counts.open.set(counts.open.get() - 1);
        })
        .detach();
    }
}

impl HostPool {
    fn live_h2(&self) -> Option<http2::SendRequest<ReqBody>> {
        self.h2
            .borrow()
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned()
    }
}

/// `connect` answers HTTP/1.1 unless h2 was configured or negotiated, and
/// `send_h1` runs only where neither holds.
fn unreachable_h2() -> ! {
    unreachable!("an HTTP/1.1 pool dialled an HTTP/2 connection")
}

/// A pooled HTTP/1.1 connection lent to one response, with its slot.
struct Lease {
    sender: Option<http1::SendRequest<ReqBody>>,
    slot: Slot<IdleConn>,
    idle_timeout: Duration,
    /// The body was read to its end: the connection can serve another request.
    finished: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The connection goes into the slot before the slot is handed on
        // (fields drop after this body), so the next request gets both; a
        // connection not finished is dropped (closed) and the slot goes bare.
        if let Some(sender) = self.sender.take() {
            if self.finished {
                self.slot.put(IdleConn::new(sender, self.idle_timeout));
            }
        }
    }
}

/// A response whose head has arrived; its body is read with [`chunk`]
/// (streaming) or [`bytes`] (whole), within the configured size bound.
///
/// [`chunk`]: Response::chunk
/// [`bytes`]: Response::bytes
pub struct Response {
    head: http::response::Parts,
    body: Incoming,
    received: usize,
    limit: usize,
    chunk_timeout: Duration,
    lease: Option<Lease>,
}

impl Response {
    fn new(
        response: http::Response<Incoming>,
        lease: Option<Lease>,
        config: &ClientConfig,
    ) -> Result<Self, Error> {
        let (head, body) = response.into_parts();
        let declared = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
            return Err(Error::TooLarge {
                limit: config.max_body_bytes,
            });
        }
        Ok(Self {
            head,
            body,
            received: 0,
            limit: config.max_body_bytes,
            chunk_timeout: config.request_timeout,
            lease,
        })
    }

    /// The status code.
    pub fn status(&self) -> http::StatusCode {
        self.head.status
    }

    /// The response headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.head.headers
    }

    /// The HTTP version the response came over.
    pub fn version(&self) -> http::Version {
        self.head.version
    }

    /// `Err(Error::Status)` unless the status is a success (2xx).
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.status().is_success() {
            Ok(self)
        } else {
            Err(Error::Status {
                status: self.status(),
            })
        }
    }

    /// The next piece of the body as it arrives, `None` at its end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, Error>> {
        loop {
            let frame = match with_timeout(self.chunk_timeout, self.body.frame()).await {
                None => {
                    return Some(Err(timeout(
                        "waiting for the response body",
                        self.chunk_timeout,
                    )))
                }
                Some(None) => {
                    if let Some(lease) = &mut self.lease {
                        lease.finished = true;
                    }
                    return None;
                }
                Some(Some(Err(e))) => return Some(Err(Error::Body(e))),
                Some(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            self.received += data.len();
            if self.received > self.limit {
                return Some(Err(Error::TooLarge { limit: self.limit }));
            }
            if !data.is_empty() {
                return Some(Ok(data));
            }
        }
    }

    /// The whole body. A body that arrives in one piece (the usual case
    /// for a small answer) is returned as it is, without a copy.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let Some(first) = self.chunk().await.transpose()? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.chunk().await.transpose()? else {
            return Ok(first);
        };
        let mut all = BytesMut::with_capacity(first.len() + second.len());
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        while let Some(piece) = self.chunk().await {
            all.extend_from_slice(&piece?);
        }
        Ok(all.freeze())
    }

    /// Takes the headers out (leaving none), for a caller that keeps them
    /// after the body is read.
    pub(crate) fn take_headers(&mut self) -> http::HeaderMap {
        std::mem::take(&mut self.head.headers)
    }
}

fn timeout(during: &'static str, limit: Duration) -> Error {
    Error::Timeout { during, limit }
}

fn url_error(url: impl ToString, reason: impl ToString) -> Error {
    Error::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// The origin an absolute URI names.
fn origin_of(uri: &http::Uri) -> Result<Origin, Error> {
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        Some(other) => return Err(url_error(uri, format!("unsupported scheme {other:?}"))),
        None => {
            return Err(url_error(
                uri,
                "the URL must be absolute (http:// or https://)",
            ))
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| url_error(uri, "no host"))?;
    let port = uri.port_u16().unwrap_or(match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    Ok(Origin {
        scheme,
        host: host.to_owned(),
        port,
    })
}

/// HTTP/1.1 wants the path in the request line and the authority in `Host`.
fn origin_form(mut request: http::Request<ReqBody>) -> http::Request<ReqBody> {
    let uri = request.uri().clone();
    if let Some(authority) = uri.authority() {
        if !request.headers().contains_key(http::header::HOST) {
            if let Ok(value) = http::HeaderValue::from_str(authority.as_str()) {
                request.headers_mut().insert(http::header::HOST, value);
            }
        }
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = http::Uri::from(path);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_default_their_ports_and_refuse_other_schemes() {
        let o = origin_of(&"https://api.example.com/v1".parse().unwrap()).unwrap();
        assert_eq!(
            (o.scheme, o.host.as_str(), o.port),
            (Scheme::Https, "api.example.com", 443)
        );
        let o = origin_of(&"http://[::1]:8080/".parse().unwrap()).unwrap();
        assert_eq!(
            (o.scheme, o.host.as_str(), o.port),
            (Scheme::Http, "[::1]", 8080)
        );
        assert!(matches!(
            origin_of(&"ftp://x/".parse().unwrap()),
            Err(Error::Url { .. })
        ));
        assert!(matches!(
            origin_of(&"/relative".parse().unwrap()),
            Err(Error::Url { .. })
        ));
    }

    #[test]
    fn a_request_future_does_not_hold_the_dial_inline() {
        let client = Client::new(ClientConfig::default());
        let url = "http://127.0.0.1:9/";
        let host = client.host(origin_of(&url.parse().unwrap()).unwrap());
        let send = client.send(http::Request::get(url).body(Bytes::new()).unwrap());
        let connect = client.connect(&host);
        assert!(
            std::mem::size_of_val(&send) < std::mem::size_of_val(&connect),
            "a request's future ({} bytes) holds the dial's ({} bytes)",
            std::mem::size_of_val(&send),
            std::mem::size_of_val(&connect)
        );
    }

    #[test]
    fn http1_requests_carry_the_path_and_a_host_header() {
        let request = http::Request::get("http://127.0.0.1:9/a?b=c")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let request = origin_form(request);
        assert_eq!(request.uri(), "/a?b=c");
        assert_eq!(request.headers()[http::header::HOST], "127.0.0.1:9");
    }
}
