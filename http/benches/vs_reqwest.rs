//! Chat requests per second from many concurrent agents against one mock
//! LLM (0 ms delay) in a child process: myriad-http's client on glommio
//! shards against a plain tokio + reqwest client on as many tokio worker
//! threads, HTTP/1.1 (pooled) and HTTP/2, three interleaved rounds, medians.
//!
//! ```text
//! cargo bench -p myriad-http --bench vs_reqwest              # 10,000 agents x 10 requests
//! cargo bench -p myriad-http --bench vs_reqwest -- 1000 20
//! ```
//!
//! Every request is the same POST of a chat-completion JSON body; every
//! answer is read whole and parsed as JSON. myriad-http caps HTTP/1.1 at 64
//! connections per shard; reqwest has no such cap and opens what its
//! concurrency asks for.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use myriad_http::llm::mock::MockLlm;
use myriad_http::{Client, ClientConfig};

const SHARDS: usize = 2;
const ROUNDS: usize = 3;
const SERVE: &str = "MYRIAD_VS_REQWEST_SERVE";
const BODY: &str =
    r#"{"model":"mock","messages":[{"role":"user","content":"plan the next step"}]}"#;

/// One variant: (url, agents, requests per agent, http2) -> time taken.
type Run = fn(&str, usize, usize, bool) -> Duration;

fn main() {
    if std::env::var_os(SERVE).is_some() {
        return serve();
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let agents = args.first().copied().unwrap_or(10_000);
    let per_agent = args.get(1).copied().unwrap_or(10);
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env(SERVE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the mock");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the mock's address");
    let url = format!("http://{}/v1/chat/completions", line.trim());
    println!("{agents} agents x {per_agent} requests, mock at {url}, {SHARDS} threads each side");
    let variants: [(&str, Run, bool); 4] = [
        ("myriad-http h1", myriad, false),
        ("reqwest h1", reqwest, false),
        ("myriad-http h2", myriad, true),
        ("reqwest h2", reqwest, true),
    ];
    let mut rates = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for (i, (name, run, h2)) in variants.iter().enumerate() {
            let took = run(&url, agents, per_agent, *h2);
            let rate = (agents * per_agent) as f64 / took.as_secs_f64();
            println!("round {round}: {name:<15} {rate:>10.0} requests/s");
            rates[i].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = rates.iter_mut().map(median).collect();
    for (i, (name, _, _)) in variants.iter().enumerate() {
        println!("median: {name:<15} {:>10.0} requests/s", medians[i]);
    }
    println!(
        "ratio myriad-http / reqwest: h1 {:.2}x, h2 {:.2}x",
        medians[0] / medians[1],
        medians[2] / medians[3]
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The child process: the mock LLM on its own shards until killed.
fn serve() {
    let serving = MockLlm::default()
        .serve_on_shards("127.0.0.1:0".parse().expect("an address"), SHARDS)
        .expect("the mock serves");
    println!("{}", serving.addr());
    serving.join().expect("the mock keeps serving");
}

fn request(url: &str) -> http::Request<Bytes> {
    http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from_static(BODY.as_bytes()))
        .expect("a valid request")
}

fn check(body: &[u8]) {
    let reply: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    assert!(
        reply["choices"][0]["message"]["content"].is_string(),
        "{reply}"
    );
}

/// myriad-http: one client per glommio shard, agents as tasks.
fn myriad(url: &str, agents: usize, per_agent: usize, http2: bool) -> Duration {
    let start = Arc::new(Barrier::new(SHARDS + 1));
    let shards: Vec<_> = (0..SHARDS)
        .map(|shard| {
            let (url, start) = (url.to_owned(), start.clone());
            let share = agents / SHARDS + usize::from(shard < agents % SHARDS);
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(256 << 10)
                .spawn(move || async move {
                    let client = Client::new(ClientConfig {
                        http2,
                        ..ClientConfig::default()
                    });
                    start.wait();
                    let tasks: Vec<_> = (0..share)
                        .map(|_| {
                            let (client, url) = (client.clone(), url.clone());
                            glommio::spawn_local(async move {
                                for _ in 0..per_agent {
                                    let response = client.send(request(&url)).await.expect("sent");
                                    check(&response.bytes().await.expect("a body"));
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await;
                    }
                })
                .expect("a shard starts")
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for shard in shards {
        shard.join().expect("the shard finished");
    }
    began.elapsed()
}

/// tokio + reqwest: one client, agents as tasks on SHARDS worker threads.
fn reqwest(url: &str, agents: usize, per_agent: usize, http2: bool) -> Duration {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SHARDS)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let builder = reqwest::Client::builder();
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    let client = builder.build().expect("a reqwest client");
    runtime.block_on(async {
        let began = Instant::now();
        let tasks: Vec<_> = (0..agents)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_owned());
                tokio::spawn(async move {
                    for _ in 0..per_agent {
                        let response = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(BODY)
                            .send()
                            .await
                            .expect("sent");
                        check(&response.bytes().await.expect("a body"));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("an agent finished");
        }
        began.elapsed()
    })
}
