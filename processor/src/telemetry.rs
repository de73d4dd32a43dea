//! Every metric tally exports: names as constants, descriptions in one place, emission helpers
//! called once per batch. Labels stay bounded: source, outcome, reason, state, kind, store —
//! never a sku or a transaction id.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use tally_topologies::decode::RejectReason;

use crate::partitions::Partition;
use tally_topologies::model::Source;
use tally_topologies::outputs::Emitted;
use tally_topologies::topology::Outcome;

pub const EVENTS_TOTAL: &str = "tally_events_total";
pub const CONSUMER_PENDING: &str = "tally_consumer_pending_messages";
pub const COMMIT_DURATION: &str = "tally_commit_duration_seconds";
pub const BATCH_MESSAGES: &str = "tally_batch_messages";
pub const OUTBOX_PENDING: &str = "tally_outbox_pending_messages";
pub const OUTPUTS_PUBLISHED: &str = "tally_outputs_published_total";
pub const DLQ_TOTAL: &str = "tally_dlq_total";
pub const BUILD_INFO: &str = "tally_build_info";
pub const READY: &str = "tally_ready";
pub const COMMIT_FAILURES: &str = "tally_commit_failures_total";
pub const PUBLISH_FAILURES: &str = "tally_publish_failures_total";
pub const STREAM_POSITION: &str = "tally_committed_stream_sequence";
pub const ALERTS_TOTAL: &str = "tally_alerts_total";
pub const ERP_POSTINGS_TOTAL: &str = "tally_erp_postings_total";
pub const DRIFT_KEYS: &str = "tally_drift_keys";
pub const WEBHOOK_DELIVERIES: &str = "tally_webhook_deliveries_total";
pub const WEBHOOK_LAST_SUCCESS: &str = "tally_webhook_last_success_timestamp_seconds";
pub const WEBHOOK_WAITING: &str = "tally_webhook_postings_waiting";
pub const ALERTMANAGER_PUSH_FAILURES: &str = "tally_alertmanager_push_failures_total";
pub const POSTING_DELAY: &str = "tally_erp_posting_delay_seconds";
pub const MEMORY: &str = "tally_memory_bytes";
pub const FINAL_POSTINGS_OVERDUE: &str = "tally_erp_final_postings_overdue";
pub const UNRECONCILED_SALES: &str = "tally_unreconciled_sales";
pub const UNRECONCILED_SALES_VALUE: &str = "tally_unreconciled_sales_value";
pub const INVENTORY_VARIANCE_UNITS: &str = "tally_inventory_variance_units";
pub const INVENTORY_VARIANCE_VALUE: &str = "tally_inventory_variance_value";
pub const POSTING_FAILURE_RESOLUTION: &str = "tally_posting_failure_resolution_seconds";
pub const POSTINGS_PARKED: &str = "tally_postings_parked_total";
pub const UNMAPPED_SKUS: &str = "tally_unmapped_skus_total";
pub const SKU_ALIASES: &str = "tally_sku_aliases";
pub const CHECKPOINT_UPLOADED_BYTES: &str = "tally_checkpoint_uploaded_bytes_total";
pub const CHECKPOINT_LAST_POSITION: &str = "tally_checkpoint_last_position";
pub const CHECKPOINT_DURATION: &str = "tally_checkpoint_duration_seconds";
pub const PARTITION_OWNED: &str = "tally_partition_owned";
pub const PARTITION_TAKEOVER: &str = "tally_partition_takeover_seconds";
pub const LEASES_LOST: &str = "tally_partition_leases_lost_total";
pub const CLUSTER_MEMBERS: &str = "tally_cluster_members";

