//! The errors of the HTTP client.

use std::time::Duration;

/// What went wrong with an HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL cannot be used (no host, unknown scheme, bad syntax).
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A deadline passed: connecting, waiting for the response head, or
    /// waiting for the next piece of the body.
    #[error("timeout after {limit:?} while {during}")]
    Timeout {
        /// What the client was waiting for.
        during: &'static str,
        /// The deadline that passed.
        limit: Duration,
    },
    /// No connection could be made (DNS, TCP, TLS or the HTTP handshake).
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port` the client tried.
        authority: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The server answered with a status that is not a success.
    #[error("HTTP status {status}")]
    Status {
        /// The status received.
        status: http::StatusCode,
    },
    /// The exchange broke after the connection was made (the server closed
    /// it, or sent something that is not HTTP).
    #[error("HTTP exchange failed: {0}")]
    Http(#[source] hyper::Error),
    /// The response body broke off or could not be read.
    #[error("response body: {0}")]
    Body(#[source] hyper::Error),
    /// The response body is larger than the configured bound.
    #[error("response body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The bound (`ClientConfig::max_body_bytes`).
        limit: usize,
    },
}
