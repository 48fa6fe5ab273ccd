//! `--json PATH`: one JSON object per result row (JSON lines), written as
//! each workload finishes so that a failed run keeps what it measured. The
//! fields are those of [`Row`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::report::Row;

/// A JSON-lines file of result rows.
pub struct JsonLines {
    out: BufWriter<File>,
}

impl JsonLines {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> io::Result<JsonLines> {
        Ok(JsonLines {
            out: BufWriter::new(File::create(path)?),
        })
    }

    /// Appends `rows`, one line each, and flushes.
    pub fn write(&mut self, rows: &[Row]) -> io::Result<()> {
        for row in rows {
            serde_json::to_writer(&mut self.out, row)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use crate::report::ask_row as row;

    use super::*;

    /// The documented field names, in order: changing one breaks users.
    const FIELDS: [&str; 16] = [
        "workload",
        "variant",
        "shards",
        "workers",
        "messages",
        "wall_s",
        "msgs_per_s",
        "ops",
        "op",
        "ops_per_s",
        "latency_ns",
        "peak_rss_bytes",
        "bytes_per_worker",
        "phases",
        "check",
        "extra",
    ];

    #[test]
    fn each_row_is_one_line_with_the_documented_fields() {
        let path = std::env::temp_dir().join(format!("bench-json-{}.jsonl", std::process::id()));
        let mut out = JsonLines::create(&path).unwrap();
        out.write(&[row(), row()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(
            keys, expected,
            "serde_json sorts keys without preserve_order"
        );
        assert_eq!(value["workload"], "ask");
        assert_eq!(value["ops_per_s"], 5.0);
        assert_eq!(value["latency_ns"]["p999"], 3);
        assert_eq!(value["phases"]["asks"], 2.0);
        assert_eq!(value["extra"]["offered_per_s"], 5.0);
        assert_eq!(value["bytes_per_worker"], serde_json::Value::Null);
        let first_keys: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| lines[0].contains(&format!("\"{f}\":")))
            .collect();
        assert_eq!(first_keys, FIELDS, "every field is written");
        let positions: Vec<usize> = FIELDS
            .iter()
            .map(|f| lines[0].find(&format!("\"{f}\":")).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "fields keep their order"
        );
    }
}
