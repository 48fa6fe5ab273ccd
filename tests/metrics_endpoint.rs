//! `NodeConfig::metrics_listen`: `GET /metrics`, parsed by a real
//! Prometheus text parser (`prometheus-parse`), agrees with
//! `NodeHandle::metrics`, for the shards and for the links.

mod cluster;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use cluster::{start, transport, wait_for_nodes, wait_until, Counter, LONG};
use myriad::metrics::{HandshakeFailure, Histogram, Metrics};
use myriad::transport::start_node;
use myriad::MetricsListen;
use prometheus_parse::{Scrape, Value};

/// `GET path` over plain HTTP/1.1; the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "a body of known length"
    );
    (status, body.to_owned())
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition text")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Value {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(found.len(), 1, "one sample {name}{labels:?}");
    found[0].value.clone()
}

fn number(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(scrape, name, labels) {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v as u64,
        other => panic!("{name} is not a number: {other:?}"),
    }
}

/// Every cumulative bucket of the snapshot's histogram, and its count as
/// the `+Inf` bucket, are in the scrape.
fn check_histogram(scrape: &Scrape, name: &str, shard: &str, h: &Histogram, scale: f64) {
    let Value::Histogram(buckets) = value(scrape, name, &[("shard", shard)]) else {
        panic!("{name} is not a histogram");
    };
    for b in &h.buckets {
        let le = b.le as f64 * scale;
        let got = buckets
            .iter()
            .find(|c| (c.less_than - le).abs() <= le * 1e-9)
            .unwrap_or_else(|| panic!("{name}: no bucket le={le}"));
        assert_eq!(got.count as u64, b.count, "{name} le={le}");
    }
    let inf = buckets
        .iter()
        .find(|c| c.less_than.is_infinite())
        .expect("+Inf");
    assert_eq!(inf.count as u64, h.count, "{name} count");
}

fn check_shards(scrape: &Scrape, metrics: &Metrics) {
    for s in &metrics.shards {
        let shard = s.shard.to_string();
        let on = |extra: &[(&'static str, &'static str)]| {
            let mut labels = vec![("shard", shard.as_str())];
            labels.extend_from_slice(extra);
            labels
        };
        let n =
            |name: &str, extra: &[(&'static str, &'static str)]| number(scrape, name, &on(extra));
        assert_eq!(n("myriad_messages_handled_total", &[]), s.handled);
        assert_eq!(
            n("myriad_messages_sent_total", &[("to", "local")]),
            s.sent.local
        );
        assert_eq!(
            n("myriad_messages_sent_total", &[("to", "cross_shard")]),
            s.sent.cross_shard
        );
        assert_eq!(
            n("myriad_messages_sent_total", &[("to", "remote")]),
            s.sent.remote
        );
        assert_eq!(
            n("myriad_asks_total", &[("outcome", "answered")]),
            s.asks.answered
        );
        assert_eq!(
            n("myriad_asks_total", &[("outcome", "timed_out")]),
            s.asks.timed_out
        );
        assert_eq!(
            n("myriad_asks_total", &[("outcome", "failed")]),
            s.asks.failed
        );
        assert_eq!(n("myriad_asks_in_flight", &[]), s.asks.in_flight);
        assert_eq!(
            n(
                "myriad_messages_dropped_total",
                &[("reason", "no_such_worker")]
            ),
            s.dropped.no_such_worker
        );
        assert_eq!(n("myriad_worker_panics_total", &[]), s.panics);
        assert_eq!(n("myriad_shard_stalls_total", &[]), s.stalls);
        assert_eq!(n("myriad_workers", &[]), s.workers_live);
        assert_eq!(n("myriad_workers_suspended", &[]), s.workers_suspended);
        assert_eq!(n("myriad_run_queue_length", &[]), s.run_queue);
        assert_eq!(n("myriad_mailbox_depth_max", &[]), s.mailbox_depth_max);
        assert_eq!(n("myriad_sleeps_pending", &[]), s.sleeps_pending);
        check_histogram(
            scrape,
            "myriad_mailbox_depth",
            &shard,
            &s.mailbox_depth,
            1.0,
        );
        check_histogram(
            scrape,
            "myriad_mailbox_wait_seconds",
            &shard,
            &s.mailbox_wait,
            1e-9,
        );
        check_histogram(
            scrape,
            "myriad_handler_seconds",
            &shard,
            &s.handler_time,
            1e-9,
        );
    }
}

