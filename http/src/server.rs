//! A small HTTP server on a shard: hyper's server connections (HTTP/1.1 or
//! HTTP/2, told apart per connection by hyper-util) over glommio's
//! `TcpListener`, optionally behind rustls.
//!
//! Each accepted connection runs as its own task on the shard that serves;
//! to serve on every shard, bind the same address on each (glommio sets
//! `SO_REUSEPORT`, so the kernel spreads connections across them).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpListener;
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::server::conn::auto;

use crate::io::{HyperIo, LocalExec};

/// The error type hyper accepts from services and bodies.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A listening socket and what it serves with.
pub struct Server {
    listener: TcpListener,
    tls: Option<futures_rustls::TlsAcceptor>,
    max_streams: Option<u32>,
    connection_window: Option<u32>,
    accepted: Rc<Cell<u64>>,
    stop: Option<flume::Receiver<()>>,
}

impl Server {
    /// Listens on `addr` (port 0 picks a free one) on the current shard.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self::on(TcpListener::bind(addr)?))
    }

    /// Serves on `listener`, a bound and listening socket (bound ahead of
    /// time, so that a bind error is reported before the shard starts and
    /// the real port of port 0 is known), from the current shard.
    #[allow(unsafe_code)]
    pub fn from_std(listener: std::net::TcpListener) -> Self {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: `into_raw_fd` gives up ownership of an open, bound,
        // listening TCP socket; glommio's listener takes ownership of exactly
        // that fd and is its only owner from now on.
        Self::on(unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) })
    }

    /// A server on `listener`, with hyper's defaults.
    fn on(listener: TcpListener) -> Self {
        Self {
            listener,
            tls: None,
            max_streams: None,
            connection_window: None,
            accepted: Rc::default(),
            stop: None,
        }
    }

    /// Serves `https` with this rustls configuration (set its ALPN to
    /// `h2`, `http/1.1` to offer both).
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(futures_rustls::TlsAcceptor::from(config));
        self
    }

    /// Most concurrent HTTP/2 streams (requests) per connection; hyper's
    /// default is 200, which caps a client that multiplexes on one
    /// connection at 200 requests in flight.
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_streams = Some(streams);
        self
    }

    /// The HTTP/2 connection-level flow-control window, in bytes (hyper's
    /// default is 1 MiB). With thousands of requests in flight on one
    /// connection a small window hands each request body out in slivers,
    /// and h2 closes a connection that receives too many small DATA frames.
    pub fn connection_window(mut self, bytes: u32) -> Self {
        self.connection_window = Some(bytes);
        self
    }

    /// Serves until `stop`'s sender sends or is dropped: then the listener
    /// closes and every connection being served ends too (a task of the
    /// shard left waiting on a kept-alive connection would keep its socket
    /// open after the shard stops).
    pub fn stop_on(mut self, stop: flume::Receiver<()>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr().map_err(Into::into)
    }

    /// A live count of the connections accepted so far.
    pub fn accepted(&self) -> Rc<Cell<u64>> {
        self.accepted.clone()
    }

    /// Accepts connections, serving each with a clone of `service`.
    /// Returns if accepting fails, or once told to stop (see
    /// [`stop_on`](Self::stop_on)).
    pub async fn serve<S, B>(self, service: S) -> std::io::Result<()>
    where
        S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + 'static,
        S::Future: 'static,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let mut builder = auto::Builder::new(LocalExec);
        if let Some(streams) = self.max_streams {
            builder.http2().max_concurrent_streams(streams);
        }
        if let Some(bytes) = self.connection_window {
            builder.http2().initial_connection_window_size(bytes);
        }
        let builder = Rc::new(builder);
        // Without a stop, a sender kept here means "never".
        let (_never, never) = flume::bounded(1);
        let stop = self.stop.clone().unwrap_or(never);
        loop {
            let accepted =
                futures_lite::future::or(async { Some(self.listener.accept().await) }, async {
                    // Sent or disconnected: either way, stop.
                    let _ = stop.recv_async().await;
                    None
                });
            let Some(stream) = accepted.await else {
                return Ok(());
            };
            let stream = stream?;
            self.accepted.set(self.accepted.get() + 1);
            // Refused only on a closed socket, which the accept just proved open.
            let _ = stream.set_nodelay(true);
            let (builder, service, tls) = (builder.clone(), service.clone(), self.tls.clone());
            let stop = stop.clone();
            let connection = async move {
                match tls {
                    None => serve_connection(&builder, stream, service).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => serve_connection(&builder, stream, service).await,
                        Err(e) => tracing::debug!("TLS handshake failed: {e}"),
                    },
                }
            };
            glommio::spawn_local(futures_lite::future::or(connection, async move {
                let _ = stop.recv_async().await;
            }))
            .detach();
        }
    }
}

async fn serve_connection<I, S, B>(builder: &auto::Builder<LocalExec>, io: I, service: S)
where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if let Err(e) = builder.serve_connection(HyperIo::new(io), service).await {
        tracing::debug!("HTTP connection ended with an error: {e}");
    }
}
