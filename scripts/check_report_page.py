#!/usr/bin/env python3
"""Checks the HTML pages of `taskmeter report` and `taskmeter compare` in headless Chromium.

- Runs the main job twice, B 20 % slower (`--slowdown 20`), and writes the report page of A and
  the comparison page of A and B, which must exit 1 (a regression);
- writes a hostile interval log (a line of A's log under the tag `<script>alert(1)</script>`,
  and a comment `# <img src=x onerror=alert(1)>`): its page's source must hold no `<script`
  and no `<img`, only the escaped texts;
- opens every page in headless Chromium: the DOM it renders (`--dump-dom`) must hold the
  charts (`<svg>` elements) and exactly the expected `polyline.series` lines, counted from the
  JSON of the same runs (a report: one distribution curve and three timeline lines, p50, p99
  and max, per non-empty series; a comparison: A's and B's curve per series, where not empty),
  in the palette's colours; no `<script` or `<img` element in the hostile page's DOM either;
- screenshots every page (`--screenshot`, kept in WORKDIR as CI artifacts) and decodes the PNG
  with the small reader below (zlib and the five scanline filters, 8-bit RGB or RGBA, not
  interlaced): it must not be blank (over 2 % of pixels not white) and must show the plot
  colours: the first series' `#1f77b4` (A in a comparison) and the second's `#d62728` (B);
- last, every tick label of every chart must be a number as a person writes it (no float
  artefact such as `0.6000000000000001`).
Exits non-zero with a message on the first failed check (no `assert`: checks stay on under
`python3 -O`). Chromium gets 120 s per page, so it can never hang a CI job.

Usage: python3 scripts/check_report_page.py path/to/taskmeter WORKDIR
"""
import html.parser
import json
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

if len(sys.argv) != 3:
    sys.exit("usage: check_report_page.py path/to/taskmeter WORKDIR")
binary = sys.argv[1]
workdir = pathlib.Path(sys.argv[2])
workdir.mkdir(parents=True, exist_ok=True)

BLUE, RED = (0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)  # the palette's first two colours
HOSTILE_TAG = "<script>alert(1)</script>"
HOSTILE_COMMENT = "<img src=x onerror=alert(1)>"
# One run on a side gets a bootstrap verdict from 24 intervals up (8 blocks of 3): 40 ms
# snapshots over 1 s give 26, where 100 ms ones give 11 and only "too few samples".
JOB = ["--duration", "1", "--period", "40", "--threads", "2"]


def require(condition, message):
    if not condition:
        sys.exit(f"check_report_page: {message}")


