//! # myriad-http
//!
//! HTTP from inside a Myriad shard, on the shard's own io_uring: a pooled
//! HTTP/1.1 and HTTP/2 [`Client`] (rustls for `https`), a small
//! [`server`] for HTTP services (the mock LLM, metrics endpoints), an
//! OpenAI-compatible [`llm`] client, and [`offload`] for the libraries that
//! exist only for tokio.
//!
//! Everything here except `offload` is `!Send` and belongs to the shard that
//! made it; hyper 1.x does the HTTP, over the adapters in [`io`].

mod client;
mod connect;
pub mod dns;
mod error;
mod handoff;
pub mod io;
pub mod llm;
pub mod offload;
pub mod server;

pub use client::{Client, ClientConfig, ClientStats, Response};
pub use connect::{Origin, Scheme};
pub use error::Error;
pub use offload::{offload, OffloadError};
