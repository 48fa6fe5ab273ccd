//! A [`Metrics`] snapshot in the Prometheus text exposition format
//! (version 0.0.4), written by the `prometheus-client` crate. Every metric
//! is prefixed `myriad_`; shard metrics carry a `shard` label. The names
//! and labels are listed in `docs/operations.md`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use myriad_engine::metrics::{Histogram, LinkMetrics, Metrics, RoundTrips, ShardMetrics, Traffic};

/// The `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `metrics` in the Prometheus text format.
pub fn render(metrics: &Metrics) -> String {
    let mut registry = Registry::with_prefix("myriad");
    registry.register_collector(Box::new(Snapshot(metrics.clone())));
    let mut text = String::new();
    // Writing to a String cannot fail, and every value is plain.
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("encoding into a String");
    text
}

/// One snapshot, collected once.
#[derive(Debug)]
struct Snapshot(Metrics);

type Labels = Vec<(&'static str, String)>;

/// One metric family: its name, help, type, and one value per label set.
struct Family<V> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    values: Vec<(Labels, V)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shards = &self.0.shards;
        for family in shard_counters(shards) {
            family.encode(&mut encoder, |m, v| {
                m.encode_counter::<NoLabelSet, _, u64>(v, None)
            })?;
        }
        for family in shard_gauges(shards) {
            family.encode(&mut encoder, |m, v| m.encode_gauge(&(*v as i64)))?;
        }
        for family in shard_histograms(shards) {
            family.encode(&mut encoder, encode_histogram)?;
        }
        if let Some(links) = &self.0.links {
            for family in link_counters(links) {
                family.encode(&mut encoder, |m, v| {
                    m.encode_counter::<NoLabelSet, _, u64>(v, None)
                })?;
            }
            let peers = Family {
                name: "peer_links",
                help: "Established links to a peer node, over all shards and both directions",
                kind: MetricType::Gauge,
                values: links
                    .peers
                    .iter()
                    .map(|p| (vec![("peer", p.peer.clone())], p.links))
                    .collect(),
            };
            peers.encode(&mut encoder, |m, v| m.encode_gauge(&(*v as i64)))?;
            for family in peer_rtt_gauges(links) {
                family.encode(&mut encoder, |m, v| m.encode_gauge(v))?;
            }
            for family in peer_rtt_counters(links) {
                family.encode(&mut encoder, |m, v| {
                    m.encode_counter::<NoLabelSet, _, f64>(v, None)
                })?;
            }
        }
        Ok(())
    }
}

impl<V> Family<V> {
    fn encode(
        &self,
        encoder: &mut DescriptorEncoder,
        value: impl Fn(&mut MetricEncoder, &V) -> std::fmt::Result,
    ) -> std::fmt::Result {
        let mut metric = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        for (labels, v) in &self.values {
            let mut one = metric.encode_family(labels)?;
            value(&mut one, v)?;
        }
        Ok(())
    }
}

fn shard_label(s: &ShardMetrics) -> Labels {
    vec![("shard", s.shard.to_string())]
}

fn with(mut labels: Labels, key: &'static str, value: &str) -> Labels {
    labels.push((key, value.to_owned()));
    labels
}

/// A per-shard family of one value per shard.
fn per_shard<V>(
    shards: &[ShardMetrics],
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    value: impl Fn(&ShardMetrics) -> V,
) -> Family<V> {
    Family {
        name,
        help,
        kind,
        values: shards.iter().map(|s| (shard_label(s), value(s))).collect(),
    }
}

/// Reads one figure of a shard's metrics.
type Getter<V> = fn(&ShardMetrics) -> V;

