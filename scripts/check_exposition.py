#!/usr/bin/env python3
"""Checks the files of `cargo run --example export_samples -- DIR` with independent parsers.

- metrics.om: the strict OpenMetrics parser of prometheus_client (bucket order, +Inf, # EOF,
  name clashes, canonical numbers);
- metrics.prom: prometheus_client's Prometheus text parser;
- both must carry the same values as metrics.json, the JSON export of the same snapshot;
- durations.hlog: read with hdrh; the intervals' counts per tag add up to the cumulative
  counts in metrics.json.
Exits non-zero with a message on the first disagreement.
"""
import json
import math
import pathlib
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

directory = pathlib.Path(sys.argv[1])
snapshot = json.loads((directory / "metrics.json").read_text())
view = snapshot["cumulative"]


def samples(families):
    found = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in found:
                sys.exit(f"duplicate series {key}")
            found[key] = sample.value
    return found


def check(found, fmt):
    def value(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        if key not in found:
            sys.exit(f"{fmt}: missing {key}")
        return found[key]

    checked = 0
    for runner, started in view["started"].items():
        assert value("solti_runner_tasks_started_total", runner=runner) == started, (fmt, runner)
        assert value("solti_runner_tasks_in_flight", runner=runner) == snapshot["in_flight"][runner]
        for kind, errors in view["errors"][runner].items():
            assert value("solti_runner_errors_total", runner=runner, error=kind) == errors
        for outcome, durations in view["completed"][runner].items():
            labels = dict(runner=runner, outcome=outcome)
            count = durations["count"]
            assert value("solti_runner_tasks_completed_total", **labels) == count
            assert value("solti_runner_task_duration_seconds_count", **labels) == count
            assert value("solti_runner_task_duration_seconds_bucket", le="+Inf", **labels) == count
            total = value("solti_runner_task_duration_seconds_sum", **labels)
            if durations["sum_ms"] == 2**64 - 1:  # JSON saturates; the text formats are exact
                assert total >= durations["sum_ms"] / 1e3, (fmt, labels)
            else:
                assert math.isclose(total, durations["sum_ms"] / 1e3, rel_tol=1e-12), (fmt, labels)
            maximum = value("solti_runner_task_duration_hdr_seconds", quantile="1", **labels)
            if count:
                assert maximum == durations["max_ms"] / 1e3, (fmt, labels, maximum)
            else:
                assert math.isnan(maximum)
            assert value("solti_runner_task_duration_clamped_total", **labels) == durations["clamped"]
            checked += 1
    return checked


om = samples(parse_om((directory / "metrics.om").read_text()))
prom = samples(parse_prom((directory / "metrics.prom").read_text()))
print(f"openmetrics: strict parse ok, {check(om, 'openmetrics')} label sets match the JSON")
print(f"prometheus: parse ok, {check(prom, 'prometheus')} label sets match the JSON")

from hdrh.log import HistogramLogReader  # noqa: E402

reader = HistogramLogReader(str(directory / "durations.hlog"), None)
counts = {}
intervals = 0
while True:
    histogram = reader.get_next_interval_histogram()
    if histogram is None:
        break
    tag = histogram.get_tag()
    counts[tag] = counts.get(tag, 0) + histogram.get_total_count()
    intervals += 1
for runner, outcomes in view["completed"].items():
    for outcome, durations in outcomes.items():
        tag = f"{runner}.{outcome}"
        if counts.get(tag, 0) != durations["count"]:
            sys.exit(f"interval log: {tag} has {counts.get(tag, 0)}, JSON {durations['count']}")
print(f"interval log: {intervals} interval histograms read by hdrh, totals match the JSON")
