//! NATS: connecting with the configured auth, and creating or checking the streams and the
//! consumer of docs/wire-format.md, "Subjects and streams". `setup` is idempotent: a stream that exists is used as it is (the
//! user may have chosen replicas, retention or placement) and only checked for its subjects.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer, stream};
use futures::TryStreamExt as _;
use tracing::{info, warn};

use crate::config::{Config, WebhookConfig, BATCH_MAX_LIMIT, PARTITIONS_DEFAULT};
use crate::partitions::{self, Partition};

/// Unacked messages the server lets the consumer have out at once.
pub const ACK_PENDING_MAX: i64 = 20_000;
const _: () = assert!(BATCH_MAX_LIMIT as i64 <= ACK_PENDING_MAX);

/// How long the server waits for an ack before redelivering. Commits retry in place (see the
/// runner), so this only matters when the process is gone.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

/// Output streams drop a re-publish with the same `Nats-Msg-Id` within this window; it covers
/// a restart after a crash between publish and outbox delete (docs/wire-format.md, "Subjects and streams": at least 10 min).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(20 * 60);

/// The stream of ERP postings, which the ERP webhook reads.
pub const ERP_STREAM: &str = "RETAIL_ERP";

/// The ERP webhook's window: the postings its consumer lets it hold unacked at once, over every
/// store (the consumer's `max_ack_pending`). A held posting costs its headers, and its bytes
/// while they fit the webhook's budget; a store that crowds the window moves to a consumer of
/// its own (docs/configuration.md, "ERP webhook").
pub const WEBHOOK_WINDOW: usize = 4096;

/// How long the server waits for the webhook's ack before it redelivers a posting. The webhook
/// progress-acks everything it holds three times per ack wait, so this matters only when the
/// process is gone: its next start waits at most this long for what the last run held.
pub const WEBHOOK_ACK_WAIT: Duration = Duration::from_secs(30);

pub async fn connect(config: &Config) -> anyhow::Result<async_nats::Client> {
    let nats = &config.nats;
    let mut options = match &nats.creds_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("reading nats.creds_file {}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(path) = &nats.nkey_seed_file {
        let seed =
            std::fs::read_to_string(path).with_context(|| format!("reading nats.nkey_seed_file {}", path.display()))?;
        options = options.nkey(seed.trim().to_string());
    }
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &nats.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &nats.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&nats.tls_cert, &nats.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let tls = nats.tls_ca.is_some() || nats.tls_cert.is_some();
    let client = options
        .name("tally")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| async move { log_event(&event, tls) })
        .connect(server_addrs(&nats.url)?)
        .await
        .with_context(|| format!("connecting to NATS at {}", nats.url))?;
    Ok(client)
}

/// The servers of `nats.url`: one URL, or several separated by commas (the servers of a
/// cluster, any of which will do).
fn server_addrs(urls: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    urls.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| url.parse().with_context(|| format!("nats.url: {url:?} is not a NATS server URL")))
        .collect()
}

/// Connection trouble is a warning; a client error with TLS configured gets a hint, since a
/// refused handshake or certificate reaches the client only as an IO error.
fn log_event(event: &async_nats::Event, tls: bool) {
    match event {
        async_nats::Event::ClientError(_) if tls => warn!(
            %event,
            "NATS client error. TLS is configured: a refused TLS handshake or certificate shows up as an \
             IO error; check nats.tls_ca, nats.tls_cert and nats.tls_key against the server's tls block."
        ),
        async_nats::Event::ClientError(_) | async_nats::Event::ServerError(_) | async_nats::Event::Disconnected => {
            warn!(%event, "NATS connection trouble.")
        }
        _ => info!(%event, "NATS connection event."),
    }
}

