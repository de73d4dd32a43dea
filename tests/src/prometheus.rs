//! A throwaway Prometheus server (Debian package `prometheus`) on a free port, with its own temp
//! TSDB dir and a generated config that scrapes the given targets every second; killed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, tail};

/// How long Prometheus may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary: `$PROMETHEUS_BIN`, else Debian's `/usr/bin/prometheus` when it exists, else
/// `prometheus` on PATH.
pub fn prometheus_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/bin/prometheus");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("prometheus")
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
    port: u16,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `targets` (`host:port`) under
    /// `job_name: <job>` every second, and waits until `/-/ready` answers 200. Panics (with
    /// its log) when it cannot.
    pub async fn start(job: &str, targets: &[String]) -> Prometheus {
        let port = free_port();
        let dir =
            tempfile::Builder::new().prefix("tally-test-prom-").tempdir().expect("create a temp dir for Prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the Prometheus config");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("create the Prometheus log");
        let log_err = log.try_clone().expect("clone the log file handle");
        let spawned = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "{} not found. Run scripts/install-deps.sh (it installs the Debian package \
                 prometheus) or set PROMETHEUS_BIN.",
                prometheus_bin().display()
            ),
            Err(err) => panic!("cannot spawn {}: {err}", prometheus_bin().display()),
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("build an HTTP client");
        let mut prometheus = Prometheus { port, dir: Some(dir), child: Some(child), http };
        prometheus.wait_ready().await;
        prometheus
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.as_ref().expect("the temp dir lives as long as the server").path().join("prometheus.log")
    }

    /// The tail of Prometheus's log, for failure messages.
    pub fn logs(&self) -> String {
        format!("--- prometheus log (tail) ---\n{}", tail(&self.log_path(), 30))
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!("Prometheus exited during start-up ({status})\n{}", self.logs());
                }
            }
            let ready = self.http.get(format!("{}/-/ready", self.url())).send().await;
            if matches!(ready, Ok(ref r) if r.status().is_success()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("Prometheus on port {} was not ready within {READY_TIMEOUT:?}\n{}", self.port, self.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// GET `/api/v1/<path>` with `params`; the JSON answer. Panics on a transport error or an
    /// answer that is not JSON: the test cannot go on without Prometheus.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("{}/api/v1/{path}", self.url());
        let response = self
            .http
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

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!("{}", self.logs());
        }
    }
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
