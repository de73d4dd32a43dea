//! The tests' nats-server: the shared launcher (`tally_traffic::LocalNats`: free port, temp
//! store dir, killed and reaped on drop) behind the harness's panicking API, so a test reads
//! `NatsServer::start()` and a failure shows the server's log. `restart()` keeps the port and
//! the store, so streams, consumers and messages survive it, as they would in production.

use std::path::{Path, PathBuf};

use tally_traffic::{LaunchError, LocalNats};

pub(crate) use tally_traffic::process::{send_signal, terminate};

pub struct NatsServer {
    inner: LocalNats,
}

impl NatsServer {
    /// Starts `nats-server -js -a 127.0.0.1 -p <free port> -sd <temp dir>` and waits until it
    /// accepts connections. Panics (with the server's log) when it cannot.
    pub fn start() -> NatsServer {
        NatsServer::started(LocalNats::launch().start())
    }

    /// Like [`NatsServer::start`], but from a config file: `listen` and `jetstream` are
    /// written by the harness, `extra` (config file syntax: `authorization { … }`, `tls { … }`,
    /// `max_payload: 8MB`, …) follows them. `extra` may name files written beforehand into
    /// [`NatsServer::dir_for_files`] via [`NatsServer::with_files`].
    pub fn start_with_config(extra: &str) -> NatsServer {
        NatsServer::with_files(&[], extra)
    }

    /// [`NatsServer::start_with_config`] after writing `files` (name, contents) into the
    /// server's temp dir; `{dir}` in `extra` stands for that dir.
    pub fn with_files(files: &[(&str, &[u8])], extra: &str) -> NatsServer {
        let launch = files
            .iter()
            .fold(LocalNats::launch().config(extra), |launch, (name, contents)| launch.file(name, contents));
        NatsServer::started(launch.start())
    }

    /// The server's temp dir, where [`NatsServer::with_files`] put its files.
    pub fn dir_for_files(&self) -> &Path {
        self.inner.dir()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.inner.log_path()).unwrap_or_default()).into_owned()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.inner.url()
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// The server's process id while it runs (for SIGSTOP/SIGKILL in fault tests).
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    /// The JetStream store dir (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.inner.store_dir()
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and reaps it. Idempotent.
    pub fn stop(&mut self) {
        self.inner.stop();
    }

    /// Starts the server again if it is stopped; same port, same store dir.
    pub fn start_again(&mut self) {
        self.inner.start_again().unwrap_or_else(|err| panic!("{}", chain(&err)));
    }

    /// Stops and starts again on the same port and store dir.
    pub fn restart(&mut self) {
        self.inner.restart().unwrap_or_else(|err| panic!("{}", chain(&err)));
    }

    fn started(launched: Result<LocalNats, LaunchError>) -> NatsServer {
        NatsServer { inner: launched.unwrap_or_else(|err| panic!("{}", chain(&err))) }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- nats-server log (tail) ---\n{}", self.inner.log_tail(20));
        }
    }
}

/// An error with its sources, one per line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}
