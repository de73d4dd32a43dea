//! What happens as time passes: drift keys evaluated after each record, timers fired from the
//! store's watermark (settle, day finalization), and the processing-time tick (idle stores,
//! interim and adjustment postings).

use chrono::{DateTime, NaiveDate, Utc};
use tally_state::{Cf, Overlay};

use crate::adjustment_body;
use crate::adjustments;
use crate::aggregates::{OutputKind, SkuDay, StoreDay};
use crate::clock::{self, StoreClock, Timer};
use crate::codec;
use crate::codec::read;
use crate::drift::{self, Decision, DriftFigures};
use crate::keys;
use crate::lineage::{self, AlertRevision, PostingCover};
use crate::outputs::{self, Emitted};
use crate::postings::{self, Kind};
use crate::topology::{Retail, Step, TopologyError};
use crate::working_set::WorkingSet;

/// Store clocks and dirty store-days visited per tick at most (bounded by stores × open days).
const TICK_SCAN_MAX: usize = 1_000_000;
/// Sku-days finalized per store-day at most (a store's assortment).
const SKUS_PER_DAY_MAX: usize = 1_000_000;
/// Interval postings sent per tick at most; the others wait for the next tick (a second later
/// while input flows). Every store that changed since its last posting comes due at about the
/// same moment, each posting carries a line per changed sku, and a tick's postings are one
/// batch: 400 store-days of 5 000 skus were a 75 MB batch, held several times over while it
/// was applied and written, every `erp.interval`.
pub const POSTINGS_PER_TICK_MAX: usize = 32;

impl Retail {
    /// Fires the store's timers that its watermark has reached.
    pub(crate) fn fire_due(&self, txn: &mut Overlay<'_>, step: &mut Step) -> Result<(), TopologyError> {
        loop {
            let due = clock::take_due(txn, &mut step.clock, &step.store)?;
            if due.is_empty() {
                return Ok(());
            }
            for (_, timer) in due {
                match timer {
                    Timer::Settle { day, sku } => self.settle(txn, step, day, &sku)?,
                    Timer::Finalize { day } => self.finalize(txn, step, day)?,
                    Timer::PruneAdjustments { day } => adjustments::prune(txn, &step.store, day)?,
                    Timer::Prune { day } => {
                        crate::retention::prune_day(txn, &step.store, day)?;
                        step.working.forget_store_day(&step.store, day);
                    }
                }
            }
        }
    }

    /// Re-evaluates every drift key the record touched.
    pub(crate) fn evaluate_touched(&self, txn: &mut Overlay<'_>, step: &mut Step) -> Result<(), TopologyError> {
        let touched = std::mem::take(&mut step.touched);
        for key in touched {
            let (day, sku_name) = (key.0, key.1.as_str());
            let day_final = self.store_day_mut(txn, step, day)?.finalized;
            // Taken out of its slot while carry_out needs the step, and put back below: neither
            // carry_out nor figures reads the step's sku-days. A removal and an insertion
            // rebalanced the map and cloned the sku's name for every key.
            let Some(slot) = step.sku_days.get_mut(&key) else { continue };
            let mut sku = std::mem::take(slot);
            let figures = self.figures(txn, step, sku_name, &sku)?;
            let thresholds = self.config().thresholds(&step.store);
            let over = figures.is_over(thresholds);
            let before = sku.alert.phase;
            let decision =
                sku.alert.evaluate(over, figures.drift_units, day_final, thresholds.settle, step.clock.watermark);
            outputs::index_pending(txn, &step.store, day, sku_name, before, sku.alert.phase);
            self.carry_out(txn, step, day, sku_name, &sku, &figures, decision)?;
            *step.sku_days.get_mut(&key).expect("the slot taken above stays in the map") = sku;
        }
        Ok(())
    }

    fn settle(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        day: NaiveDate,
        sku_name: &str,
    ) -> Result<(), TopologyError> {
        let key = keys::sku_day(&step.store, day, sku_name);
        let Some(mut sku) = read::<SkuDay>(txn, Cf::Aggregates, &key, "sku-day totals")? else { return Ok(()) };
        let figures = self.figures(txn, step, sku_name, &sku)?;
        let settle = self.config().thresholds(&step.store).settle;
        let before = sku.alert.phase;
        let decision = sku.alert.settle_due(figures.drift_units, step.clock.watermark, settle);
        outputs::index_pending(txn, &step.store, day, sku_name, before, sku.alert.phase);
        if decision != Decision::default() {
            self.carry_out(txn, step, day, sku_name, &sku, &figures, decision)?;
            txn.put(Cf::Aggregates, key, codec::encode(&sku));
            step.working.forget_sku_day(&step.store, day, sku_name);
        }
        Ok(())
    }

