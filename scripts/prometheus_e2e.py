#!/usr/bin/env python3
"""End to end with a real Prometheus (Debian's 2.42, native histograms on).

Starts the main job with --serve on loopback, and Prometheus scraping it every second from a
temporary config and data directory; once the job's final snapshot is served, queries
Prometheus's HTTP API and checks what it stored against the job's own /metrics.json:
counters equal the snapshot's; histogram_quantile(0.99) over the classic buckets lands in the
bucket of the HDR p99; over the native histogram it is within the schema's relative error of
the HDR p99; the constant label arrives on every series. Both processes are stopped here,
whatever happens. Fails with a message naming what differs.

Usage: python3 scripts/prometheus_e2e.py [path/to/taskmeter]  (default target/release/taskmeter)
"""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/taskmeter"
LABEL = ("node", "e2e")
SOLTI_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                 1800.0, 3600.0]
# Schema 8 (the engine's default 3 digits): buckets 2^(1/256) apart; the HDR p99 is its
# slot's highest value, the native bucket its lowest one's (0.1 % at 3 digits).
NATIVE_RELATIVE_ERROR = (2 ** (2 ** -8) - 1) + 0.001 + 1e-9


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_for(what, condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (OSError, ValueError, KeyError, IndexError):
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise Failure(f"timed out after {timeout} s waiting for {what}")


def query(prometheus, expression):
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    answer = json.loads(get(url))
    check(answer["status"] == "success", f"{expression}: {answer}")
    return answer["data"]["result"]


def scalar(prometheus, expression):
    result = query(prometheus, expression)
    check(len(result) == 1, f"{expression}: {len(result)} series, expected 1: {result}")
    return float(result[0]["value"][1])


def bucket_of(seconds):
    """(lower, upper] of the classic bucket holding a value, in seconds."""
    lower = 0.0
    for bound in SOLTI_BUCKETS:
        if seconds <= bound:
            return lower, bound
        lower = bound
    return lower, math.inf


def stop(process):
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def run(workdir):
    job_port, prometheus_port = free_port(), free_port()
    job_url = f"http://127.0.0.1:{job_port}"
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as out:
        out.write(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: taskmeter\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{job_port}']\n"
        )
    job_log = open(os.path.join(workdir, "job.log"), "w+")
    prometheus_log = open(os.path.join(workdir, "prometheus.log"), "w+")
    job = prom = None
    try:
        job = subprocess.Popen(
            [BINARY, "--duration", "4", "--threads", "1", "--period", "250",
             "--serve", f"127.0.0.1:{job_port}", "--label", f"{LABEL[0]}={LABEL[1]}",
             "--linger", "120"],
            stdout=job_log, stderr=subprocess.STDOUT)
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}",
             "--enable-feature=native-histograms"],
            stdout=prometheus_log, stderr=subprocess.STDOUT)

        def final_served():
            job_log.seek(0)
            return "serving the final snapshot" in job_log.read()
        wait_for("the job's final snapshot", final_served, 60)
        final = json.loads(get(f"{job_url}/metrics.json"))
        cumulative = final["cumulative"]
        started = cumulative["started"]["subprocess"]
        check(started > 0, "the job recorded nothing")
        wait_for("Prometheus to scrape the final snapshot",
                 lambda: query(prometheus, f'solti_runner_tasks_started_total{{runner="subprocess"}} == {started}'),
                 60)

        # Counters equal the snapshot's.
        compared = 0
        for runner, count in cumulative["started"].items():
            got = scalar(prometheus, f'solti_runner_tasks_started_total{{runner="{runner}"}}')
            check(got == count, f"started {runner}: Prometheus {got}, snapshot {count}")
            compared += 1
        for runner, outcomes in cumulative["completed"].items():
            for outcome, durations in outcomes.items():
                labels = f'runner="{runner}",outcome="{outcome}"'
                got = scalar(prometheus, f"solti_runner_tasks_completed_total{{{labels}}}")
                check(got == durations["count"], f"completed {labels}: {got} vs {durations['count']}")
                compared += 1
        for runner, kinds in cumulative["errors"].items():
            for kind, count in kinds.items():
                labels = f'runner="{runner}",error="{kind}"'
                got = scalar(prometheus, f"solti_runner_errors_total{{{labels}}}")
                check(got == count, f"errors {labels}: {got} vs {count}")
                compared += 1

        # The application's registry, merged into the endpoint: its counter arrives in the
        # same scrapes as taskmeter's families (one timestamp). Prometheus negotiates protobuf
        # (native histograms on), so those scrapes also carry the native histograms checked
        # below.
        batches = scalar(prometheus, 'demo_batches_total{job="taskmeter"}')
        check(batches > 0, f"demo_batches_total {batches}: the merged registry is not scraped")
        same = scalar(prometheus, 'timestamp(demo_batches_total) - on() '
                      'timestamp(solti_runner_tasks_started_total{runner="subprocess"})')
        check(same == 0, f"the application's counter and taskmeter's are {same} s apart")

        # The constant label is on every series of the job, and nothing arrives without it.
        missing = query(prometheus, f'count({{job="taskmeter",__name__=~"solti_runner_.*",{LABEL[0]}!="{LABEL[1]}"}})')
        check(missing == [], f"series without {LABEL[0]}={LABEL[1]}: {missing}")
        present = scalar(prometheus, f'count(solti_runner_tasks_started_total{{{LABEL[0]}="{LABEL[1]}"}})')
        check(present == 3, f"{present} started series carry the constant label")

        # Quantiles over the classic buckets and over the native histogram.
        checked = 0
        for runner, outcomes in cumulative["completed"].items():
            for outcome, durations in outcomes.items():
                if durations["count"] < 1000:
                    continue
                labels = f'runner="{runner}",outcome="{outcome}"'
                hdr_p99 = durations["quantiles_ms"]["0.99"] / 1e3
                classic = scalar(prometheus, f"histogram_quantile(0.99, solti_runner_task_duration_seconds_bucket{{{labels}}})")
                # The bucket of the slot's lowest value, or of its highest (the HDR value).
                low, _ = bucket_of(hdr_p99 / 1.001)
                _, high = bucket_of(hdr_p99)
                check(low <= classic <= high,
                      f"{labels}: classic p99 {classic} s outside ({low}, {high}] of HDR p99 {hdr_p99} s")
                native = scalar(prometheus, f"histogram_quantile(0.99, solti_runner_task_duration_native_seconds{{{labels}}})")
                error = abs(native - hdr_p99) / hdr_p99
                check(error <= NATIVE_RELATIVE_ERROR,
                      f"{labels}: native p99 {native} s is {error:.5f} from HDR p99 {hdr_p99} s")
                print(f"  {labels}: HDR p99 {hdr_p99} s, classic {classic} s, native {native:.6f} s ({error * 100:.3f} %)")
                checked += 1
        check(checked >= 3, f"only {checked} label sets had enough completions")
        print(f"prometheus e2e: {compared} counters equal, {checked} label sets' p99 checked")
    finally:
        stop(job)
        stop(prom)
        for log, name in [(job_log, "job"), (prometheus_log, "prometheus")]:
            log.close()


def main():
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} does not exist: build the main job first (cargo build --release)")
    if shutil.which("prometheus") is None:
        sys.exit("prometheus is not installed (Debian: apt-get install prometheus)")
    workdir = tempfile.mkdtemp(prefix="taskmeter-e2e-")
    try:
        run(workdir)
    except Failure as failure:
        for name in ["job.log", "prometheus.log"]:
            path = os.path.join(workdir, name)
            if os.path.exists(path):
                print(f"--- {name} (last lines)", file=sys.stderr)
                with open(path) as log:
                    print("".join(log.readlines()[-20:]), file=sys.stderr)
        sys.exit(f"prometheus e2e failed: {failure}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
