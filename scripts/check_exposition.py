#!/usr/bin/env python3
"""Checks the files of `cargo run --example export_samples -- DIR` with independent parsers.

- metrics.om: the strict OpenMetrics parser of prometheus_client (bucket order, +Inf, # EOF,
  name clashes, canonical numbers);
- metrics.prom: prometheus_client's Prometheus text parser;
- durations.hlog: read with hdrh; per tag, the intervals add up to the JSON's counts;
- both text formats must carry, for every label set (and exactly the expected number of label
  sets per family): the JSON's counts, sums and clamped counts; every finite bucket equal to
  the count hdrh finds in the interval log's histograms at or below its bound (by each HDR
  slot's lowest value, the exposition's rule); every summary quantile (0.5 to 0.999 and the
  maximum) equal to the JSON's window view.
Exits non-zero with a message on the first disagreement (no `assert`: checks stay on under
`python3 -O`).
"""
import json
import math
import pathlib
import sys

from hdrh.log import HistogramLogReader
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

directory = pathlib.Path(sys.argv[1])
snapshot = json.loads((directory / "metrics.json").read_text())
view = snapshot["cumulative"]
window = snapshot["window"]
RUNNERS, OUTCOMES = 3, 4


def require(condition, message):
    if not condition:
        sys.exit(f"check_exposition: {message}")


# The interval log: one merged histogram per `runner.outcome` tag.
reader = HistogramLogReader(str(directory / "durations.hlog"), None)
merged = {}
intervals = 0
while True:
    histogram = reader.get_next_interval_histogram()
    if histogram is None:
        break
    tag = histogram.get_tag()
    if tag in merged:
        merged[tag].add(histogram)
    else:
        merged[tag] = histogram
    intervals += 1
for runner, outcomes in view["completed"].items():
    for outcome, durations in outcomes.items():
        tag = f"{runner}.{outcome}"
        logged = merged[tag].get_total_count() if tag in merged else 0
        require(logged == durations["count"], f"interval log: {tag} has {logged}, JSON {durations['count']}")
print(f"interval log: {intervals} interval histograms read by hdrh, totals match the JSON")


def count_at_or_below(tag, bound_seconds):
    """Completions whose HDR slot's lowest value is at most the bound, by hdrh."""
    histogram = merged.get(tag)
    if histogram is None:
        return 0
    bound_ms = math.floor(bound_seconds * 1e3 + 1e-9)
    total = 0
    for item in histogram.get_recorded_iterator():
        lowest = histogram.get_lowest_equivalent_value(item.value_iterated_to)
        if lowest <= bound_ms:
            total += item.count_at_value_iterated_to
    return total


def samples(families):
    found = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            require(key not in found, f"duplicate series {key}")
            found[key] = sample.value
    return found


