//! A throwaway nats-server with JetStream on a free port, its store in a directory the caller
//! owns; killed on drop so that a failed run leaves no server behind. Used by `tally demo` and
//! the benchmark.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct LocalNats {
    child: Child,
    pub url: String,
}

impl LocalNats {
    /// Starts `$NATS_SERVER_BIN` (default `nats-server` on PATH) with its store under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<LocalNats> {
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let port = free_port()?;
        std::fs::create_dir_all(dir)?;
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {binary:?}; run scripts/install-deps.sh, set NATS_SERVER_BIN, or pass --nats-url"))?;
        let mut server = LocalNats { child, url: format!("nats://127.0.0.1:{port}") };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("nats-server exited at start with {status}");
            }
            anyhow::ensure!(started.elapsed() < START_TIMEOUT, "nats-server did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
