//! `--report PATH`: one self-contained HTML file (no script, style or image
//! from anywhere else) to look at after a run: the machine and settings,
//! the results table, and for each workload its charts over time, drawn as
//! inline SVG ([`chart`]): throughput, per-shard load (messages handled, from
//! the nodes' metrics), memory, mailbox waits (from the nodes' metrics),
//! latency percentiles and the latency distribution where it measures
//! latency.
//!
//! A small inline script checks, in the browser, that every chart drew and
//! marks the page (`<body data-charts="ok N">`); `scripts/check-report.sh`
//! opens a report in headless chromium and reads that mark.

pub mod chart;

use std::fmt::Write as _;

use crate::cli::Settings;
use crate::machine::Machine;
use crate::report::Row;
use crate::sampler::{Sample, Series, EVERY};
use crate::table;

use chart::{ChartError, Line, Span, TimeChart, Unit};

/// What a report shows.
pub struct Report<'a> {
    /// The machine the run measured.
    pub machine: &'a Machine,
    /// The run's settings.
    pub settings: &'a Settings,
    /// The command line, as typed.
    pub command: &'a str,
    /// The result rows.
    pub rows: &'a [Row],
    /// The time series, one per workload that ran.
    pub series: &'a [Series],
    /// What failed (`error: <workload>: <why>`).
    pub errors: &'a [String],
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1340px;color:#222;padding:0 1em}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:.85em}td,th{padding:.2em .6em;border-bottom:1px solid #eee;text-align:left}\
td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\
.charts{display:flex;flex-wrap:wrap;gap:12px}\
figure.chart{margin:0;flex:1 1 600px;max-width:660px}figure.chart svg{width:100%;height:auto}\
figcaption{font-size:.8em;color:#555}.error{color:#b00}nav a{margin-right:1em}";

/// Checks in the browser that each chart drew (an `<svg>` of some size with
/// lines in it) and marks the page; a chart that did not is a console
/// error.
const CHECK: &str = "\
(function(){var bad=[],figs=document.querySelectorAll('figure.chart');\
figs.forEach(function(f){var s=f.querySelector('svg'),b=s&&s.getBoundingClientRect();\
if(!s||b.width<100||b.height<50||!s.querySelector('polyline'))bad.push(f.id);});\
if(bad.length)console.error('charts did not render: '+bad.join(' '));\
document.body.setAttribute('data-charts',bad.length?'failed '+bad.length:'ok '+figs.length);})();";

impl Report<'_> {
    /// The whole HTML document.
    pub fn render(&self) -> Result<String, ChartError> {
        let mut html = String::new();
        html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        html.push_str("<title>bench-harness report</title>\n");
        let _ = writeln!(html, "<style>{STYLE}</style>\n</head>\n<body>");
        html.push_str("<h1>bench-harness report</h1>\n");
        self.nav(&mut html);
        self.machine_and_settings(&mut html);
        self.results(&mut html);
        for series in self.series {
            self.workload(&mut html, series)?;
        }
        let _ = writeln!(html, "<script>{CHECK}</script>\n</body>\n</html>");
        Ok(html)
    }

    fn nav(&self, html: &mut String) {
        html.push_str("<nav><a href=\"#machine\">machine</a><a href=\"#results\">results</a>");
        for s in self.series {
            let _ = write!(html, "<a href=\"#w-{0}\">{0}</a>", s.workload);
        }
        html.push_str("</nav>\n");
    }

    fn machine_and_settings(&self, html: &mut String) {
        let m = self.machine;
        let s = self.settings;
        let workloads: Vec<&str> = s.workloads.iter().map(|w| w.name()).collect();
        let mut pairs = vec![
            ("CPU", m.cpu.clone()),
            ("cores available", m.cores.to_string()),
            ("kernel", m.kernel.clone()),
            ("memory", m.memory.clone()),
            ("lockable memory (ulimit -l)", m.memlock.clone()),
            ("command", self.command.to_owned()),
            ("bench-harness", env!("CARGO_PKG_VERSION").to_owned()),
            ("shards", s.shards.to_string()),
            ("actors (--actors)", s.actors.to_string()),
            (
                "messages (--messages)",
                s.messages
                    .map_or_else(|| "each workload's default".into(), |m| m.to_string()),
            ),
            (
                "agent think time, median",
                format!("{} ms", s.think.as_millis()),
            ),
            ("workloads", workloads.join(" ")),
            ("sampled every", format!("{} ms", EVERY.as_millis())),
        ];
        if s.workloads
            .contains(&crate::workloads::Workload::AgentsHttp)
        {
            let llm = s.llm.clone().unwrap_or_else(|| {
                format!(
                    "mock on loopback, median delay {} ms",
                    s.llm_delay.as_millis()
                )
            });
            pairs.push(("LLM (agents-http)", llm));
            let protocol = if s.http2 {
                "HTTP/2, one connection per shard".to_owned()
            } else {
                format!("HTTP/1.1, {} connections per shard", s.llm_connections)
            };
            pairs.push(("LLM protocol", protocol));
        }
        html.push_str("<h2 id=\"machine\">Machine and settings</h2>\n<table>\n");
        for (k, v) in pairs {
            let _ = writeln!(
                html,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(k),
                escape(&v)
            );
        }
        html.push_str("</table>\n");
    }

    fn results(&self, html: &mut String) {
        html.push_str("<h2 id=\"results\">Results</h2>\n");
        for e in self.errors {
            let _ = writeln!(html, "<p class=\"error\">{}</p>", escape(e));
        }
        html.push_str("<table>\n<tr>");
        for h in table::HEADER {
            let _ = write!(html, "<th>{}</th>", escape(h));
        }
        html.push_str("</tr>\n");
        for row in self.rows {
            html.push_str("<tr>");
            let cells = table::cells(row);
            let last = cells.len() - 1;
            for (i, cell) in cells.iter().enumerate() {
                let class = if i == 0 || i == last {
                    ""
                } else {
                    " class=\"n\""
                };
                let _ = write!(html, "<td{class}>{}</td>", escape(cell));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }

    fn workload(&self, html: &mut String, series: &Series) -> Result<(), ChartError> {
        let name = series.workload;
        let _ = writeln!(html, "<section id=\"w-{name}\">\n<h2>{name}</h2>");
        let mut ops: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.workload == name)
            .map(|r| r.op)
            .collect();
        ops.dedup();
        let unit = if ops.is_empty() {
            String::new()
        } else {
            format!(" (here: {})", ops.join(", "))
        };
        let _ = writeln!(
            html,
            "<p>{} samples, one every {} ms. A step is the workload's unit of progress{}; \
             shaded bands are its phases.</p>",
            series.samples.len(),
            EVERY.as_millis(),
            escape(&unit)
        );
        html.push_str("<div class=\"charts\">\n");
        let spans = spans(&series.samples);
        let samples = &series.samples;
        let time = |title: String, unit, log, lines: Vec<Line>| -> Result<String, ChartError> {
            TimeChart {
                title: &title,
                unit,
                log,
                lines: &lines,
                spans: &spans,
            }
            .svg()
        };
        let total = line("all shards", samples, |s| Some(s.total()));
        figure(
            html,
            name,
            "throughput",
            "Steps per second, all shards.",
            &time(
                format!("{name}: throughput (steps/s)"),
                Unit::PerSecond,
                false,
                vec![total],
            )?,
        );
        let engine_shards = series.engine_shards();
        let (shards, caption, unit): (Vec<Line>, _, _) = if engine_shards.is_empty() {
            let steps = (0..series.shards())
                .map(|i| {
                    line(&format!("shard {i}"), samples, |s| {
                        Some(s.per_shard.get(i).copied().unwrap_or(0.0))
                    })
                })
                .collect();
            (
                steps,
                "Steps per second of each shard: how the load spreads.",
                "steps/s",
            )
        } else {
            let messages = engine_shards
                .iter()
                .map(|&shard| {
                    line(shard, samples, |s| {
                        s.messages.iter().find(|(l, _)| l == shard).map(|(_, r)| *r)
                    })
                })
                .collect();
            let caption = "Messages handled per second by each shard, from the nodes' metrics \
                 (handled): how the load spreads.";
            (messages, caption, "messages/s")
        };
        figure(
            html,
            name,
            "shards",
            caption,
            &time(
                format!("{name}: per-shard load ({unit})"),
                Unit::PerSecond,
                false,
                shards,
            )?,
        );
        let rss = line("resident", samples, |s| Some(s.rss as f64));
        figure(
            html,
            name,
            "memory",
            "Resident memory of the process (VmRSS).",
            &time(format!("{name}: memory"), Unit::Bytes, false, vec![rss])?,
        );
        if series.has_mailbox_wait() {
            let waits = [("p50", false), ("p99", true)].map(|(label, p99)| {
                line(label, samples, |s| {
                    s.mailbox_wait
                        .map(|w| if p99 { w.p99 } else { w.p50 } as f64)
                })
            });
            figure(
                html,
                name,
                "mailbox-wait",
                &format!(
                    "Time a message waited in its mailbox, from the nodes' metrics (one message \
                     in 64 sampled), percentiles of each {} ms interval interpolated within \
                     the metric's buckets (as Prometheus's histogram_quantile).",
                    EVERY.as_millis()
                ),
                &time(
                    format!("{name}: mailbox wait over time"),
                    Unit::Nanos,
                    true,
                    waits.to_vec(),
                )?,
            );
        }
        if series.has_latency() {
            let what = latency_meaning(name);
            let percentiles =
                [("p50", 0), ("p99", 1), ("p99.9", 2), ("max", 3)].map(|(label, k)| {
                    line(label, samples, |s| {
                        s.latency.map(|l| [l.p50, l.p99, l.p999, l.max][k] as f64)
                    })
                });
            figure(
                html,
                name,
                "latency",
                &format!(
                    "{what}, percentiles of each {} ms interval.",
                    EVERY.as_millis()
                ),
                &time(
                    format!("{name}: {what} over time"),
                    Unit::Nanos,
                    true,
                    percentiles.to_vec(),
                )?,
            );
        }
        if !series.distributions.is_empty() {
            let what = latency_meaning(name);
            let curves: Vec<(String, &hdrhistogram::Histogram<u64>)> = series
                .distributions
                .iter()
                .map(|(label, h)| (label.clone(), h))
                .collect();
            figure(
                html,
                name,
                "distribution",
                &format!("{what}: the whole run of each variant, by percentile."),
                &chart::distribution(&format!("{name}: {what}, distribution"), &curves)?,
            );
        }
        html.push_str("</div>\n</section>\n");
        Ok(())
    }
}

/// What a workload's latency measures.
fn latency_meaning(workload: &str) -> &'static str {
    match workload {
        "agents" => "engine-added latency",
        "agents-http" => "latency added by engine and HTTP client",
        _ => "round-trip latency",
    }
}

