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
    let consumer = js
        .stream("RETAIL_IN")
        .await
        .consumer_info("tally")
        .await
        .unwrap_or_else(|err| panic!("setup must create the durable consumer `tally`: {err}"));
    assert!(consumer.config.deliver_subject.is_none(), "the consumer is a pull consumer");
    assert_eq!(consumer.config.durable_name.as_deref(), Some("tally"), "the consumer is durable");

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
    let consumer_after = js.stream("RETAIL_IN").await.consumer_info("tally").await.expect("consumer still there");
    assert_eq!(consumer_after.created, consumer.created, "the consumer was re-created by the second setup");
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
    js.stream("SHOP_IN").await.consumer_info("tally-a").await.expect("consumer tally-a exists");

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
