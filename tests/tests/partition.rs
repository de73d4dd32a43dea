//! Partitions (docs/operations.md, "Partitions"): tally's partition function against the one
//! nats-server applies in a stream's subject transform, on real subjects.

use async_nats::jetstream::stream::{Config, SubjectTransform};
use tally_tests::{Js, NatsServer};
use tally_topologies::partition;

const PARTITIONS: u32 = 16;

// Proves tally's partition of a store is the server's `{{partition(16, <store>)}}` for 500
// store ids (digits, letters, `_` and `-`, 1 to 64 characters), on both input subjects: the
// server stores each message under a subject that ends with the partition it computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_computes_the_partition_the_server_assigns() {
    let nats = NatsServer::start();
    let js = Js::connect(&nats.url()).await;
    let transform = SubjectTransform {
        source: "retail.*.*".into(),
        destination: format!("retail.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition({PARTITIONS},2)}}}}"),
    };
    let config = Config {
        name: "PARTITIONED".into(),
        subjects: vec!["retail.pos.*".into(), "retail.inventory.*".into()],
        subject_transform: Some(transform),
        ..Config::default()
    };
    js.context.create_stream(config).await.expect("a stream with a partition transform");
    let mut stores: Vec<String> = (0..480).map(|n| format!("{n:04}")).collect();
    stores.extend(["A", "store_9", "North-East-01", "z", &"x".repeat(64)].map(String::from));
    stores.extend((0..15).map(|n| format!("EU-{n}-Berlin_{}", n * 7)));
    for (n, store) in stores.iter().enumerate() {
        let kind = if n % 2 == 0 { "pos" } else { "inventory" };
        js.publish(&format!("retail.{kind}.{store}"), "{}", &[]).await;
    }
    let stored = js.messages("PARTITIONED").await;
    assert_eq!(stored.len(), stores.len());
    let mut used = std::collections::BTreeSet::new();
    for (message, store) in stored.iter().zip(&stores) {
        let tokens: Vec<&str> = message.subject.split('.').collect();
        assert_eq!(tokens[2], store, "stored in publish order: {}", message.subject);
        let server: u32 = tokens[3].parse().expect("a partition number");
        assert_eq!(partition::of_store(store, PARTITIONS), server, "store {store:?}");
        used.insert(server);
    }
    assert_eq!(used.len(), PARTITIONS as usize, "500 stores reach every partition");
}
