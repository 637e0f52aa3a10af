#!/usr/bin/env python3
"""Checks `taskmeter report` against hdrh (the PyPI `hdrhistogram` package), both ways.

- hdrh writes, taskmeter reads: an interval log of 30 intervals (100 ms apart, from a
  `StartTime`/`BaseTime` header pair) for four tags (`alpha`, `beta.x`, `two.digits` at
  2 significant digits, `idle` with only empty histograms) and every third interval untagged,
  holding seeded lognormal durations from 1 ms to about 10^6 ms (histograms from 1 to
  3,600,000 ms). For every series, `(untagged)` included, `report --format json` must give
  the count hdrh sums, each quantile (0.5 to 0.999) equal to hdrh's
  `get_value_at_percentile` on the merge of that tag's histograms (`HdrHistogram.add`), with
  its slot's width as resolution, the maximum equal to hdrh's `get_max_value()`, the
  histograms' significant digits, and one timeline point per interval with that interval's
  count, p50, p99 and maximum by hdrh.
- taskmeter writes, hdrh reads: the main job's interval log (`--hlog`), read back with hdrh's
  `HistogramLogReader` and merged per tag, must agree with `report` on the same figures.
- Times: each timeline point starts where its interval starts in the log (offset from
  `StartTime`, to the log's microsecond precision), and `report --from 0.3 --to 0.6` counts
  exactly the intervals whose start lies in [0.3 s, 0.6 s) from the log's start, computed
  exactly from the log's text (the log has intervals starting on both bounds).
Exits non-zero with a message on the first disagreement (no `assert`: checks stay on under
`python3 -O`).

Usage: python3 scripts/check_tune_interop.py path/to/taskmeter WORKDIR
"""
import datetime
import io
import json
import math
import pathlib
import random
import subprocess
import sys
from fractions import Fraction

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

if len(sys.argv) != 3:
    sys.exit("usage: check_tune_interop.py path/to/taskmeter WORKDIR")
binary = sys.argv[1]
workdir = pathlib.Path(sys.argv[2])
workdir.mkdir(parents=True, exist_ok=True)

UNTAGGED = "(untagged)"
QUANTILES = [0.5, 0.9, 0.99, 0.999]
LOWEST, HIGHEST = 1, 3_600_000
INTERVALS, INTERVAL_MS = 30, 100
# An epoch time in ms, not a round one: interval starts are offsets from it.
START_MS = 1_700_000_000_123
TAGS = {"alpha": 3, "beta.x": 3, "two.digits": 2, "idle": 3}  # tag: significant digits
FROM_S, TO_S = Fraction("0.3"), Fraction("0.6")


def require(condition, message):
    if not condition:
        sys.exit(f"check_tune_interop: {message}")


