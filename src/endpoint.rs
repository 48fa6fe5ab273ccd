//! The metrics endpoint: `GET /metrics` in the Prometheus text format,
//! served from shard 0 by `myriad-http`'s server, installed into a
//! [`NodeConfig`] as a plugin service (the engine knows nothing of HTTP).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use myriad_engine::plugin::{Service, ShardHandle};
use myriad_engine::NodeConfig;
use myriad_http::server::Server;

use crate::prometheus;

/// The shard that serves the endpoint.
const SERVING_SHARD: usize = 0;

/// Adds the metrics endpoint to a [`NodeConfig`].
pub trait MetricsListen: Sized {
    /// Serves the node's metrics ([`NodeHandle::metrics`] in the
    /// Prometheus text format) on `GET /metrics` at `addr`, from shard 0.
    ///
    /// Binds `addr` now, so that an address in use is an error here, and
    /// returns the configuration with the address bound (the real port of
    /// port 0). Start one node with the configuration: a second node
    /// started from it has no listener left, and logs so.
    ///
    /// ```no_run
    /// use myriad::{MetricsListen, Node, NodeConfig};
    ///
    /// let (config, addr) = NodeConfig::default().metrics_listen("0.0.0.0:9464".parse()?)?;
    /// let node = Node::spawn(config)?;
    /// println!("curl http://{addr}/metrics");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`NodeHandle::metrics`]: myriad_engine::NodeHandle::metrics
    fn metrics_listen(self, addr: SocketAddr) -> std::io::Result<(Self, SocketAddr)>;
}

impl MetricsListen for NodeConfig {
    fn metrics_listen(self, addr: SocketAddr) -> std::io::Result<(Self, SocketAddr)> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let listener = Mutex::new(Some(listener));
        let config = self.service(Arc::new(move |shard: ShardHandle| {
            if shard.index() != SERVING_SHARD {
                return None;
            }
            let taken = listener.lock().unwrap_or_else(|p| p.into_inner()).take();
            let Some(listener) = taken else {
                tracing::error!(%bound, "this metrics_listen configuration was already used by another node: no metrics endpoint");
                return None;
            };
            Some(Endpoint::start(shard, listener) as Rc<dyn Service>)
        }));
        Ok((config, bound))
    }
}

/// The endpoint's task on its shard, and how to stop it.
struct Endpoint {
    /// Dropped to stop the server (see `Server::stop_on`).
    stop: RefCell<Option<flume::Sender<()>>>,
    task: RefCell<Option<glommio::task::JoinHandle<()>>>,
}

impl Endpoint {
    fn start(shard: ShardHandle, listener: TcpListener) -> Rc<Self> {
        let (stop, stopped) = flume::bounded(1);
        let server = Server::from_std(listener).stop_on(stopped);
        let service = hyper::service::service_fn(move |request| {
            let shard = shard.clone();
            async move { Ok::<_, Infallible>(answer(&shard, request).await) }
        });
        let task = glommio::spawn_local(async move {
            if let Err(e) = server.serve(service).await {
                tracing::error!("the metrics endpoint stopped accepting: {e}");
            }
        })
        .detach();
        Rc::new(Endpoint {
            stop: RefCell::new(Some(stop)),
            task: RefCell::new(Some(task)),
        })
    }
}

impl Service for Endpoint {
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        self.stop.borrow_mut().take();
        let task = self.task.borrow_mut().take();
        Box::pin(async move {
            if let Some(task) = task {
                task.await;
            }
            // Connection tasks were woken by the same stop: let them end.
            futures_lite::future::yield_now().await;
        })
    }
}

type Response = http::Response<Full<Bytes>>;

async fn answer(shard: &ShardHandle, request: http::Request<Incoming>) -> Response {
    if request.uri().path() != "/metrics" {
        return plain(http::StatusCode::NOT_FOUND, "only GET /metrics is served\n");
    }
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "only GET /metrics is served\n",
        );
    }
    match shard.metrics().await {
        Ok(metrics) => http::Response::builder()
            .header(http::header::CONTENT_TYPE, prometheus::CONTENT_TYPE)
            .body(Full::new(Bytes::from(prometheus::render(&metrics))))
            .unwrap_or_else(|_| plain(http::StatusCode::INTERNAL_SERVER_ERROR, "")),
        Err(e) => plain(
            http::StatusCode::SERVICE_UNAVAILABLE,
            &format!("metrics unavailable: {e}\n"),
        ),
    }
}

fn plain(status: http::StatusCode, text: &str) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}
