//! A throwaway Prometheus Alertmanager (Debian package `prometheus-alertmanager`) on a free port
//! with a temp storage dir, clustering off and a receiver that notifies nobody; killed on drop.

use std::time::Duration;

use crate::daemon::{Daemon, Kind};
use crate::free_port;

static KIND: Kind = Kind {
    name: "Alertmanager",
    bin_env: "ALERTMANAGER_BIN",
    debian_bin: "/usr/bin/prometheus-alertmanager",
    path_bin: "alertmanager",
    package: "prometheus-alertmanager",
    stem: "alertmanager",
    ready_timeout: Duration::from_secs(30),
};

/// The binary: `$ALERTMANAGER_BIN`, else Debian's `/usr/bin/prometheus-alertmanager` when it
/// exists, else `alertmanager` on PATH.
pub fn alertmanager_bin() -> std::path::PathBuf {
    KIND.bin()
}

/// Every alert goes to one receiver without integrations: Alertmanager stores and shows the
/// alerts, which is all the tests read.
const CONFIG: &str =
    "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n";

pub struct Alertmanager {
    daemon: Daemon,
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
        let (dir, config) = Daemon::prepare(&KIND, config_text);
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // Empty: no gossip port, no peers.
            "--cluster.listen-address=".to_string(),
        ];
        Alertmanager { daemon: Daemon::spawn(&KIND, port, dir, &args).await }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.daemon.url()
    }

    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// The tail of Alertmanager's log, for failure messages.
    pub fn logs(&self) -> String {
        self.daemon.logs()
    }

    /// `POST /api/v2/alerts` of `alerts` (a JSON array), as Prometheus or tally sends them.
    pub async fn post_alerts(&self, alerts: &serde_json::Value) {
        let url = format!("{}/api/v2/alerts", self.url());
        let response = self
            .daemon
            .http()
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
            self.daemon.http().get(&url).send().await.unwrap_or_else(|err| panic!("GET {url}: {err}\n{}", self.logs()));
        assert!(response.status().is_success(), "GET {url}: {}\n{}", response.status(), self.logs());
        response.json().await.unwrap_or_else(|err| panic!("GET {url}: the body is not a JSON array: {err}"))
    }
}
