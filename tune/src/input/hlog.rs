//! HdrHistogram interval logs (the format of Java's `HistogramLogWriter`, and of taskmeter's
//! `IntervalLogSink`): `#[StartTime: …]` and `#[BaseTime: …]` headers, comments, a legacy
//! column header, then one line per interval, `[Tag=NAME,]start,length,max,BASE64` where the
//! base64 holds a V2 histogram, usually deflate-compressed.
//!
//! The histogram is decoded into its non-empty slots directly: the counts are zig-zag LEB128
//! varints, a negative one a run of empty slots, so a line costs its non-empty slots however
//! wide the histogram's range.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};

use base64::Engine;
use flate2::read::ZlibDecoder;

use super::{Budget, Failure, LineReader, Run, Series, UNTAGGED};
use crate::layout::Layout;

/// The cookies' bases (the low nibble's upper bits hold the word size, masked off).
const V2_COOKIE_BASE: u32 = 0x1c84_9303;
const V2_COMPRESSED_COOKIE_BASE: u32 = 0x1c84_9304;
const V1_COOKIE_BASES: [u32; 2] = [0x1c84_9301, 0x1c84_9302];
const DOUBLE_COOKIES: [u32; 2] = [0x0c72_124e, 0x0c72_124f];
const V2_HEADER_BYTES: usize = 40;
/// The most bytes a compressed histogram may inflate to: far above any real one (a 5-digit
/// histogram of the whole `u64` range is about 12 MiB of varints), low enough that a hostile
/// line cannot exhaust memory.
const MAX_INFLATED_BYTES: u64 = 64 << 20;
/// Timestamps above a year of seconds are absolute (seconds since the epoch), as Java's reader
/// decides when a log has no `BaseTime`.
const ABSOLUTE_AFTER_S: f64 = 365.0 * 24.0 * 3600.0;

struct Line {
    tag: String,
    start_s: f64,
    length_s: f64,
    layout: Layout,
    slots: Vec<(u32, u64)>,
}

pub(super) fn read<R: BufRead>(
    source: String,
    lines: &mut LineReader<'_, R>,
) -> Result<Run, Failure> {
    let mut run = Run::new(source);
    let (mut start_time, mut base_time) = (None, None);
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut earliest = f64::INFINITY;
    let mut budget = Budget::new();
    while let Some((number, line)) = lines.next_line()? {
        let fail = |reason: String| (Some(number), reason);
        if let Some(header) = line.strip_prefix("#[StartTime: ") {
            start_time = Some(header_seconds(header).map_err(fail)?);
        } else if let Some(header) = line.strip_prefix("#[BaseTime: ") {
            base_time = Some(header_seconds(header).map_err(fail)?);
        } else if let Some(comment) = line.strip_prefix('#') {
            if run.comments.len() < 16 {
                run.comments
                    .push(comment.trim().chars().take(200).collect());
            }
        } else if line.starts_with("\"StartTimestamp\"") || line.trim().is_empty() {
        } else {
            let line = parse_line(line).map_err(fail)?;
            // Seconds from the run's start (its StartTime, else time 0, moved to the first
            // interval below). Header times are subtracted from each other before a line's
            // start is added, so that epoch-sized numbers do not eat the starts' precision.
            let origin = start_time.or(base_time).unwrap_or(0.0);
            let start = match base_time {
                Some(base) => (base - origin) + line.start_s,
                None if line.start_s >= ABSOLUTE_AFTER_S => line.start_s - origin,
                None => (start_time.unwrap_or(0.0) - origin) + line.start_s,
            };
            earliest = earliest.min(start);
            let entry = series
                .entry(line.tag.clone())
                .or_insert_with(|| Series::new(line.layout));
            if entry.layout() != line.layout {
                return Err(fail(format!(
                    "series {:?} changes its histogram from {} to {}",
                    line.tag,
                    entry.layout(),
                    line.layout
                )));
            }
            budget.admit(entry, &line.slots).map_err(fail)?;
            entry.push_interval(start, line.length_s, line.slots);
        }
    }
    if start_time.is_none() && earliest.is_finite() {
        series.values_mut().for_each(|s| s.shift_starts(-earliest));
    }
    run.series = series;
    Ok(run)
}

fn header_seconds(header: &str) -> Result<f64, String> {
    let seconds = header
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches(']');
    seconds
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite())
        .ok_or_else(|| format!("bad time in header: {seconds:?}"))
}

