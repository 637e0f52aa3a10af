//! Self-contained HTML pages: inline SVG charts and tables, no scripts, nothing fetched (a
//! Content-Security-Policy forbids both), so a page opens offline and text from a log is only
//! ever text.

use std::fmt::Write as _;

use super::svg::{Axis, Chart, Line, PALETTE, escape, percentile_curve};
use crate::compare::{Comparison, Verdict, quantile_name};
use crate::input::Run;
use crate::report::{REPORT_QUANTILES, Report};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}\
.worse{background:#fbd5d5}.better{background:#d5f5dc}.few{color:#888}\
svg .title{font-size:13px;font-weight:600}svg .tick{font-size:10px;fill:#555}\
svg .axis{font-size:11px;fill:#333}svg .legend{font-size:11px}\
.charts{display:flex;flex-wrap:wrap;gap:12px}pre{color:#555}\
table.matrix td{min-width:80px;text-align:center}table.matrix td:first-child{text-align:left}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// The HTML page of a report: per run, its table, the percentile distribution of every series,
/// and each series' timeline of p50, p99 and max.
pub fn report_page(report: &Report) -> String {
    let mut body = String::from("<h1>taskmeter report</h1>\n");
    for run in &report.runs {
        let _ = writeln!(
            body,
            "<h2>{}</h2>\n<p>{:.1} s, {} series</p>",
            escape(&run.source),
            run.duration_s,
            run.series.len()
        );
        if !run.comments.is_empty() {
            let _ = writeln!(
                body,
                "<pre class=\"comments\">{}</pre>",
                run.comments
                    .iter()
                    .map(|c| escape(c))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        body.push_str("<table><tr><th>series</th><th>count</th>");
        for &q in &REPORT_QUANTILES {
            let _ = write!(body, "<th>{} ms</th>", quantile_name(q));
        }
        body.push_str("<th>max ms</th></tr>\n");
        for series in &run.series {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td>",
                escape(&series.name),
                series.count
            );
            for q in &series.quantiles {
                let _ = write!(
                    body,
                    "<td title=\"slot {} ms wide\">{}</td>",
                    q.resolution_ms, q.value_ms
                );
            }
            for _ in series.quantiles.len()..REPORT_QUANTILES.len() {
                body.push_str("<td>-</td>");
            }
            let _ = writeln!(
                body,
                "<td>{}</td></tr>",
                series.max_ms.map_or("-".into(), |m| m.to_string())
            );
        }
        body.push_str("</table>\n");
        let present: Vec<_> = run.series.iter().filter(|s| s.count > 0).collect();
        if present.is_empty() {
            continue;
        }
        let most = present.iter().map(|s| s.count).max().unwrap_or(1);
        let (low, high) = value_range(present.iter().map(|s| &s.distribution));
        let chart = Chart {
            title: "Percentile distribution".into(),
            width: 1000.0,
            height: 470.0,
            x: Axis::percentiles(most),
            y: Axis::milliseconds("duration", low, high),
            lines: present
                .iter()
                .enumerate()
                .map(|(i, s)| Line {
                    label: s.name.clone(),
                    color: PALETTE[i % PALETTE.len()],
                    dashed: i >= PALETTE.len(),
                    points: percentile_curve(&s.distribution),
                })
                .collect(),
        };
        let _ = writeln!(
            body,
            "<figure class=\"distribution\">{}</figure>",
            chart.to_svg()
        );
        body.push_str("<h3>Timeline: p50, p99 and max per interval</h3>\n<div class=\"charts\">");
        for series in &present {
            let points = |pick: fn(&crate::report::TimelinePoint) -> Option<u64>| {
                series
                    .timeline
                    .iter()
                    .filter_map(|p| pick(p).map(|v| ((p.start_s + p.end_s) / 2.0, v as f64)))
                    .collect::<Vec<_>>()
            };
            let chart = Chart {
                title: series.name.clone(),
                width: 520.0,
                height: 236.0,
                x: Axis::seconds("seconds", 0.0, run.duration_s),
                y: Axis::milliseconds("ms", low, high),
                lines: vec![
                    Line {
                        label: "max".into(),
                        color: PALETTE[1],
                        dashed: false,
                        points: points(|p| p.max_ms),
                    },
                    Line {
                        label: "p99".into(),
                        color: PALETTE[3],
                        dashed: false,
                        points: points(|p| p.p99_ms),
                    },
                    Line {
                        label: "p50".into(),
                        color: PALETTE[0],
                        dashed: false,
                        points: points(|p| p.p50_ms),
                    },
                ],
            };
            body.push_str(&chart.to_svg());
        }
        body.push_str("</div>\n");
    }
    page("taskmeter report", &body)
}

fn value_range<'d>(distributions: impl Iterator<Item = &'d crate::Distribution>) -> (f64, f64) {
    distributions
        .filter_map(|d| Some((d.quantile(0.0)?.value_ms as f64, d.max()? as f64)))
        .fold((f64::INFINITY, 0.0_f64), |(low, high), (l, h)| {
            (low.min(l), high.max(h))
        })
}

/// Series by quantile at a glance: each cell the change, coloured by its verdict.
fn verdict_matrix(comparison: &Comparison) -> String {
    let mut html = String::from("<table class=\"matrix\"><tr><th>series</th>");
    let by_series = crate::compare::rows_by_series(comparison);
    let quantiles: Vec<f64> = by_series
        .values()
        .next()
        .map(|rows| rows.iter().map(|row| row.quantile).collect())
        .unwrap_or_default();
    for &q in &quantiles {
        let _ = write!(html, "<th>{}</th>", quantile_name(q));
    }
    html.push_str("</tr>\n");
    for (name, rows) in &by_series {
        let _ = write!(html, "<tr><td>{}</td>", escape(name));
        for row in rows {
            let (class, text) = match row.verdict {
                Verdict::Worse => (
                    "worse",
                    format!("{:+.1}%", row.change.unwrap_or(0.0) * 100.0),
                ),
                Verdict::Better => (
                    "better",
                    format!("{:+.1}%", row.change.unwrap_or(0.0) * 100.0),
                ),
                Verdict::NoChange => ("", "~".to_string()),
                Verdict::TooFewSamples => ("few", "too few".to_string()),
            };
            let _ = write!(
                html,
                "<td class=\"{class}\" title=\"{}\">{text}</td>",
                escape(&row.note)
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

/// A side's series `name`, its runs merged; `None` when no run has it.
fn pooled(runs: &[Run], name: &str) -> Result<Option<crate::Distribution>, String> {
    let mut pooled: Option<crate::Distribution> = None;
    for series in runs.iter().filter_map(|run| run.series.get(name)) {
        let merged = series.merged(|_| true);
        match &mut pooled {
            Some(p) if p.layout() != merged.layout() => {
                return Err(format!("series {name:?} has two layouts on one side"));
            }
            Some(p) => p.merge(&merged),
            None => pooled = Some(merged),
        }
    }
    Ok(pooled)
}

/// The HTML page of a comparison: the verdicts at a glance (series by quantile), each series'
/// A and B distributions overlaid (A dashed, B solid), then every row with its interval and
/// p-value. `a` and `b` are the runs compared.
pub fn compare_page(comparison: &Comparison, a: &[Run], b: &[Run]) -> Result<String, String> {
    let mut body = String::from("<h1>taskmeter compare</h1>\n");
    let _ = writeln!(
        body,
        "<p>A: {}<br>B: {}<br>{}, Holm-corrected at α = {}, band {}</p>",
        escape(&comparison.a.join(", ")),
        escape(&comparison.b.join(", ")),
        comparison.method,
        comparison.alpha,
        comparison.bands
    );
    let tally = comparison.tally;
    let _ = writeln!(
        body,
        "<p class=\"tally\">{} worse, {} better, {} no detectable change, {} too few samples</p>",
        tally.worse, tally.better, tally.no_change, tally.too_few_samples
    );
    body.push_str(&verdict_matrix(comparison));
    body.push_str("<h2>A (dashed) and B (solid)</h2>\n<div class=\"charts\">");
    for name in crate::compare::rows_by_series(comparison).keys() {
        let (da, db) = (pooled(a, name)?, pooled(b, name)?);
        let present: Vec<&crate::Distribution> = da.iter().chain(db.iter()).collect();
        let (low, high) = value_range(present.iter().copied());
        let most = present.iter().map(|d| d.total()).max().unwrap_or(1);
        let chart = Chart {
            title: name.to_string(),
            width: 520.0,
            height: 300.0,
            x: Axis::percentiles(most),
            y: Axis::milliseconds("duration", low, high),
            lines: vec![
                Line {
                    label: "A".into(),
                    color: PALETTE[0],
                    dashed: true,
                    points: da.as_ref().map(percentile_curve).unwrap_or_default(),
                },
                Line {
                    label: "B".into(),
                    color: PALETTE[1],
                    dashed: false,
                    points: db.as_ref().map(percentile_curve).unwrap_or_default(),
                },
            ],
        };
        body.push_str(&chart.to_svg());
    }
    body.push_str("</div>\n<h2>Every row</h2>\n");
    body.push_str("<table><tr><th>series</th><th>quantile</th><th>A ms</th><th>B ms</th><th>change</th><th>95% CI</th><th>verdict</th></tr>\n");
    for row in &comparison.rows {
        let class = match row.verdict {
            Verdict::Worse => "worse",
            Verdict::Better => "better",
            Verdict::TooFewSamples => "few",
            Verdict::NoChange => "",
        };
        let value =
            |v: Option<crate::compare::SideValue>| v.map_or("-".into(), |v| v.value_ms.to_string());
        let _ = writeln!(
            body,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.series),
            quantile_name(row.quantile),
            value(row.a),
            value(row.b),
            row.change
                .map_or("-".into(), |c| format!("{:+.2}%", c * 100.0)),
            row.ci.map_or(String::new(), |[l, h]| format!(
                "[{:+.1}%, {:+.1}%]",
                l * 100.0,
                h * 100.0
            )),
            escape(&format!(
                "{}{}",
                row.verdict.label(),
                if row.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", row.note)
                }
            ))
        );
    }
    for geomean in &comparison.geomean {
        let _ = writeln!(
            body,
            "<tr><td>geomean</td><td>{}</td><td></td><td></td><td>{:+.2}%</td><td></td><td>over {} series</td></tr>",
            quantile_name(geomean.quantile),
            geomean.change * 100.0,
            geomean.series
        );
    }
    body.push_str("</table>\n");
    Ok(page("taskmeter compare", &body))
}