def taskmeter(*args, expect=0):
    command = [binary, *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    require(done.returncode == expect,
            f"{' '.join(command)} exited {done.returncode}, expected {expect}: {done.stderr.strip()}")
    return done.stdout


# --- Chromium ---------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
require(CHROMIUM is not None, "no chromium on PATH (.ci/run installs Debian's)")


def chromium(page, *args, height):
    """Runs headless Chromium on `page` with a fresh profile; its stdout."""
    profile = tempfile.mkdtemp(prefix="tune-chromium-")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size=1100,{height}", *args, page.resolve().as_uri()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        sys.exit(f"check_report_page: chromium did not finish in 120 s on {page}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    require(done.returncode == 0, f"chromium exited {done.returncode} on {page}: {done.stderr[-2000:]}")
    return done.stdout


class Elements(html.parser.HTMLParser):
    """Every element's tag and attributes, and the text of `class="tick"` elements."""

    def __init__(self, text):
        super().__init__()
        self.elements, self.ticks, self._tick = [], [], False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        self._tick = "tick" in (attrs.get("class") or "").split()

    def handle_endtag(self, tag):
        self._tick = False

    def handle_data(self, data):
        if self._tick:
            self.ticks.append(data)

    def all(self, tag, cls=None):
        return [a for t, a in self.elements if t == tag and (cls is None or cls in (a.get("class") or "").split())]


# --- PNG --------------------------------------------------------------------------------------

def read_png(path):
    """(width, height, channels, rows) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    data = path.read_bytes()
    require(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG")
    at, header, compressed = 8, None, []
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        require(zlib.crc32(kind + body) == struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0],
                f"{path}: bad CRC in a {kind!r} chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    require(header is not None, f"{path}: no IHDR")
    width, height, depth, colour, _, _, interlace = header
    require(depth == 8 and colour in (2, 6) and interlace == 0,
            f"{path}: bit depth {depth}, colour type {colour}, interlace {interlace}: only 8-bit RGB(A), not interlaced")
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(compressed))
    stride = width * channels
    require(len(raw) == height * (stride + 1), f"{path}: {len(raw)} bytes of scanlines for {width}x{height}")
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:  # Up: bytewise sums without carries, on whole rows at once
            a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
            low = int.from_bytes(b"\x7f" * stride, "big")
            high = int.from_bytes(b"\x80" * stride, "big")
            line = bytearray((((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(stride, "big"))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                if i >= channels:
                    a, c = line[i - channels], previous[i - channels]
                else:
                    a = c = 0
                b = previous[i]
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predicted = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + predicted) & 0xFF
        else:
            require(kind == 0, f"{path}: unknown filter {kind} on row {y}")
        rows.append(line)
        previous = line
    return width, height, channels, rows


def pixel_counts(path, colours, tolerance=40):
    """(pixels, not white, {colour: pixels within `tolerance` per channel of it})."""
    width, height, channels, rows = read_png(path)
    not_white = 0
    near = {colour: 0 for colour in colours}
    for row in rows:
        for r, g, b in zip(row[0::channels], row[1::channels], row[2::channels]):
            if r > 245 and g > 245 and b > 245:
                continue
            not_white += 1
            for colour in colours:
                if abs(r - colour[0]) <= tolerance and abs(g - colour[1]) <= tolerance \
                        and abs(b - colour[2]) <= tolerance:
                    near[colour] += 1
    return width * height, not_white, near


# --- The pages --------------------------------------------------------------------------------

a_log, b_log = workdir / "a.hlog", workdir / "b.hlog"
taskmeter(*JOB, "--hlog", a_log)
taskmeter(*JOB, "--slowdown", "20", "--hlog", b_log)


def non_empty(path):
    """The names of the series with samples in `report`'s JSON of `path`."""
    document = json.loads(taskmeter("report", path, "--format", "json"))
    return {s["name"] for run in document["runs"] for s in run["series"] if s["count"] > 0}


report_page, compare_page = workdir / "report.html", workdir / "compare.html"
taskmeter("report", a_log, "--html", report_page)
in_a, in_b = non_empty(a_log), non_empty(b_log)
comparison = json.loads(taskmeter("compare", a_log, b_log, "--html", compare_page, "--format", "json", expect=1))
require(comparison["tally"]["worse"] > 0 and comparison["tally"]["better"] == 0,
        f"compare: tally {comparison['tally']} for a 20 % slowdown")
compared = {row["series"] for row in comparison["rows"]}

# The hostile log: A's `#[...]` headers, the comment, A's lines of its first tag under the
# hostile tag (hdrh's log writer writes no tags at all: the line is edited by hand) and of
# its second tag as they are.
log_lines = a_log.read_text().splitlines()
tags = sorted({line[4:].split(",", 1)[0] for line in log_lines if line.startswith("Tag=")})
require(len(tags) >= 2, f"{a_log}: tags {tags}")
hostile = [line for line in log_lines if line.startswith("#[")] + [f"# {HOSTILE_COMMENT}"]
for line in log_lines:
    if line.startswith(f"Tag={tags[0]},"):
        hostile.append(f"Tag={HOSTILE_TAG}," + line.split(",", 1)[1])
    elif line.startswith(f"Tag={tags[1]},"):
        hostile.append(line)
hostile_log, hostile_page = workdir / "hostile.hlog", workdir / "hostile.html"
hostile_log.write_text("\n".join(hostile) + "\n")
taskmeter("report", hostile_log, "--html", hostile_page)
in_hostile = non_empty(hostile_log)
require(in_hostile == {HOSTILE_TAG, tags[1]}, f"{hostile_log}: series {sorted(in_hostile)}")

source = hostile_page.read_text()
for bad in ["<script", "<img"]:
    require(bad not in source.lower(), f"{hostile_page}: the source holds {bad!r}")
for escaped in ["&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;"]:
    require(escaped in source, f"{hostile_page}: the escaped text {escaped!r} is missing")
print(f"hostile log: {hostile_page.name} holds no <script nor <img, only the escaped tag and comment")

# name: (page, window height, polyline.series expected, <svg>s expected). A screenshot holds
# the window only: the report's is tall enough for its first timelines, the comparison's for
# its first charts, which sit under its table of 52 rows.
pages = {
    "report": (report_page, 2600, 4 * len(in_a), 1 + len(in_a)),
    "compare": (compare_page, 4000, sum((n in in_a) + (n in in_b) for n in compared), len(compared)),
    "hostile": (hostile_page, 1400, 4 * len(in_hostile), 1 + len(in_hostile)),
}
all_ticks = []
for name, (page, height, polylines, svgs) in pages.items():
    dom_text = chromium(page, "--dump-dom", height=height)
    dom = Elements(dom_text)
    require(dom.all("table") and dom.all("h1"), f"{name}: the rendered DOM has no table or heading")
    found_svgs = len(dom.all("svg"))
    require(found_svgs == svgs, f"{name}: the rendered DOM has {found_svgs} <svg> charts, expected {svgs}")
    series_lines = dom.all("polyline", "series")
    require(len(series_lines) == polylines,
            f"{name}: the rendered DOM has {len(series_lines)} polyline.series, expected {polylines}")
    # The first series' curve and the second's (a report), or A's and B's (a comparison).
    strokes = [line.get("stroke") for line in series_lines]
    require(strokes[:2] == ["#1f77b4", "#d62728"], f"{name}: the first lines are drawn in {strokes[:2]}")
    require(all(len(line.get("points", "").split()) >= 2 for line in series_lines),
            f"{name}: a line of fewer than 2 points")
    for bad in ["script", "img", "iframe", "object", "embed"]:
        require(not dom.all(bad), f"{name}: the rendered DOM has a <{bad}> element")
    require(not re.search(r"<\s*(script|img)", dom_text, re.IGNORECASE), f"{name}: <script or <img in the DOM")
    all_ticks += [(name, tick) for tick in dom.ticks]

    screenshot = workdir / f"{name}.png"
    screenshot.unlink(missing_ok=True)
    chromium(page, f"--screenshot={screenshot.resolve()}", height=height)
    require(screenshot.is_file(), f"{name}: chromium wrote no screenshot")
    pixels, not_white, near = pixel_counts(screenshot, [BLUE, RED])
    require(not_white > 0.02 * pixels, f"{name}: {screenshot} is blank ({not_white} of {pixels} pixels not white)")
    # Observed: 1,150 to 4,800 pixels of each colour on these pages; a legend's swatch is about
    # 40. The threshold is half the least observed, and 5 legends' worth.
    for colour, label in [(BLUE, "#1f77b4"), (RED, "#d62728")]:
        require(near[colour] >= 600, f"{name}: {screenshot} has {near[colour]} pixels near {label}, expected 600 or more")
    print(f"{name}: DOM has {found_svgs} charts and {len(series_lines)} series lines as expected; {screenshot.name}: "
          f"{100 * not_white / pixels:.1f}% of {pixels} pixels drawn, {near[BLUE]} near #1f77b4, {near[RED]} near #d62728")

# Last: tick labels as a person writes them ("0.6", "99.99999%": a percentile axis needs a
# digit per decade of samples), not a float's shortest round trip ("0.6000000000000001", 16
# significant digits).
for name, tick in all_ticks:
    digits = re.sub(r"[^0-9]", "", tick).strip("0")
    require(len(digits) <= 12, f"{name}: a tick labelled {tick!r}")
print(f"ticks: all {len(all_ticks)} tick labels are round numbers")
