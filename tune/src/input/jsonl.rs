//! taskmeter's JSON-lines logs (`JsonLinesSink`, `--json-log`): one snapshot per line in schema
//! `taskmeter.snapshot/2`, whose interval view carries every non-empty slot as
//! `[lowest_ms, highest_ms, count]`. Series are `runner.outcome`, as in interval logs.

use std::collections::BTreeMap;
use std::io::BufRead;

use taskmeter::export::json::{JSON_SCHEMA, JSON_SCHEMA_WITH_BUCKETS, JsonSnapshot};

use super::{Budget, Failure, LineReader, Run, Series};
use crate::layout::Layout;

/// Snapshots' times, to place each interval: its end and length.
struct Placed {
    end_unix_s: f64,
    length_s: f64,
    layout: Layout,
    series: Vec<(String, Vec<(u32, u64)>)>,
}

pub(super) fn read<R: BufRead>(
    source: String,
    lines: &mut LineReader<'_, R>,
) -> Result<Run, Failure> {
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    // Starts are kept from the first line's until the end, then moved to it.
    let mut origin = None;
    let mut earliest = f64::INFINITY;
    let mut budget = Budget::new();
    while let Some((number, line)) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let placed = place(line).map_err(|reason| (Some(number), reason))?;
        let start_unix = placed.end_unix_s - placed.length_s;
        let origin = *origin.get_or_insert(start_unix);
        let start = start_unix - origin;
        earliest = earliest.min(start);
        for (name, slots) in placed.series {
            let entry = series
                .entry(name.clone())
                .or_insert_with(|| Series::new(placed.layout));
            if entry.layout() != placed.layout {
                return Err((
                    Some(number),
                    format!(
                        "the layout changes from {} to {}",
                        entry.layout(),
                        placed.layout
                    ),
                ));
            }
            budget
                .admit(entry, &slots)
                .map_err(|reason| (Some(number), format!("{name:?}: {reason}")))?;
            entry.push_interval(start, placed.length_s, slots);
        }
    }
    if earliest.is_finite() {
        series.values_mut().for_each(|s| s.shift_starts(-earliest));
    }
    let mut run = Run::new(source);
    run.series = series;
    Ok(run)
}

fn place(line: &str) -> Result<Placed, String> {
    let document: JsonSnapshot = serde_json::from_str(line).map_err(|error| {
        // A schema-1 document fails on fields it lacks; say why before serde does.
        if line.contains(&format!("\"{JSON_SCHEMA}\"")) {
            schema_1_error()
        } else {
            format!("not a taskmeter snapshot: {error}")
        }
    })?;
    if document.schema == JSON_SCHEMA {
        return Err(schema_1_error());
    }
    if document.schema != JSON_SCHEMA_WITH_BUCKETS {
        return Err(format!(
            "schema {:?}: this reads {JSON_SCHEMA_WITH_BUCKETS}",
            document.schema
        ));
    }
    let digits = document
        .significant_digits
        .ok_or("no significant_digits, which schema 2 has")?;
    let layout = Layout::new(1, digits)?;
    if !(document.elapsed_seconds.is_finite() && document.elapsed_seconds >= 0.0) {
        return Err(format!("bad elapsed_seconds {}", document.elapsed_seconds));
    }
    let mut series = Vec::new();
    for (runner, outcomes) in &document.interval.completed {
        for (outcome, durations) in outcomes {
            let name = format!("{runner}.{outcome}");
            if series.iter().any(|(seen, _): &(String, _)| *seen == name) {
                return Err(format!("two series named {name:?} in one snapshot"));
            }
            let buckets = durations
                .buckets
                .as_ref()
                .ok_or_else(|| format!("{name:?} has no buckets"))?;
            let mut slots = Vec::with_capacity(buckets.len());
            let mut sum = 0_u64;
            for &[lowest, highest, count] in buckets {
                let index = layout.index_of(lowest);
                if layout.range(index) != Some((lowest, highest)) {
                    return Err(format!(
                        "{name:?}: bucket [{lowest}, {highest}] is not a slot of {layout}"
                    ));
                }
                sum = sum.saturating_add(count);
                slots.push((index, count));
            }
            if sum != durations.count {
                return Err(format!(
                    "{name:?}: buckets hold {sum} samples, count says {}",
                    durations.count
                ));
            }
            series.push((name, slots));
        }
    }
    Ok(Placed {
        end_unix_s: document.taken_at_unix_ms as f64 / 1000.0,
        length_s: document.elapsed_seconds,
        layout,
        series,
    })
}

fn schema_1_error() -> String {
    format!(
        "schema {JSON_SCHEMA} has no buckets, so its intervals cannot be merged: \
         write a JSON-lines log ({JSON_SCHEMA_WITH_BUCKETS}: `JsonLinesSink`, \
         `taskmeter --json-log FILE`)"
    )
}
