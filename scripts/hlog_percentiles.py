#!/usr/bin/env python3
"""Prints an HdrHistogram interval log as CSV, one row per interval and tag, ready to plot.

    pip install hdrhistogram
    python3 scripts/hlog_percentiles.py durations.hlog > durations.csv

Columns: start_s (seconds since the Unix epoch), tag (runner.outcome), count, p50_ms,
p90_ms, p99_ms, p999_ms, max_ms. Plot with anything that reads CSV, e.g. gnuplot:
    plot "< grep subprocess.success durations.csv" using 1:6 with lines title "p99"
"""
import sys

from hdrh.log import HistogramLogReader

reader = HistogramLogReader(sys.argv[1], None)
print("start_s,tag,count,p50_ms,p90_ms,p99_ms,p999_ms,max_ms")
while True:
    histogram = reader.get_next_interval_histogram()
    if histogram is None:
        break
    count = histogram.get_total_count()
    if count == 0:
        continue
    values = [histogram.get_value_at_percentile(p) for p in (50, 90, 99, 99.9)]
    start = histogram.get_start_time_stamp() / 1000.0
    print(f"{start:.3f},{histogram.get_tag()},{count}," + ",".join(map(str, values))
          + f",{histogram.get_max_value()}")
