//! The chain's fixed shape: store ids, time zones, registers and tax rates, the SKU catalog with
//! Zipf-ish popularity and fixed prices, and the daily traffic curve. Everything here derives from
//! the options and the seed alone (no clock, no I/O), so two runs with one seed sell the same
//! things at the same prices.

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use rand::rngs::SmallRng;
use rand::Rng;
use rust_decimal::Decimal;

use crate::options::GenOptions;

/// Time zones handed out to stores round-robin: mostly US, some Europe, like a mid-size chain.
const ZONES: [Tz; 8] = [
    Tz::America__New_York,
    Tz::America__Chicago,
    Tz::America__Denver,
    Tz::America__Los_Angeles,
    Tz::America__New_York,
    Tz::Europe__Berlin,
    Tz::America__Chicago,
    Tz::Europe__London,
];

/// Sales tax rates (×100 000) for US stores; European stores use VAT below.
const US_TAX_RATES: [i64; 5] = [6_250, 7_000, 8_000, 8_250, 8_875];
const MAX_SKUS: usize = 900_000;
/// Zipf exponent of SKU popularity: the top SKU gets a few percent of all picks.
const ZIPF_S: f64 = 0.9;

/// The store id of the store at `index` (0-based): "0001", "0002", …
pub fn store_id(index: usize) -> String {
    format!("{:04}", index + 1)
}

/// Ids of every store of the chain, in index order.
pub fn store_ids(opts: &GenOptions) -> Vec<String> {
    (0..opts.stores).map(store_id).collect()
}

/// The IANA time zone of the store at `index`; the demo configures tally's
/// `[stores.<id>] timezone` from it so both sides agree on business days. It depends on the index
/// only (not the seed), so the mapping is stable across runs.
pub fn store_timezone(_opts: &GenOptions, index: usize) -> Tz {
    ZONES[index % ZONES.len()]
}

/// SplitMix64: a stateless hash for values that must not consume the generator's random stream
/// (store traits, day-close encoding), so adding stores never reshuffles the baskets.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A hash mapped to [0, 1).
pub(super) fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// What stays fixed about one store for the whole run.
pub(super) struct StoreProfile {
    pub id: String,
    pub tz: Tz,
    pub tax_rate: Decimal,
    pub registers: u32,
    /// Relative traffic weight (0.4–2.5): some stores are busier than others.
    pub size: f64,
}

impl StoreProfile {
    pub fn new(opts: &GenOptions, index: usize) -> Self {
        let h = mix(opts.seed ^ mix(index as u64));
        let tz = store_timezone(opts, index);
        let tax_rate = match tz {
            Tz::Europe__Berlin => Decimal::new(19, 2),
            Tz::Europe__London => Decimal::new(20, 2),
            _ => Decimal::new(US_TAX_RATES[(h % US_TAX_RATES.len() as u64) as usize], 5),
        };
        StoreProfile {
            id: store_id(index),
            tz,
            tax_rate,
            registers: 2 + ((h >> 8) % 7) as u32,
            size: (unit(h ^ 0x5151) * 1.8 - 0.9).exp(),
        }
    }
}

/// The SKUs every store carries, their prices and their popularity.
pub(super) struct Catalog {
    pub skus: Vec<String>,
    pub prices: Vec<Decimal>,
    /// Running sum of popularity weights, for sampling by binary search.
    cumulative: Vec<f64>,
}

impl Catalog {
    pub fn new(size: usize, rng: &mut SmallRng) -> Self {
        let n = size.clamp(1, MAX_SKUS);
        let offset = rng.random_range(0..MAX_SKUS);
        let (lo, hi) = (99f64.ln(), 19_999f64.ln());
        let mut skus = Vec::with_capacity(n);
        let mut prices = Vec::with_capacity(n);
        let mut cumulative = Vec::with_capacity(n);
        let mut total = 0.0;
        for i in 0..n {
            // 7919 is prime and does not divide 900 000, so the codes are distinct 6-digit ids.
            skus.push((100_000 + (i * 7_919 + offset) % MAX_SKUS).to_string());
            // Log-uniform prices in cents, charm-priced to end in 9, within 0.99–199.99.
            let cents = rng.random_range(lo..hi).exp() as i64 / 10 * 10 + 9;
            prices.push(Decimal::new(cents.clamp(99, 19_999), 2));
            total += 1.0 / ((i + 1) as f64).powf(ZIPF_S);
            cumulative.push(total);
        }
        Catalog { skus, prices, cumulative }
    }

    /// A SKU index drawn by popularity (index 0 is the best seller).
    pub fn sample(&self, rng: &mut SmallRng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative.partition_point(|&c| c <= x).min(self.skus.len() - 1)
    }
}

/// Relative traffic of a store at `at`: opening hours ~8:00–22:00 local with a midday and a late
/// afternoon peak, busier weekends and Black Friday. Closed hours keep a small floor (night
/// staff, online pick-ups) so a demo started at any hour shows traffic in every zone.
pub(super) fn traffic_weight(tz: Tz, at: DateTime<Utc>) -> f64 {
    let local = at.with_timezone(&tz);
    let hour = local.hour() as f64 + local.minute() as f64 / 60.0;
    let curve = match hour {
        h if !(8.0..22.0).contains(&h) => 0.03,
        h if h < 11.0 => 0.4 + (h - 8.0) * 0.15,
        h if h < 14.0 => 1.0,
        h if h < 16.0 => 0.7,
        h if h < 19.0 => 0.95,
        _ => 0.5,
    };
    let date = local.date_naive();
    let black_friday = date.month() == 11 && date.weekday() == Weekday::Fri && (23..=29).contains(&date.day());
    let day = match date.weekday() {
        _ if black_friday => 3.0,
        Weekday::Sat => 1.6,
        Weekday::Sun | Weekday::Fri => 1.2,
        _ => 1.0,
    };
    curve * day
}
