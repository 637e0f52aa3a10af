//! Reports and comparisons as text, markdown and HTML pages (JSON is their `serde` form).

pub mod html;
pub mod svg;

use std::fmt::Write as _;

use crate::compare::{Comparison, Row, Verdict, quantile_name};
use crate::report::{REPORT_QUANTILES, Report};

/// A table's rows as aligned text (`markdown` false) or a markdown table, whose cells the
/// caller has escaped ([`markdown_cell`]) where they hold text from a file.
fn table(header: &[&str], rows: &[Vec<String>], markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out += &line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        out += &line(&header.iter().map(|_| "---".to_string()).collect::<Vec<_>>());
        for row in rows {
            out += &line(row);
        }
        return out;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            // The first column (names) left-aligned, figures right-aligned.
            if i == 0 {
                let _ = write!(text, "{cell:<width$}  ");
            } else {
                let _ = write!(text, "{cell:>width$}  ");
            }
        }
        out += text.trim_end();
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A cell's text made inert in markdown: pipes and markup characters escaped.
fn markdown_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '<' | '>' | '[' | ']' | '#' | '~' | '$' | '@' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text that came from a file, made printable: control characters and bidirectional
/// overrides shown escaped, so a log can neither move the terminal's cursor or colour it nor
/// make text read in another order than it is.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() || svg::is_bidi_control(c) {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The report as text, or as markdown.
pub fn report_text(report: &Report, markdown: bool) -> String {
    let mut out = String::new();
    for run in &report.runs {
        let source = printable(&run.source);
        if markdown {
            let _ = writeln!(out, "### {}\n", markdown_cell(&source));
        } else {
            let _ = writeln!(out, "{source}: {:.1} s", run.duration_s);
        }
        let mut header = vec!["series", "count"];
        let names: Vec<String> = REPORT_QUANTILES.iter().map(|&q| quantile_name(q)).collect();
        header.extend(names.iter().map(String::as_str));
        header.push("max");
        let rows: Vec<Vec<String>> = run
            .series
            .iter()
            .map(|series| {
                let name = printable(&series.name);
                let name = if markdown { markdown_cell(&name) } else { name };
                let mut row = vec![name, series.count.to_string()];
                if series.count == 0 {
                    row.extend((0..=REPORT_QUANTILES.len()).map(|_| "-".to_string()));
                } else {
                    row.extend(series.quantiles.iter().map(|q| {
                        if q.resolution_ms > 1 {
                            format!("{} ±{}", q.value_ms, q.resolution_ms)
                        } else {
                            q.value_ms.to_string()
                        }
                    }));
                    row.push(series.max_ms.map_or("-".into(), |m| m.to_string()));
                }
                row
            })
            .collect();
        out += &table(&header, &rows, markdown);
        out += if markdown {
            "\nValues in ms, the top of their HDR slot; ±w: the slot is w ms wide.\n\n"
        } else {
            "values in ms (the top of their HDR slot; ±w: w ms wide)\n\n"
        };
    }
    out
}

fn change_text(row: &Row) -> String {
    match row.change {
        Some(change) => format!("{:+.2}%", change * 100.0),
        None => "-".into(),
    }
}

fn ci_text(row: &Row) -> String {
    match row.ci {
        Some([low, high]) => format!("[{:+.1}%, {:+.1}%]", low * 100.0, high * 100.0),
        None => String::new(),
    }
}

fn verdict_text(row: &Row) -> String {
    let mut text = row.verdict.label().to_string();
    if let Some(p) = row.p_adjusted {
        let _ = write!(text, " (p={p:.3})");
    }
    if !row.note.is_empty() && row.verdict != Verdict::Worse && row.verdict != Verdict::Better {
        let _ = write!(text, ": {}", row.note);
    }
    text
}

/// The comparison as text, or as markdown (for a pull-request comment).
pub fn compare_text(comparison: &Comparison, markdown: bool) -> String {
    let mut out = String::new();
    let sources = |files: &[String]| printable(&files.join(", "));
    let heading = format!(
        "A: {}\nB: {}\n{}, Holm-corrected at α = {}, band {}\n",
        sources(&comparison.a),
        sources(&comparison.b),
        comparison.method,
        comparison.alpha,
        comparison.bands
    );
    if markdown {
        for line in heading.lines() {
            let _ = writeln!(out, "{}  ", markdown_cell(line));
        }
        out.push('\n');
    } else {
        out += &heading;
        out.push('\n');
    }
    let value = |v: Option<crate::compare::SideValue>| {
        v.map_or("-".into(), |v| {
            if v.resolution_ms > 1 {
                format!("{} ±{}", v.value_ms, v.resolution_ms)
            } else {
                v.value_ms.to_string()
            }
        })
    };
    let mut rows: Vec<Vec<String>> = comparison
        .rows
        .iter()
        .map(|row| {
            let verdict = verdict_text(row);
            let series = printable(&row.series);
            vec![
                if markdown {
                    markdown_cell(&series)
                } else {
                    series
                },
                quantile_name(row.quantile),
                value(row.a),
                value(row.b),
                change_text(row),
                ci_text(row),
                if markdown && row.verdict == Verdict::Worse {
                    format!("**{verdict}**")
                } else {
                    verdict
                },
            ]
        })
        .collect();
    for geomean in &comparison.geomean {
        rows.push(vec![
            "geomean".into(),
            quantile_name(geomean.quantile),
            String::new(),
            String::new(),
            format!("{:+.2}%", geomean.change * 100.0),
            String::new(),
            format!("over {} series", geomean.series),
        ]);
    }
    let header = [
        "series", "quantile", "A ms", "B ms", "change", "95% CI", "verdict",
    ];
    out += &table(&header, &rows, markdown);
    let tally = comparison.tally;
    let _ = writeln!(
        out,
        "\n{} worse, {} better, {} no detectable change, {} too few samples",
        tally.worse, tally.better, tally.no_change, tally.too_few_samples
    );
    out
}