fn parse_line(line: &str) -> Result<Line, String> {
    let (tag, rest) = match line.strip_prefix("Tag=") {
        Some(tagged) => {
            let (tag, rest) = tagged
                .split_once(',')
                .ok_or("a tag with nothing after it (truncated line?)")?;
            if tag.is_empty() {
                return Err("an empty tag".into());
            }
            (tag.to_owned(), rest)
        }
        None => (UNTAGGED.to_owned(), line),
    };
    let fields: Vec<&str> = rest.split(',').collect();
    let [start, length, _max, histogram] = fields[..] else {
        return Err(format!(
            "{} fields where an interval has 4 (start, length, max, histogram): truncated line?",
            fields.len()
        ));
    };
    let seconds = |name: &str, text: &str| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| format!("bad interval {name}: {text:?}"))
    };
    let (start_s, length_s) = (seconds("start", start)?, seconds("length", length)?);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(histogram.trim())
        .map_err(|error| format!("bad base64 histogram: {error}"))?;
    let (layout, slots) = decode_histogram(&bytes)?;
    Ok(Line {
        tag,
        start_s,
        length_s,
        layout,
        slots,
    })
}

/// The layout and non-empty slots of an encoded histogram, compressed or not.
fn decode_histogram(bytes: &[u8]) -> Result<(Layout, Vec<(u32, u64)>), String> {
    let cookie = read_u32(bytes, 0).ok_or("a histogram shorter than its cookie")?;
    if DOUBLE_COOKIES.contains(&cookie) {
        return Err("a DoubleHistogram: this reads integer histograms only".into());
    }
    match cookie & !0xf0 {
        V2_COMPRESSED_COOKIE_BASE => {
            let length = read_u32(bytes, 4).ok_or("a compressed histogram without its length")?;
            let compressed = bytes
                .get(8..8 + length as usize)
                .ok_or("a compressed histogram shorter than its length")?;
            let mut inflated = Vec::new();
            ZlibDecoder::new(compressed)
                .take(MAX_INFLATED_BYTES + 1)
                .read_to_end(&mut inflated)
                .map_err(|error| format!("the compressed histogram does not inflate: {error}"))?;
            if inflated.len() as u64 > MAX_INFLATED_BYTES {
                return Err("the histogram inflates past 64 MiB".into());
            }
            let inner = read_u32(&inflated, 0).ok_or("an empty compressed histogram")?;
            if DOUBLE_COOKIES.contains(&inner) {
                return Err("a DoubleHistogram: this reads integer histograms only".into());
            }
            if inner & !0xf0 != V2_COOKIE_BASE {
                return Err(format!(
                    "a compressed histogram of unknown encoding {inner:#x}"
                ));
            }
            decode_v2(&inflated)
        }
        V2_COOKIE_BASE => decode_v2(bytes),
        base if V1_COOKIE_BASES.contains(&base) => {
            Err("a V1 histogram encoding: only V2 (HdrHistogram 2.1 and later) is read".into())
        }
        _ => Err(format!("not an HdrHistogram encoding (cookie {cookie:#x})")),
    }
}

fn decode_v2(bytes: &[u8]) -> Result<(Layout, Vec<(u32, u64)>), String> {
    if bytes.len() < V2_HEADER_BYTES {
        return Err("a histogram shorter than its header".into());
    }
    let payload = read_u32(bytes, 4).expect("in the header") as usize;
    let offset = read_u32(bytes, 8).expect("in the header");
    let digits = read_u32(bytes, 12).expect("in the header");
    let lowest = read_u64(bytes, 16).expect("in the header");
    if offset != 0 {
        return Err(format!("a shifted histogram (normalizing offset {offset})"));
    }
    let digits = u8::try_from(digits).map_err(|_| format!("{digits} significant digits"))?;
    let layout = Layout::new(lowest, digits)?;
    let mut counts = bytes
        .get(V2_HEADER_BYTES..V2_HEADER_BYTES + payload)
        .ok_or("a histogram shorter than its payload length")?;
    let mut slots = Vec::new();
    let (mut index, mut total) = (0_u64, 0_u64);
    let past = |index: u64| format!("counts past slot {index}, beyond the values of {layout}");
    while !counts.is_empty() {
        let value = read_zig_zag(&mut counts).ok_or("a count cut in the middle")?;
        if value < 0 {
            index = index.saturating_add(value.unsigned_abs());
            continue;
        }
        if index >= u64::from(layout.slot_count()) {
            return Err(past(index));
        }
        if value > 0 {
            total = total
                .checked_add(value as u64)
                .ok_or("counts that add up past 2^64")?;
            slots.push((index as u32, value as u64));
        }
        index += 1;
    }
    Ok((layout, slots))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// One zig-zag LEB128 varint as HdrHistogram writes it (at most 9 bytes, the ninth whole).
fn read_zig_zag(bytes: &mut &[u8]) -> Option<i64> {
    let mut value = 0_u64;
    for position in 0..9 {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        if position == 8 {
            value |= u64::from(byte) << 56;
            break;
        }
        value |= u64::from(byte & 0x7f) << (7 * position);
        if byte & 0x80 == 0 {
            break;
        }
    }
    Some((value >> 1) as i64 ^ -((value & 1) as i64))
}
