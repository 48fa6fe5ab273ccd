//! Logging for the examples: `tracing` events go to stderr, filtered by
//! `RUST_LOG` (default `info`), so a refused handshake, a dropped link or a
//! handler that returned `Err` shows. A library user installs a subscriber
//! of their own the same way; Myriad itself never installs one.

/// Installs the subscriber; call once, first thing in `main`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