/// The line `name` of `value` over the samples that have one.
fn line(name: &str, samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Line {
    Line {
        name: name.to_owned(),
        points: samples
            .iter()
            .filter_map(|s| value(s).map(|v| (s.t, v)))
            .collect(),
    }
}

/// The stretches of time each phase ran, from the samples' phase labels.
fn spans(samples: &[Sample]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut before = 0.0;
    for s in samples {
        match (&s.phase, spans.last_mut()) {
            (Some(label), Some(last)) if last.label == **label && last.time.end == before => {
                last.time.end = s.t;
            }
            (Some(label), _) => spans.push(Span {
                label: label.to_string(),
                time: before..s.t,
            }),
            (None, _) => {}
        }
        before = s.t;
    }
    spans
}

/// Appends one chart with its caption.
fn figure(html: &mut String, workload: &str, kind: &str, caption: &str, svg: &str) {
    let _ = writeln!(
        html,
        "<figure class=\"chart\" id=\"fig-{workload}-{kind}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>",
        escape(caption)
    );
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::node_metrics::{Buckets, EngineInterval};
    use crate::report::ask_row;
    use crate::sampler::Reading;

    fn settings() -> Settings {
        let cli = Cli::try_parse_from(["bench-harness", "--workload", "counting,ask"]).unwrap();
        Settings::from_cli(cli, 2, false).unwrap()
    }

    fn machine() -> Machine {
        Machine {
            cpu: "AMD EPYC".into(),
            cores: 2,
            kernel: "Linux 6.18.0".into(),
            memory: "24.0 GiB".into(),
            memlock: "unlimited".into(),
        }
    }

    /// A series of `workload` of four samples over two shards; with
    /// latencies and the nodes' metrics when `latency`.
    fn series(workload: &'static str, latency: bool) -> Series {
        let mut series = Series::new(workload);
        for i in 0..4u64 {
            let mut h = crate::latency_feed::sample_histogram();
            if latency {
                h.record(1_000 * (i + 1)).unwrap();
            }
            let reading = Reading {
                per_shard: vec![i * 1_000, i * 500],
                rss: (90 + i) << 20,
                latency: h,
                engine: latency.then(|| EngineInterval {
                    handled: vec![("shard 0".into(), 100 * i), ("shard 1".into(), 50 * i)],
                    waits: Buckets {
                        bounds: vec![1_000, 10_000],
                        counts: vec![10, i, 0],
                    },
                }),
            };
            let phase = (i > 0).then(|| "asks (same shard)".into());
            let t = Duration::from_millis(100 * i);
            series.push(t, reading, phase, Some("same shard"));
        }
        series
    }

    fn render(command: &str, errors: &[String]) -> String {
        let rows = [ask_row()];
        let series = [series("counting", false), series("ask", true)];
        Report {
            machine: &machine(),
            settings: &settings(),
            command,
            rows: &rows,
            series: &series,
            errors,
        }
        .render()
        .unwrap()
    }

    #[test]
    fn each_chart_is_one_inline_svg() {
        let html = render("bench-harness --report r.html", &[]);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        let figures = html.matches("<figure class=\"chart\"").count();
        // counting: throughput, shards, memory; ask: those, mailbox wait,
        // latency over time and its distribution.
        assert_eq!(figures, 3 + 6, "{html}");
        assert_eq!(html.matches("<svg").count(), figures, "one <svg> per chart");
        assert_eq!(html.matches("</svg>").count(), figures);
        for id in [
            "fig-counting-throughput",
            "fig-ask-shards",
            "fig-ask-mailbox-wait",
            "fig-ask-distribution",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(
            !html.contains("fig-counting-latency"),
            "no latency, no chart"
        );
        assert!(
            html.contains("per-shard load (messages/s)"),
            "the nodes' metrics"
        );
        assert!(
            html.contains("per-shard load (steps/s)"),
            "without them, steps"
        );
        assert!(html.contains("<td>AMD EPYC</td>") && html.contains("<td>unlimited</td>"));
        assert!(html.contains("data-charts"), "the check script is there");
    }

    #[test]
    fn nothing_is_loaded_from_anywhere() {
        let html = render("bench-harness", &[]);
        assert!(!html.contains("src="), "no external script or image");
        for (at, _) in html.match_indices("href=") {
            assert!(html[at..].starts_with("href=\"#"), "links stay in the page");
        }
        let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!without_namespace.contains("://"), "no URL at all");
        assert!(!html.contains("@import") && !html.contains("url("));
    }

    #[test]
    fn text_from_the_command_line_is_escaped() {
        let errors = ["error: ask: a <b> & \"c\"".to_owned()];
        let html = render("bench-harness --json '<script>x</script>'", &errors);
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert_eq!(html.matches("<script>").count(), 1, "only the check");
        assert!(html.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
    }

    #[test]
    fn phases_become_spans_of_time() {
        let s = series("ask", false);
        let spans = spans(&s.samples);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].label, "asks (same shard)");
        assert_eq!(spans[0].time, 0.0..0.3);
    }
}