/// Installs the Prometheus recorder and describes every metric. Call once at start-up.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(COMMIT_DURATION.into()),
            &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(POSTING_DELAY.into()),
            &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(POSTING_FAILURE_RESOLUTION.into()),
            // The webhook retries within 30 s at most; an ERP outage may last a day.
            &[1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0, 43200.0, 86400.0],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(CHECKPOINT_DURATION.into()),
            &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(BATCH_MESSAGES.into()),
            &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0],
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        EVENTS_TOTAL,
        Unit::Count,
        "Input messages processed, by source (pos, inventory, unknown) and outcome (accepted, duplicate, rejected)."
    );
    describe_gauge!(
        CONSUMER_PENDING,
        Unit::Count,
        "Messages in the input stream not yet delivered to tally's consumer."
    );
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Time to commit one batch (aggregates, dedupe ids, outbox and position) to RocksDB."
    );
    describe_histogram!(BATCH_MESSAGES, Unit::Count, "Input messages per committed batch.");
    describe_gauge!(OUTBOX_PENDING, Unit::Count, "Output messages committed but not yet acknowledged by JetStream.");
    describe_counter!(
        OUTPUTS_PUBLISHED,
        Unit::Count,
        "Output messages acknowledged by JetStream, by kind (dlq, alert, posting)."
    );
    describe_counter!(DLQ_TOTAL, Unit::Count, "Input messages rejected to the dead-letter queue, by reason.");
    describe_gauge!(BUILD_INFO, Unit::Count, "Always 1; the version label says which tally runs.");
    describe_gauge!(READY, Unit::Count, "1 while tally is consuming, 0 while NATS or the state store is unavailable.");
    describe_counter!(
        COMMIT_FAILURES,
        Unit::Count,
        "Batch commits that failed and are being retried; input stays unacked."
    );
    describe_counter!(
        PUBLISH_FAILURES,
        Unit::Count,
        "Output publishes that failed and are being retried from the outbox."
    );
    describe_gauge!(STREAM_POSITION, Unit::Count, "The last input stream sequence committed to state.");
    describe_counter!(ALERTS_TOTAL, Unit::Count, "Drift alert revisions emitted, by state (firing, resolved, final).");
    describe_counter!(
        ERP_POSTINGS_TOTAL,
        Unit::Count,
        "ERP postings emitted, by kind (interim, final, adjustment, inventory_adjustment)."
    );
    describe_histogram!(
        POSTING_DELAY,
        Unit::Seconds,
        "Processing time from the first committed change a posting carries to the posting's emission."
    );
    describe_gauge!(FINAL_POSTINGS_OVERDUE, Unit::Count, "Business days per store without a final posting although their finalization (day-close + erp.close_grace, or end of day + erp.max_open, in event time) plus drift.idle_timeout has passed by the wall clock: the store's event time lags.");
    describe_kpis();
    describe_counter!(
        UNMAPPED_SKUS,
        Unit::Count,
        "Accepted record lines whose code no SKU alias mapped although their system has aliases, counted as themselves; by system (configured systems, else other)."
    );
    describe_gauge!(SKU_ALIASES, Unit::Count, "SKU aliases in the table tally applies (the KV bucket as last read).");
    describe_counter!(
        CHECKPOINT_UPLOADED_BYTES,
        Unit::Bytes,
        "Bytes of the partition's checkpoints uploaded to the Object Store (files stored already are not counted)."
    );
    describe_gauge!(
        CHECKPOINT_LAST_POSITION,
        Unit::Count,
        "The input stream sequence the partition's last published checkpoint has committed."
    );
    describe_histogram!(
        CHECKPOINT_DURATION,
        Unit::Seconds,
        "Time to make, upload and publish one checkpoint of a partition."
    );
    describe_gauge!(
        DRIFT_KEYS,
        Unit::Count,
        "Drift keys (store, day, sku) per store by state (pending, firing, resolved, final)."
    );
    describe_counter!(
        ALERTMANAGER_PUSH_FAILURES,
        Unit::Count,
        "Pushes of drift alerts to Alertmanager that failed and are being retried."
    );
    counter!(ALERTMANAGER_PUSH_FAILURES).absolute(0);
    // Failure counters read 0 until the first failure, rather than "no data" on a dashboard.
    counter!(COMMIT_FAILURES).absolute(0);
    counter!(PUBLISH_FAILURES).absolute(0);
    describe_counter!(WEBHOOK_DELIVERIES, Unit::Count, "ERP webhook POST attempts, by outcome (delivered: 2xx; retried: 408, 429, 5xx, timeout or connection error; rejected: other 4xx, parked on the DLQ).");
    describe_gauge!(
        WEBHOOK_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last posting the ERP webhook delivered (2xx)."
    );
    describe_gauge!(
        WEBHOOK_WAITING,
        Unit::Count,
        "ERP postings of a store the webhook has received and not yet delivered or parked, the one in flight included."
    );
    describe_gauge!(
        MEMORY,
        Unit::Bytes,
        "Memory by part: rss (the whole process), block_cache, memtables, index_and_filters (RocksDB), value_cache, key_filter."
    );
    describe_cluster();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for state in ["firing", "resolved", "final"] {
        counter!(ALERTS_TOTAL, "state" => state).absolute(0);
    }
    for kind in ["interim", "final", "adjustment", "inventory_adjustment"] {
        counter!(ERP_POSTINGS_TOTAL, "kind" => kind).absolute(0);
    }
    // Zero-valued series so dashboards and alert rules see every label from the start.
    for source in ["pos", "inventory", "orders", "unknown"] {
        for outcome in ["accepted", "duplicate", "rejected"] {
            counter!(EVENTS_TOTAL, "source" => source, "outcome" => outcome).absolute(0);
        }
    }
    for reason in RejectReason::ALL {
        counter!(DLQ_TOTAL, "reason" => reason.as_str()).absolute(0);
    }
}

