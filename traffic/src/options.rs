//! What the generator is asked for ([`GenOptions`]) and what it produced ([`GenStats`]); below
//! every other module, so that the catalog, the baskets and the day close can read the options
//! without importing the generator that drives them.

use std::collections::BTreeMap;

/// What to generate. Shares are probabilities in [0, 1].
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub stores: usize,
    pub skus_per_store: usize,
    pub seed: u64,
    /// Share of sales whose inventory decrement is missing or doubled. Default 0.02.
    pub drift_share: f64,
    /// Share of messages replaced by malformed ones. Default 0.002.
    pub malformed_share: f64,
    /// Share of messages sent as MessagePack instead of JSON. Default 0.3.
    pub msgpack_share: f64,
    /// Share of lines that are returns. Default 0.07.
    pub return_share: f64,
    /// Share of baskets post-voided 1–30 minutes later. Default 0.005.
    pub void_share: f64,
    /// Share of baskets whose transaction or sale movement is re-sent verbatim. Default 0.003.
    pub duplicate_share: f64,
    /// Share of baskets followed by a movement the POS did not cause (receipt, shrink, …).
    /// Default 0.05.
    pub other_movement_share: f64,
    /// Inventory decrements lag their sale by 0..=this many seconds of event time. Default 600.
    pub movement_lag_max_secs: u64,
    /// Share of store-days whose day close reports a small over/short. Default 0.0.
    pub day_close_error_share: f64,
    /// Emit each store's `pos.day_close` from `due` at 00:05 local after its day. Default true.
    pub emit_day_closes: bool,
    pub subject_prefix: String,
    pub currency: String,
    /// Share of baskets followed by an online order fulfilled through the same store
    /// (`order.fulfillment` on `P.orders.<store>`: ship-from-store, pickup, return to store)
    /// and the movement that fulfils it. Default 0.0, which draws nothing: the traffic is then
    /// exactly what versions without orders generated.
    pub order_share: f64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            stores: 20,
            skus_per_store: 5_000,
            seed: 1,
            drift_share: 0.02,
            malformed_share: 0.002,
            msgpack_share: 0.3,
            return_share: 0.07,
            void_share: 0.005,
            duplicate_share: 0.003,
            other_movement_share: 0.05,
            movement_lag_max_secs: 600,
            day_close_error_share: 0.0,
            emit_day_closes: true,
            subject_prefix: "retail".into(),
            currency: "USD".into(),
            order_share: 0.0,
        }
    }
}

/// Counts of what was generated (not necessarily published yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Baskets generated, including ones whose transaction was malformed.
    pub baskets: u64,
    /// Valid `pos.transaction` records with lines.
    pub transactions: u64,
    /// Lines of valid transactions, returns included.
    pub lines: u64,
    pub returns: u64,
    pub voids: u64,
    /// Valid inventory movements, including doubled decrements and void reversals.
    pub movements: u64,
    pub malformed: u64,
    /// Malformed messages by the DLQ reason tally should give them.
    pub malformed_by_reason: BTreeMap<&'static str, u64>,
    pub drift_injected: u64,
    pub duplicates: u64,
    pub day_closes: u64,
    /// Valid `order.fulfillment` records.
    pub orders: u64,
    /// Every message generated, of every kind.
    pub messages: u64,
    pub msgpack: u64,
    /// Messages acknowledged by JetStream (maintained by the publisher).
    pub published: u64,
}
