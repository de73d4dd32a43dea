//! Drift detection (docs/wire-format.md, "Drift alert"): per (store, business_day, sku), whether what the POS sold and
//! what inventory recorded disagree, and the alert lifecycle that follows from it.
//!
//! Everything here runs on event time (the store's watermark), never on the wall clock, so a
//! replay of the same input yields the same alerts. The alert state lives inside the sku-day
//! record it describes, so evaluating a key costs no extra read.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::pack::{Pack, Packer, Sink, VariantName};

/// Alert thresholds, for all stores or overridden for one.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftThresholds {
    pub min_units: Decimal,
    pub min_ratio: Decimal,
    pub min_value: Decimal,
    pub critical_units: Decimal,
    /// Event time a key must stay over threshold before it fires.
    pub settle: Duration,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        DriftThresholds {
            min_units: Decimal::from(2),
            min_ratio: Decimal::new(5, 2),
            min_value: Decimal::ZERO,
            critical_units: Decimal::from(20),
            settle: Duration::minutes(15),
        }
    }
}

/// The figures of one key, computed afresh each time (they are cheap).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftFigures {
    pub expected_units: Decimal,
    pub recorded_units: Decimal,
    pub drift_units: Decimal,
    pub drift_value: Decimal,
    /// `|drift_units| / base`, rounded to 4 places: what alerts publish (docs/wire-format.md).
    /// Thresholds never compare it: they compare the exact quotient (see `is_over`).
    pub drift_ratio: Decimal,
    /// The ratio's denominator: max(|expected|, |recorded|, 1).
    base: Decimal,
    /// `expected_units` as (POS, orders), when an order touched the key.
    pub expected_by_source: Option<(Decimal, Decimal)>,
}

/// Decimal places kept of `drift_ratio`, which is a quotient and may not terminate.
const RATIO_DP: u32 = 4;

impl DriftFigures {
    /// The figures of a key that expects `expected_units` and recorded `recorded_units`, its
    /// value at `unit_price` (none known: zero).
    pub fn new(expected_units: Decimal, recorded_units: Decimal, unit_price: Option<Decimal>) -> DriftFigures {
        let drift_units = expected_units - recorded_units;
        let base = expected_units.abs().max(recorded_units.abs()).max(Decimal::ONE);
        DriftFigures {
            drift_value: drift_units * unit_price.unwrap_or_default(),
            drift_ratio: (drift_units.abs() / base).round_dp(RATIO_DP).normalize(),
            expected_units,
            recorded_units,
            drift_units,
            base,
            expected_by_source: None,
        }
    }

    /// Over threshold, on the exact figures: the ratio test is `|drift_units| ≥ min_ratio × base`
    /// (the quotient cross-multiplied; `base` is positive), not the published ratio, which is
    /// rounded (0.09996 publishes as 0.1 but is under a `min_ratio` of 0.10).
    pub fn is_over(&self, t: &DriftThresholds) -> bool {
        self.drift_units.abs() >= t.min_units
            && (self.ratio_at_least(t.min_ratio) || self.drift_value.abs() >= t.min_value)
    }

    fn ratio_at_least(&self, min_ratio: Decimal) -> bool {
        match min_ratio.checked_mul(self.base) {
            Some(bound) => self.drift_units.abs() >= bound,
            // Beyond Decimal's range: larger than any |drift_units| when positive.
            None => min_ratio.is_sign_negative(),
        }
    }

    pub fn severity(&self, t: &DriftThresholds) -> &'static str {
        if self.drift_units.abs() >= t.critical_units {
            "critical"
        } else {
            "warning"
        }
    }
}

/// Where a key stands. `Pending` is over threshold but not yet settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Ok,
    Pending,
    Firing,
    Resolved,
    Final,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ok => "ok",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
            Phase::Final => "final",
        }
    }
}

/// The alert bookkeeping of one key, stored in its `SkuDay`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertState {
    pub phase: Phase,
    /// Event time since when the key is over threshold, in the current episode.
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub over_since: Option<DateTime<Utc>>,
    /// The last revision sent; 0 before the first.
    pub revision: u32,
    /// `drift_units` of the last revision sent, to tell a change after final.
    #[serde(with = "crate::stored_decimal::option")]
    pub sent_drift_units: Option<Decimal>,
}

/// A revision to send: the state it announces and the episode's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub revision: u32,
    pub state: Phase,
    pub over_since: Option<DateTime<Utc>>,
}

/// What evaluating a key asks of the caller besides the new state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub send: Option<Revision>,
    /// A settle timer to set at this event time.
    pub settle_at: Option<DateTime<Utc>>,
}

impl AlertState {
    /// Re-evaluates after the key's figures changed, at watermark `now`.
    pub fn evaluate(
        &mut self,
        over: bool,
        drift_units: Decimal,
        day_final: bool,
        settle: Duration,
        now: DateTime<Utc>,
    ) -> Decision {
        if day_final {
            return self.evaluate_after_final(over, drift_units, now);
        }
        match (self.phase, over) {
            (Phase::Ok | Phase::Resolved, true) => {
                self.phase = Phase::Pending;
                self.over_since = Some(now);
                if settle <= Duration::zero() {
                    return self.settle_due(drift_units, now, settle);
                }
                Decision { send: None, settle_at: Some(now + settle) }
            }
            (Phase::Pending, false) => {
                self.phase = if self.revision > 0 { Phase::Resolved } else { Phase::Ok };
                self.over_since = None;
                Decision::default()
            }
            (Phase::Firing, false) => self.send(Phase::Resolved, drift_units, true),
            _ => Decision::default(),
        }
    }

