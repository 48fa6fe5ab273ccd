//! Logging for the examples and bench-harness: `tracing` events go to
//! stderr, filtered by `RUST_LOG` (default `info` for the examples), so a refused handshake, a dropped link or a
//! handler that returned `Err` shows. A library user installs a subscriber
//! of their own the same way; Myriad itself never installs one.

/// Installs the subscriber with `default` as the filter when `RUST_LOG` is
/// unset (e.g. `"info"`); call once, first thing in `main`.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
