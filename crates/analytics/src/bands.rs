//! KPI alert bands: a KPI over a trailing window, below or above a bound, for long enough, is
//! an alert (to the same sinks as the audit alerts). A KPI with no value (nothing in the window)
//! breaches nothing. Each breach fires once and re-arms when the KPI is back inside its band.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use telechart_store::Store;

use crate::export::format_value;
use crate::kpi::{Unit, definition};
use crate::{AnalyticsError, FilterInput};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// A KPI id (`auto_logged_ratio`, `dead_letters`, …).
    pub kpi: String,
    /// Breached when the value is below this…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// …or above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// The trailing window the KPI is computed over.
    #[serde(default = "default_window")]
    pub window_minutes: u32,
    /// How long the breach must last before it alerts (0: at once).
    #[serde(default)]
    pub for_minutes: u32,
}

fn default_window() -> u32 {
    60
}

/// The bands a site gets unless it says otherwise.
pub fn default_bands() -> Vec<Band> {
    vec![
        Band { kpi: "auto_logged_ratio".into(), below: Some(0.95), above: None, window_minutes: 60, for_minutes: 0 },
        Band { kpi: "dead_letters".into(), below: None, above: Some(0.0), window_minutes: 60, for_minutes: 15 },
        Band {
            kpi: "consent_telehealth_ratio".into(),
            below: Some(0.98),
            above: None,
            window_minutes: 60,
            for_minutes: 0,
        },
    ]
}

/// Each band names a KPI, exactly one bound (a share between 0 and 1 for a ratio), and a
/// window of one minute to 31 days. The error names the band by its position.
pub fn validate(bands: &[Band]) -> Result<(), AnalyticsError> {
    for (i, band) in bands.iter().enumerate() {
        let invalid =
            |message: String| AnalyticsError::Invalid { field: "bands", message: format!("band {}: {message}", i + 1) };
        let def = definition(&band.kpi).ok_or_else(|| invalid(format!("unknown KPI {:?}", band.kpi)))?;
        let bound = match (band.below, band.above) {
            (Some(b), None) | (None, Some(b)) => b,
            _ => return Err(invalid("give exactly one of below or above".into())),
        };
        if !bound.is_finite() || (def.unit == Unit::Ratio && !(0.0..=1.0).contains(&bound)) {
            return Err(invalid(format!("{bound} is not a bound for {} (a share, 0 to 1)", band.kpi)));
        }
        if band.window_minutes == 0 || band.window_minutes > 31 * 24 * 60 {
            return Err(invalid("window_minutes must be 1 to 44640".into()));
        }
    }
    Ok(())
}

/// Breaches seen so far, per tenant and band: since when, and whether alerted.
#[derive(Debug, Default)]
pub struct BandWatch {
    breached: HashMap<(String, usize), (i64, bool)>,
}

impl BandWatch {
    /// The alert text when band `index` of `tenant` has been breached long enough and has not
    /// alerted yet for this breach.
    pub fn observe(
        &mut self,
        tenant: &str,
        index: usize,
        band: &Band,
        value: Option<f64>,
        now_ms: i64,
    ) -> Option<String> {
        let key = (tenant.to_owned(), index);
        let breach = value.and_then(|v| match (band.below, band.above) {
            (Some(b), _) if v < b => Some(format!("{} below {b}", format_value(v))),
            (_, Some(a)) if v > a => Some(format!("{} above {a}", format_value(v))),
            _ => None,
        });
        let Some(how) = breach else {
            self.breached.remove(&key);
            return None;
        };
        let (since, alerted) = self.breached.entry(key).or_insert((now_ms, false));
        if *alerted || now_ms - *since < i64::from(band.for_minutes) * 60_000 {
            return None;
        }
        *alerted = true;
        let lasting = if band.for_minutes > 0 { format!(" for {} min", band.for_minutes) } else { String::new() };
        Some(format!("{} {how} over the last {} min{lasting}", band.kpi, band.window_minutes))
    }
}

/// Evaluates every band of `tenant` now (facts refreshed first); returns the alert texts.
pub async fn evaluate(
    store: &Store,
    tenant: &str,
    bands: &[Band],
    watch: &mut BandWatch,
    now_ms: i64,
) -> Result<Vec<String>, AnalyticsError> {
    if bands.is_empty() {
        return Ok(Vec::new());
    }
    crate::refresh(store, tenant, now_ms).await?;
    let mut reports = HashMap::new();
    let mut fired = Vec::new();
    for (index, band) in bands.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(slot) = reports.entry(band.window_minutes) {
            let from = now_ms - i64::from(band.window_minutes) * 60_000;
            let input = FilterInput {
                from: chrono::DateTime::from_timestamp_millis(from).map(|t| t.to_rfc3339()),
                to: chrono::DateTime::from_timestamp_millis(now_ms + 1).map(|t| t.to_rfc3339()),
                ..FilterInput::default()
            };
            let filter = input.resolve(store, tenant, now_ms).await?;
            slot.insert(crate::report(store, &filter).await?);
        }
        let value = reports.get(&band.window_minutes).and_then(|r| r.figure(&band.kpi)).and_then(|f| f.value);
        fired.extend(watch.observe(tenant, index, band, value, now_ms));
    }
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bands_are_valid_and_bad_ones_are_named() {
        assert!(validate(&default_bands()).is_ok());
        let mut bad = default_bands();
        bad[1].kpi = "happiness".into();
        assert!(validate(&bad).err().is_some_and(|e| e.to_string().contains("band 2: unknown KPI")));
        let both =
            Band { kpi: "visits".into(), below: Some(1.0), above: Some(2.0), window_minutes: 60, for_minutes: 0 };
        assert!(validate(&[both]).err().is_some_and(|e| e.to_string().contains("exactly one")));
        let percent = Band {
            kpi: "auto_logged_ratio".into(),
            below: Some(95.0),
            above: None,
            window_minutes: 60,
            for_minutes: 0,
        };
        assert!(validate(&[percent]).err().is_some_and(|e| e.to_string().contains("a share, 0 to 1")));
    }

    #[test]
    fn a_breach_alerts_once_after_lasting_and_rearms_when_it_clears() {
        let band = &default_bands()[1]; // dead letters above 0 for 15 minutes
        let mut watch = BandWatch::default();
        let minute = 60_000;
        assert_eq!(watch.observe("t", 1, band, Some(1.0), 0), None, "not yet 15 minutes");
        assert_eq!(watch.observe("t", 1, band, Some(2.0), 14 * minute), None);
        let fired = watch.observe("t", 1, band, Some(2.0), 15 * minute);
        assert_eq!(fired.as_deref(), Some("dead_letters 2 above 0 over the last 60 min for 15 min"));
        assert_eq!(watch.observe("t", 1, band, Some(2.0), 16 * minute), None, "once per breach");
        assert_eq!(watch.observe("t", 1, band, Some(0.0), 17 * minute), None, "cleared");
        assert_eq!(watch.observe("t", 1, band, Some(1.0), 18 * minute), None, "a new breach waits again");
        assert!(watch.observe("t", 1, band, Some(1.0), 33 * minute).is_some());
        // No value (nothing in the window) is no breach.
        let auto = &default_bands()[0];
        assert_eq!(watch.observe("t", 0, auto, None, 0), None);
        assert!(watch.observe("t", 0, auto, Some(0.9), 0).is_some_and(|d| d.contains("0.9 below 0.95")));
    }
}
