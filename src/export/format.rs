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

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The Prometheus text format 0.0.4: the default, and what every scraper reads.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it ranks
    /// `application/openmetrics-text` at least as high as `text/plain` (by q-value; a zero
    /// q-value refuses), the Prometheus text format otherwise, and for a missing or unreadable
    /// header.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let mut openmetrics: Option<f32> = None;
        let mut text: Option<f32> = None;
        for range in media_ranges(accept) {
            match range.media_type.as_str() {
                "application/openmetrics-text" => offer(&mut openmetrics, range.quality),
                "text/plain" => offer(&mut text, range.quality),
                _ => {}
            }
        }
        if ranks_first(openmetrics, text) {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// One media range of an `Accept` header: its type (lower case), its q-value (1 when absent
/// or not a finite number), and its other parameters.
pub(crate) struct MediaRange<'a> {
    pub(crate) media_type: String,
    pub(crate) quality: f32,
    #[cfg_attr(not(feature = "native-histograms"), allow(dead_code))]
    parameters: &'a str,
}

impl MediaRange<'_> {
    /// The value of parameter `name` (case-insensitive name), if given.
    #[cfg_attr(not(feature = "native-histograms"), allow(dead_code))]
    pub(crate) fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.split(';').find_map(|parameter| {
            let (key, value) = parameter.split_once('=')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// The media ranges of an `Accept` header, in order.
pub(crate) fn media_ranges(accept: &str) -> impl Iterator<Item = MediaRange<'_>> {
    accept.split(',').map(|range| {
        let (media_type, parameters) = range.split_once(';').unwrap_or((range, ""));
        let quality = parameters
            .split(';')
            .map(str::trim)
            .filter_map(|parameter| parameter.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(1.0);
        MediaRange {
            media_type: media_type.trim().to_ascii_lowercase(),
            quality,
            parameters,
        }
    })
}

/// Keeps the best quality offered for one type (several versions of it may be offered).
pub(crate) fn offer(best: &mut Option<f32>, quality: f32) {
    *best = Some(best.map_or(quality, |best| best.max(quality)));
}

/// Whether a type offered at `mine` is accepted (above zero) and ranked at least as high as
/// the other types, offered at `others`.
pub(crate) fn ranks_first(mine: Option<f32>, others: Option<f32>) -> bool {
    match (mine, others) {
        (Some(mine), Some(others)) => mine > 0.0 && mine >= others,
        (Some(mine), None) => mine > 0.0,
        (None, _) => false,
    }
}

impl Snapshot {
    /// This snapshot in `format`, whole (OpenMetrics ends with `# EOF`): the body of a
    /// `/metrics` response. See [`write_openmetrics_families`](Self::write_openmetrics_families)
    /// to join OpenMetrics with another registry's.
    pub fn render(&self, format: Format, config: &ExportConfig) -> String {
        let mut out = String::new();
        match format {
            Format::Prometheus => self.write_prometheus(config, &mut out),
            Format::OpenMetrics => self.write_openmetrics(config, &mut out),
        }
        out
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
}