    /// A settle timer fired at watermark `now`: fire if the key stayed over since then.
    pub fn settle_due(&mut self, drift_units: Decimal, now: DateTime<Utc>, settle: Duration) -> Decision {
        match (self.phase, self.over_since) {
            (Phase::Pending, Some(since)) if since + settle <= now => self.send(Phase::Firing, drift_units, false),
            _ => Decision::default(),
        }
    }

    /// The day is being finalized: over-threshold keys get `final`, regardless of settle.
    pub fn finalize(&mut self, over: bool, drift_units: Decimal) -> Decision {
        if over {
            return self.send(Phase::Final, drift_units, false);
        }
        if self.phase == Phase::Pending {
            self.phase = if self.revision > 0 { Phase::Resolved } else { Phase::Ok };
            self.over_since = None;
        }
        Decision::default()
    }

    fn evaluate_after_final(&mut self, over: bool, drift_units: Decimal, now: DateTime<Utc>) -> Decision {
        match (self.phase, over) {
            (Phase::Final, true) if self.sent_drift_units != Some(drift_units) => {
                self.send(Phase::Final, drift_units, false)
            }
            (Phase::Final | Phase::Firing, false) => self.send(Phase::Resolved, drift_units, true),
            (Phase::Ok | Phase::Resolved | Phase::Pending, true) => {
                self.over_since.get_or_insert(now);
                self.send(Phase::Final, drift_units, false)
            }
            _ => Decision::default(),
        }
    }

    fn send(&mut self, state: Phase, drift_units: Decimal, ends_episode: bool) -> Decision {
        self.revision += 1;
        self.phase = state;
        self.sent_drift_units = Some(drift_units);
        let revision = Revision { revision: self.revision, state, over_since: self.over_since };
        if ends_episode {
            self.over_since = None;
        }
        Decision { send: Some(revision), settle_at: None }
    }
}

/// The alert id of docs/wire-format.md, "Drift alert".
pub fn alert_id(store: &str, day: chrono::NaiveDate, sku: &str) -> String {
    format!("drift/{store}/{}/{sku}", day.format("%Y-%m-%d"))
}

/// A drift alert revision as published on `P.alerts.drift.<store>`, kept for `/v1/alerts` and
/// pushed to Alertmanager (docs/wire-format.md, "Drift alert"). Figures are exact decimal text.
/// Fields are in alphabetical order, the order in which earlier versions wrote them, so that a
/// revision's bytes do not change across an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftAlert {
    pub business_day: String,
    pub drift_ratio: String,
    pub drift_units: String,
    pub drift_value: String,
    pub evaluated_at: String,
    pub expected_units: String,
    /// Present only when an order touched the key (docs/wire-format.md, "Order fulfillment"),
    /// so that the alerts of keys without orders keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_units_by_source: Option<ExpectedBySource>,
    pub id: String,
    pub over_since: Option<String>,
    pub recorded_units: String,
    pub revision: u32,
    pub severity: String,
    pub sku: String,
    /// `pending` is never published; `firing`, `resolved` or `final`.
    pub state: String,
    pub store: String,
    /// Always `drift.alert`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub unmatched: Vec<String>,
}

/// `expected_units` split by where the expectation came from: the POS (sold − restocked
/// returns) and the orders (shipped and picked up − returned to the store). Exact decimal text;
/// the two add up to `expected_units`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedBySource {
    pub orders: String,
    pub pos: String,
}

/// The alert message of docs/wire-format.md, "Drift alert". Times are shown in the store's zone.
#[allow(clippy::too_many_arguments)]
pub fn alert_message(
    store: &str,
    day: chrono::NaiveDate,
    sku: &str,
    revision: &Revision,
    figures: &DriftFigures,
    thresholds: &DriftThresholds,
    evaluated_at: DateTime<Utc>,
    zone: Tz,
    unmatched: &[String],
) -> DriftAlert {
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).fixed_offset().to_rfc3339();
    DriftAlert {
        kind: "drift.alert".into(),
        id: alert_id(store, day, sku),
        revision: revision.revision,
        state: revision.state.as_str().into(),
        severity: figures.severity(thresholds).into(),
        store: store.into(),
        sku: sku.into(),
        business_day: day.format("%Y-%m-%d").to_string(),
        expected_units: figures.expected_units.normalize().to_string(),
        expected_units_by_source: figures.expected_by_source.map(|(pos, orders)| ExpectedBySource {
            orders: orders.normalize().to_string(),
            pos: pos.normalize().to_string(),
        }),
        recorded_units: figures.recorded_units.normalize().to_string(),
        drift_units: figures.drift_units.normalize().to_string(),
        drift_value: figures.drift_value.to_string(),
        drift_ratio: figures.drift_ratio.to_string(),
        over_since: revision.over_since.map(local),
        evaluated_at: local(evaluated_at),
        unmatched: unmatched.to_vec(),
    }
}

// Packed by hand, field by field in declaration order as serde's derive writes them: a field
// added to the struct must be added here too (`pack_tests` fails until it is).

impl VariantName for Phase {
    fn variant_name(&self) -> &'static str {
        match self {
            Phase::Ok => "Ok",
            Phase::Pending => "Pending",
            Phase::Firing => "Firing",
            Phase::Resolved => "Resolved",
            Phase::Final => "Final",
        }
    }
}

impl Pack for AlertState {
    fn pack<S: Sink + ?Sized>(&self, out: &mut Packer<'_, S>) {
        out.array(4);
        out.str(self.phase.variant_name());
        out.micros_option(&self.over_since);
        out.uint(u64::from(self.revision));
        out.decimal_option(&self.sent_drift_units);
    }
}
