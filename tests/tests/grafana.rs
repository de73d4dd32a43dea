//! The Grafana dashboard deploy/grafana/tally.json (issue 13): a real Prometheus scrapes a real
//! tally under generated traffic (`tally gen`, an old store-day, an ERP webhook that rejects one
//! posting), and every template variable and every panel query of the dashboard is evaluated
//! through Prometheus's HTTP API: each must parse and return data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;
use tally_tests::fixtures::{example_transaction, pos_subject};
use tally_tests::prometheus::{documented_metrics, metrics_named, Answer};
use tally_tests::{start_all, tail, tally_bin, Prometheus};

/// What the test puts for Grafana's `$__rate_interval`. Grafana would compute 4 s from the 1 s
/// scrape interval; a wider window keeps every rate defined between scrapes.
const RATE_INTERVAL: &str = "30s";
/// How long the traffic may take until every panel has data.
const DATA_TIMEOUT: Duration = Duration::from_secs(180);
/// Between two rounds of evaluation.
const POLL: Duration = Duration::from_secs(2);

/// What the traffic must have produced, as Prometheus sees it, before the panels are judged:
/// so that they show real alerts, postings, dead letters and webhook deliveries, not only the
/// zero-valued series tally exports from the start.
const TRAFFIC_REACHED: [(&str, &str); 9] = [
    ("drift alerts fired", r#"sum(tally_alerts_total{state="firing"}) > 0"#),
    ("drift keys counted", "sum(tally_drift_keys) > 0"),
    ("interim postings", r#"sum(tally_erp_postings_total{kind="interim"}) > 0"#),
    ("dead letters", "sum(tally_dlq_total) > 0"),
    ("webhook deliveries", r#"sum(tally_webhook_deliveries_total{outcome="delivered"}) > 0"#),
    ("a posting parked by the webhook", r#"sum(tally_webhook_deliveries_total{outcome="rejected"}) > 0"#),
    ("a final posting overdue", "sum(tally_erp_final_postings_overdue) > 0"),
    ("a webhook failure resolved", "sum(tally_posting_failure_resolution_seconds_count) > 0"),
    ("unreconciled sales", "sum(tally_unreconciled_sales) > 0"),
];

/// One query of a panel.
#[derive(Debug, Clone)]
struct Target {
    panel: String,
    ref_id: String,
    expr: String,
}

/// A template variable whose values come from `label_values(<matcher>, <label>)`.
#[derive(Debug, Clone)]
struct Variable {
    name: String,
    matcher: String,
    label: String,
}

/// How a query came out.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Data,
    /// Parsed and evaluated, but no series, or only NaN/Inf values: a panel saying "No data".
    NoData(String),
    /// Prometheus refused it.
    Error(String),
}

fn dashboard() -> Value {
    let path = tally_tests::workspace_root().join("deploy/grafana/tally.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn targets(dashboard: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {:?} has a target without expr: {target}", panel["title"]);
            out.push(Target {
                panel: panel["title"].as_str().unwrap_or("<untitled>").to_string(),
                ref_id: target["refId"].as_str().unwrap_or("?").to_string(),
                expr: expr.to_string(),
            });
        }
    }
    out
}

/// The `query` variables, in dashboard order (a later one may use an earlier one).
fn variables(dashboard: &Value) -> Vec<Variable> {
    let list = dashboard["templating"]["list"].as_array().expect("templating.list");
    list.iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let name = v["name"].as_str().expect("a variable name").to_string();
            let query = v["query"].as_str().or(v["query"]["query"].as_str()).unwrap_or_default();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable {name}: expected label_values(<matcher>, <label>), got {query:?}"));
            let (matcher, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("variable {name}: label_values needs a matcher and a label: {query:?}"));
            Variable { name, matcher: matcher.trim().to_string(), label: label.trim().to_string() }
        })
        .collect()
}

/// A multi-value variable as Grafana writes it into a regex matcher: `(a|b)`, each regex
/// metacharacter escaped with a backslash that is itself escaped for the PromQL string
/// (`127\\.0\\.0\\.1:9464`), as Grafana does.
fn regex_of(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars().flat_map(|c| if ".+*?()|[]{}^$".contains(c) { vec!['\\', '\\', c] } else { vec![c] }).collect()
        })
        .collect();
    format!("({})", escaped.join("|"))
}

