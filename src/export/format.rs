//! The text formats of a `/metrics` response, and how a scrape's `Accept` header picks one: what
//! [`MetricsServer`](crate::server) does, for users who serve `/metrics` from their own router.
//!
//! ```
//! use taskmeter::AtomicMetrics;
//! use taskmeter::export::{ExportConfig, Format};
//!
//! // Prometheus's own scrape header prefers OpenMetrics.
//! let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
//! let format = Format::from_accept(Some(accept));
//! assert_eq!(format, Format::OpenMetrics);
//!
//! let metrics = AtomicMetrics::new();
//! let body = metrics.latest().render(format, &ExportConfig::default());
//! assert!(body.ends_with("# EOF\n"));
//! assert!(format.content_type().starts_with("application/openmetrics-text"));
//! ```

use super::ExportConfig;
use super::prometheus::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use crate::snapshot::Snapshot;

/// An exposition format of a `/metrics` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The Prometheus text format 0.0.4: the default, and what every scraper reads.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus's protobuf exposition (length-delimited `MetricFamily` messages), with
    /// native histograms: binary, see [`Snapshot::encode`].
    #[cfg(feature = "native-histograms")]
    Protobuf,
}

/// The protobuf media type Prometheus asks for, as its parameters must name it.
#[cfg(feature = "native-histograms")]
const PROTOBUF_TYPE: &str = "application/vnd.google.protobuf";
#[cfg(feature = "native-histograms")]
const PROTOBUF_MESSAGE: &str = "io.prometheus.client.MetricFamily";

impl Format {
    /// The format an `Accept` header asks for: the one it ranks highest by q-value among
    /// `application/vnd.google.protobuf` (with `proto=io.prometheus.client.MetricFamily` and
    /// `encoding=delimited`, with the `native-histograms` feature), then
    /// `application/openmetrics-text`, then `text/plain`, the earlier winning a tie; the
    /// Prometheus text format when none of them is accepted, and for a missing header.
    ///
    /// The header is read as RFC 9110 writes it: types and parameter names in any case
    /// (`Q=0.5`), values as tokens or quoted strings (`proto="…"`); a zero q-value refuses
    /// a type, and an unreadable q-value counts as 1.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        // Per format, in the order that wins a tie, the best q-value offered for it.
        let mut offered: [(Format, Option<f32>); 3] = [
            (Format::protobuf_if_built(), None),
            (Format::OpenMetrics, None),
            (Format::Prometheus, None),
        ];
        for range in media_ranges(accept) {
            let format = match range.media_type.as_str() {
                #[cfg(feature = "native-histograms")]
                PROTOBUF_TYPE
                    if range.parameter("proto") == Some(PROTOBUF_MESSAGE)
                        && range
                            .parameter("encoding")
                            .is_some_and(|e| e.eq_ignore_ascii_case("delimited")) =>
                {
                    Format::Protobuf
                }
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" => Format::Prometheus,
                _ => continue,
            };
            if let Some((_, best)) = offered.iter_mut().find(|(f, _)| *f == format) {
                *best = Some(best.map_or(range.quality, |best| best.max(range.quality)));
            }
        }
        let accepted = offered.iter().filter_map(|&(format, q)| Some((format, q?)));
        let mut best: Option<(Format, f32)> = None;
        for (format, quality) in accepted.filter(|&(_, q)| q > 0.0) {
            if best.is_none_or(|(_, best)| quality > best) {
                best = Some((format, quality));
            }
        }
        best.map_or(Format::Prometheus, |(format, _)| format)
    }

    /// Protobuf where this build encodes it; otherwise a format already in the list, so that
    /// its place in the tie order is taken by nothing new.
    fn protobuf_if_built() -> Format {
        #[cfg(feature = "native-histograms")]
        return Format::Protobuf;
        #[cfg(not(feature = "native-histograms"))]
        return Format::OpenMetrics;
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            #[cfg(feature = "native-histograms")]
            Format::Protobuf => super::native::PROTOBUF_CONTENT_TYPE,
        }
    }

    /// Whether the body is text (Prometheus or OpenMetrics), which
    /// [`Snapshot::render`] returns as a `String`.
    pub fn is_text(self) -> bool {
        matches!(self, Format::Prometheus | Format::OpenMetrics)
    }
}

/// One media range of an `Accept` header: its type and its parameters' names in lower case,
/// the parameters' values unquoted, and its q-value (1 when absent or not a finite number).
pub(crate) struct MediaRange {
    pub(crate) media_type: String,
    pub(crate) quality: f32,
    parameters: Vec<(String, String)>,
}

impl MediaRange {
    /// The value of parameter `name` (lower case), if given.
    #[cfg_attr(not(feature = "native-histograms"), allow(dead_code))]
    pub(crate) fn parameter(&self, name: &str) -> Option<&str> {
        (self.parameters.iter())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The media ranges of an `Accept` header, in order (RFC 9110, section 12.5.1): commas and
/// semicolons inside a quoted value are part of it, and `\` escapes the next character there.
pub(crate) fn media_ranges(accept: &str) -> Vec<MediaRange> {
    let mut ranges = Vec::new();
    // The current range's parts, split at `;`: its type, then `name=value` parameters.
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = accept.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let part = parts.last_mut().expect("never empty");
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => part.extend(chars.next()),
            ';' if !quoted => parts.push(String::new()),
            ',' if !quoted => ranges.push(media_range(std::mem::replace(
                &mut parts,
                vec![String::new()],
            ))),
            c => part.push(c),
        }
    }
    ranges.push(media_range(parts));
    ranges
}

