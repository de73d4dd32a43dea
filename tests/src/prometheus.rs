//! A throwaway Prometheus server (Debian package `prometheus`) on a free port, with its own temp
//! TSDB dir and a generated config that scrapes the given targets every second; killed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Daemon, Kind};
use crate::free_port;

static KIND: Kind = Kind {
    name: "Prometheus",
    bin_env: "PROMETHEUS_BIN",
    debian_bin: "/usr/bin/prometheus",
    path_bin: "prometheus",
    package: "prometheus",
    stem: "prometheus",
    ready_timeout: Duration::from_secs(60),
};

/// The binary: `$PROMETHEUS_BIN`, else Debian's `/usr/bin/prometheus` when it exists, else
/// `prometheus` on PATH.
pub fn prometheus_bin() -> std::path::PathBuf {
    KIND.bin()
}

/// What an instant query came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `status: success`, with the result's samples: their labels and values (as Prometheus
    /// writes them: "1.5", "NaN", "+Inf").
    Samples(Vec<(Value, String)>),
    /// `status: error`: the expression does not parse or cannot be evaluated.
    Error(String),
}

pub struct Prometheus {
    daemon: Daemon,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `targets` (`host:port`) under
    /// `job_name: <job>` every second, and waits until `/-/ready` answers 200. Panics (with
    /// its log) when it cannot.
    pub async fn start(job: &str, targets: &[String]) -> Prometheus {
        let port = free_port();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let (dir, config_path) = Daemon::prepare(&KIND, &config);
        let args = [
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        Prometheus { daemon: Daemon::spawn(&KIND, port, dir, &args).await }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.daemon.url()
    }

    /// The tail of Prometheus's log, for failure messages.
    pub fn logs(&self) -> String {
        self.daemon.logs()
    }

    /// GET `/api/v1/<path>` with `params`; the JSON answer. Panics on a transport error or an
    /// answer that is not JSON: the test cannot go on without Prometheus.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("{}/api/v1/{path}", self.url());
        let response = self
            .daemon
            .http()
            .get(&url)
            .query(params)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}\n{}", self.logs()));
        let status = response.status();
        let text = response.text().await.unwrap_or_else(|err| panic!("GET {url}: reading the answer: {err}"));
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {url} ({status}): not JSON ({err}): {text}"))
    }

    /// An instant query at the current time (`/api/v1/query`).
    pub async fn query(&self, expr: &str) -> Answer {
        let answer = self.api("query", &[("query", expr)]).await;
        if answer["status"] != "success" {
            return Answer::Error(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        let data = &answer["data"];
        let samples = match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .map(|result| result.iter().map(|s| (s["metric"].clone(), value_text(&s["value"]))).collect())
                .unwrap_or_default(),
            Some("scalar") => vec![(Value::Null, value_text(&data["result"]))],
            other => return Answer::Error(format!("unexpected result type {other:?}: {data}")),
        };
        Answer::Samples(samples)
    }

    /// The values of `label` on the series that `matcher` selects (`/api/v1/label/<label>/values`);
    /// what Grafana's `label_values(<matcher>, <label>)` lists.
    pub async fn label_values(&self, matcher: &str, label: &str) -> Result<Vec<String>, String> {
        let answer = self.api(&format!("label/{label}/values"), &[("match[]", matcher)]).await;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]
            .as_array()
            .map(|values| values.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }
}

/// The value of a `[timestamp, "value"]` pair.
fn value_text(pair: &Value) -> String {
    pair[1].as_str().unwrap_or_default().to_string()
}

/// The metrics reference of docs/http-api.md: each metric of its table with the label names
/// its `labels` column lists (the values in parentheses left out).
pub fn documented_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let path = crate::workspace_root().join("docs/http-api.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let mut metrics = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, _kind, labels, ..] = cells.as_slice() else {
            continue;
        };
        let Some(name) = name.strip_prefix("`tally_").and_then(|n| n.strip_suffix('`')) else {
            continue;
        };
        metrics.insert(format!("tally_{name}"), backticked(&without_parentheses(labels)));
    }
    assert!(metrics.len() >= 20, "expected the metrics table of {}, found {metrics:?}", path.display());
    metrics
}

/// The tally metrics an expression (or a file of them) names: every `tally_…` word not part of
/// a recording rule's name (`job:tally_…:rate5m`), a histogram's `_bucket`, `_sum` and `_count`
/// series named by their histogram.
pub fn metrics_named(text: &str, documented: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    text.split(|c: char| !word(c))
        .filter(|w| w.starts_with("tally_") && !w.contains(':'))
        .map(|w| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| w.strip_suffix(suffix).filter(|b| documented.contains_key(*b)));
            base.unwrap_or(w).to_string()
        })
        .collect()
}

fn without_parentheses(text: &str) -> String {
    let mut depth = 0usize;
    text.chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}
