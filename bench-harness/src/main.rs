//! `bench-harness`: one command that answers "how many workers does this
//! server hold, how fast do they talk, at what latency and memory", with the
//! standard actor workloads so that the figures compare with other actor
//! systems. `bench-harness --help` lists the workloads; `docs/performance.md`
//! explains them and the `--json` fields.

mod cli;
mod harness;
mod html_report;
mod json;
mod latency_feed;
// The same subscriber as the examples': RUST_LOG, to stderr.
#[path = "../../examples/support/logging.rs"]
mod logging;
mod machine;
mod memory;
mod monitor;
mod node_metrics;
mod progress;
mod report;
mod sampler;
mod serve_llm;
mod table;
mod workloads;

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::html_report::Report;
use crate::json::JsonLines;
use crate::machine::Machine;
use crate::monitor::Monitor;

fn main() -> ExitCode {
    let settings = cli::parse();
    // --quiet keeps stderr for what needs a look (warnings and errors).
    logging::init(if settings.quiet { "warn" } else { "info" });
    if let Some(cli::Tool::ServeLlm(args)) = settings.tool {
        return serve_llm::run(args);
    }
    let mut json = open_or_exit("--json", settings.json.as_deref(), JsonLines::create);
    let report = open_or_exit("--report", settings.report.as_deref(), |p| File::create(p));
    harness::install_panic_hook();
    progress::set_enabled(!settings.quiet);
    if progress::enabled() {
        eprintln!(
            "bench-harness: {} actors, {} shards, workloads: {}",
            settings.actors,
            settings.shards,
            settings
                .workloads
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let options = monitor::Options {
        progress: progress::enabled(),
        live: settings.live,
        keep: report.is_some(),
    };
    let mut rows = Vec::new();
    let mut series = Vec::new();
    let mut errors = Vec::new();
    for workload in &settings.workloads {
        let start = Instant::now();
        let monitor = Monitor::start(workload.name(), options);
        let result = workload.run(&settings);
        series.push(monitor.stop());
        match result {
            Ok(new) => {
                if progress::enabled() {
                    eprintln!("{workload}: done in {:.1} s", start.elapsed().as_secs_f64());
                }
                if let Some(Err(e)) = json.as_mut().map(|j| j.write(&new)) {
                    let error = format!("error: writing --json: {e}");
                    eprintln!("{error}");
                    errors.push(error);
                }
                rows.extend(new);
            }
            Err(e) => {
                let error = format!("error: {workload}: {e}");
                eprintln!("{error}");
                errors.push(error);
            }
        }
    }
    print!("{}", table::render(&rows));
    let mut failed = !errors.is_empty();
    if let Some(file) = report {
        let report = Report {
            machine: &Machine::this(),
            settings: &settings,
            command: &command_line(),
            rows: &rows,
            series: &series,
            errors: &errors,
        };
        if let Err(e) = write_report(file, &report) {
            eprintln!("error: writing --report: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Opens the file of option `flag` at `path`, if given; a file that cannot
/// be written is a usage error (exit code 2) before anything runs.
fn open_or_exit<T>(
    flag: &str,
    path: Option<&Path>,
    open: impl FnOnce(&Path) -> io::Result<T>,
) -> Option<T> {
    let path = path?;
    match open(path) {
        Ok(file) => Some(file),
        Err(e) => {
            let msg = format!("cannot write {flag} file {}: {e}", path.display());
            cli::Cli::command()
                .error(ErrorKind::ValueValidation, msg)
                .exit()
        }
    }
}

/// Renders `report` into `file`.
fn write_report(mut file: File, report: &Report) -> io::Result<()> {
    let html = report.render().map_err(io::Error::other)?;
    file.write_all(html.as_bytes())?;
    file.flush()
}

/// The command line as typed (arguments joined by spaces).
fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
