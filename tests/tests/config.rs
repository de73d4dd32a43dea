//! Configuration as users meet it (CONTRACT §8): unknown keys rejected by name, bad values
//! explained, environment variables over the file.

use tally_tests::fixtures::{example_transaction, pos_subject, DAY};
use tally_tests::{DayTotals, Js, NatsServer, Tally, DRAIN_TIMEOUT};

fn failed_setup_stderr(tally: &Tally) -> String {
    let out = tally.setup();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "setup must refuse this config; stderr:\n{stderr}");
    stderr
}

// Proves: an unknown key, in a known section or as an unknown section, is rejected with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_rejected_by_name() {
    let nats = NatsServer::start();
    let tally = Tally::builder(&nats.url()).toml("[input]\nbatch_maxx = 10\n").prepare();
    let stderr = failed_setup_stderr(&tally);
    assert!(stderr.contains("batch_maxx"), "the error names the key; stderr:\n{stderr}");

    let tally = Tally::builder(&nats.url()).toml("[natss]\nurl = \"nats://127.0.0.1:4222\"\n").prepare();
    let stderr = failed_setup_stderr(&tally);
    assert!(stderr.contains("natss"), "the error names the section; stderr:\n{stderr}");
}

// Proves: a bad value is refused with a message that names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_are_refused_with_the_key_name() {
    let nats = NatsServer::start();
    let tally = Tally::builder(&nats.url()).toml("[output]\nformat = \"xml\"\n").prepare();
    let stderr = failed_setup_stderr(&tally);
    assert!(stderr.contains("format"), "the error names output.format; stderr:\n{stderr}");
}

// Proves: TALLY_<SECTION>_<KEY> overrides the file: a config pointing at a dead NATS works when
// TALLY_NATS_URL names the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_file() {
    let nats = NatsServer::start();
    let dead = format!("nats://127.0.0.1:{}", tally_tests::free_port());
    let tally = Tally::builder(&dead).env("TALLY_NATS_URL", &nats.url()).start().await;
    let js = Js::connect(&nats.url()).await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await).transactions, 1);
}