/// The streams tally reads and writes: (name, subjects, is output).
pub fn streams(config: &Config) -> Vec<(String, Vec<String>, bool)> {
    let p = &config.input.subject_prefix;
    vec![
        (
            config.input.stream.clone(),
            vec![format!("{p}.pos.*"), format!("{p}.inventory.*"), orders_subject(config)],
            false,
        ),
        ("RETAIL_ALERTS".into(), vec![format!("{p}.alerts.drift.*")], true),
        (ERP_STREAM.into(), vec![format!("{p}.erp.postings.*")], true),
        ("RETAIL_DLQ".into(), vec![format!("{p}.dlq.*")], true),
    ]
}

/// The input subject of order fulfillments (docs/wire-format.md, "Order fulfillment"). Streams
/// made before orders existed lack it; `setup` adds it to them (see [`ensure_stream`]).
pub fn orders_subject(config: &Config) -> String {
    format!("{}.orders.*", config.input.subject_prefix)
}

/// Creates the streams and the durable consumers when absent; checks them when present. Returns
/// the input stream's partitions (docs/operations.md, "Partitions").
pub async fn setup(js: &jetstream::Context, config: &Config) -> anyhow::Result<u32> {
    let added = [orders_subject(config)];
    let mut partitions = 1;
    for (name, subjects, is_output) in streams(config) {
        if is_output {
            ensure_stream(js, &name, &subjects, &added, is_output, None, stream_replicas(config)).await?;
        } else {
            partitions = ensure_input_stream(js, config, &subjects, &added).await?;
        }
    }
    let stream = js.get_stream(&config.input.stream).await?;
    for partition in (0..partitions).map(|index| Partition { index, count: partitions }) {
        let name = partition.consumer_name(config);
        match stream.consumer_info(&name).await {
            Ok(_) => info!(consumer = %name, "Consumer exists; using it."),
            Err(err) if matches!(err.kind(), jetstream::context::ConsumerInfoErrorKind::NotFound) => {
                stream
                    .create_consumer(consumer_config(config, partition, None, 0))
                    .await
                    .context("creating the consumer")?;
                info!(consumer = %name, "Created consumer.");
            }
            Err(err) => return Err(err).context("looking up the consumer"),
        }
    }
    if let Some(webhook) = &config.erp.webhook {
        webhook_consumer(js, config, webhook).await?;
    }
    Ok(partitions)
}

/// The input stream, created with `input.partitions` partitions (default 16) when absent; when
/// present, its partitions as they are, unless `input.partitions` says otherwise: the partition
/// of a store is fixed with the stream, so a different count is refused with what to do.
async fn ensure_input_stream(
    js: &jetstream::Context,
    config: &Config,
    subjects: &[String],
    added: &[String],
) -> anyhow::Result<u32> {
    let name = &config.input.stream;
    let wanted = config.input.partitions.unwrap_or(PARTITIONS_DEFAULT);
    let transform = (wanted > 1).then(|| partitions::transform(config, wanted));
    let stream = ensure_stream(js, name, subjects, added, false, transform, stream_replicas(config)).await?;
    let Some(found) = partitions::count_of(config, stream.subject_transform.as_ref()) else {
        bail!(
            "stream {name} has a subject transform tally did not make ({:?}); tally needs its partition transform \
             or none. Use another stream (input.stream) or remove the transform",
            stream.subject_transform
        );
    };
    if let Some(configured) = config.input.partitions.filter(|n| *n != found) {
        bail!(
            "stream {name} has {found} partition(s) but input.partitions is {configured}. A store's partition is \
             fixed when the stream is created: remove input.partitions (or set it to {found}) to use the stream as \
             it is, or create a new stream with {configured} (another input.stream, then `tally setup`) and rebuild \
             the state from it (docs/operations.md, \"Partitions\")"
        );
    }
    info!(stream = %name, partitions = found, "Input partitions.");
    Ok(found)
}

/// Replicas of the streams `setup` creates: with several instances (`cluster.enabled`), the
/// cluster's (`cluster.replicas`), so that losing one NATS server loses no input and no output;
/// otherwise 1, as before.
fn stream_replicas(config: &Config) -> usize {
    if config.cluster.enabled {
        config.cluster.replicas
    } else {
        1
    }
}

