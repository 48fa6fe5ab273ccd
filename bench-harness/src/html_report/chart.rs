//! The report's charts, drawn as SVG by plotters: lines over time (linear
//! or logarithmic values, with the workload's phases shaded behind them)
//! and latency distributions on the percentile scale of HdrHistogram's
//! plots (50 %, 90 %, 99 %, 99.9 % ... evenly spaced).

use std::ops::Range;

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use crate::report::{bytes, nanos, si};

/// Width and height of every chart, in pixels (it scales with the page).
const SIZE: (u32, u32) = (640, 300);

/// Deepest percentile a distribution shows: 99.999 %.
const MAX_NINES: f64 = 5.0;

/// A chart that could not be drawn (plotters' error, in words).
pub type ChartError = String;

/// How a chart's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A rate: `15.1M`.
    PerSecond,
    /// Bytes: `96 MiB`.
    Bytes,
    /// Nanoseconds: `12.3 µs`.
    Nanos,
}

impl Unit {
    fn format(self, v: f64) -> String {
        match self {
            Unit::PerSecond => si(v),
            Unit::Bytes => bytes(v.max(0.0) as u64),
            Unit::Nanos => nanos(v.max(0.0) as u64),
        }
    }
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its legend.
    pub name: String,
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
}

/// A stretch of time a phase ran, shaded behind a time chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The phase's label.
    pub label: String,
    /// From, to (seconds).
    pub time: Range<f64>,
}

/// A chart of `lines` over time (seconds), values in `unit`, from 0 or on
/// a logarithmic scale.
pub struct TimeChart<'a> {
    /// Its title.
    pub title: &'a str,
    /// How its values read.
    pub unit: Unit,
    /// A logarithmic value axis (for latencies).
    pub log: bool,
    /// The lines.
    pub lines: &'a [Line],
    /// The phases, shaded.
    pub spans: &'a [Span],
}

impl TimeChart<'_> {
    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> Result<String, ChartError> {
        let points = || self.lines.iter().flat_map(|l| l.points.iter());
        let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(0.1);
        let y_max = points().map(|p| p.1).fold(0.0, f64::max);
        // Enough decimals that neighbouring labels differ.
        let decimals = match x_max {
            x if x < 1.0 => 2,
            x if x < 10.0 => 1,
            _ => 0,
        };
        let x_format = move |x: &f64| format!("{x:.decimals$}");
        let frame = Frame {
            title: self.title,
            x: 0.0..x_max,
            x_desc: "seconds since the workload started",
            x_format: &x_format,
            x_labels: 10,
            unit: self.unit,
            lines: self.lines,
            spans: self.spans,
        };
        if self.log {
            let y_min = points()
                .map(|p| p.1)
                .filter(|&y| y > 0.0)
                .fold(y_max, f64::min);
            let (lo, hi) = (y_min.max(1.0) / 2.0, y_max.max(1.0) * 2.0);
            frame.draw((lo..hi).log_scale(), lo..hi)
        } else {
            let hi = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
            frame.draw(0.0..hi, 0.0..hi)
        }
    }
}

/// A chart of latency distributions: one curve per histogram, latency
/// against percentile.
pub fn distribution(
    title: &str,
    curves: &[(String, &Histogram<u64>)],
) -> Result<String, ChartError> {
    let lines: Vec<Line> = curves
        .iter()
        .map(|(name, h)| Line {
            name: format!("{name} ({} values)", si(h.len() as f64)),
            points: percentile_curve(h),
        })
        .collect();
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let y_min = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(y_max, f64::min);
    let (lo, hi) = (y_min.max(1.0) / 2.0, y_max * 2.0);
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.last().map(|p| p.0))
        .fold(1.0, f64::max);
    Frame {
        title,
        x: 0.0..x_max,
        x_desc: "percentile",
        x_format: &|x| percentile_label(*x),
        // One label per nine: 0 %, 90 %, 99 %...
        x_labels: x_max.ceil() as usize + 1,
        unit: Unit::Nanos,
        lines: &lines,
        spans: &[],
    }
    .draw((lo..hi).log_scale(), lo..hi)
}

/// Points `(nines, latency)` of `h`, where nines = −log10(1 − q): 1 is
/// the 90th percentile, 2 the 99th. They stop at the percentile that the
/// count of values still resolves (1 in `len`), at most [`MAX_NINES`].
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let deepest = (h.len().max(1) as f64).log10().min(MAX_NINES);
    let steps = (deepest * 50.0).ceil().max(1.0) as u32;
    (0..=steps)
        .map(|i| {
            let nines = deepest * f64::from(i) / f64::from(steps);
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q) as f64)
        })
        .collect()
}

/// `2.0` as `99%`, `0.30103` as `50%`.
fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let digits = (nines.round() as usize).saturating_sub(2);
    format!("{percent:.digits$}%")
}

/// Pixels of the plotting area's width (the chart less its margins and
/// value labels).
const PLOT_WIDTH: f64 = (SIZE.0 - 2 * 10 - 70) as f64;

/// About how wide a character of a span's label is, in pixels.
const LABEL_CHAR: f64 = 6.0;

