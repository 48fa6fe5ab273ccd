//! A `tracing` subscriber whose output the test reads back: what the
//! engine logs (from any thread) as text.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything logged since [`CapturedLog::install`], as text.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// Installs the process's subscriber (once per test binary), keeping
    /// what `filter` (`RUST_LOG` syntax) lets through.
    pub fn install(filter: &str) -> Self {
        let log = CapturedLog::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_env_filter(filter)
            .init();
        log
    }

    /// The lines logged so far that contain `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        let all = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        all.lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}