/// The ERP webhook's consumer, created when absent. One made by an earlier version (which held
/// one posting at a time: `max_ack_pending` 1) is updated in place, keeping its position.
pub async fn webhook_consumer(
    js: &jetstream::Context,
    config: &Config,
    webhook: &WebhookConfig,
) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
    let stream =
        js.get_stream(ERP_STREAM).await.with_context(|| format!("stream {ERP_STREAM} not found; run `tally setup`"))?;
    let consumer = stream.create_consumer(webhook_consumer_config(config, webhook)).await.with_context(|| {
        format!(
            "creating or updating the ERP webhook's consumer {} on {ERP_STREAM}; if it was made by hand with another \
             deliver or ack policy, delete it once its postings are delivered",
            webhook.consumer
        )
    })?;
    info!(consumer = %webhook.consumer, window = WEBHOOK_WINDOW, "ERP webhook consumer ready.");
    Ok(consumer)
}

/// The ERP webhook's durable consumer on `RETAIL_ERP`: every store's postings, in stream order.
pub fn webhook_consumer_config(config: &Config, webhook: &WebhookConfig) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(webhook.consumer.clone()),
        description: Some("tally: ERP postings to the HTTP webhook".into()),
        filter_subject: format!("{}.erp.postings.*", config.input.subject_prefix),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: WEBHOOK_ACK_WAIT,
        max_ack_pending: WEBHOOK_WINDOW as i64,
        ..Default::default()
    }
}

/// The consumer a store's postings move to when they crowd the webhook's window.
pub fn webhook_store_consumer_name(webhook: &WebhookConfig, store: &str) -> String {
    format!("{}-store-{store}", webhook.consumer)
}

/// A store's own consumer: its postings from stream sequence `from` on.
pub fn webhook_store_consumer_config(
    config: &Config,
    webhook: &WebhookConfig,
    store: &str,
    from: u64,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(webhook_store_consumer_name(webhook, store)),
        description: Some(format!(
            "tally: ERP postings of store {store} to the HTTP webhook, off its crowded consumer"
        )),
        filter_subject: format!("{}.erp.postings.{store}", config.input.subject_prefix),
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: WEBHOOK_ACK_WAIT,
        // One posting out at a time: JetStream then cannot hand out a later posting of the store
        // while an earlier one waits for its redelivery (after a crash).
        max_ack_pending: 1,
        ..Default::default()
    }
}

/// Creates a stream, or checks that an existing one covers `subjects`. Of those, the ones in
/// `added` (subjects later versions read, which a stream made by an earlier one lacks) are not
/// required: a stream that an earlier `tally setup` made (its subjects exactly the others) gets
/// them added, so that an upgrade needs no manual step; a stream the user made otherwise is used
/// as it is, with a warning.
async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: &[String],
    added: &[String],
    is_output: bool,
    transform: Option<stream::SubjectTransform>,
    replicas: usize,
) -> anyhow::Result<stream::Config> {
    match js.get_stream(name).await {
        Ok(mut existing) => {
            let info = existing.info().await?;
            if info.config.num_replicas < replicas {
                warn!(
                    stream = name,
                    replicas = info.config.num_replicas,
                    wanted = replicas,
                    "The stream has fewer replicas than cluster.replicas: losing the NATS server that holds it stops \
                     every instance. Raise them (nats stream edit <stream> --replicas <n>)."
                );
            }
            let (to_add, missing): (Vec<&String>, Vec<&String>) = subjects
                .iter()
                .filter(|s| !info.config.subjects.iter().any(|have| subject_covers(have, s)))
                .partition(|s| added.contains(s));
            if !missing.is_empty() {
                bail!(
                    "stream {name} exists but does not cover subjects {missing:?} (it has {:?})",
                    info.config.subjects
                );
            }
            let earlier: Vec<&String> = subjects.iter().filter(|s| !added.contains(s)).collect();
            let made_by_earlier_setup = info.config.subjects.len() == earlier.len()
                && info.config.subjects.iter().all(|have| earlier.contains(&have));
            if !to_add.is_empty() && made_by_earlier_setup {
                add_subjects(js, info.config.clone(), &to_add).await;
            } else if !to_add.is_empty() {
                warn!(
                    stream = name, subjects = ?to_add,
                    "The stream, made by hand, does not cover these subjects; records published on them are not \
                     read. Add them to the stream to read order fulfillments (docs/operations.md, \"Upgrades and downgrades\")."
                );
            }
            info!(stream = name, "Stream exists; using it as it is.");
            Ok(info.config.clone())
        }
        Err(err) if is_stream_not_found(&err) => {
            let config = stream::Config {
                name: name.to_string(),
                subjects: subjects.to_vec(),
                storage: stream::StorageType::File,
                duplicate_window: if is_output { DUPLICATE_WINDOW } else { Duration::from_secs(120) },
                subject_transform: transform,
                num_replicas: replicas,
                ..Default::default()
            };
            create_stream(js, &config).await?;
            info!(stream = name, "Created stream.");
            Ok(config)
        }
        Err(err) => Err(err).with_context(|| format!("looking up stream {name}")),
    }
}

