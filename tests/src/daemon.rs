//! A server of the Prometheus family (Prometheus, Alertmanager) run for one test: a Debian
//! binary on a loopback port, its files in a temp dir, its log there too; ready once `/-/ready`
//! answers 200, killed on drop (its log printed when the test panics).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tail;

/// Which server, and where its binary is.
pub struct Kind {
    /// As the failure messages name it, e.g. "Prometheus".
    pub name: &'static str,
    /// The variable that overrides the binary, e.g. `PROMETHEUS_BIN`.
    pub bin_env: &'static str,
    /// Where Debian's package puts the binary.
    pub debian_bin: &'static str,
    /// The name on PATH when neither is there.
    pub path_bin: &'static str,
    /// The Debian package install-deps.sh installs it from.
    pub package: &'static str,
    /// The temp dir's prefix and the log file's stem, e.g. "prometheus".
    pub stem: &'static str,
    /// How long it may take to answer `/-/ready`.
    pub ready_timeout: Duration,
}

impl Kind {
    /// The binary: `$<bin_env>`, else Debian's when it exists, else the name on PATH.
    pub fn bin(&self) -> PathBuf {
        if let Some(path) = std::env::var_os(self.bin_env) {
            return PathBuf::from(path);
        }
        let debian = Path::new(self.debian_bin);
        if debian.exists() {
            return debian.to_path_buf();
        }
        PathBuf::from(self.path_bin)
    }
}

pub struct Daemon {
    kind: &'static Kind,
    port: u16,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Daemon {
    /// A temp dir for a server of `kind`, with `config` written to `<stem>.yml` in it; pass
    /// both to [`Daemon::spawn`].
    pub fn prepare(kind: &Kind, config: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tally-test-{}-", kind.stem))
            .tempdir()
            .unwrap_or_else(|err| panic!("create a temp dir for {}: {err}", kind.name));
        let config_path = dir.path().join(format!("{}.yml", kind.stem));
        std::fs::write(&config_path, config).unwrap_or_else(|err| panic!("write the {} config: {err}", kind.name));
        (dir, config_path)
    }

    /// Runs `kind`'s binary with `args` on `127.0.0.1:<port>` (the caller's args name the port),
    /// its output in `<stem>.log` in `dir`, and waits until `/-/ready` answers 200. Panics (with
    /// its log) when it cannot.
    pub async fn spawn(kind: &'static Kind, port: u16, dir: tempfile::TempDir, args: &[String]) -> Daemon {
        let log_path = dir.path().join(format!("{}.log", kind.stem));
        let log = std::fs::File::create(&log_path).unwrap_or_else(|err| panic!("create the {} log: {err}", kind.name));
        let log_err = log.try_clone().expect("clone the log file handle");
        let spawned = Command::new(kind.bin())
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "{} not found. Run scripts/install-deps.sh (it installs the Debian package {}) or set {}.",
                kind.bin().display(),
                kind.package,
                kind.bin_env
            ),
            Err(err) => panic!("cannot spawn {}: {err}", kind.bin().display()),
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("build an HTTP client");
        let mut daemon = Daemon { kind, port, dir: Some(dir), child: Some(child), http };
        daemon.wait_ready().await;
        daemon
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The tail of the server's log, for failure messages.
    pub fn logs(&self) -> String {
        let dir = self.dir.as_ref().expect("the temp dir lives as long as the server");
        let log = dir.path().join(format!("{}.log", self.kind.stem));
        format!("--- {} log (tail) ---\n{}", self.kind.stem, tail(&log, 30))
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + self.kind.ready_timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!("{} exited during start-up ({status})\n{}", self.kind.name, self.logs());
                }
            }
            let ready = self.http.get(format!("{}/-/ready", self.url())).send().await;
            if matches!(ready, Ok(ref r) if r.status().is_success()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} on port {} was not ready within {:?}\n{}",
                    self.kind.name,
                    self.port,
                    self.kind.ready_timeout,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
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