/// Several instances (docs/operations.md, "Several instances: partition ownership").
fn describe_cluster() {
    describe_gauge!(
        PARTITION_OWNED,
        Unit::Count,
        "1 while this instance runs the partition, 0 once it stopped it (cluster.enabled; partitions never run here have no series)."
    );
    describe_histogram!(
        PARTITION_TAKEOVER,
        Unit::Seconds,
        "From acquiring a partition's lease to its pipeline starting: catching its state up with the input, then reading the outputs back."
    );
    describe_counter!(
        LEASES_LOST,
        Unit::Count,
        "Partitions this instance stopped because a lease renewal was refused or none succeeded in time."
    );
    describe_gauge!(CLUSTER_MEMBERS, Unit::Count, "Live members of the cluster as this instance last read them.");
}

/// The business KPIs (docs/alerting.md, "Business KPIs"): what counts is defined in
/// `tally_topologies::kpi`; values are in the currency of the store's prices.
fn describe_kpis() {
    describe_gauge!(
        UNRECONCILED_SALES,
        Unit::Count,
        "POS units sold on the store's open business days that inventory has not decremented, beyond those still within drift.settle (event time)."
    );
    describe_gauge!(
        UNRECONCILED_SALES_VALUE,
        "tally_unreconciled_sales at the latest unit price of each sku in the store, in the store's currency."
    );
    describe_gauge!(
        INVENTORY_VARIANCE_UNITS,
        Unit::Count,
        "Net drift (expected - recorded units) over the store's open business days, signed."
    );
    describe_gauge!(
        INVENTORY_VARIANCE_VALUE,
        "tally_inventory_variance_units at the latest unit price of each sku in the store, in the store's currency."
    );
    describe_histogram!(
        POSTING_FAILURE_RESOLUTION,
        Unit::Seconds,
        "ERP webhook: from a posting's first failed delivery attempt to its delivery (2xx), in this run."
    );
    describe_counter!(
        POSTINGS_PARKED,
        Unit::Count,
        "ERP postings the webhook parked on P.dlq.erp_rejected, by reason (the ERP's 4xx answer)."
    );
}

