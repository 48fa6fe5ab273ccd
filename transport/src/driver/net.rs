//! Sockets: socket2 creates and tunes them (TCP_NODELAY, keepalive, buffer
//! sizes, SO_REUSEPORT), glommio's io_uring types then own them.
//!
//! Every shard listens on the same port: the listening sockets are all bound
//! (with SO_REUSEPORT) before the node starts, so a port of 0 resolves to one
//! ephemeral port shared by the whole node, and the kernel spreads incoming
//! connections over the shards. Accepted sockets inherit the listener's
//! options. Outgoing connections are made with a blocking `connect` on
//! glommio's blocking-thread pool (connecting is rare; tuning the socket
//! before it connects is what matters).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

/// How connections are tuned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketOptions {
    /// SO_SNDBUF and SO_RCVBUF, if set (the kernel default otherwise).
    pub(crate) buffer_size: Option<usize>,
    /// Idle time before TCP keepalive probes start.
    pub(crate) keepalive: Duration,
}

fn new_socket(addr: &SocketAddr, options: &SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(options.keepalive))?;
    if let Some(size) = options.buffer_size {
        socket.set_send_buffer_size(size)?;
        socket.set_recv_buffer_size(size)?;
    }
    Ok(socket)
}

/// Binds `count` listening sockets to one address (the first one picks the
/// port when `addr` has port 0).
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    options: &SocketOptions,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = new_socket(&bound, options)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SockAddr::from(bound))?;
        socket.listen(1024)?;
        if let Some(local) = socket.local_addr()?.as_socket() {
            bound = local;
        }
        listeners.push(TcpListener::from(socket));
    }
    Ok((listeners, bound))
}

/// Connects to `addr` (blocking: call it from a blocking thread).
pub(crate) fn connect(
    addr: SocketAddr,
    timeout: Duration,
    options: &SocketOptions,
) -> io::Result<TcpStream> {
    let socket = new_socket(&addr, options)?;
    socket.connect_timeout(&SockAddr::from(addr), timeout)?;
    Ok(TcpStream::from(socket))
}

/// Hands a listening socket to the current shard's io_uring.
#[allow(unsafe_code)]
pub(crate) fn glommio_listener(listener: TcpListener) -> glommio::net::TcpListener {
    // SAFETY: `into_raw_fd` gives up ownership of an open, bound, listening
    // TCP socket; glommio's listener takes ownership of exactly that fd and
    // is the only owner from now on.
    unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) }
}

/// Hands a connected socket to the current shard's io_uring.
#[allow(unsafe_code)]
pub(crate) fn glommio_stream(stream: TcpStream) -> glommio::net::TcpStream {
    // SAFETY: `into_raw_fd` gives up ownership of an open, connected TCP
    // socket; glommio's stream takes ownership of exactly that fd and is the
    // only owner from now on.
    unsafe { glommio::net::TcpStream::from_raw_fd(stream.into_raw_fd()) }
}