def run(*args):
    command = [binary, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    require(done.returncode == 0,
            f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def report(path, *extra):
    """`report --format json` of one file: its run, and its series by name."""
    document = json.loads(run("report", str(path), "--format", "json", *extra))
    require(document.get("schema") == "taskmeter.report/1", f"{path}: schema {document.get('schema')!r}")
    require(len(document["runs"]) == 1, f"{path}: {len(document['runs'])} runs reported")
    the_run = document["runs"][0]
    series = {s["name"]: s for s in the_run["series"]}
    require(len(series) == len(the_run["series"]), f"{path}: a series reported twice")
    return the_run, series


def slot_width(histogram, value):
    return histogram.get_highest_equivalent_value(value) - histogram.get_lowest_equivalent_value(value) + 1


def check_series(where, reported, intervals):
    """`reported` (a report's series by name) against hdrh, `intervals` holding each tag's
    interval histograms in log order. Returns the quantiles and timeline points compared."""
    require(set(reported) == set(intervals),
            f"{where}: series {sorted(reported)}, hdrh finds {sorted(intervals)}")
    quantiles = points = 0
    for name, histograms in sorted(intervals.items()):
        got = reported[name]
        first = histograms[0]
        digits = first.significant_figures
        merged = HdrHistogram(first.lowest_trackable_value,
                              max(h.highest_trackable_value for h in histograms), digits)
        for histogram in histograms:
            merged.add(histogram)
        count = merged.get_total_count()
        require(count == sum(h.get_total_count() for h in histograms), f"{where}: hdrh's add lost samples of {name}")
        require(got["count"] == count, f"{where}: {name} count {got['count']}, hdrh {count}")
        require(got["significant_digits"] == digits,
                f"{where}: {name} has {got['significant_digits']} significant digits, hdrh {digits}")
        if count == 0:
            require(got["quantiles"] == [] and got["max_ms"] is None,
                    f"{where}: empty {name} reports quantiles {got['quantiles']}, max {got['max_ms']}")
        else:
            require([q["quantile"] for q in got["quantiles"]] == QUANTILES,
                    f"{where}: {name} reports quantiles {[q['quantile'] for q in got['quantiles']]}")
            for q in got["quantiles"]:
                want = merged.get_value_at_percentile(q["quantile"] * 100)
                require(q["value_ms"] == want,
                        f"{where}: {name} p{q['quantile'] * 100:g} is {q['value_ms']} ms, hdrh {want} ms")
                width = slot_width(merged, want)
                require(q["resolution_ms"] == width,
                        f"{where}: {name} p{q['quantile'] * 100:g} resolution {q['resolution_ms']} ms, slot {width} ms")
                quantiles += 1
            # hdrh's maximum is the top of the highest slot (get_highest_equivalent_value),
            # the report's convention too: comparable exactly.
            require(got["max_ms"] == merged.get_max_value(),
                    f"{where}: {name} max {got['max_ms']} ms, hdrh {merged.get_max_value()} ms")
        # Up to 500 intervals, one timeline point each, in the log's order of starts.
        require(len(got["timeline"]) == len(histograms),
                f"{where}: {name} has {len(got['timeline'])} timeline points for {len(histograms)} intervals")
        for index, (point, histogram) in enumerate(zip(got["timeline"], histograms)):
            total = histogram.get_total_count()
            if total:
                want = (total, histogram.get_value_at_percentile(50), histogram.get_value_at_percentile(99),
                        histogram.get_max_value())
            else:
                want = (0, None, None, None)
            found = (point["count"], point["p50_ms"], point["p99_ms"], point["max_ms"])
            require(found == want,
                    f"{where}: {name} interval {index}: (count, p50, p99, max) {found}, hdrh {want}")
            points += 1
    return quantiles, points


def read_with_hdrh(path):
    """Each tag's interval histograms in log order, by hdrh's reader; untagged as `(untagged)`."""
    reader = HistogramLogReader(str(path), None)
    by_tag = {}
    while True:
        histogram = reader.get_next_interval_histogram()
        if histogram is None:
            break
        by_tag.setdefault(histogram.get_tag() or UNTAGGED, []).append(histogram)
    reader.close()
    return by_tag


def log_starts(path):
    """Each tag's interval starts, exact, in seconds from the log's StartTime (from the text)."""
    start = base = None
    starts = {}
    for line in path.read_text().splitlines():
        if line.startswith("#[StartTime: "):
            start = Fraction(line.split()[1])
        elif line.startswith("#[BaseTime: "):
            base = Fraction(line.split()[1])
        elif line and not line.startswith("#") and not line.startswith('"'):
            tag = UNTAGGED
            if line.startswith("Tag="):
                tag, line = line[4:].split(",", 1)
            require(start is not None and base is not None, f"{path}: an interval before the time headers")
            starts.setdefault(tag, []).append(Fraction(line.split(",")[0]) + base - start)
    return starts


# 1. hdrh writes. Its HistogramLogWriter writes no `Tag=` (it ignores the histogram's tag), and
# its output_start_time fails (it formats the date of a time in ms as if it were seconds), so
# the StartTime header and the tags are written here as Java's writer writes them.
rng = random.Random(20240607)
written = {}  # tag: interval histograms, as recorded
log = io.StringIO()
writer = HistogramLogWriter(log)
writer.output_log_format_version()
writer.output_comment("check_tune_interop: seeded lognormal durations in ms, written by hdrh")
start_iso = datetime.datetime.fromtimestamp(START_MS / 1000, datetime.timezone.utc).isoformat()
log.write(f"#[StartTime: {START_MS / 1000:.3f} (seconds since epoch), {start_iso}]\n")
writer.output_base_time(START_MS)
writer.output_legend()


def interval_line(histogram):
    """hdrh's line for `histogram`: its start and end (ms since the epoch) less the base time,
    in seconds; its maximum in ms; its compressed V2 encoding."""
    buffer = io.StringIO()
    line_writer = HistogramLogWriter(buffer)
    line_writer.base_time = START_MS
    line_writer.output_interval_histogram(histogram, max_value_unit_ratio=1.0)
    return buffer.getvalue()


def interval_histogram(digits, index, samples):
    histogram = HdrHistogram(LOWEST, HIGHEST, digits)
    for _ in range(samples):
        ms = min(HIGHEST, max(LOWEST, round(rng.lognormvariate(math.log(300), 2.2))))
        histogram.record_value(ms, rng.choice([1, 1, 1, 1, 2, 7]))
    histogram.set_start_time_stamp(START_MS + index * INTERVAL_MS)
    histogram.set_end_time_stamp(START_MS + (index + 1) * INTERVAL_MS)
    return histogram


for index in range(INTERVALS):
    lines = []
    for tag, digits in TAGS.items():
        empty = tag == "idle" or (tag == "alpha" and index == 7)
        lines.append((tag, interval_histogram(digits, index, 0 if empty else rng.randint(50, 400))))
    if index % 3 == 0:
        lines.append((UNTAGGED, interval_histogram(3, index, rng.randint(50, 400))))
    for tag, histogram in lines:
        log.write(interval_line(histogram) if tag == UNTAGGED else f"Tag={tag},{interval_line(histogram)}")
        written.setdefault(tag, []).append(histogram)
hdrh_log = workdir / "hdrh.hlog"
hdrh_log.write_text(log.getvalue())

read_back = read_with_hdrh(hdrh_log)
require({tag: [h.get_total_count() for h in hs] for tag, hs in read_back.items()}
        == {tag: [h.get_total_count() for h in hs] for tag, hs in written.items()},
        f"{hdrh_log}: hdrh's reader does not read back what was written")
the_run, reported = report(hdrh_log)
quantiles, points = check_series(str(hdrh_log), reported, written)
samples = sum(s["count"] for s in reported.values())
largest = max(h.get_max_value() for hs in written.values() for h in hs)
print(f"hdrh -> taskmeter: {len(reported)} series ({samples} samples up to {largest} ms), "
      f"{quantiles} quantiles, maxima and {points} timeline points equal hdrh's")

# 2. taskmeter writes, hdrh reads.
job_log = workdir / "run.hlog"
run("--duration", "1", "--period", "100", "--threads", "2", "--hlog", str(job_log))
read_back = read_with_hdrh(job_log)
require(len(read_back) >= 2, f"{job_log}: hdrh finds {len(read_back)} tags")
_, job_reported = report(job_log)
quantiles, points = check_series(str(job_log), job_reported, read_back)
samples = sum(s["count"] for s in job_reported.values())
print(f"taskmeter -> hdrh: {len(job_reported)} series ({samples} samples) of the main job's log, "
      f"{quantiles} quantiles, maxima and {points} timeline points equal hdrh's")

# 3. Times: the timeline's starts, and --from/--to, against the log's text. The window is
# computed exactly (fractions of the decimal text): in floating point, an epoch time in seconds
# holds about 2.4e-7 s, so `base + start - StartTime` can move a start written on a bound
# (0.300000) to either side of it.
starts = log_starts(hdrh_log)
require(set(starts) == set(written), f"{hdrh_log}: tags {sorted(starts)} in the text")
MICROSECOND = 1e-6  # the log's precision (hdrh writes %f)
for name, series in reported.items():
    for index, (point, start) in enumerate(zip(series["timeline"], starts[name])):
        require(abs(point["start_s"] - float(start)) < MICROSECOND / 2,
                f"{hdrh_log}: {name} interval {index} starts at {float(start)} s in the log, "
                f"{point['start_s']!r} s in the report")
end = INTERVALS * INTERVAL_MS / 1000
require(abs(the_run["duration_s"] - end) < MICROSECOND / 2, f"{hdrh_log}: duration {the_run['duration_s']} s, log {end} s")
_, windowed = report(hdrh_log, "--from", str(float(FROM_S)), "--to", str(float(TO_S)))
require(set(windowed) == set(written), f"{hdrh_log} --from/--to: series {sorted(windowed)}")
kept = 0
for name, histograms in written.items():
    inside = [h for h, start in zip(histograms, starts[name]) if FROM_S <= start < TO_S]
    want = sum(h.get_total_count() for h in inside)
    require(windowed[name]["count"] == want,
            f"{hdrh_log} --from {float(FROM_S)} --to {float(TO_S)}: {name} count {windowed[name]['count']}, "
            f"the {len(inside)} intervals starting in [{float(FROM_S)}, {float(TO_S)}) s hold {want}")
    require(len(windowed[name]["timeline"]) == len(inside),
            f"{hdrh_log} --from/--to: {name} keeps {len(windowed[name]['timeline'])} intervals, expected {len(inside)}")
    kept += len(inside)
print(f"times: timeline starts match the log's to 1 us; --from {float(FROM_S)} --to {float(TO_S)} keeps "
      f"exactly the {kept} intervals starting in that window (both bounds hit)")
