//! The practical band, and the names of quantiles as people write them.

use serde::Serialize;

/// The practical band: the change a quantile must exceed to be called better or worse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bands {
    /// For every quantile not listed in `per_quantile`, as a fraction (0.05 is 5 %).
    pub default: f64,
    /// `(quantile, band)` pairs.
    pub per_quantile: Vec<(f64, f64)>,
}

impl Default for Bands {
    fn default() -> Self {
        Bands {
            default: 0.05,
            per_quantile: Vec::new(),
        }
    }
}

impl Bands {
    /// Parses `--band`: a percentage (`5`, `5%`), or `pNN=PERCENT` pairs separated by commas
    /// (`p99=10,p50=3%`), optionally with a plain percentage for the rest.
    ///
    /// ```
    /// use taskmeter_tune::Bands;
    ///
    /// let bands = Bands::parse("p99=10,2%").unwrap();
    /// assert_eq!(bands.band(0.99), 0.10);
    /// assert_eq!(bands.band(0.5), 0.02);
    /// assert!(Bands::parse("p99=ten").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Bands, String> {
        let mut bands = Bands::default();
        for part in text.split(',').map(str::trim) {
            let percent = |value: &str| -> Result<f64, String> {
                value
                    .trim()
                    .trim_end_matches('%')
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && (0.0..1000.0).contains(p))
                    .map(|p| p / 100.0)
                    .ok_or_else(|| format!("{value:?} is not a percentage from 0 to 1000"))
            };
            match part.split_once('=') {
                Some((name, value)) => {
                    let quantile = parse_quantile_name(name)?;
                    bands.per_quantile.push((quantile, percent(value)?));
                }
                None => bands.default = percent(part)?,
            }
        }
        Ok(bands)
    }

    /// The band of `quantile`.
    pub fn band(&self, quantile: f64) -> f64 {
        self.per_quantile
            .iter()
            .rev()
            .find(|(q, _)| (q - quantile).abs() < 1e-12)
            .map_or(self.default, |&(_, band)| band)
    }
}

impl std::fmt::Display for Bands {
    /// `5%`, then each quantile's own: `5%, p99 10%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", percent(self.default))?;
        for &(quantile, band) in &self.per_quantile {
            write!(f, ", {} {}", quantile_name(quantile), percent(band))?;
        }
        Ok(())
    }
}

/// `p50` → 0.5, `p99.9` → 0.999.
pub fn parse_quantile_name(name: &str) -> Result<f64, String> {
    name.trim()
        .strip_prefix('p')
        .and_then(|digits| digits.parse::<f64>().ok())
        .filter(|p| *p > 0.0 && *p < 100.0)
        .map(|p| p / 100.0)
        .ok_or_else(|| format!("{name:?} is not a quantile name like p50 or p99.9"))
}

/// The name of a quantile: 0.999 → `p99.9`.
pub fn quantile_name(quantile: f64) -> String {
    let percent = format!("{:.4}", quantile * 100.0);
    format!("p{}", percent.trim_end_matches('0').trim_end_matches('.'))
}

/// `0.05` → `5%`.
pub fn percent(fraction: f64) -> String {
    let text = format!("{:.2}", fraction * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}