    /// Finalizes a store-day once: the final posting with its audit, and `final` for every
    /// drift key over threshold at this moment, regardless of settle.
    fn finalize(&self, txn: &mut Overlay<'_>, step: &mut Step, day: NaiveDate) -> Result<(), TopologyError> {
        let store_key = keys::store_day(&step.store, day);
        let Some(mut totals) = read::<StoreDay>(txn, Cf::Aggregates, &store_key, "store-day totals")? else {
            return Ok(());
        };
        if totals.finalized {
            return Ok(());
        }
        let rows = txn.scan_prefix(Cf::Aggregates, &keys::sku_day_prefix(&step.store, day), SKUS_PER_DAY_MAX)?;
        let thresholds = self.config().thresholds(&step.store).clone();
        for (key, value) in rows {
            let mut sku: SkuDay =
                codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "sku-day totals", source })?;
            let Some(sku_name) = keys::parse_sku_day_sku(&key) else { continue };
            let figures = self.figures(txn, step, &sku_name, &sku)?;
            let before = sku.alert.phase;
            let decision = sku.alert.finalize(figures.is_over(&thresholds), figures.drift_units);
            outputs::index_pending(txn, &step.store, day, &sku_name, before, sku.alert.phase);
            self.carry_out(txn, step, day, &sku_name, &sku, &figures, decision)?;
            txn.put(Cf::Aggregates, key, codec::encode(&sku));
        }
        // The posting reads and updates sku-days too, so it runs after the drift pass is stored.
        totals = postings::load_store_day(txn, &step.store, day)?;
        let dirty_since = totals.posting.dirty_since;
        // The ERP may hold a final posting this state did not make (a rebuilt state whose book
        // was reconciled with the postings stream): then what is left is an adjustment.
        let kind = if totals.posting.final_sent { Kind::Adjustment } else { Kind::Final };
        let posting =
            postings::next_posting(txn, &step.store, day, &mut totals, kind, &self.config().default_currency)?;
        totals.finalized = true;
        txn.put(Cf::Aggregates, store_key, codec::encode(&totals));
        // The drift pass and the posting rewrote the day's values beside the working set.
        step.working.forget_store_day(&step.store, day);
        if let Some(posting) = posting {
            self.send_posting(txn, &step.store, day, step.covers, posting, &mut step.emitted)?;
            if let Some(since) = dirty_since {
                step.emitted.posting_delays_ms.push((step.now - since).num_milliseconds());
            }
        }
        Ok(())
    }

    /// Sets the timer or sends the revision that an evaluation decided.
    #[allow(clippy::too_many_arguments)]
    fn carry_out(
        &self,
        txn: &mut Overlay<'_>,
        step: &mut Step,
        day: NaiveDate,
        sku_name: &str,
        sku: &SkuDay,
        figures: &DriftFigures,
        decision: Decision,
    ) -> Result<(), TopologyError> {
        if let Some(due) = decision.settle_at {
            let timer = Timer::Settle { day, sku: sku_name.to_string() };
            clock::add_timer(txn, &mut step.clock, &step.store.clone(), due, &timer);
        }
        let Some(revision) = decision.send else { return Ok(()) };
        let thresholds = self.config().thresholds(&step.store);
        let zone = self.config().timezone(&step.store);
        let body = drift::alert_message(
            &step.store,
            day,
            sku_name,
            &revision,
            figures,
            thresholds,
            step.clock.watermark,
            zone,
            &sku.unmatched_ids(),
        );
        let id = drift::alert_id(&step.store, day, sku_name);
        let subject = format!("{}.alerts.drift.{}", self.config().subject_prefix, step.store);
        outputs::enqueue_traced(
            txn,
            self.config().output_format,
            OutputKind::Alert,
            subject,
            format!("{id}/{}", revision.revision),
            &body,
            &step.trace_headers,
        )?;
        outputs::remember_alert(txn, &step.store, day, sku_name, &body);
        let listed = AlertRevision { state: revision.state.as_str().to_string(), unmatched: body.unmatched.clone() };
        lineage::remember_alert_revision(txn, &step.store, day, sku_name, revision.revision, &listed);
        *step.emitted.alerts.entry(revision.state.as_str()).or_default() += 1;
        Ok(())
    }

    fn figures(
        &self,
        txn: &Overlay<'_>,
        step: &mut Step,
        sku_name: &str,
        sku: &SkuDay,
    ) -> Result<DriftFigures, TopologyError> {
        let price = self.latest_price(txn, step, sku_name)?;
        Ok(sku.drift_figures(price.map(|p| p.unit_price)))
    }

    /// Enqueues a posting, and notes the input position `covers` it covers (`lineage`).
    fn send_posting(
        &self,
        txn: &mut Overlay<'_>,
        store: &str,
        day: NaiveDate,
        covers: u64,
        posting: postings::Posting,
        emitted: &mut Emitted,
    ) -> Result<(), TopologyError> {
        let cover = PostingCover { covers, kind: posting.kind.as_str().to_string() };
        lineage::remember_posting(txn, store, day, posting.body.seq, &cover);
        let subject = format!("{}.erp.postings.{store}", self.config().subject_prefix);
        outputs::enqueue_value(
            txn,
            self.config().output_format,
            OutputKind::Posting,
            subject,
            posting.id.clone(),
            &posting.body,
        )?;
        *emitted.postings.entry(posting.kind.as_str()).or_default() += 1;
        Ok(())
    }

    /// The processing-time tick: advances idle stores' watermarks (firing their timers) and
    /// sends interim or adjustment postings for days with changes older than `erp.interval`.
    /// `position` is the input position applied so far: what the postings sent cover.
    pub(crate) fn tick(
        &self,
        txn: &mut Overlay<'_>,
        working: &mut WorkingSet,
        now: DateTime<Utc>,
        position: u64,
    ) -> Result<Emitted, TopologyError> {
        let mut emitted = Emitted::default();
        for (key, value) in txn.scan_prefix(Cf::Aggregates, &clock::all_clocks_prefix(), TICK_SCAN_MAX)? {
            let mut store_clock: StoreClock =
                codec::decode(&value).map_err(|source| TopologyError::Corrupt { what: "store clock", source })?;
            if !store_clock.advance_idle(now, self.config().idle_timeout) {
                continue;
            }
            let store = tally_state::KeyReader::new(&key[1..]).str().map_err(|e| tally_state::StateError::Corrupt {
                cf: Cf::Aggregates,
                detail: format!("store clock key: {e}"),
            })?;
            let mut step = Step::new(store, store_clock, now, working);
            step.covers = position;
            self.fire_due(txn, &mut step)?;
            step.save_clock(txn);
            emitted.merge(step.emitted);
        }
        let mut posted = 0;
        for (store, day) in postings::dirty_days(txn, TICK_SCAN_MAX)? {
            if posted == POSTINGS_PER_TICK_MAX {
                break;
            }
            let mut totals = postings::load_store_day(txn, &store, day)?;
            let Some(since) = totals.posting.dirty_since else { continue };
            if since + self.config().erp_interval > now {
                continue;
            }
            posted += 1;
            // A day finalized without its final posting on the ERP's side (a reconciled book,
            // see `reconcile`) still owes the ERP one.
            let kind = match (totals.posting.final_sent, totals.finalized) {
                (true, _) => Kind::Adjustment,
                (false, true) => Kind::Final,
                (false, false) => Kind::Interim,
            };
            let posting = postings::next_posting(txn, &store, day, &mut totals, kind, &self.config().default_currency)?;
            txn.put(Cf::Aggregates, keys::store_day(&store, day), codec::encode(&totals));
            // The posting rewrote the day's sku-days (what they posted) beside the working set.
            working.forget_store_day(&store, day);
            if let Some(posting) = posting {
                self.send_posting(txn, &store, day, position, posting, &mut emitted)?;
                emitted.posting_delays_ms.push((now - since).num_milliseconds());
            }
        }
        self.post_adjustments(txn, now, position, &mut emitted)?;
        Ok(emitted)
    }

    /// Inventory adjustment postings for the stores whose adjustments waited `erp.interval`
    /// (docs/wire-format.md, "Inventory adjustment posting").
    /// `position` is the input position they cover (`lineage`).
    fn post_adjustments(
        &self,
        txn: &mut Overlay<'_>,
        now: DateTime<Utc>,
        position: u64,
        emitted: &mut Emitted,
    ) -> Result<(), TopologyError> {
        let config = self.config();
        for (store, period, since) in adjustments::due_periods(txn, now, config.erp_interval, POSTINGS_PER_TICK_MAX)? {
            let subject = format!("{}.erp.postings.{store}", config.subject_prefix);
            for posting in adjustments::post_period(txn, &store, &period, &config.default_currency)? {
                lineage::remember_period_posting(txn, &store, &period, posting.body.seq, position);
                outputs::enqueue_value(
                    txn,
                    config.output_format,
                    OutputKind::Posting,
                    subject.clone(),
                    posting.id,
                    &posting.body,
                )?;
                *emitted.postings.entry(adjustment_body::KIND).or_default() += 1;
                emitted.posting_delays_ms.push((now - since).num_milliseconds());
            }
        }
        Ok(())
    }
}