#[test]
fn the_endpoint_parses_and_agrees_with_the_snapshot() {
    let b = start(2, transport("b"));
    let (config, addr) = cluster::engine(2)
        .metrics_listen("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let a = start_node(config, transport("a").seed(b.1.local_addr().to_string())).unwrap();
    wait_for_nodes(&a.1, &["b"]);
    let (a, b) = (a.0, b.0);
    a.start_worker("counter", Counter::default()).unwrap();
    b.start_worker("counter", Counter::default()).unwrap();
    for _ in 0..200 {
        a.send("counter", "tick").unwrap();
        a.send("b/counter", "tick").unwrap();
    }
    wait_until("b counted", LONG, || {
        a.send_and_receive("b/counter", "count?", LONG).unwrap() == "200"
    });
    assert_eq!(
        a.send_and_receive("counter", "count?", LONG).unwrap(),
        "200"
    );

    // Heartbeats (100 ms apart on an idle link) have measured a round trip.
    wait_until("a heartbeat round trip to b", LONG, || {
        let links = a.metrics().unwrap().links.unwrap();
        links.peers.iter().any(|p| p.heartbeat_rtt.samples > 0)
    });

    // The shards are quiet now (links carry heartbeats, which no shard
    // counts): the scrape equals the snapshot.
    let before = a.metrics().unwrap();
    let scraped = scrape(addr);
    let after = a.metrics().unwrap();
    assert_eq!(
        before.shards, after.shards,
        "the scrape itself counts nothing"
    );
    check_shards(&scraped, &before);
    assert_eq!(
        before.total(|s| s.handled),
        200 + 1,
        "the local ticks and ask"
    );
    assert!(
        before.total(|s| s.sent.remote) > 200,
        "the remote ticks and asks"
    );

    // The links move on (heartbeats): the scrape lies between the two
    // snapshots around it.
    let (l0, l1) = (before.links.unwrap(), after.links.unwrap());
    for (direction, get) in [
        (
            "sent",
            (|l: &myriad::metrics::LinkMetrics| l.sent) as fn(&_) -> _,
        ),
        ("received", |l| l.received),
    ] {
        let labels = [("direction", direction)];
        let bytes = number(&scraped, "myriad_link_bytes_total", &labels);
        assert!(
            (get(&l0).bytes..=get(&l1).bytes).contains(&bytes),
            "{direction} bytes"
        );
        let messages = number(&scraped, "myriad_link_messages_total", &labels);
        assert!((get(&l0).messages..=get(&l1).messages).contains(&messages));
    }
    assert!(
        l0.sent.messages > 200,
        "the ticks and asks went over the link"
    );
    for reason in HandshakeFailure::ALL {
        let labels = [("reason", reason.label())];
        assert_eq!(
            number(&scraped, "myriad_link_handshake_failures_total", &labels),
            0,
            "{labels:?}"
        );
    }
    let samples = number(
        &scraped,
        "myriad_peer_heartbeat_rtt_samples_total",
        &[("peer", "b")],
    );
    let (r0, r1) = (l0.peers[0].heartbeat_rtt, l1.peers[0].heartbeat_rtt);
    assert!((r0.samples..=r1.samples).contains(&samples) && samples > 0);
    let seconds = |name| match value(&scraped, name, &[("peer", "b")]) {
        Value::Gauge(v) | Value::Counter(v) => v,
        other => panic!("{name} is not a number: {other:?}"),
    };
    let (last, min, max) = (
        seconds("myriad_peer_heartbeat_rtt_seconds"),
        seconds("myriad_peer_heartbeat_rtt_min_seconds"),
        seconds("myriad_peer_heartbeat_rtt_max_seconds"),
    );
    assert!(min <= last && last <= max, "{min} {last} {max}");
    assert!(max <= r1.max as f64 * 1e-9 && min >= r1.min as f64 * 1e-9);
    let sum = seconds("myriad_peer_heartbeat_rtt_sum_seconds_total");
    let n = samples as f64;
    assert!(
        sum >= min * n * 0.999_999 && sum <= max * n * 1.000_001,
        "{sum}"
    );
    assert_eq!(
        number(&scraped, "myriad_peer_links", &[("peer", "b")]),
        l0.peers[0].links
    );
    assert!(
        number(
            &scraped,
            "myriad_peer_bytes_total",
            &[("peer", "b"), ("direction", "sent")]
        ) > 0
    );

    let (status, _) = get(addr, "/other");
    assert_eq!(status, 404);
    a.shutdown();
    b.shutdown();
    // The endpoint closed with its node (the kernel frees a socket that an
    // io_uring accept still held when its ring is torn down, just after).
    wait_until("the endpoint to close", LONG, || {
        TcpStream::connect(addr).is_err()
    });
}
