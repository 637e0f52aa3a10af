//! Line charts as inline SVG: axes, ticks, legend, lines. No scripts, no fonts to load, no
//! external references; every text escaped.

use std::fmt::Write as _;

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly.
    Linear,
    /// By decades (values must be positive).
    Log10,
}

/// One axis: its label, scale, range and ticks `(value, label)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Its label.
    pub label: String,
    /// Its scale.
    pub scale: Scale,
    /// The range shown.
    pub min: f64,
    /// See `min`.
    pub max: f64,
    /// Tick marks.
    pub ticks: Vec<(f64, String)>,
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Its legend (untrusted text is fine: it is escaped).
    pub label: String,
    /// A CSS colour.
    pub color: &'static str,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// Its points, in data coordinates.
    pub points: Vec<(f64, f64)>,
}

/// A chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Its title.
    pub title: String,
    /// Its size in CSS pixels.
    pub width: f64,
    /// See `width`.
    pub height: f64,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// Its lines.
    pub lines: Vec<Line>,
}

/// Colours for series, told apart in print and by most colour-blind readers.
pub const PALETTE: [&str; 12] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

/// Whether `c` reorders the text around it (bidirectional embeddings, overrides, isolates and
/// marks), which could make a name read as another.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` safe inside an SVG or HTML element or attribute; control and bidirectional
/// characters replaced.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c if is_bidi_control(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

impl Axis {
    fn position(&self, value: f64) -> f64 {
        let (min, max, value) = match self.scale {
            Scale::Linear => (self.min, self.max, value),
            Scale::Log10 => (
                self.min.log10(),
                self.max.log10(),
                value.max(self.min).log10(),
            ),
        };
        if max > min {
            ((value - min) / (max - min)).clamp(0.0, 1.0)
        } else {
            0.5
        }
    }

    /// A duration axis in ms over `[min, max]`, log scale, ticked at powers of ten.
    pub fn milliseconds(label: &str, min: f64, max: f64) -> Axis {
        let min = min.max(0.5);
        let max = max.max(min * 10.0);
        let (low, high) = (min.log10().floor() as i32, max.log10().ceil() as i32);
        Axis {
            label: label.into(),
            scale: Scale::Log10,
            min: 10_f64.powi(low),
            max: 10_f64.powi(high),
            ticks: (low..=high)
                .map(|e| {
                    let value = 10_f64.powi(e);
                    let text = if value >= 1000.0 {
                        format!("{} s", value / 1000.0)
                    } else {
                        format!("{value} ms")
                    };
                    (value, text)
                })
                .collect(),
        }
    }

    /// The percentile axis of HdrHistogram's plots: `1 / (1 − p)`, one decade per nine.
    pub fn percentiles(samples: u64) -> Axis {
        let decades = (samples.max(10) as f64).log10().ceil() as i32;
        Axis {
            label: "percentile".into(),
            scale: Scale::Log10,
            min: 1.0,
            max: 10_f64.powi(decades),
            ticks: (0..=decades)
                .map(|e| {
                    let label = match e {
                        0 => "0%".to_string(),
                        e => {
                            let decimals = (e - 2).max(0) as usize;
                            format!("{:.decimals$}%", 100.0 - 100.0 / 10_f64.powi(e))
                        }
                    };
                    (10_f64.powi(e), label)
                })
                .collect(),
        }
    }

    /// A time axis in seconds, about six ticks at round values.
    pub fn seconds(label: &str, min: f64, max: f64) -> Axis {
        let max = if max > min { max } else { min + 1.0 };
        let raw = (max - min) / 6.0;
        let magnitude = 10_f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(magnitude * 10.0);
        let first = (min / step).ceil() as i64;
        let last = (max / step).floor() as i64;
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            min,
            max,
            ticks: (first..=last)
                .map(|i| {
                    let decimals = (-step.log10().floor()).max(0.0) as usize;
                    (i as f64 * step, format!("{:.decimals$}", i as f64 * step))
                })
                .collect(),
        }
    }
}