/// A per-shard family with one more label, one value per (shard, label).
fn per_shard_by<V>(
    shards: &[ShardMetrics],
    name: &'static str,
    help: &'static str,
    key: &'static str,
    by: &[(&'static str, Getter<V>)],
) -> Family<V> {
    let values = shards
        .iter()
        .flat_map(|s| {
            by.iter()
                .map(move |(label, get)| (with(shard_label(s), key, label), get(s)))
        })
        .collect();
    Family {
        name,
        help,
        kind: MetricType::Counter,
        values,
    }
}

fn shard_counters(shards: &[ShardMetrics]) -> Vec<Family<u64>> {
    use MetricType::Counter;
    vec![
        per_shard(
            shards,
            "messages_handled",
            "Messages handled by the shard's workers",
            Counter,
            |s| s.handled,
        ),
        per_shard_by(
            shards,
            "messages_sent",
            "Messages routed from the shard, by destination",
            "to",
            &[
                ("local", |s| s.sent.local),
                ("cross_shard", |s| s.sent.cross_shard),
                ("remote", |s| s.sent.remote),
            ],
        ),
        per_shard_by(
            shards,
            "asks",
            "Asks made by the shard's workers that ended, by outcome",
            "outcome",
            &[
                ("answered", |s| s.asks.answered),
                ("timed_out", |s| s.asks.timed_out),
                ("failed", |s| s.asks.failed),
            ],
        ),
        per_shard_by(
            shards,
            "messages_dropped",
            "Plain messages accepted and then dropped on the shard, by reason",
            "reason",
            &[
                ("mailbox_full", |s| s.dropped.mailbox_full),
                ("no_such_worker", |s| s.dropped.no_such_worker),
                ("no_route", |s| s.dropped.no_route),
                ("other", |s| s.dropped.other),
                ("in_doubt", |s| s.dropped.in_doubt),
            ],
        ),
        per_shard(
            shards,
            "worker_panics",
            "Workers stopped by a panic",
            Counter,
            |s| s.panics,
        ),
        per_shard(
            shards,
            "shard_stalls",
            "Times the shard did not come back to its loop within the stall threshold",
            Counter,
            |s| s.stalls,
        ),
    ]
}

fn shard_gauges(shards: &[ShardMetrics]) -> Vec<Family<u64>> {
    use MetricType::Gauge;
    vec![
        per_shard(
            shards,
            "workers",
            "Workers living on the shard",
            Gauge,
            |s| s.workers_live,
        ),
        per_shard(
            shards,
            "workers_suspended",
            "Runs suspended in an await (a sleep, an ask)",
            Gauge,
            |s| s.workers_suspended,
        ),
        per_shard(
            shards,
            "run_queue_length",
            "Workers queued to run",
            Gauge,
            |s| s.run_queue,
        ),
        per_shard(
            shards,
            "mailbox_depth_max",
            "The deepest mailbox the shard has held since start",
            Gauge,
            |s| s.mailbox_depth_max,
        ),
        per_shard(
            shards,
            "asks_in_flight",
            "Asks waiting for their answer",
            Gauge,
            |s| s.asks.in_flight,
        ),
        per_shard(
            shards,
            "sleeps_pending",
            "Sleeps not yet over",
            Gauge,
            |s| s.sleeps_pending,
        ),
    ]
}

/// A histogram and the factor from its unit to the exported one.
type Scaled = (Histogram, f64);

fn shard_histograms(shards: &[ShardMetrics]) -> Vec<Family<Scaled>> {
    use MetricType::Histogram as H;
    const NS: f64 = 1e-9;
    vec![
        per_shard(
            shards,
            "mailbox_depth",
            "Depth of the receiving mailbox after a push, sampled one push in 64",
            H,
            |s| (s.mailbox_depth.clone(), 1.0),
        ),
        per_shard(
            shards,
            "mailbox_wait_seconds",
            "Time a message waited in its mailbox, sampled",
            H,
            |s| (s.mailbox_wait.clone(), NS),
        ),
        per_shard(
            shards,
            "handler_seconds",
            "Time a handler took over a message, awaits included, sampled one message in 64",
            H,
            |s| (s.handler_time.clone(), NS),
        ),
    ]
}

fn encode_histogram(metric: &mut MetricEncoder, (h, scale): &Scaled) -> std::fmt::Result {
    // The snapshot's buckets are cumulative; the encoder sums them itself.
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|b| {
            let here = b.count - below;
            below = b.count;
            (b.le as f64 * scale, here)
        })
        .collect();
    metric.encode_histogram::<NoLabelSet>(h.sum as f64 * scale, h.count, &buckets, None)
}

fn link_counters(links: &LinkMetrics) -> Vec<Family<u64>> {
    let node = |name, help, value: u64| Family {
        name,
        help,
        kind: MetricType::Counter,
        values: vec![(Vec::new(), value)],
    };
    let by_direction = |name, help, get: fn(&Traffic) -> u64| Family {
        name,
        help,
        kind: MetricType::Counter,
        values: vec![
            (vec![("direction", "sent".to_owned())], get(&links.sent)),
            (
                vec![("direction", "received".to_owned())],
                get(&links.received),
            ),
        ],
    };
    let by_peer = |name, help, get: fn(&Traffic) -> u64| Family {
        name,
        help,
        kind: MetricType::Counter,
        values: links
            .peers
            .iter()
            .flat_map(|p| {
                [("sent", &p.sent), ("received", &p.received)].map(|(direction, t)| {
                    let labels = vec![
                        ("peer", p.peer.clone()),
                        ("direction", direction.to_owned()),
                    ];
                    (labels, get(t))
                })
            })
            .collect(),
    };
    vec![
        by_direction("link_bytes", "Bytes on the wire, all links", |t| t.bytes),
        by_direction("link_frames", "Encrypted frames, all links", |t| t.frames),
        by_direction(
            "link_messages",
            "Envelopes (messages, replies, control, heartbeats), all links",
            |t| t.messages,
        ),
        by_peer("peer_bytes", "Bytes on the wire with one peer node", |t| {
            t.bytes
        }),
        by_peer("peer_messages", "Envelopes with one peer node", |t| {
            t.messages
        }),
        node(
            "link_reconnects",
            "Reconnection attempts after a link failed or went down",
            links.reconnects,
        ),
        Family {
            name: "link_handshake_failures",
            help: "Attempts to establish a link (inbound or outbound) that failed, by reason",
            kind: MetricType::Counter,
            values: links
                .handshake_failures_by_reason
                .iter()
                .map(|(reason, n)| (vec![("reason", reason.label().to_owned())], n))
                .collect(),
        },
        node(
            "link_decrypt_failures",
            "Links closed because a frame failed to decrypt",
            links.decrypt_failures,
        ),
        node(
            "link_protocol_errors",
            "Links closed for another protocol violation",
            links.protocol_errors,
        ),
    ]
}

/// Nanoseconds in seconds.
fn seconds(nanos: u64) -> f64 {
    nanos as f64 * 1e-9
}

/// A per-peer family of heartbeat round-trip figures, for the peers with at
/// least one round trip measured.
fn per_peer_rtt(
    links: &LinkMetrics,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    value: fn(&RoundTrips) -> f64,
) -> Family<f64> {
    Family {
        name,
        help,
        kind,
        values: links
            .peers
            .iter()
            .filter(|p| p.heartbeat_rtt.samples > 0)
            .map(|p| (vec![("peer", p.peer.clone())], value(&p.heartbeat_rtt)))
            .collect(),
    }
}

fn peer_rtt_gauges(links: &LinkMetrics) -> Vec<Family<f64>> {
    use MetricType::Gauge;
    vec![
        per_peer_rtt(
            links,
            "peer_heartbeat_rtt_seconds",
            "The latest heartbeat round trip (ping to echo) on a link with a peer node",
            Gauge,
            |r| seconds(r.last),
        ),
        per_peer_rtt(
            links,
            "peer_heartbeat_rtt_min_seconds",
            "The shortest heartbeat round trip with a peer node since start",
            Gauge,
            |r| seconds(r.min),
        ),
        per_peer_rtt(
            links,
            "peer_heartbeat_rtt_max_seconds",
            "The longest heartbeat round trip with a peer node since start",
            Gauge,
            |r| seconds(r.max),
        ),
    ]
}

fn peer_rtt_counters(links: &LinkMetrics) -> Vec<Family<f64>> {
    use MetricType::Counter;
    vec![
        per_peer_rtt(
            links,
            "peer_heartbeat_rtt_samples",
            "Heartbeat round trips measured with a peer node",
            Counter,
            |r| r.samples as f64,
        ),
        per_peer_rtt(
            links,
            "peer_heartbeat_rtt_sum_seconds",
            "Heartbeat round trips with a peer node, added up (divide by the samples for the mean)",
            Counter,
            |r| seconds(r.sum),
        ),
    ]
}