/// How long creating a replicated stream is retried while the NATS cluster has too few
/// servers ready: a cluster that has just started knows its peers a moment before it counts
/// them as online.
const PLACEMENT_RETRY: Duration = Duration::from_secs(30);

/// Creates a stream; while the servers refuse it for want of peers (`10005`, a NATS cluster
/// starting up or a server down), tries again for [`PLACEMENT_RETRY`], then says what to check.
async fn create_stream(js: &jetstream::Context, config: &stream::Config) -> anyhow::Result<()> {
    let name = &config.name;
    let deadline = tokio::time::Instant::now() + PLACEMENT_RETRY;
    loop {
        let err = match js.create_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let no_peers = matches!(
            err.kind(),
            jetstream::context::CreateStreamErrorKind::JetStream(ref e)
                if e.error_code() == jetstream::ErrorCode::CLUSTER_NO_PEERS
        );
        if !no_peers {
            return Err(err).with_context(|| format!("creating stream {name}"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(err).with_context(|| {
                format!(
                    "creating stream {name} with {} replicas: the NATS cluster has too few servers with JetStream \
                     online (check `nats server report jetstream`, or lower cluster.replicas)",
                    config.num_replicas
                )
            });
        }
        info!(stream = %name, replicas = config.num_replicas, "Too few NATS servers ready for the stream yet; retrying.");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Adds subjects to an existing stream, keeping the rest of its configuration as it is. When the
/// server refuses (another stream holds them), tally runs on without them and says so: what it
/// read before keeps working, and an operator can move the subjects by hand.
async fn add_subjects(js: &jetstream::Context, mut config: stream::Config, subjects: &[&String]) {
    let name = config.name.clone();
    config.subjects.extend(subjects.iter().map(|s| s.to_string()));
    match js.update_stream(config).await {
        Ok(_) => info!(stream = %name, ?subjects, "Added subjects to the stream."),
        Err(err) => warn!(
            stream = %name, ?subjects, error = %err,
            "Could not add subjects to the stream; records on them are not read. If another stream holds \
             them, move them to this one (docs/operations.md, \"Upgrades and downgrades\")."
        ),
    }
}

/// The consumer config of `partition`: resume right after `position`, the last committed stream
/// sequence of the partition.
pub fn consumer_config(
    config: &Config,
    partition: Partition,
    epoch: Option<u64>,
    position: u64,
) -> consumer::pull::Config {
    let description = match partition.count {
        1 => "tally: POS, inventory and order events".to_string(),
        n => format!("tally: POS, inventory and order events of partition {} of {n}", partition.index),
    };
    consumer::pull::Config {
        durable_name: Some(partition.consumer_name_at(config, epoch)),
        description: Some(description),
        filter_subject: partition.filter_subject(config).unwrap_or_default(),
        deliver_policy: if position == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: position + 1 }
        },
        ack_policy: consumer::AckPolicy::All,
        ack_wait: ACK_WAIT,
        max_ack_pending: ACK_PENDING_MAX,
        ..Default::default()
    }
}

/// Makes the durable consumer start right after the committed position. State, not the
/// consumer, is the source of truth: the consumer is recreated on every start so that messages
/// the server thinks are delivered but that never reached a commit are read again, in order.
/// Under a lease (`epoch`), every other consumer of the partition (a former owner's) is deleted
/// first, so that a former owner paused past its lease reads and acks nothing more.
pub async fn consumer_at(
    js: &jetstream::Context,
    config: &Config,
    partition: Partition,
    epoch: Option<u64>,
    position: u64,
) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
    let name = partition.consumer_name_at(config, epoch);
    let stream = js
        .get_stream(&config.input.stream)
        .await
        .with_context(|| format!("input stream {} not found; run `tally setup` first", config.input.stream))?;
    let mut doomed = vec![name.clone()];
    if epoch.is_some() {
        let names: Vec<String> = stream.consumer_names().try_collect().await.context("listing the consumers")?;
        doomed.extend(names.into_iter().filter(|other| *other != name && partition.is_its_consumer(config, other)));
    }
    for doomed in doomed {
        match stream.delete_consumer(&doomed).await {
            Ok(_) => {}
            Err(err) if is_consumer_not_found(&err) => {}
            Err(err) => return Err(err).with_context(|| format!("deleting the consumer {doomed}")),
        }
    }
    let consumer = stream
        .create_consumer(consumer_config(config, partition, epoch, position))
        .await
        .context("creating the consumer")?;
    info!(consumer = %name, after = position, "Consuming after the committed position.");
    Ok(consumer)
}

/// How far the owners of each of `partitions` can have read the input: over the partition's
/// consumers under any epoch (a former owner's, dead or paused, whose consumer a new owner has
/// not yet replaced), the highest stream sequence delivered to one, or its start less one,
/// whichever is higher. An owner publishes only outputs of input delivered to it; and one that
/// replaced a former owner's consumer started its own after a state that had caught up with
/// everything delivered to the former. Partitions without such a consumer are absent: who owned
/// them last, and how far that owner got, is unknown.
pub async fn owners_reach(
    stream: &stream::Stream,
    config: &Config,
    partitions: &[Partition],
) -> anyhow::Result<std::collections::BTreeMap<u32, u64>> {
    let infos: Vec<consumer::Info> = stream.consumers().try_collect().await.context("listing the consumers")?;
    let mut reach = std::collections::BTreeMap::new();
    for info in &infos {
        let Some(partition) = partitions.iter().find(|p| p.is_its_consumer(config, &info.name)) else { continue };
        let started_after = match info.config.deliver_policy {
            consumer::DeliverPolicy::ByStartSequence { start_sequence } => start_sequence.saturating_sub(1),
            _ => 0,
        };
        let far = info.delivered.stream_sequence.max(started_after);
        let entry = reach.entry(partition.index).or_insert(far);
        *entry = (*entry).max(far);
    }
    Ok(reach)
}

fn is_stream_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

fn is_consumer_not_found(err: &jetstream::stream::ConsumerError) -> bool {
    matches!(err.kind(), jetstream::stream::ConsumerErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND)
}

/// Whether subject pattern `have` matches every subject that pattern `want` matches.
pub fn subject_covers(have: &str, want: &str) -> bool {
    let have: Vec<&str> = have.split('.').collect();
    let want: Vec<&str> = want.split('.').collect();
    for (i, token) in have.iter().enumerate() {
        match *token {
            ">" => return want.len() > i,
            "*" => {
                if want.get(i).is_none_or(|w| *w == ">") {
                    return false;
                }
            }
            literal => {
                if want.get(i) != Some(&literal) {
                    return false;
                }
            }
        }
    }
    have.len() == want.len()
}

#[cfg(test)]
mod tests {
    use super::subject_covers;
    use crate::partitions::Partition;
    use crate::test_nats::NatsServer;
    use async_nats::jetstream::{self, consumer, stream};
    use futures::StreamExt as _;

    // Proves how far a takeover catches up: as far as any of the partition's owner consumers got
    // (delivered, acked or not) or started after, never what a standby's consumer read, and
    // nothing known where the partition has no owner consumer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_former_owners_reach_is_what_was_delivered_to_them_or_where_they_started() {
        let nats = NatsServer::start();
        let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
        let config = crate::config::Config::default();
        let subjects = vec![format!("{}.>", config.input.subject_prefix)];
        let input = stream::Config { name: config.input.stream.clone(), subjects, ..Default::default() };
        let input = js.create_stream(input).await.expect("input stream");
        for n in 0..10 {
            let subject = format!("{}.pos.0042", config.input.subject_prefix);
            js.publish(subject, format!("{n}").into()).await.expect("publish").await.expect("PubAck");
        }
        let reach = || async { super::owners_reach(&input, &config, &[Partition::WHOLE]).await.expect("reach") };
        assert!(reach().await.is_empty(), "no owner consumer: unknown");

        let fetch = |name: String, start: u64, count: usize| {
            let (js, config) = (js.clone(), config.clone());
            async move {
                let mut consumer_config = super::consumer_config(&config, Partition::WHOLE, None, start);
                consumer_config.durable_name = Some(name);
                let stream = js.get_stream(&config.input.stream).await.expect("stream");
                let consumer: consumer::PullConsumer = stream.create_consumer(consumer_config).await.expect("consumer");
                if count == 0 {
                    return;
                }
                let mut batch = consumer.fetch().max_messages(count).messages().await.expect("fetch");
                for _ in 0..count {
                    batch.next().await.expect("a message").expect("delivered");
                }
            }
        };
        // An owner under epoch 3 was delivered 4 messages and acked none.
        fetch(Partition::WHOLE.consumer_name_at(&config, Some(3)), 0, 4).await;
        assert_eq!(reach().await.get(&0), Some(&4));
        // A standby's consumer read all ten: it is no owner's.
        fetch(format!("{}-standby-b", config.input.consumer), 0, 10).await;
        assert_eq!(reach().await.get(&0), Some(&4));
        // The owner under epoch 4 started after 7 and was delivered nothing yet.
        fetch(Partition::WHOLE.consumer_name_at(&config, Some(4)), 7, 0).await;
        assert_eq!(reach().await.get(&0), Some(&7));
    }

    // Proves nats.url takes one server or a comma-separated list of a cluster's, and names a
    // bad one.
    #[test]
    fn one_or_several_server_urls() {
        assert_eq!(super::server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        let several = super::server_addrs("nats://a:4222, nats://b:4222,nats://c:4222").unwrap();
        assert_eq!(several.len(), 3);
        let bad = super::server_addrs("nats://a:4222,nats://b:99999").unwrap_err().to_string();
        assert!(bad.contains("nats://b:99999"), "{bad}");
    }

    // Proves wildcard coverage of subject patterns, which decides whether a pre-made stream fits.
    #[test]
    fn subject_coverage() {
        assert!(subject_covers("retail.pos.*", "retail.pos.*"));
        assert!(subject_covers("retail.>", "retail.pos.*"));
        assert!(subject_covers("retail.*.*", "retail.inventory.*"));
        assert!(!subject_covers("retail.pos.0042", "retail.pos.*"));
        assert!(!subject_covers("retail.pos.*", "retail.inventory.*"));
        assert!(!subject_covers("retail.*", "retail.pos.*"));
        assert!(!subject_covers("retail.pos.*", "retail.pos.>"));
    }
}
