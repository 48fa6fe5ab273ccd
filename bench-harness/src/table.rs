//! The one table printed at the end of a run: a column per figure, right
//! aligned, `-` where a figure does not apply.

use crate::report::{bytes, nanos, si, Row};

pub const HEADER: [&str; 12] = [
    "workload", "workers", "messages", "wall", "msgs/s", "p50", "p99", "p99.9", "max", "peak RSS",
    "B/worker", "result",
];

/// Renders `rows` as an aligned text table, one line per row.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 12]> = rows.iter().map(cells).collect();
    let mut widths = HEADER.map(str::len);
    for line in &cells {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_owned);
    for line in std::iter::once(&header).chain(&cells) {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            let pad = " ".repeat(width - cell.chars().count());
            match i {
                0 => text.push_str(&format!("{cell}{pad}")),
                11 => text.push_str(&format!("  {cell}")),
                _ => text.push_str(&format!("  {pad}{cell}")),
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

pub fn cells(row: &Row) -> [String; 12] {
    let latency = |pick: fn(&crate::report::Latency) -> u64| {
        row.latency_ns
            .as_ref()
            .map_or_else(|| "-".to_owned(), |l| nanos(pick(l)))
    };
    [
        row.label(),
        si(row.workers as f64),
        si(row.messages as f64),
        nanos((row.wall_s * 1e9) as u64),
        si(row.msgs_per_s),
        latency(|l| l.p50),
        latency(|l| l.p99),
        latency(|l| l.p999),
        latency(|l| l.max),
        bytes(row.peak_rss_bytes),
        row.bytes_per_worker
            .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}")),
        result(row),
    ]
}

/// The workload's own figure, its phases when there are several, and what
/// was checked: `2.41M workers/s (spawn 0.29 s, deliver 0.12 s); 1000000 confirmed`.
fn result(row: &Row) -> String {
    let mut text = format!("{} {}/s", si(row.ops_per_s), row.op);
    if row.phases.len() > 1 {
        let phases: Vec<String> = row
            .phases
            .iter()
            .map(|(name, s)| format!("{name} {}", nanos((s * 1e9) as u64)))
            .collect();
        text.push_str(&format!(" ({})", phases.join(", ")));
    }
    if !row.check.is_empty() {
        text.push_str("; ");
        text.push_str(&row.check);
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{Latency, Outcome};
    use crate::workloads::Workload;

    #[test]
    fn columns_line_up_and_missing_figures_show_a_dash() {
        let ask = Outcome {
            workers: 2,
            messages: 2_000,
            ops: 1_000,
            op: "asks",
            phases: vec![("asks", Duration::from_millis(10))],
            latency: Some(Latency {
                p50: 900,
                p99: 4_000,
                p999: 9_000,
                max: 30_000,
            }),
            check: "1000 answered".into(),
            ..Outcome::default()
        };
        let spawn = Outcome {
            workers: 1_000_000,
            messages: 2_000_000,
            ops: 1_000_000,
            op: "workers",
            phases: vec![
                ("spawn", Duration::from_millis(300)),
                ("deliver", Duration::from_millis(100)),
            ],
            bytes_per_worker: Some(96.4),
            ..Outcome::default()
        };
        let rows = [
            Row::new(Workload::Ask, "saturated".into(), 2, ask, 10 << 20),
            Row::new(Workload::Spawn, String::new(), 2, spawn, 200 << 20),
        ];
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("workload"), "{table}");
        assert!(lines[1].contains("900 ns") && lines[1].contains("1000 answered"));
        assert!(lines[2].contains("2.50M workers/s (spawn 300 ms, deliver 100 ms)"));
        assert!(lines[2].contains(" 96 "), "{table}");
        // Right-aligned columns end at the same place on every line
        // (counted in characters: `µ` is two bytes).
        let rss = |l: &str| l[..l.find("MiB").unwrap()].chars().count();
        assert_eq!(rss(lines[1]), rss(lines[2]), "{table}");
    }
}
