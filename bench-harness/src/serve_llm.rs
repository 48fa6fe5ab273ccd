//! `bench-harness serve-llm`: the mock LLM (`myriad::llm::mock`) served on
//! every shard of this process, each shard listening on the same address
//! (`SO_REUSEPORT`), until the process is stopped.
//!
//! Prints `listening on http://ADDR/v1` on stdout once every shard listens
//! (with `--listen` port 0, ADDR has the port the system picked), which is
//! how `--workload agents-http` finds the server it started.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use myriad::llm::mock::MockLlm;

/// `serve-llm`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeLlmArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Median delay before each answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub latency_ms: u64,
    /// Spread of the log-normal delay (sigma of its logarithm); 0 for a
    /// fixed delay.
    #[arg(long, value_name = "SIGMA", default_value_t = 0.5)]
    pub sigma: f64,
    /// Tokens in every answer.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub tokens: usize,
    /// Stream answers (server-sent events) unless a request says otherwise.
    #[arg(long)]
    pub stream: bool,
    /// Serving shards (default: every available core).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub shards: Option<u64>,
}

/// Serves until stopped; returns only if a shard cannot start or listen.
pub fn run(args: ServeLlmArgs) -> ExitCode {
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: serve-llm on {}: {e}", args.listen);
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeLlmArgs) -> Result<(), String> {
    if !(args.sigma >= 0.0 && args.sigma.is_finite()) {
        return Err(format!(
            "--sigma {} must be a finite number ≥ 0",
            args.sigma
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let shards = args.shards.map_or(cores, |s| s as usize);
    let mock = MockLlm {
        latency: Duration::from_millis(args.latency_ms),
        sigma: args.sigma,
        tokens: args.tokens,
        stream_by_default: args.stream,
    };
    let serving = mock
        .serve_on_shards(args.listen, shards)
        .map_err(|e| e.to_string())?;
    println!("listening on http://{}/v1", serving.addr());
    eprintln!(
        "serve-llm: {shards} shards, median delay {} ms, sigma {}, {} tokens{}",
        args.latency_ms,
        args.sigma,
        args.tokens,
        if args.stream { ", streaming" } else { "" }
    );
    serving.join().map_err(|e| e.to_string())
}
