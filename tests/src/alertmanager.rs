//! A throwaway Prometheus Alertmanager (Debian package `prometheus-alertmanager`) on a free port
//! with a temp storage dir, clustering off and a receiver that notifies nobody; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, tail};

/// How long Alertmanager may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary: `$ALERTMANAGER_BIN`, else Debian's `/usr/bin/prometheus-alertmanager` when it
/// exists, else `alertmanager` on PATH.
pub fn alertmanager_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ALERTMANAGER_BIN") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/bin/prometheus-alertmanager");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("alertmanager")
}

/// Every alert goes to one receiver without integrations: Alertmanager stores and shows the
/// alerts, which is all the tests read.
const CONFIG: &str =
    "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n";

pub struct Alertmanager {
    port: u16,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Alertmanager {
    /// Starts Alertmanager on a free port; see [`Alertmanager::start_on`].
    pub async fn start() -> Alertmanager {
        Alertmanager::start_on(free_port()).await
    }

    /// Starts Alertmanager on `127.0.0.1:<port>` and waits until `/-/ready` answers 200.
    /// Panics (with its log) when it cannot.
    pub async fn start_on(port: u16) -> Alertmanager {
        Alertmanager::start_with_config(port, CONFIG).await
    }

    /// [`Alertmanager::start_on`] with the given configuration file's text.
    pub async fn start_with_config(port: u16, config_text: &str) -> Alertmanager {
        let dir =
            tempfile::Builder::new().prefix("tally-test-am-").tempdir().expect("create a temp dir for Alertmanager");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, config_text).expect("write the Alertmanager config");
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("create the Alertmanager log");
        let log_err = log.try_clone().expect("clone the log file handle");
        let spawned = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no gossip port, no peers.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "{} not found. Run scripts/install-deps.sh (it installs the Debian package \
                 prometheus-alertmanager) or set ALERTMANAGER_BIN.",
                alertmanager_bin().display()
            ),
            Err(err) => panic!("cannot spawn {}: {err}", alertmanager_bin().display()),
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("build an HTTP client");
        let mut am = Alertmanager { port, dir: Some(dir), child: Some(child), http };
        am.wait_ready().await;
        am
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.dir.as_ref().expect("the temp dir lives as long as the server").path().join("alertmanager.log")
    }

    /// The tail of Alertmanager's log, for failure messages.
    pub fn logs(&self) -> String {
        format!("--- alertmanager log (tail) ---\n{}", tail(&self.log_path(), 30))
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!("Alertmanager exited during start-up ({status})\n{}", self.logs());
                }
            }
            let ready = self.http.get(format!("{}/-/ready", self.url())).send().await;
            if matches!(ready, Ok(ref r) if r.status().is_success()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("Alertmanager on port {} was not ready within {READY_TIMEOUT:?}\n{}", self.port, self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /api/v2/alerts` of `alerts` (a JSON array), as Prometheus or tally sends them.
    pub async fn post_alerts(&self, alerts: &serde_json::Value) {
        let url = format!("{}/api/v2/alerts", self.url());
        let response = self
            .http
            .post(&url)
            .json(alerts)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}\n{}", self.logs()));
        assert!(response.status().is_success(), "POST {url}: {}\n{}", response.status(), self.logs());
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager holds and has not seen resolved.
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/api/v2/alerts", self.url());
        let response =
            self.http.get(&url).send().await.unwrap_or_else(|err| panic!("GET {url}: {err}\n{}", self.logs()));
        assert!(response.status().is_success(), "GET {url}: {}\n{}", response.status(), self.logs());
        response.json().await.unwrap_or_else(|err| panic!("GET {url}: the body is not a JSON array: {err}"))
    }
}

impl Drop for Alertmanager {
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
