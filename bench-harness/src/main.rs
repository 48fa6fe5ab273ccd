//! `bench-harness`: one command that answers "how many workers does this
//! server hold, how fast do they talk, at what latency and memory", with the
//! standard actor workloads so that the figures compare with other actor
//! systems. `bench-harness --help` lists the workloads; `docs/performance.md`
//! explains them and the `--json` fields.

mod cli;
mod harness;
mod json;
// The same subscriber as the examples': RUST_LOG, to stderr.
#[path = "../../examples/support/logging.rs"]
mod logging;
mod memory;
mod progress;
mod report;
mod serve_llm;
mod table;
mod workloads;

use std::process::ExitCode;
use std::time::Instant;

use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::json::JsonLines;

fn main() -> ExitCode {
    let settings = cli::parse();
    // --quiet keeps stderr for what needs a look (warnings and errors).
    logging::init(if settings.quiet { "warn" } else { "info" });
    if let Some(cli::Tool::ServeLlm(args)) = settings.tool {
        return serve_llm::run(args);
    }
    let mut json = match settings.json.as_deref().map(JsonLines::create).transpose() {
        Ok(json) => json,
        Err(e) => {
            let msg = format!("cannot write --json file: {e}");
            cli::Cli::command()
                .error(ErrorKind::ValueValidation, msg)
                .exit()
        }
    };
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
    let mut rows = Vec::new();
    let mut failed = false;
    for workload in &settings.workloads {
        let start = Instant::now();
        match workload.run(&settings) {
            Ok(new) => {
                if progress::enabled() {
                    eprintln!("{workload}: done in {:.1} s", start.elapsed().as_secs_f64());
                }
                if let Some(Err(e)) = json.as_mut().map(|j| j.write(&new)) {
                    eprintln!("error: writing --json: {e}");
                    failed = true;
                }
                rows.extend(new);
            }
            Err(e) => {
                eprintln!("error: {workload}: {e}");
                failed = true;
            }
        }
    }
    print!("{}", table::render(&rows));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