/// Replaces `$name` by its value, longest names first so that `$instance` is not read as `$in…`.
fn substitute(text: &str, values: &[(String, String)]) -> String {
    let mut values = values.to_vec();
    values.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut text = text.to_string();
    for (name, value) in &values {
        text = text.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    text
}

async fn verdict(prometheus: &Prometheus, expr: &str) -> Verdict {
    match prometheus.query(expr).await {
        Answer::Error(error) => Verdict::Error(error),
        Answer::Samples(samples) if samples.is_empty() => Verdict::NoData("no series".into()),
        Answer::Samples(samples) => {
            let finite = samples.iter().any(|(_, v)| v.parse::<f64>().is_ok_and(f64::is_finite));
            if finite {
                Verdict::Data
            } else {
                Verdict::NoData(format!("only non-finite values: {samples:?}"))
            }
        }
    }
}

/// The ERP: answers 400 to the first posting (which the webhook parks on the DLQ), 200 to the
/// rest, except one 503 once the returned flag is set (that posting is delivered at its retry: a
/// failure resolved, which the test lets happen only after Prometheus has scraped the empty
/// histogram, so that the hour's increase shows it).
async fn start_erp() -> (String, Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let fail_once = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&fail_once);
    let app = axum::Router::new().route(
        "/erp",
        axum::routing::post(move || {
            let seen = Arc::clone(&seen);
            let fail_once = Arc::clone(&fail_once);
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    (StatusCode::BAD_REQUEST, "unknown cost centre")
                } else if fail_once.swap(false, Ordering::SeqCst) {
                    (StatusCode::SERVICE_UNAVAILABLE, "in maintenance")
                } else {
                    (StatusCode::OK, "booked")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test ERP");
    let port = listener.local_addr().expect("the test ERP's address").port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the test ERP serves");
    });
    (format!("http://127.0.0.1:{port}/erp"), flag, server)
}

/// `tally gen` in the background, killed on drop; its stderr goes to a file for failure messages.
struct Generator {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Generator {
    fn start(nats_url: &str) -> Generator {
        let dir = tempfile::Builder::new().prefix("tally-test-gen-").tempdir().expect("a temp dir for gen");
        let log = dir.path().join("gen.log");
        let stderr = std::fs::File::create(&log).expect("create the gen log");
        // 3 stores, 20 baskets a second, a minute of store time each second (drift settles
        // within seconds), 30% of sales with a missing or doubled decrement, 2% malformed.
        let args = ["--stores", "3", "--skus", "40", "--rate", "20", "--speedup", "60", "--duration", "600s"];
        let shares = ["--drift-share", "0.3", "--malformed-share", "0.02", "--seed", "13"];
        let child = Command::new(tally_bin())
            .args(["gen", "--nats-url", nats_url])
            .args(args)
            .args(shares)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn `tally gen`: {err}"));
        Generator { child, log, _dir: dir }
    }

    /// Panics with its log if the generator stopped before the test was done with it.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("`tally gen` exited early ({status}):\n{}", tail(&self.log, 20));
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Proves every panel query and template variable of deploy/grafana/tally.json parses and returns
// data in a real Prometheus scraping a real tally under traffic, that the dashboard takes its
// data source from a variable, and (a negative control) that a query naming a metric tally does
// not export is judged "no data", so a misspelt metric fails this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_parses_and_returns_data() {
    let dashboard = dashboard();
    assert_data_source_is_a_variable(&dashboard);
    let targets = targets(&dashboard);
    assert!(targets.len() >= 20, "expected the dashboard's twenty-odd queries, found {}", targets.len());

    let (erp_url, fail_once, _erp) = start_erp().await;
    let toml = format!(
        "[drift]\nsettle = \"1m\"\nmin_units = \"1\"\n[erp]\ninterval = \"2s\"\n[erp.webhook]\nurl = \"{erp_url}\"\ntimeout = \"2s\"\n"
    );
    let (nats, tally, js) = start_all(&toml).await;
    // A store-day three days old: its final posting (end of day + erp.max_open 30 h) is overdue
    // by the wall clock, and the store's event time stays on that day.
    let day = (chrono::Utc::now() - chrono::Duration::days(3)).format("%Y-%m-%d").to_string();
    js.publish_json(&pos_subject("retail", "0900"), &example_transaction("OLD-1", "0900", &day)).await;
    let mut generator = Generator::start(&nats.url());
    let target = tally.http_base().trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start("tally", &[target]).await;

    let deadline = Instant::now() + DATA_TIMEOUT;
    let mut failure_armed = false;
    let (values, missing) = loop {
        generator.assert_running();
        if !failure_armed {
            let scraped = "tally_posting_failure_resolution_seconds_count == 0";
            if let Verdict::Data = verdict(&prometheus, scraped).await {
                fail_once.store(true, Ordering::SeqCst);
                failure_armed = true;
            }
        }
        let (values, mut missing) = evaluate_variables(&prometheus, &variables(&dashboard)).await;
        if missing.is_empty() {
            missing = evaluate_targets(&prometheus, &targets, &values).await;
        }
        for (what, expr) in TRAFFIC_REACHED {
            if let Verdict::NoData(_) = verdict(&prometheus, expr).await {
                missing.push(format!("traffic has not produced {what} yet ({expr})"));
            }
        }
        if missing.is_empty() || Instant::now() >= deadline {
            break (values, missing);
        }
        tokio::time::sleep(POLL).await;
    };
    assert!(
        missing.is_empty(),
        "after {DATA_TIMEOUT:?} of traffic, these dashboard queries have no data:\n{}\n{}",
        missing.join("\n"),
        tally.logs()
    );
    eprintln!(
        "grafana: {} queries of {} panels and {} variables parse and return data ({values:?})",
        targets.len(),
        panels(&dashboard).iter().filter(|p| p["type"] != "row").count(),
        values.len() - 1
    );

    assert_labels_documented(&prometheus).await;

    // Negative control: the same check on a query whose metric does not exist fails it.
    let first = &targets[0];
    let metric = first
        .expr
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .find(|w| w.starts_with("tally_"))
        .expect("a tally metric");
    let misspelt = substitute(&first.expr.replace(metric, "tally_no_such_metric"), &values);
    let judged = verdict(&prometheus, &misspelt).await;
    assert!(matches!(judged, Verdict::NoData(_)), "{misspelt} must be judged no data, was {judged:?}");
}

/// Every data source of the dashboard, panels and queries alike, is the `${datasource}`
/// variable (type datasource, Prometheus), so that the dashboard works on any Grafana.
fn assert_data_source_is_a_variable(dashboard: &Value) {
    let list = dashboard["templating"]["list"].as_array().expect("templating.list");
    let ds = list.iter().find(|v| v["type"] == "datasource").expect("a data source variable");
    assert_eq!(ds["query"], "prometheus", "the data source variable lists Prometheus data sources");
    let uid = format!("${{{}}}", ds["name"].as_str().expect("its name"));
    for panel in panels(dashboard).into_iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], uid.as_str(), "panel {:?}", panel["title"]);
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(target["datasource"]["uid"], uid.as_str(), "panel {:?} {target}", panel["title"]);
        }
    }
    for variable in list.iter().filter(|v| v["type"] == "query") {
        assert_eq!(variable["datasource"]["uid"], uid.as_str(), "variable {:?}", variable["name"]);
    }
}