/// Per-batch tallies, emitted once when the batch is committed.
#[derive(Debug, Default)]
pub struct BatchTally {
    events: std::collections::HashMap<(&'static str, &'static str), u64>,
    dlq: std::collections::HashMap<&'static str, u64>,
    emitted: Emitted,
    /// Unmapped lines by system label (bounded by `[sku]`).
    unmapped: std::collections::HashMap<String, u64>,
}

impl BatchTally {
    pub fn record(&mut self, source: Option<Source>, outcome: Outcome, emitted: Emitted) {
        let source = source.map(Source::as_str).unwrap_or("unknown");
        *self.events.entry((source, outcome.as_str())).or_default() += 1;
        if let Outcome::Rejected(reason) = outcome {
            *self.dlq.entry(reason.as_str()).or_default() += 1;
        }
        self.emitted.merge(emitted);
    }

    /// An accepted record's unmapped lines (`Applied::unmapped`).
    pub fn record_unmapped(&mut self, unmapped: Option<(String, u64)>) {
        if let Some((system, lines)) = unmapped {
            *self.unmapped.entry(system).or_default() += lines;
        }
    }

    pub fn record_emitted(&mut self, emitted: Emitted) {
        self.emitted.merge(emitted);
    }

    pub fn emit(self) {
        for (state, n) in self.emitted.alerts {
            counter!(ALERTS_TOTAL, "state" => state).increment(n);
        }
        for (kind, n) in self.emitted.postings {
            counter!(ERP_POSTINGS_TOTAL, "kind" => kind).increment(n);
        }
        for delay_ms in self.emitted.posting_delays_ms {
            histogram!(POSTING_DELAY).record(delay_ms.max(0) as f64 / 1000.0);
        }
        for ((source, outcome), n) in self.events {
            counter!(EVENTS_TOTAL, "source" => source, "outcome" => outcome).increment(n);
        }
        for (reason, n) in self.dlq {
            counter!(DLQ_TOTAL, "reason" => reason).increment(n);
        }
        for (system, n) in self.unmapped {
            counter!(UNMAPPED_SKUS, "system" => system).increment(n);
        }
    }
}

pub fn commit_done(partition: &Partition, seconds: f64, messages: usize, position: u64) {
    histogram!(COMMIT_DURATION, "partition" => partition.label()).record(seconds);
    histogram!(BATCH_MESSAGES).record(messages as f64);
    gauge!(STREAM_POSITION, "partition" => partition.label()).set(position as f64);
}

pub fn consumer_pending(partition: &Partition, pending: u64) {
    gauge!(CONSUMER_PENDING, "partition" => partition.label()).set(pending as f64);
}

pub fn outbox_pending(partition: &Partition, pending: usize) {
    gauge!(OUTBOX_PENDING, "partition" => partition.label()).set(pending as f64);
}

/// A partition this instance now runs (cluster.enabled), after `takeover_seconds` of catch-up.
pub fn partition_started(partition: &Partition, takeover_seconds: f64) {
    gauge!(PARTITION_OWNED, "partition" => partition.label()).set(1.0);
    histogram!(PARTITION_TAKEOVER).record(takeover_seconds);
}

/// A partition this instance stopped running: its backlog and outbox are another's to report,
/// so that summing them over the instances counts each partition once.
pub fn partition_stopped(partition: &Partition) {
    gauge!(PARTITION_OWNED, "partition" => partition.label()).set(0.0);
    gauge!(CONSUMER_PENDING, "partition" => partition.label()).set(0.0);
    gauge!(OUTBOX_PENDING, "partition" => partition.label()).set(0.0);
    // Another instance reports them now (docs/operations.md, "What to watch").
    gauge!(STREAM_POSITION, "partition" => partition.label()).set(0.0);
    gauge!(CHECKPOINT_LAST_POSITION, "partition" => partition.label()).set(0.0);
}

pub fn lease_lost() {
    counter!(LEASES_LOST).increment(1);
}

pub fn cluster_members(live: usize) {
    gauge!(CLUSTER_MEMBERS).set(live as f64);
}

