//! The Alertmanager example deploy/alertmanager/alertmanager.yml (issue 13): valid for amtool,
//! routes tally's drift alerts by severity to the stores' receivers and tally's own alerts to
//! its team's, and its inhibit rules silence what a real Alertmanager should silence.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tally_tests::{free_port, wait_until, Alertmanager};

fn config_path() -> PathBuf {
    tally_tests::workspace_root().join("deploy/alertmanager/alertmanager.yml")
}

/// Runs `amtool <args>`; (success, stdout and stderr).
fn amtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("amtool").args(args).output().unwrap_or_else(|err| {
        panic!("cannot run amtool ({err}); run scripts/install-deps.sh (Debian package `prometheus-alertmanager`)")
    });
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), report)
}

// Proves the example passes `amtool check-config`: it parses, its matchers and templates are
// valid and every route names a receiver that exists.
#[test]
fn example_passes_amtool_check_config() {
    let path = config_path();
    let (ok, report) = amtool(&["check-config", path.to_str().expect("a UTF-8 path")]);
    assert!(ok && report.contains("SUCCESS"), "amtool check-config failed:\n{report}");
    assert!(report.contains("inhibit rules"), "{report}");
}

// Proves where alerts go: drift by severity to the stores' pager or tickets, tally's own
// alerts by severity to its team's pager or chat; and that a wrong expectation fails amtool.
#[test]
fn alerts_route_by_alertname_and_severity() {
    let cases: [(&[&str], &str); 8] = [
        (&["alertname=TallyInventoryDrift", "severity=critical", "store=0042", "sku=100234"], "store-ops-pager"),
        (&["alertname=TallyInventoryDrift", "severity=warning", "store=0042", "sku=100234"], "store-ops-tickets"),
        (&["alertname=TallyStoreInventoryFeedSuspect", "severity=critical", "store=0042"], "store-ops-pager"),
        (&["alertname=TallyDriftKeysFiring", "severity=warning", "store=0042"], "store-ops-tickets"),
        (&["alertname=TallyDown", "severity=critical", "job=tally", "instance=a:9464"], "tally-pager"),
        (&["alertname=TallyErpPostingRejected", "severity=warning", "job=tally"], "tally-chat"),
        (&["alertname=TallyErpFinalPostingOverdue", "severity=warning", "store=0042"], "tally-chat"),
        (&["alertname=SomethingElse"], "tally-chat"),
    ];
    let path = config_path();
    let config = format!("--config.file={}", path.display());
    for (labels, receiver) in cases {
        let verify = format!("--verify.receivers={receiver}");
        let mut args = vec!["config", "routes", "test", config.as_str(), verify.as_str()];
        args.extend_from_slice(labels);
        let (ok, report) = amtool(&args);
        assert!(ok, "{labels:?} should go to {receiver}:\n{report}");
    }
    let verify = "--verify.receivers=tally-pager";
    let args = [
        "config",
        "routes",
        "test",
        config.as_str(),
        verify,
        "alertname=TallyInventoryDrift",
        "severity=critical",
        "store=0042",
    ];
    assert!(!amtool(&args).0, "amtool must fail when an alert goes elsewhere than verified");
}

/// The example with its receivers replaced by integration-free ones of the same names, so
/// that a test Alertmanager notifies nobody and reaches nothing beyond loopback. The routes and
/// inhibit rules stay as written.
fn example_without_integrations() -> String {
    let text = std::fs::read_to_string(config_path()).expect("read the example");
    let (head, receivers) = text.split_once("\nreceivers:\n").expect("a top-level receivers: section");
    assert!(
        !receivers.lines().any(|l| !l.is_empty() && !l.starts_with([' ', '#'])),
        "receivers: must be the last top-level section for this test to replace it"
    );
    let names: Vec<&str> = receivers.lines().filter_map(|l| l.trim().strip_prefix("- name: ")).collect();
    assert!(names.len() >= 4, "expected the example's receivers, found {names:?}");
    let stubs: String = names.iter().map(|name| format!("  - name: {name}\n")).collect();
    format!("{head}\nreceivers:\n{stubs}")
}

fn alert(labels: Value) -> Value {
    json!({"labels": labels, "annotations": {"summary": "test"}})
}

/// The `inhibitedBy` of the alert whose labels include all of `labels`.
fn inhibited_by(alerts: &[Value], labels: &Value) -> Option<usize> {
    let wanted = labels.as_object().expect("labels");
    alerts
        .iter()
        .find(|a| wanted.iter().all(|(k, v)| &a["labels"][k] == v))
        .map(|a| a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len))
}

// Proves the inhibit rules in a real Alertmanager: a store whose inventory feed is suspect
// does not page per sku (another store still does), and tally not ready silences its own lag
// alert but not another instance's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inhibit_rules_silence_consequences_only() {
    let am = Alertmanager::start_with_config(free_port(), &example_without_integrations()).await;
    let drift = |store: &str| json!({"alertname": "TallyInventoryDrift", "severity": "critical", "store": store, "sku": "100234", "business_day": "2026-11-27"});
    let lag = |instance: &str| json!({"alertname": "TallyConsumerLagGrowing", "severity": "warning", "job": "tally", "instance": instance});
    am.post_alerts(&json!([
        alert(json!({"alertname": "TallyStoreInventoryFeedSuspect", "severity": "critical", "store": "0042", "job": "tally", "instance": "a:9464"})),
        alert(drift("0042")),
        alert(drift("0043")),
        alert(json!({"alertname": "TallyNotReady", "severity": "critical", "job": "tally", "instance": "a:9464"})),
        alert(lag("a:9464")),
        alert(lag("b:9464")),
    ]))
    .await;

    let expected = [(drift("0042"), true), (drift("0043"), false), (lag("a:9464"), true), (lag("b:9464"), false)];
    let am_ref = &am;
    let expected_ref = &expected;
    let settled = wait_until(Duration::from_secs(10), move || async move {
        let alerts = am_ref.alerts().await;
        expected_ref.iter().all(|(labels, inhibited)| inhibited_by(&alerts, labels).map(|n| n > 0) == Some(*inhibited))
    })
    .await;
    let alerts = am.alerts().await;
    let seen: Vec<_> = expected.iter().map(|(labels, _)| (labels.clone(), inhibited_by(&alerts, labels))).collect();
    assert!(settled, "expected drift 0042 and lag a inhibited, drift 0043 and lag b not; inhibitedBy counts: {seen:?}");
}
