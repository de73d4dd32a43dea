//! `tally setup` (docs/wire-format.md, "Subjects and streams"; docs/operations.md): creates what is absent, accepts what users pre-created, and
//! is idempotent.

use std::time::Duration;

use async_nats::jetstream::stream;
use tally_tests::fixtures::{example_transaction, pos_subject, DAY};
use tally_tests::{wait_for_messages, DayTotals, Js, NatsServer, Tally, DRAIN_TIMEOUT};

const OUTPUT_STREAMS: [&str; 3] = ["RETAIL_ALERTS", "RETAIL_ERP", "RETAIL_DLQ"];

// Proves: setup creates the four streams (subjects per docs/wire-format.md, output duplicate window ≥ 10 min) and
// the durable pull consumer, and a second run changes nothing and keeps the messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_twice_is_idempotent() {
    let nats = NatsServer::start();
    let tally = Tally::builder(&nats.url()).prepare();
    tally.setup_ok();
    let js = Js::connect(&nats.url()).await;

    // Every documented subject lands in its stream.
    for (subject, stream_name) in [
        ("retail.pos.0042", "RETAIL_IN"),
        ("retail.inventory.0042", "RETAIL_IN"),
        ("retail.alerts.drift.0042", "RETAIL_ALERTS"),
        ("retail.erp.postings.0042", "RETAIL_ERP"),
        ("retail.dlq.decode", "RETAIL_DLQ"),
    ] {
        let found = js
            .context
            .stream_by_subject(subject)
            .await
            .unwrap_or_else(|err| panic!("no stream covers {subject}: {err}"));
        assert_eq!(found, stream_name, "stream for {subject}");
    }
    for name in OUTPUT_STREAMS {
        let info = js.stream_info(name).await;
        assert!(
            info.config.duplicate_window >= Duration::from_secs(600),
            "{name} duplicate window is {:?}, the contract wants at least 10 minutes",
            info.config.duplicate_window
        );
    }
    // 16 partitions by default (docs/operations.md, "Partitions"): a transform on the stream,
    // a durable pull consumer per partition, filtered to it.
    let input = js.stream_info("RETAIL_IN").await;
    let transform = input.config.subject_transform.expect("the input stream partitions its subjects");
    assert_eq!(transform.source, "retail.*.*");
    assert_eq!(transform.destination, "retail.{{wildcard(1)}}.{{wildcard(2)}}.{{partition(16,2)}}");
    let mut consumers = Vec::new();
    for n in 0..16 {
        let name = format!("tally-p{n}");
        let consumer = js
            .stream("RETAIL_IN")
            .await
            .consumer_info(&name)
            .await
            .unwrap_or_else(|err| panic!("setup must create the durable consumer `{name}`: {err}"));
        assert!(consumer.config.deliver_subject.is_none(), "the consumer is a pull consumer");
        assert_eq!(consumer.config.durable_name.as_deref(), Some(name.as_str()), "the consumer is durable");
        assert_eq!(consumer.config.filter_subject, format!("retail.*.*.{n}"), "{name} reads its partition");
        consumers.push(consumer);
    }

    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    let before: Vec<_> = futures::future::join_all(
        ["RETAIL_IN", "RETAIL_ALERTS", "RETAIL_ERP", "RETAIL_DLQ"].map(|name| js.stream_info(name)),
    )
    .await;
    tally.setup_ok();
    for info in before {
        let after = js.stream_info(&info.config.name).await;
        assert_eq!(after.created, info.created, "{} was re-created by the second setup", info.config.name);
        assert_eq!(after.config.subjects, info.config.subjects, "{} subjects changed", info.config.name);
        assert_eq!(after.state.messages, info.state.messages, "{} lost messages", info.config.name);
    }
    for consumer in consumers {
        let name = &consumer.name;
        let after = js.stream("RETAIL_IN").await.consumer_info(name).await.expect("consumer still there");
        assert_eq!(after.created, consumer.created, "{name} was re-created by the second setup");
    }
}

// Proves: `input.partitions = 1` makes the input stream of earlier versions (no transform, one
// consumer named `input.consumer`, state directly in state.path), and tally consumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partition_is_the_unpartitioned_stream() {
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), "[input]\npartitions = 1\n").await;
    let js = Js::connect(&nats.url()).await;
    assert!(js.stream_info("RETAIL_IN").await.config.subject_transform.is_none());
    let consumer = js.stream("RETAIL_IN").await.consumer_info("tally").await.expect("consumer tally");
    assert_eq!(consumer.config.filter_subject, "");
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await).transactions, 1);
    assert!(tally.state_dir().join("CURRENT").exists(), "one partition's state is in state.path itself");
    assert!(!tally.state_dir().join("PARTITIONS").exists());
}

// Proves: an existing stream's partitioning is kept; an `input.partitions` that differs from it
// is refused by setup and by run, with what to do, and the stream is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_partition_count_is_refused() {
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let first = Tally::builder(&nats.url()).toml("[input]\npartitions = 4\n").prepare();
    first.setup_ok();
    let created = js.stream_info("RETAIL_IN").await;

    let other = Tally::builder(&nats.url()).toml("[input]\npartitions = 8\n").prepare();
    let out = other.setup();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "setup must refuse another partition count; stderr:\n{stderr}");
    assert!(stderr.contains("has 4 partition(s) but input.partitions is 8"), "{stderr}");
    assert!(stderr.contains("remove input.partitions"), "the error says what to do: {stderr}");
    let after = js.stream_info("RETAIL_IN").await;
    assert_eq!(after.created, created.created);
    assert_eq!(after.config.subject_transform, created.config.subject_transform);

    // Without input.partitions, the stream's own count is used.
    let adopted = Tally::start(&nats.url(), "").await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    adopted.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&adopted.day("0042", DAY).await).transactions, 1);
    let marker = std::fs::read_to_string(adopted.state_dir().join("PARTITIONS")).expect("the state's partitions");
    assert_eq!(marker.trim(), "4");
}

