//! Glue between glommio and hyper: byte streams and a task spawner.
//!
//! glommio's sockets (and rustls over them, through futures-rustls) speak the
//! `futures-io` traits; hyper 1.x speaks its own `hyper::rt::{Read, Write}`.
//! [`HyperIo`] converts one into the other. [`LocalExec`] is the executor
//! hyper's HTTP/2 side needs for its background tasks: it spawns them on the
//! current shard, so none of them needs to be `Send`.
//!
//! No `hyper::rt::Timer` is provided: hyper requires its sleeps to be
//! `Send + Sync`, which glommio's timers are not. Every deadline in this crate
//! is therefore enforced outside hyper, with glommio timers (see
//! [`with_timeout`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};

/// Largest chunk moved by one [`HyperIo`] read.
const READ_CHUNK: usize = 16 * 1024;

/// A `futures-io` stream presented to hyper as `hyper::rt::{Read, Write}`.
///
/// hyper hands out uninitialised memory to read into, and a `futures-io`
/// read needs an initialised slice, so each read goes into a buffer of the
/// connection's own, zeroed once when the first read comes, and the bytes
/// read are copied on. (Zeroing a fresh buffer on every read, even one that
/// finds nothing to read, cost more instructions than all of hyper.)
#[derive(Debug)]
pub struct HyperIo<T> {
    inner: T,
    scratch: Vec<u8>,
}

impl<T> HyperIo<T> {
    /// Wraps a stream.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            scratch: Vec::new(),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.scratch.is_empty() {
            this.scratch = vec![0; READ_CHUNK];
        }
        let want = buf.remaining().min(READ_CHUNK);
        match Pin::new(&mut this.inner).poll_read(cx, &mut this.scratch[..want]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&this.scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// hyper's executor for background work (HTTP/2 connection tasks): spawns
/// each future as a detached task on the current glommio shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        glommio::spawn_local(fut).detach();
    }
}

/// Runs `fut` for at most `limit` on a glommio timer: `None` if it did not
/// finish in time (it is then dropped).
///
/// The limit counts from the first poll that finds `fut` not ready, and only
/// then is the timer made: a future ready at once (the body of a response
/// already read, say) costs no timer, no clock read and no allocation.
pub async fn with_timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut timer: Option<glommio::timer::Timer> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let timer = timer.get_or_insert_with(|| glommio::timer::Timer::new(limit));
        Pin::new(timer).poll(cx).map(|_| None)
    })
    .await
}
