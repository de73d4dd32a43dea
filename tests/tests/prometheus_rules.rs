//! The Prometheus rules and example config in deploy/prometheus/ (issue 3 item 5) are valid and
//! their unit tests pass, checked by promtool (Debian package `prometheus`).

use std::path::PathBuf;
use std::process::Command;

use tally_tests::prometheus::{documented_metrics, metrics_named};

fn deploy_dir() -> PathBuf {
    tally_tests::workspace_root().join("deploy/prometheus")
}

/// Runs `promtool <args>` in deploy/prometheus/ and panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).current_dir(deploy_dir()).output().unwrap_or_else(|err| {
        panic!("cannot run promtool ({err}); run scripts/install-deps.sh (Debian package `prometheus`)")
    });
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "`promtool {}` failed ({}):\n{report}", args.join(" "), out.status);
    report
}

// Proves tally-rules.yml parses, with every rule's PromQL and templates valid.
#[test]
fn rules_pass_promtool_check() {
    let report = promtool(&["check", "rules", "tally-rules.yml"]);
    assert!(report.contains("SUCCESS"), "{report}");
}

// Proves every alert fires on the series that should trigger it and stays silent otherwise
// (the cases are in tally-rules.test.yml).
#[test]
fn rules_pass_their_unit_tests() {
    let report = promtool(&["test", "rules", "tally-rules.test.yml"]);
    assert!(report.contains("SUCCESS"), "{report}");
}

// Proves the example prometheus.yml is a valid config that loads the rules.
#[test]
fn example_config_passes_promtool_check() {
    let report = promtool(&["check", "config", "prometheus.yml"]);
    assert!(report.contains("1 rule files found"), "{report}");
}

// Proves each alert of the rules file has a unit test case, so a new alert cannot go untested.
#[test]
fn every_alert_has_a_unit_test() {
    let dir = deploy_dir();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|err| panic!("read deploy/prometheus/{name}: {err}"))
    };
    let (rules, tests) = (read("tally-rules.yml"), read("tally-rules.test.yml"));
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(str::trim).collect();
    assert!(alerts.len() >= 6, "expected at least six alerts, found {alerts:?}");
    for alert in alerts {
        let tested = tests.lines().filter(|l| l.trim() == format!("alertname: {alert}")).count();
        assert!(tested >= 2, "alert {alert} needs a firing and a silent case in tally-rules.test.yml, has {tested}");
    }
}

// Proves every tally metric the rules name is in the metrics reference of docs/http-api.md (the
// grafana test shows each is exported by a real tally); a made-up name is caught.
#[test]
fn every_metric_the_rules_name_is_documented() {
    let documented = documented_metrics();
    let rules =
        std::fs::read_to_string(deploy_dir().join("tally-rules.yml")).expect("read deploy/prometheus/tally-rules.yml");
    let named = metrics_named(&rules, &documented);
    assert!(named.len() >= 10, "expected the rules' ten-odd metrics, found {named:?}");
    let undocumented: Vec<&String> = named.iter().filter(|m| !documented.contains_key(*m)).collect();
    assert!(undocumented.is_empty(), "tally-rules.yml names metrics missing from docs/http-api.md: {undocumented:?}");
    let made_up = metrics_named("rate(tally_no_such_total[5m])", &documented);
    assert!(!documented.contains_key(made_up.first().expect("one metric named")));
}