fn media_range(parts: Vec<String>) -> MediaRange {
    let mut parts = parts.into_iter();
    let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let parameters: Vec<(String, String)> = parts
        .filter_map(|parameter| {
            let (name, value) = parameter.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    let quality = (parameters.iter())
        .find(|(name, _)| name == "q")
        .and_then(|(_, q)| q.parse::<f32>().ok())
        .filter(|q| q.is_finite())
        .unwrap_or(1.0);
    MediaRange {
        media_type,
        quality,
        parameters,
    }
}

impl Snapshot {
    /// This snapshot in a text `format`, whole (OpenMetrics ends with `# EOF`): the body of a
    /// `/metrics` response. See [`write_openmetrics_families`](Self::write_openmetrics_families)
    /// to join OpenMetrics with another registry's, and [`encode`](Self::encode) for a body
    /// in any format.
    ///
    /// # Panics
    ///
    /// For [`Format::Protobuf`], whose body is binary (see [`Format::is_text`]).
    pub fn render(&self, format: Format, config: &ExportConfig) -> String {
        let mut out = String::new();
        match format {
            Format::Prometheus => self.write_prometheus(config, &mut out),
            Format::OpenMetrics => self.write_openmetrics(config, &mut out),
            #[cfg(feature = "native-histograms")]
            Format::Protobuf => panic!("the protobuf exposition is binary: use Snapshot::encode"),
        }
        out
    }

    /// This snapshot in `format`, whole: the body of a `/metrics` response of
    /// [`format.content_type()`](Format::content_type), text or binary.
    ///
    /// ```
    /// use taskmeter::AtomicMetrics;
    /// use taskmeter::export::{ExportConfig, Format};
    ///
    /// let accept = "application/vnd.google.protobuf;proto=\"io.prometheus.client.MetricFamily\";encoding=delimited,text/plain;q=0.5";
    /// let format = Format::from_accept(Some(accept));
    /// let body = AtomicMetrics::new().latest().encode(format, &ExportConfig::default());
    /// # #[cfg(feature = "native-histograms")]
    /// assert_eq!(format, Format::Protobuf);
    /// # #[cfg(not(feature = "native-histograms"))]
    /// # assert_eq!(format, Format::Prometheus);
    /// assert!(!body.is_empty());
    /// ```
    pub fn encode(&self, format: Format, config: &ExportConfig) -> Vec<u8> {
        match format {
            #[cfg(feature = "native-histograms")]
            Format::Protobuf => self.to_protobuf(config),
            text => self.render(text, config).into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    fn format(accept: &str) -> Format {
        Format::from_accept(Some(accept))
    }

    #[test]
    fn accept_negotiation() {
        let prometheus_scrape = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(format(prometheus_scrape), Format::OpenMetrics);
        assert_eq!(format("application/openmetrics-text"), Format::OpenMetrics);
        assert_eq!(format("text/plain;version=0.0.4"), Format::Prometheus);
        assert_eq!(
            format("text/plain, application/openmetrics-text;q=0.5"),
            Format::Prometheus
        );
        assert_eq!(
            format("application/openmetrics-text;q=0"),
            Format::Prometheus
        );
        assert_eq!(
            format("application/openmetrics-text;q=NaN"),
            Format::OpenMetrics
        );
        assert_eq!(format("*/*"), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
    }

    /// RFC 9110: parameter names in any case, quoted values, and commas or semicolons inside
    /// quotes belong to the value.
    #[test]
    fn accept_is_read_as_rfc_9110_writes_it() {
        assert_eq!(
            format("application/openmetrics-text;Q=0, text/plain"),
            Format::Prometheus,
            "an upper-case Q refuses"
        );
        assert_eq!(
            format("text/plain;q=0.5, Application/OpenMetrics-Text; Q=0.9"),
            Format::OpenMetrics
        );
        assert_eq!(
            format(r#"text/plain;note="a, b; q=1";q=0.2, application/openmetrics-text;q=0.5"#),
            Format::OpenMetrics,
            "a quoted comma does not end the range, nor a quoted q set the weight"
        );
        assert_eq!(
            format(r#"application/openmetrics-text;version="1.0.0";q="0.7", text/plain;q=0.6"#),
            Format::OpenMetrics
        );
        let ranges = super::media_ranges(r#"a/b;X="q\"uo;te", c/d"#);
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].parameter("x"), Some(r#"q"uo;te"#));
        assert_eq!(ranges[1].media_type, "c/d");
    }

    #[cfg(feature = "native-histograms")]
    #[test]
    fn accept_selects_protobuf_when_it_ranks_first() {
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
        assert_eq!(format(native), Format::Protobuf);
        let quoted = r#"Application/Vnd.Google.Protobuf; PROTO="io.prometheus.client.MetricFamily"; Encoding=Delimited"#;
        assert_eq!(format(quoted), Format::Protobuf);
        let wrong_message =
            "application/vnd.google.protobuf;proto=other.Message;encoding=delimited";
        assert_eq!(format(wrong_message), Format::Prometheus);
        let text_first = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,text/plain";
        assert_eq!(format(text_first), Format::Prometheus);
        let refused = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0";
        assert_eq!(format(refused), Format::Prometheus);
        let tie = "text/plain;q=0.5,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5";
        assert_eq!(format(tie), Format::Protobuf);
    }
}