/// Each variable's values, as Grafana would list them (earlier variables substituted into later
/// queries), with every value selected; and what has none yet.
async fn evaluate_variables(prometheus: &Prometheus, variables: &[Variable]) -> (Vec<(String, String)>, Vec<String>) {
    let mut values = vec![("__rate_interval".to_string(), RATE_INTERVAL.to_string())];
    let mut missing = Vec::new();
    for variable in variables {
        let matcher = substitute(&variable.matcher, &values);
        match prometheus.label_values(&matcher, &variable.label).await {
            Ok(found) if !found.is_empty() => values.push((variable.name.clone(), regex_of(&found))),
            Ok(_) => missing.push(format!(
                "variable ${}: label_values({matcher}, {}) lists nothing",
                variable.name, variable.label
            )),
            Err(error) => {
                panic!("variable ${}: label_values({matcher}, {}) fails: {error}", variable.name, variable.label)
            }
        }
    }
    (values, missing)
}

/// The targets without data. A query Prometheus refuses fails the test at once: waiting does
/// not make it parse.
async fn evaluate_targets(prometheus: &Prometheus, targets: &[Target], values: &[(String, String)]) -> Vec<String> {
    let mut missing = Vec::new();
    for target in targets {
        let expr = substitute(&target.expr, values);
        assert!(!expr.contains('$'), "panel {:?} {}: unknown variable left in {expr}", target.panel, target.ref_id);
        match verdict(prometheus, &expr).await {
            Verdict::Data => {}
            Verdict::NoData(why) => missing.push(format!("panel {:?} {}: {why}: {expr}", target.panel, target.ref_id)),
            Verdict::Error(error) => {
                panic!("panel {:?} {}: Prometheus refuses {expr}: {error}", target.panel, target.ref_id)
            }
        }
    }
    missing
}

// Proves every tally metric the dashboard names (queries, variables and descriptions) is in the
// metrics reference of docs/http-api.md.
#[test]
fn every_metric_the_dashboard_names_is_documented() {
    let documented = documented_metrics();
    let named = metrics_named(&dashboard().to_string(), &documented);
    assert!(named.len() >= 20, "expected the dashboard's twenty-odd metrics, found {named:?}");
    let undocumented: Vec<&String> = named.iter().filter(|m| !documented.contains_key(*m)).collect();
    assert!(
        undocumented.is_empty(),
        "deploy/grafana/tally.json names metrics missing from docs/http-api.md: {undocumented:?}"
    );
}

/// Every tally series Prometheus scraped is a documented metric carrying only the labels
/// docs/http-api.md lists for it (bounded ones: a store at most), besides the target's `job`
/// and `instance` and a histogram's `le`.
async fn assert_labels_documented(prometheus: &Prometheus) {
    let documented = documented_metrics();
    let Answer::Samples(series) = prometheus.query(r#"{__name__=~"tally_.+"}"#).await else {
        panic!("Prometheus refuses the query of every tally series");
    };
    assert!(series.len() >= 20, "expected tally's series, found {series:?}");
    for (labels, _) in &series {
        let labels = labels.as_object().expect("a series' labels");
        let name = labels["__name__"].as_str().expect("a metric name");
        let metric = metrics_named(name, &documented).pop_first().expect("a tally metric");
        let allowed =
            documented.get(&metric).unwrap_or_else(|| panic!("{name} is exported but not in docs/http-api.md"));
        for label in labels.keys() {
            assert!(
                ["__name__", "job", "instance", "le"].contains(&label.as_str()) || allowed.contains(label),
                "{name} carries label {label}, which docs/http-api.md does not list: {labels:?}"
            );
        }
    }
}