pub fn outputs_published(kind: &'static str, n: usize) {
    counter!(OUTPUTS_PUBLISHED, "kind" => kind).increment(n as u64);
}

pub fn commit_failed() {
    counter!(COMMIT_FAILURES).increment(1);
}

pub fn publish_failed() {
    counter!(PUBLISH_FAILURES).increment(1);
}

pub fn alertmanager_push_failed() {
    counter!(ALERTMANAGER_PUSH_FAILURES).increment(1);
}

/// Zero-valued webhook series, so that alert rules see them before the first POST.
pub fn webhook_started() {
    for outcome in ["delivered", "retried", "rejected"] {
        counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).absolute(0);
    }
    for reason in PARK_REASONS {
        counter!(POSTINGS_PARKED, "reason" => reason).absolute(0);
    }
    // Registered without a sample, so that its buckets read 0 (not absent) until the first one.
    let _ = histogram!(POSTING_FAILURE_RESOLUTION);
}

/// A posting delivered after failed attempts, the first of them `seconds` ago.
pub fn webhook_failure_resolved(seconds: f64) {
    histogram!(POSTING_FAILURE_RESOLUTION).record(seconds);
}

/// The `reason` label of `tally_postings_parked_total`: the 4xx answers an ERP gives for a
/// posting it will never take, by name, and `other_4xx` for the rest, so the label stays bounded
/// (the webhook maps a status to one of them).
pub const PARK_REASONS: [&str; 8] =
    ["bad_request", "unauthorized", "forbidden", "not_found", "conflict", "too_large", "unprocessable", "other_4xx"];

/// A posting parked on the DLQ; `reason` is one of [`PARK_REASONS`].
pub fn posting_parked(reason: &'static str) {
    counter!(POSTINGS_PARKED, "reason" => reason).increment(1);
}

pub fn webhook_delivered(unix_seconds: f64) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => "delivered").increment(1);
    gauge!(WEBHOOK_LAST_SUCCESS).set(unix_seconds);
}

pub fn webhook_retried() {
    counter!(WEBHOOK_DELIVERIES, "outcome" => "retried").increment(1);
}

pub fn webhook_rejected() {
    counter!(WEBHOOK_DELIVERIES, "outcome" => "rejected").increment(1);
}

/// `tally_webhook_postings_waiting{store}`.
pub fn webhook_waiting(store: &str, postings: u64) {
    gauge!(WEBHOOK_WAITING, "store" => store.to_string()).set(postings as f64);
}

/// `tally_memory_bytes{part}`; the parts are the five of [`crate::memory::memory_loop`].
pub fn memory(part: &'static str, bytes: u64) {
    gauge!(MEMORY, "part" => part).set(bytes as f64);
}

pub fn ready(is_ready: bool) {
    gauge!(READY).set(if is_ready { 1.0 } else { 0.0 });
}