/// What every chart has: title, axes, lines with a legend, shaded spans.
struct Frame<'a> {
    title: &'a str,
    x: Range<f64>,
    x_desc: &'a str,
    x_format: &'a dyn Fn(&f64) -> String,
    /// About how many labels the time or percentile axis has.
    x_labels: usize,
    unit: Unit,
    lines: &'a [Line],
    spans: &'a [Span],
}

impl Frame<'_> {
    /// `label` cut to what fits over `time` (the rest as `…`).
    fn fit(&self, label: &str, time: &Range<f64>) -> String {
        let share = (time.end - time.start) / (self.x.end - self.x.start).max(f64::MIN_POSITIVE);
        let fits = (share * PLOT_WIDTH / LABEL_CHAR) as usize;
        if label.chars().count() <= fits {
            label.to_owned()
        } else if fits < 2 {
            String::new()
        } else {
            let mut cut: String = label.chars().take(fits - 1).collect();
            cut.push('…');
            cut
        }
    }

    /// Draws on value axis `y`, whose bounds are `bounds`.
    fn draw<Y>(&self, y: Y, bounds: Range<f64>) -> Result<String, ChartError>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption(self.title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(70)
                .build_cartesian_2d(self.x.clone(), y)
                .map_err(|e| e.to_string())?;
            let unit = self.unit;
            chart
                .configure_mesh()
                .x_desc(self.x_desc)
                .x_labels(self.x_labels)
                .x_label_formatter(self.x_format)
                .y_label_formatter(&|v| unit.format(*v))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(|e| e.to_string())?;
            // Two light tints in turn, so neighbouring phases differ and
            // the grid shows through.
            let tints = [
                RGBColor(60, 100, 200).mix(0.08),
                RGBColor(230, 150, 30).mix(0.08),
            ];
            for (i, span) in self.spans.iter().enumerate() {
                let band = [(span.time.start, bounds.end), (span.time.end, bounds.start)];
                let style = tints[i % 2].filled();
                chart
                    .draw_series([Rectangle::new(band, style)])
                    .map_err(|e| e.to_string())?;
                let label = Text::new(
                    self.fit(&span.label, &span.time),
                    (span.time.start, bounds.end),
                    ("sans-serif", 11).into_font().color(&RGBColor(90, 90, 90)),
                );
                chart.draw_series([label]).map_err(|e| e.to_string())?;
            }
            for (i, line) in self.lines.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(
                        line.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(line.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()
                .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_labelled_with_the_digits_they_need() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    #[test]
    fn a_curve_goes_as_deep_as_its_values_resolve() {
        let mut h = crate::latency_feed::sample_histogram();
        for v in 1..=1_000 {
            h.record(v * 100).unwrap();
        }
        let curve = percentile_curve(&h);
        assert_eq!(curve.first().unwrap().0, 0.0);
        assert!(
            (curve.last().unwrap().0 - 3.0).abs() < 1e-9,
            "1,000 values: 99.9 %"
        );
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "latency grows");
        assert_eq!(
            percentile_curve(&crate::latency_feed::sample_histogram()).len(),
            2
        );
    }

    #[test]
    fn a_time_chart_is_one_svg_with_its_title_and_lines() {
        let lines = [
            Line {
                name: "shard 0".into(),
                points: vec![(0.0, 0.0), (0.1, 5e6), (0.2, 6e6)],
            },
            Line {
                name: "shard 1".into(),
                points: vec![(0.0, 0.0), (0.1, 1e6), (0.2, 2e6)],
            },
        ];
        let spans = [Span {
            label: "counting".into(),
            time: 0.0..0.2,
        }];
        for log in [false, true] {
            let chart = TimeChart {
                title: "per-shard load",
                unit: Unit::PerSecond,
                log,
                lines: &lines,
                spans: &spans,
            };
            let svg = chart.svg().unwrap();
            assert!(svg.starts_with("<svg"), "{svg}");
            assert_eq!(svg.matches("<svg").count(), 1);
            assert!(svg.contains("per-shard load") && svg.contains("shard 1"));
            assert!(svg.matches("<polyline").count() >= 2, "a line each");
        }
    }

    #[test]
    fn span_labels_are_cut_to_their_width() {
        let frame = Frame {
            title: "",
            x: 0.0..10.0,
            x_desc: "",
            x_format: &|x| x.to_string(),
            x_labels: 10,
            unit: Unit::Nanos,
            lines: &[],
            spans: &[],
        };
        assert_eq!(frame.fit("asks", &(0.0..5.0)), "asks");
        // 0.1 s of 10 s is 5.5 px: no room.
        assert_eq!(frame.fit("asks", &(0.0..0.1)), "");
        let cut = frame.fit("asks (across shards saturated)", &(0.0..1.0));
        assert_eq!(cut.chars().count(), 9, "{cut}");
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn charts_of_nothing_still_draw() {
        let empty = TimeChart {
            title: "nothing",
            unit: Unit::Bytes,
            log: false,
            lines: &[],
            spans: &[],
        };
        assert!(empty.svg().unwrap().starts_with("<svg"));
        let h = crate::latency_feed::sample_histogram();
        assert!(distribution("none", &[("empty".into(), &h)])
            .unwrap()
            .starts_with("<svg"));
    }
}