def check(found, fmt):
    def value(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        require(key in found, f"{fmt}: missing {key}")
        return found[key]

    def label_sets(name):
        return {key[1] for key in found if key[0] == name}

    def same(a, b):
        return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)

    # The number of label sets of each family.
    expected_sets = {
        "solti_runner_tasks_started_total": RUNNERS,
        "solti_runner_tasks_in_flight": RUNNERS,
        "solti_runner_errors_total": RUNNERS * 4,
        "solti_runner_tasks_completed_total": RUNNERS * OUTCOMES,
        "solti_runner_task_duration_seconds_count": RUNNERS * OUTCOMES,
        "solti_runner_task_duration_seconds_sum": RUNNERS * OUTCOMES,
        "solti_runner_task_duration_hdr_seconds_count": RUNNERS * OUTCOMES,
        "solti_runner_task_duration_clamped_total": RUNNERS * OUTCOMES,
    }
    for name, sets in expected_sets.items():
        require(len(label_sets(name)) == sets, f"{fmt}: {name} has {len(label_sets(name))} label sets, expected {sets}")

    checked = buckets = quantiles = 0
    for runner, started in view["started"].items():
        require(value("solti_runner_tasks_started_total", runner=runner) == started, f"{fmt}: started {runner}")
        require(value("solti_runner_tasks_in_flight", runner=runner) == snapshot["in_flight"][runner], f"{fmt}: in flight {runner}")
        for kind, errors in view["errors"][runner].items():
            require(value("solti_runner_errors_total", runner=runner, error=kind) == errors, f"{fmt}: errors {runner} {kind}")
        for outcome, durations in view["completed"][runner].items():
            labels = dict(runner=runner, outcome=outcome)
            count = durations["count"]
            for name in ["solti_runner_tasks_completed_total", "solti_runner_task_duration_seconds_count",
                         "solti_runner_task_duration_hdr_seconds_count"]:
                require(value(name, **labels) == count, f"{fmt}: {name} {labels}")
            total = value("solti_runner_task_duration_seconds_sum", **labels)
            if durations["sum_ms"] == 2**64 - 1:  # JSON saturates; the text formats are exact
                require(total >= durations["sum_ms"] / 1e3, f"{fmt}: sum {labels}")
            else:
                require(math.isclose(total, durations["sum_ms"] / 1e3, rel_tol=1e-12), f"{fmt}: sum {labels}")
            require(value("solti_runner_task_duration_clamped_total", **labels) == durations["clamped"], f"{fmt}: clamped {labels}")
            # Every bucket, against hdrh's count of the interval log's histogram.
            bucket_values = {
                float(dict(key[1])["le"]): got for key, got in found.items()
                if key[0] == "solti_runner_task_duration_seconds_bucket"
                and dict(key[1]).get("runner") == runner and dict(key[1]).get("outcome") == outcome
            }
            require(len(bucket_values) == 16 and math.inf in bucket_values, f"{fmt}: buckets of {labels}")
            for le, got in sorted(bucket_values.items()):
                want = count if math.isinf(le) else count_at_or_below(f"{runner}.{outcome}", le)
                require(got == want, f"{fmt}: bucket le={le} of {labels}: {got}, hdrh {want}")
                buckets += 1
            # Every quantile of the summary, against the JSON's window view.
            in_window = window["completed"][runner][outcome]
            for q, ms in in_window["quantiles_ms"].items():
                got = value("solti_runner_task_duration_hdr_seconds", quantile=q, **labels)
                require(same(got, ms / 1e3), f"{fmt}: quantile {q} of {labels}: {got}, JSON {ms / 1e3}")
                quantiles += 1
            maximum = value("solti_runner_task_duration_hdr_seconds", quantile="1", **labels)
            if in_window["count"]:
                require(maximum == in_window["max_ms"] / 1e3, f"{fmt}: maximum of {labels}: {maximum}")
            else:
                require(math.isnan(maximum), f"{fmt}: maximum of empty {labels}")
            checked += 1
    return checked, buckets, quantiles


om = samples(parse_om((directory / "metrics.om").read_text()))
prom = samples(parse_prom((directory / "metrics.prom").read_text()))
for found, fmt in [(om, "openmetrics"), (prom, "prometheus")]:
    sets, buckets, quantiles = check(found, fmt)
    print(f"{fmt}: parse ok; {sets} label sets, {buckets} buckets and {quantiles} quantiles match hdrh and the JSON")

# A prometheus-client registry with taskmeter's collector: its OpenMetrics text parses
# strictly, holds the application's counter and taskmeter's families, and no summary
# (prometheus-client has no summary type).
registry = {family.name: family for family in parse_om((directory / "registry.om").read_text())}
require("api_requests" in registry, "registry.om: the application's counter")
require("solti_runner_task_duration_seconds" in registry, "registry.om: taskmeter's histogram")
require(registry["solti_runner_tasks_started"].type == "counter", "registry.om: counter type")
require(not any(family.type == "summary" for family in registry.values()), "registry.om: a summary")
print(f"registry.om: strict OpenMetrics parse ok; {len(registry)} families")

# An application's prometheus registry merged into taskmeter's endpoint: both text bodies
# parse strictly and hold the application's families beside taskmeter's, label escapes intact.
for name, parse in [("merged.om", parse_om), ("merged.prom", parse_prom)]:
    merged = {family.name: family for family in parse((directory / name).read_text())}
    require("solti_runner_task_duration_seconds" in merged, f"{name}: taskmeter's histogram")
    require("api_latency_seconds" in merged, f"{name}: the application's histogram")
    require(merged["api_latency_seconds"].type == "histogram", f"{name}: histogram type")
    errors = merged["api_errors"]
    paths = [sample.labels.get("path") for sample in errors.samples]
    require(paths == ['/a"b\\c\nd'], f"{name}: the escaped label value read back as {paths}")
    require(errors.documentation == 'API errors \\ by "path"', f"{name}: help {errors.documentation!r}")
    print(f"{name}: strict parse ok; {len(merged)} families")