/// Sets `tally_drift_keys{store,state}` from a full count; states absent from it read 0.
pub fn drift_keys(counts: &std::collections::BTreeMap<(String, &'static str), u64>, stores: &[String]) {
    for store in stores {
        for state in ["pending", "firing", "resolved", "final"] {
            let n = counts.get(&(store.clone(), state)).copied().unwrap_or(0);
            gauge!(DRIFT_KEYS, "store" => store.clone(), "state" => state).set(n as f64);
        }
    }
}

/// Sets `tally_erp_final_postings_overdue{store}` from a full count (every store with a clock).
pub fn final_postings_overdue(counts: &std::collections::BTreeMap<String, u64>) {
    for (store, n) in counts {
        gauge!(FINAL_POSTINGS_OVERDUE, "store" => store.clone()).set(*n as f64);
    }
}

/// Sets the business KPI gauges of every store with a store-day, and 0 for the stores of
/// `known` that no longer have one (pruned), so that a series never freezes at a stale value.
pub fn store_kpis(
    kpis: &std::collections::BTreeMap<String, tally_topologies::kpi::StoreKpis>,
    known: &std::collections::BTreeSet<String>,
) {
    use rust_decimal::prelude::ToPrimitive;
    let zero = tally_topologies::kpi::StoreKpis::default();
    for store in known {
        let figures = kpis.get(store).unwrap_or(&zero);
        // Exact decimals become f64 only here, for Prometheus. Normalized first: the conversion
        // rounds at the decimal's scale, so 24.90 and 24.9 would otherwise differ in the last bit.
        let f = |d: rust_decimal::Decimal| d.normalize().to_f64().unwrap_or(f64::NAN);
        gauge!(UNRECONCILED_SALES, "store" => store.clone()).set(f(figures.unreconciled_units));
        gauge!(UNRECONCILED_SALES_VALUE, "store" => store.clone()).set(f(figures.unreconciled_value));
        gauge!(INVENTORY_VARIANCE_UNITS, "store" => store.clone()).set(f(figures.variance_units));
        gauge!(INVENTORY_VARIANCE_VALUE, "store" => store.clone()).set(f(figures.variance_value));
    }
}

/// A recount may take at most this share of the time between recounts, so that a state with
/// millions of alerts does not take a core away from the input loop.
const STATE_GAUGES_MAX_SHARE: u32 = 20;

/// A store's drift settle time, by store id (the thresholds of docs/configuration.md, "[drift]").
pub type SettleOf = std::sync::Arc<dyn Fn(&str) -> chrono::Duration + Send + Sync>;

/// Recounts the gauges read from state, `tally_drift_keys`, `tally_erp_final_postings_overdue`
/// and the business KPIs, every `every` (longer when counting takes longer than a twentieth of
/// that) until shutdown. The drift count reads two indexes (pending keys, latest alerts), not
/// the aggregates; the overdue count reads the store clocks and the timers due by now minus
/// `idle_timeout` (an idle store's event time runs that far behind the wall clock); the KPIs
/// read the sku-days of the open store-days (`tally_topologies::kpi`).
pub async fn state_gauges_loop(
    store: std::sync::Arc<dyn tally_state::Store>,
    every: std::time::Duration,
    idle_timeout: chrono::Duration,
    settle: SettleOf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use tally_topologies::{kpi, report};
    let mut known: std::collections::BTreeSet<String> = Default::default();
    let mut kpi_stores: std::collections::BTreeSet<String> = Default::default();
    loop {
        let reader = std::sync::Arc::clone(&store);
        let settle = std::sync::Arc::clone(&settle);
        let started = std::time::Instant::now();
        let cutoff = chrono::Utc::now() - idle_timeout;
        let counted = tokio::task::spawn_blocking(move || {
            let counts = report::drift_key_counts(reader.as_ref())
                .and_then(|drift| Ok((drift, report::final_postings_overdue(reader.as_ref(), cutoff)?)));
            (counts, kpi::store_kpis(reader.as_ref(), settle.as_ref()))
        });
        match counted.await {
            Ok((counts, kpis)) => {
                match counts {
                    Ok((drift, overdue)) => {
                        known.extend(drift.keys().map(|(store, _)| store.clone()));
                        drift_keys(&drift, &known.iter().cloned().collect::<Vec<_>>());
                        final_postings_overdue(&overdue);
                    }
                    Err(err) => tracing::warn!(error = %err, "Counting drift keys and overdue final postings failed."),
                }
                match kpis {
                    Ok(kpis) => {
                        kpi_stores.extend(kpis.keys().cloned());
                        store_kpis(&kpis, &kpi_stores);
                    }
                    Err(err) => tracing::warn!(error = %err, "Computing the business KPIs failed."),
                }
            }
            Err(err) => tracing::warn!(error = %err, "Counting the gauges read from state panicked."),
        }
        let wait = every.max(started.elapsed() * STATE_GAUGES_MAX_SHARE);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