// Proves: a RETAIL_IN that the user pre-created with other settings is used as it is (nothing
// changed) as long as it covers the input subjects, and tally consumes from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_created_input_stream_with_other_settings_is_accepted() {
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let config = stream::Config {
        name: "RETAIL_IN".into(),
        subjects: vec!["retail.pos.>".into(), "retail.inventory.>".into()],
        description: Some("owned by the platform team".into()),
        max_messages: 1_000_000,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: Duration::from_secs(30),
        ..Default::default()
    };
    js.context.create_stream(config).await.expect("pre-create RETAIL_IN");
    let before = js.stream_info("RETAIL_IN").await;

    let tally = Tally::start(&nats.url(), "").await;
    let after = js.stream_info("RETAIL_IN").await;
    assert_eq!(after.created, before.created, "RETAIL_IN must not be re-created");
    assert_eq!(after.config.subjects, before.config.subjects);
    assert_eq!(after.config.max_messages, 1_000_000);
    assert_eq!(after.config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(after.config.duplicate_window, Duration::from_secs(30));
    assert_eq!(after.config.description.as_deref(), Some("owned by the platform team"));

    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await).transactions, 1);
}

// Proves: a pre-created RETAIL_IN that does not cover the inventory subjects is refused with a
// message naming what is missing, and is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_created_input_stream_missing_subjects_is_refused() {
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let config =
        stream::Config { name: "RETAIL_IN".into(), subjects: vec!["retail.pos.*".into()], ..Default::default() };
    js.context.create_stream(config).await.expect("pre-create RETAIL_IN");

    let tally = Tally::builder(&nats.url()).prepare();
    let out = tally.setup();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "setup must fail when RETAIL_IN lacks subjects; stderr:\n{stderr}");
    assert!(stderr.contains("inventory"), "the error names the missing subject; stderr:\n{stderr}");
    assert_eq!(js.stream_info("RETAIL_IN").await.config.subjects, vec!["retail.pos.*".to_string()]);
}

// Proves: input.stream, input.consumer and input.subject_prefix are honoured end to end:
// setup creates them, tally consumes from them and dead-letters under the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_stream_consumer_and_prefix_are_used() {
    let nats = NatsServer::start();
    let tally =
        Tally::start(&nats.url(), "[input]\nstream = \"SHOP_IN\"\nconsumer = \"tally-a\"\nsubject_prefix = \"shop\"\n")
            .await;
    let js = Js::connect(&nats.url()).await;
    assert_eq!(js.context.stream_by_subject("shop.pos.0042").await.expect("covered"), "SHOP_IN");
    assert_eq!(js.context.stream_by_subject("shop.inventory.0042").await.expect("covered"), "SHOP_IN");
    js.stream("SHOP_IN").await.consumer_info("tally-a-p0").await.expect("consumer tally-a-p0 exists");

    js.publish_json(&pos_subject("shop", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    js.publish(&pos_subject("shop", "0042"), b"{oops".to_vec(), &[]).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await).transactions, 1);
    let dlq_stream = js.context.stream_by_subject("shop.dlq.decode").await.expect("a stream covers shop.dlq.*");
    let dlq = wait_for_messages(&js, &dlq_stream, 1).await;
    assert_eq!(dlq[0].subject, "shop.dlq.decode");
}

// Proves: setup against an unreachable NATS fails (non-zero exit, an error on stderr) instead of
// hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_without_nats_fails_clearly() {
    let url = format!("nats://127.0.0.1:{}", tally_tests::free_port());
    let tally = Tally::builder(&url).prepare();
    let out = tally.setup();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "setup must fail without NATS; stderr:\n{stderr}");
    assert!(!stderr.trim().is_empty(), "setup must say why it failed");
}

// Proves: with checkpoints on (several instances), setup refuses an input stream that keeps
// less than cluster.checkpoint_interval, and warns, naming what to change, about one that keeps
// less than the interval plus an hour's outage or is bounded by messages; without the cluster it
// checks nothing of the kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_need_the_input_stream_to_keep_the_interval() {
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let mut config = stream::Config {
        name: "RETAIL_IN".into(),
        subjects: vec!["retail.pos.>".into(), "retail.inventory.>".into()],
        max_age: Duration::from_secs(30),
        ..Default::default()
    };
    js.context.create_stream(config.clone()).await.expect("pre-create RETAIL_IN");
    let clustered = "[cluster]\nenabled = true\nadvertise = \"127.0.0.1:9464\"\nreplicas = 1\ncheckpoint_interval = \
                     \"60s\"\n";
    let tally = Tally::builder(&nats.url()).toml(clustered).prepare();
    let out = tally.setup();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "setup must refuse max_age 30s under a 60s checkpoint interval:\n{stderr}");
    assert!(stderr.contains("less than cluster.checkpoint_interval") && stderr.contains("--max-age 3660s"), "{stderr}");
    Tally::builder(&nats.url()).prepare().setup_ok();

    config.max_age = Duration::from_secs(1800);
    config.max_messages = 1_000_000;
    js.context.update_stream(config).await.expect("update RETAIL_IN");
    let out = tally.setup_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("an outage longer than 1740s"), "warned about max_age:\n{stderr}");
    assert!(stderr.contains("max_msgs = 1000000"), "warned about max_msgs:\n{stderr}");
}