/// The points of a distribution's percentile curve: `(1 / (1 − p), value)` at twenty steps a
/// decade, up to the last sample.
pub fn percentile_curve(distribution: &crate::Distribution) -> Vec<(f64, f64)> {
    let total = distribution.total();
    if total == 0 {
        return Vec::new();
    }
    let last = (total as f64).log10();
    let mut points: Vec<(f64, f64)> = (0..)
        .map(|step| f64::from(step) / 20.0)
        .take_while(|exponent| *exponent < last)
        .map(|exponent| {
            let x = 10_f64.powf(exponent);
            let value = distribution
                .quantile(1.0 - 1.0 / x)
                .map_or(0.0, |q| q.value_ms as f64);
            (x, value)
        })
        .collect();
    points.push((total as f64, distribution.max().unwrap_or(0) as f64));
    points
}

const LEFT: f64 = 64.0;
const RIGHT: f64 = 44.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;
const LEGEND_ROW: f64 = 15.0;
const LEGEND_COLUMNS: usize = 4;

impl Chart {
    /// The chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let legend_rows = self.lines.len().div_ceil(LEGEND_COLUMNS) as f64;
        let plot_w = self.width - LEFT - RIGHT;
        let plot_h = self.height - TOP - BOTTOM - legend_rows * LEGEND_ROW;
        let x = |v: f64| LEFT + self.x.position(v) * plot_w;
        let y = |v: f64| TOP + (1.0 - self.y.position(v)) * plot_h;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{title}"><title>{title}</title>"#,
            w = self.width,
            h = self.height,
            title = escape(&self.title)
        );
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="#fff" stroke="#999"/>"##
        );
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="18" class="title">{}</text>"#,
            escape(&self.title)
        );
        // Labels at least 72 px apart: on a crowded axis, every other tick keeps its label.
        let label_every = (self.x.ticks.len() as f64 * 72.0 / plot_w).ceil().max(1.0) as usize;
        for (i, (value, label)) in self.x.ticks.iter().enumerate() {
            let px = x(*value);
            let label = if i % label_every == 0 {
                label.as_str()
            } else {
                ""
            };
            let _ = write!(
                svg,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{b:.1}" stroke="#e4e4e4"/><text x="{px:.1}" y="{t:.1}" text-anchor="middle" class="tick">{}</text>"##,
                escape(label),
                b = TOP + plot_h,
                t = TOP + plot_h + 14.0
            );
        }
        for (value, label) in &self.y.ticks {
            let py = y(*value);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{r:.1}" y2="{py:.1}" stroke="#e4e4e4"/><text x="{l:.1}" y="{t:.1}" text-anchor="end" class="tick">{}</text>"##,
                escape(label),
                r = LEFT + plot_w,
                l = LEFT - 4.0,
                t = py + 4.0
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{cx:.1}" y="{by:.1}" text-anchor="middle" class="axis">{}</text>"#,
            escape(&self.x.label),
            cx = LEFT + plot_w / 2.0,
            by = TOP + plot_h + 32.0
        );
        let _ = write!(
            svg,
            r#"<text x="12" y="{cy:.1}" text-anchor="middle" class="axis" transform="rotate(-90 12 {cy:.1})">{}</text>"#,
            escape(&self.y.label),
            cy = TOP + plot_h / 2.0
        );
        for line in self.lines.iter().filter(|line| !line.points.is_empty()) {
            let points: String = line
                .points
                .iter()
                .map(|&(px, py)| format!("{:.1},{:.1} ", x(px), y(py)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline class="series" points="{}" fill="none" stroke="{}" stroke-width="1.6"{}><title>{}</title></polyline>"#,
                points.trim_end(),
                line.color,
                if line.dashed {
                    r#" stroke-dasharray="5 3""#
                } else {
                    ""
                },
                escape(&line.label)
            );
        }
        // The legend, in rows under the axis label.
        let column_w = plot_w / LEGEND_COLUMNS as f64;
        for (i, line) in self.lines.iter().enumerate() {
            let lx = LEFT + (i % LEGEND_COLUMNS) as f64 * column_w;
            let ly = TOP + plot_h + BOTTOM + 4.0 + (i / LEGEND_COLUMNS) as f64 * LEGEND_ROW;
            let _ = write!(
                svg,
                r#"<line x1="{lx:.1}" y1="{a:.1}" x2="{b:.1}" y2="{a:.1}" stroke="{}" stroke-width="2"{}/><text x="{c:.1}" y="{ly:.1}" class="legend">{}</text>"#,
                line.color,
                if line.dashed {
                    r#" stroke-dasharray="5 3""#
                } else {
                    ""
                },
                escape(&line.label),
                a = ly - 4.0,
                b = lx + 18.0,
                c = lx + 22.0
            );
        }
        svg.push_str("</svg>");
        svg
    }
}
