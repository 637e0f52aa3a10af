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
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
            let quality = parts
                .filter_map(|parameter| parameter.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(1.0);
            let slot = match media_type.as_str() {
                "application/openmetrics-text" => &mut openmetrics,
                "text/plain" => &mut text,
                _ => continue,
            };
            // Several versions of one type: keep the best quality offered.
            *slot = Some(slot.map_or(quality, |best: f32| best.max(quality)));
        }
        let prefers_openmetrics = match (openmetrics, text) {
            (Some(om), Some(text)) => om > 0.0 && om >= text,
            (Some(om), None) => om > 0.0,
            _ => false,
        };
        if prefers_openmetrics {
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
