//! Several runs a side: one value per run and quantile, and Welch's t-test on their
//! logarithms, so that run-to-run noise is in the verdict.

use super::{
    CompareOptions, Row, SideSeries, Verdict, base_row, needed_samples, quantile_name, testable,
};
use crate::stats::{student_critical, student_two_sided};

pub(super) fn compare_runs(
    name: &str,
    a: &SideSeries,
    b: &SideSeries,
    options: &CompareOptions,
) -> Vec<Row> {
    options
        .quantiles
        .iter()
        .map(|&quantile| {
            let mut row = base_row(name, quantile, a, b, options);
            let needed = needed_samples(quantile, options);
            let logs = |side: &SideSeries| -> Option<Vec<f64>> {
                side.per_run
                    .iter()
                    .map(|d| {
                        (d.total() >= needed)
                            .then(|| d.quantile(quantile))
                            .flatten()
                            .map(|q| q.midpoint_ms.ln())
                    })
                    .collect()
            };
            if !testable(&row) {
                return row;
            }
            let (Some(xa), Some(xb)) = (logs(a), logs(b)) else {
                row.verdict = Verdict::TooFewSamples;
                row.note = format!(
                    "needs {needed} samples in every run for {}",
                    quantile_name(quantile)
                );
                return row;
            };
            let (mean_a, var_a) = mean_variance(&xa);
            let (mean_b, var_b) = mean_variance(&xb);
            let (na, nb) = (xa.len() as f64, xb.len() as f64);
            let estimate = mean_b - mean_a;
            // Each side's value is known only to its slot: a uniform error of a slot's width,
            // shared by runs that land in one slot, so it is not divided by the runs.
            let slot_variance = |side: &SideSeries| {
                side.pooled.quantile(quantile).map_or(0.0, |q| {
                    (q.resolution_ms as f64 / q.midpoint_ms).powi(2) / 12.0
                })
            };
            let se = (var_a / na + var_b / nb + slot_variance(a) + slot_variance(b)).sqrt();
            row.change = Some(estimate.exp_m1());
            if se == 0.0 {
                row.p_value = Some(if estimate == 0.0 { 1.0 } else { 0.0 });
                row.ci = Some([estimate.exp_m1(); 2]);
                return row;
            }
            let df = (var_a / na + var_b / nb).powi(2)
                / ((var_a / na).powi(2) / (na - 1.0) + (var_b / nb).powi(2) / (nb - 1.0));
            let df = if df.is_finite() && df > 0.0 {
                df.max(1.0)
            } else {
                na + nb - 2.0
            };
            row.p_value = Some(student_two_sided(estimate / se, df));
            let half = student_critical(0.05, df) * se;
            row.ci = Some([(estimate - half).exp_m1(), (estimate + half).exp_m1()]);
            row
        })
        .collect()
}

pub(super) fn mean_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, variance)
}
