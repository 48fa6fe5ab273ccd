//! Shared helpers of the myriad-http integration tests: a shard to run on
//! and tiny loopback servers.

#![allow(dead_code)] // each test file uses its own subset

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use myriad_http::server::Server;

/// Runs `make()` to completion on a fresh glommio shard with a modest
/// `io_memory` (the test machine's locked-memory limit is small).
pub fn on_shard<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .spawn(make)
        .expect("a glommio shard starts")
        .join()
        .expect("the test shard did not panic");
}

/// A loopback server on this shard answering every request with
/// `handler(request)`; returns its address and its accepted-connection count.
pub fn serve<H, Fut>(handler: H) -> (SocketAddr, Rc<Cell<u64>>)
where
    H: Fn(http::Request<Incoming>) -> Fut + Clone + 'static,
    Fut: Future<Output = http::Response<Full<Bytes>>> + 'static,
{
    serve_on(Server::bind(loopback()).expect("bind loopback"), handler)
}

/// Like [`serve`], on an already configured server (e.g. with TLS).
pub fn serve_on<H, Fut>(server: Server, handler: H) -> (SocketAddr, Rc<Cell<u64>>)
where
    H: Fn(http::Request<Incoming>) -> Fut + Clone + 'static,
    Fut: Future<Output = http::Response<Full<Bytes>>> + 'static,
{
    let addr = server.local_addr().expect("bound address");
    let accepted = server.accepted();
    let service = hyper::service::service_fn(move |request| {
        let response = handler(request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    glommio::spawn_local(server.serve(service)).detach();
    (addr, accepted)
}

/// `127.0.0.1:0`.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A `200 OK` with `body`.
pub fn ok(body: &'static str) -> http::Response<Full<Bytes>> {
    http::Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

/// A self-signed certificate for `localhost`: the server's TLS
/// configuration (ALPN h2 + http/1.1) and a root store that trusts it.
pub fn self_signed() -> (Arc<rustls::ServerConfig>, Arc<rustls::RootCertStore>) {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("rcgen makes a certificate");
    let cert = issued.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        issued.key_pair.serialize_der(),
    ));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("default versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .expect("the key matches the certificate");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("the certificate is a valid root");
    (Arc::new(server), Arc::new(roots))
}
