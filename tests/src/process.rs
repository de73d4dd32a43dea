//! The `tally` binary under test and a running instance of it.
//!
//! A [`Tally`] owns a temp dir holding its config file, its state dir and its stdout/stderr
//! logs. It is killed with SIGKILL on drop, the harshest way a process can end, which is what
//! the effectively-once guarantee is about; graceful stops are explicit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::nats::{send_signal, terminate};
use crate::{free_port, tail, wait_until, Js};

/// How long `tally run` may take to report ready on /readyz.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `tally setup` may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed `tally run` may take to finish its batch and exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `tally` binary: `$TALLY_BIN` if set; else `tally` in the test executable's profile dir
/// (`target/<profile>/tally`), built once with `cargo build -p tally-processor --bin tally`
/// when it is missing. `scripts/test.sh` builds it before the tests, so that it is current.
pub fn tally_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    if let Some(path) = std::env::var_os("TALLY_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let profile_dir =
        exe.parent().and_then(Path::parent).expect("the test executable lives in target/<profile>/deps").to_path_buf();
    let bin = profile_dir.join("tally");
    if !bin.exists() {
        BUILD.call_once(|| build_tally(&profile_dir));
    }
    assert!(
        bin.exists(),
        "{} does not exist and could not be built; build it with \
         `cargo build -p tally-processor --bin tally` or set TALLY_BIN",
        bin.display()
    );
    bin
}

fn build_tally(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = crate::workspace_root();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace).args(["build", "-p", "tally-processor", "--bin", "tally"]);
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if profile == "debug" || profile == "release" {
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        if profile == "release" {
            cmd.arg("--release");
        }
    }
    eprintln!("tally-tests: building the tally binary: {cmd:?}");
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("tally-tests: `cargo build` of tally failed: {status}"),
        Err(err) => eprintln!("tally-tests: cannot run cargo to build tally: {err}"),
    }
}

/// Configures a [`Tally`] before it starts: extra TOML merged into the generated config (tables
/// are merged key by key, so `[input]` may be given even though the harness writes `[nats]`,
/// `[state]` and `[http]`), extra environment variables, and whether to run `tally setup`.
pub struct TallyBuilder {
    nats_url: String,
    extra_toml: String,
    env: Vec<(String, String)>,
    setup: bool,
    cluster: Option<String>,
}

impl TallyBuilder {
    pub fn new(nats_url: &str) -> TallyBuilder {
        TallyBuilder {
            nats_url: nats_url.to_string(),
            extra_toml: String::new(),
            env: Vec::new(),
            setup: true,
            cluster: None,
        }
    }

    /// TOML merged over the generated config; may repeat the harness's sections.
    pub fn toml(mut self, extra: &str) -> TallyBuilder {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(extra);
        self
    }

    /// An environment variable for every tally command (e.g. `TALLY_INPUT_BATCH_MAX`).
    pub fn env(mut self, key: &str, value: &str) -> TallyBuilder {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// One of several instances sharing the partitions (docs/operations.md, "Several
    /// instances"): `[cluster]` enabled under `instance`, advertising this instance's own HTTP
    /// address, with leases of 3 s and a settle of 1 s so that a failover shows within a test.
    pub fn cluster(mut self, instance: &str) -> TallyBuilder {
        self.cluster = Some(instance.to_string());
        self
    }

    /// Whether [`TallyBuilder::start`] runs `tally setup` first (default true).
    pub fn setup(mut self, setup: bool) -> TallyBuilder {
        self.setup = setup;
        self
    }

    /// Writes the config and returns the instance without running anything.
    pub fn prepare(self) -> Tally {
        let dir = tempfile::Builder::new().prefix("tally-test-").tempdir().expect("create a temp dir for tally");
        let http_port = free_port();
        let state_dir = dir.path().join("state");
        let mut config = toml::Table::new();
        config.insert("nats".into(), table([("url", self.nats_url.clone().into())]));
        config.insert("state".into(), table([("path", state_dir.display().to_string().into())]));
        config.insert("http".into(), table([("listen", format!("127.0.0.1:{http_port}").into())]));
        if let Some(instance) = &self.cluster {
            let cluster = table([
                ("enabled", true.into()),
                ("instance_id", instance.clone().into()),
                ("advertise", format!("127.0.0.1:{http_port}").into()),
                ("lease_ttl", "3s".into()),
                ("settle", "1s".into()),
            ]);
            config.insert("cluster".into(), cluster);
        }
        let extra: toml::Table = self
            .extra_toml
            .parse()
            .unwrap_or_else(|err| panic!("extra TOML for the test config does not parse: {err}\n{}", self.extra_toml));
        merge(&mut config, extra);
        let config_text = toml::to_string(&config).expect("a toml::Table serialises");
        let config_path = dir.path().join("tally.toml");
        std::fs::write(&config_path, &config_text).expect("write the test config");
        Tally {
            dir: Some(dir),
            config_path,
            config,
            state_dir,
            http_base: format!("http://127.0.0.1:{http_port}"),
            nats_url: self.nats_url,
            env: self.env,
            child: None,
            runs: 0,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("build an HTTP client"),
        }
    }

    /// Writes the config, runs `tally setup` (unless disabled), spawns `tally run` and waits
    /// until `/readyz` answers 200.
    pub async fn start(self) -> Tally {
        let setup = self.setup;
        let mut tally = self.prepare();
        if setup {
            tally.setup_ok();
        }
        tally.spawn_run().await;
        tally
    }
}

fn table<const N: usize>(entries: [(&str, toml::Value); N]) -> toml::Value {
    toml::Value::Table(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Merges `extra` into `base`: tables recursively, anything else replaced.
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(extra_table)) => merge(base_table, extra_table),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A `tally run` process (or, before [`Tally::spawn_run`], just its config and state dir).
pub struct Tally {
    dir: Option<tempfile::TempDir>,
    config_path: PathBuf,
    config: toml::Table,
    state_dir: PathBuf,
    http_base: String,
    nats_url: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// How many times `tally run` was spawned; names the log files (run-1.stderr.log, …).
    runs: u32,
    http: reqwest::Client,
}

impl Tally {
    /// Starts tally against `nats_url` with `extra_toml` merged into the generated config
    /// (see [`TallyBuilder`]): setup, run, wait for /readyz.
    pub async fn start(nats_url: &str, extra_toml: &str) -> Tally {
        TallyBuilder::new(nats_url).toml(extra_toml).start().await
    }

    pub fn builder(nats_url: &str) -> TallyBuilder {
        TallyBuilder::new(nats_url)
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the temp dir lives as long as the instance").path()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// `http://127.0.0.1:<port>`.
    pub fn http_base(&self) -> &str {
        &self.http_base
    }

    /// A string key of the effective config file, e.g. `("input", "stream")`.
    fn config_str(&self, section: &str, key: &str) -> Option<String> {
        self.config.get(section)?.get(key)?.as_str().map(str::to_string)
    }

    /// The input stream name (config `input.stream`, default `RETAIL_IN`).
    pub fn input_stream(&self) -> String {
        self.config_str("input", "stream").unwrap_or_else(|| "RETAIL_IN".into())
    }

    /// The durable consumer name (config `input.consumer`, default `tally`).
    pub fn consumer(&self) -> String {
        self.config_str("input", "consumer").unwrap_or_else(|| "tally".into())
    }

    /// The subject prefix (config `input.subject_prefix`, default `retail`).
    pub fn prefix(&self) -> String {
        self.config_str("input", "subject_prefix").unwrap_or_else(|| "retail".into())
    }

    /// A `tally` command with this instance's environment: inherited, minus every `TALLY_*`
    /// variable of the test process (so a developer's shell cannot change the test), plus the
    /// builder's variables.
    pub fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(tally_bin());
        cmd.arg(subcommand).arg("--config").arg(&self.config_path);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TALLY_") {
                cmd.env_remove(key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(self.dir());
        cmd
    }

    /// Runs `tally setup --config <file>` and returns its output (for tests of setup itself).
    pub fn setup(&self) -> Output {
        self.run_to_end("setup", SETUP_TIMEOUT)
    }

    /// Runs `tally setup` and panics with its output unless it succeeds.
    pub fn setup_ok(&self) -> Output {
        let out = self.setup();
        assert!(
            out.status.success(),
            "`tally setup` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `tally <subcommand> --config <file>` to its end, killing it after `timeout`.
    pub fn run_to_end(&self, subcommand: &str, timeout: Duration) -> Output {
        let mut child = self
            .command(subcommand)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn {}: {err}", tally_bin().display()));
        // Read the pipes on threads so a chatty process cannot block on a full pipe.
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
            buf
        });
        let err_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
            buf
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait().expect("try_wait on tally") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr = err_thread.join().unwrap_or_default();
                    panic!(
                        "`tally {subcommand}` did not finish within {timeout:?}; stderr:\n{}",
                        String::from_utf8_lossy(&stderr)
                    );
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        Output { status, stdout: out_thread.join().unwrap_or_default(), stderr: err_thread.join().unwrap_or_default() }
    }

    fn stdout_log(&self) -> PathBuf {
        self.dir().join(format!("run-{}.stdout.log", self.runs))
    }

    fn stderr_log(&self) -> PathBuf {
        self.dir().join(format!("run-{}.stderr.log", self.runs))
    }

    /// Everything the current run wrote to stdout and stderr so far, for tests that search it.
    pub fn full_logs(&self) -> String {
        let read = |path: PathBuf| String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        format!("{}\n{}", read(self.stdout_log()), read(self.stderr_log()))
    }

    /// Everything the current run wrote to stderr so far (its log), for tests that parse it.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.stderr_log()).unwrap_or_default()).into_owned()
    }

    /// The tail of the current run's stdout and stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- tally run #{} stdout (tail) ---\n{}\n--- tally run #{} stderr (tail) ---\n{}",
            self.runs,
            tail(&self.stdout_log(), 40),
            self.runs,
            tail(&self.stderr_log(), 40)
        )
    }

    /// Spawns `tally run` (stdout and stderr to files in the temp dir) and waits until /readyz
    /// answers 200. Panics with the logs if it exits or is not ready in time.
    pub async fn spawn_run(&mut self) {
        self.spawn_run_no_wait();
        self.wait_ready(READY_TIMEOUT).await;
    }

    /// Spawns `tally run` (stdout and stderr to files in the temp dir) and returns at once, for
    /// tests that crash it at an arbitrary moment.
    pub fn spawn_run_no_wait(&mut self) {
        assert!(self.child.is_none(), "tally run is already running");
        self.runs += 1;
        let stdout = std::fs::File::create(self.stdout_log()).expect("create the stdout log");
        let stderr = std::fs::File::create(self.stderr_log()).expect("create the stderr log");
        let child = self
            .command("run")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn {}: {err}", tally_bin().display()));
        self.child = Some(child);
    }

    /// Waits until /readyz answers 200; panics with the logs if the process exits first or the
    /// timeout passes.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!("`tally run` exited before it was ready ({status})\n{}", self.logs());
                }
            }
            if let Ok((200, _)) = self.try_http_get("/readyz").await {
                return;
            }
            if Instant::now() >= deadline {
                let last = self.try_http_get("/readyz").await;
                panic!("`tally run` was not ready within {timeout:?} (last /readyz: {last:?})\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the `tally run` process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then waits for the exit (at most [`STOP_TIMEOUT`], then SIGKILL and panic).
    /// Returns the exit status.
    pub fn stop_gracefully(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("tally run is not running");
        match terminate(&mut child, STOP_TIMEOUT) {
            Some(status) => status,
            None => panic!("`tally run` did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}", self.logs()),
        }
    }

    /// SIGKILL, as a crash would, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process stays, frozen, as one paused by the host or a long GC would.
    pub fn pause(&self) {
        send_signal(self.child.as_ref().expect("tally run is not running"), libc::SIGSTOP);
    }

    /// SIGCONT after [`Tally::pause`].
    pub fn resume(&self) {
        send_signal(self.child.as_ref().expect("tally run is not running"), libc::SIGCONT);
    }

    /// Starts `tally run` again on the same config and state dir (killing a running one first)
    /// and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_run().await;
    }

    /// GET `path`; the body as JSON, or as a JSON string when it is not JSON. Panics on a
    /// transport error.
    pub async fn http_get(&self, path: &str) -> (u16, serde_json::Value) {
        match self.try_http_get(path).await {
            Ok(answer) => answer,
            Err(err) => panic!("GET {path} failed: {err}\n{}", self.logs()),
        }
    }

    /// GET `path`; the body as text.
    pub async fn http_get_text(&self, path: &str) -> (u16, String) {
        let url = format!("{}{}", self.http_base, path);
        let response = match self.http.get(&url).send().await {
            Ok(response) => response,
            Err(err) => panic!("GET {path} failed: {err}\n{}", self.logs()),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|err| panic!("reading the body of GET {path}: {err}"));
        (status, text)
    }

    /// GET `path`, without panicking on transport errors.
    pub async fn try_http_get(&self, path: &str) -> Result<(u16, serde_json::Value), reqwest::Error> {
        let url = format!("{}{}", self.http_base, path);
        let response = self.http.get(&url).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, body))
    }

    /// GET /v1/stores/<store>/days/<day>, expecting 200.
    pub async fn day(&self, store: &str, day: &str) -> serde_json::Value {
        let (status, body) = self.http_get(&format!("/v1/stores/{store}/days/{day}")).await;
        assert_eq!(status, 200, "GET day {store}/{day}: {body}\n{}", self.logs());
        body
    }

    /// Waits until the durable consumer has acked everything in the input stream, i.e. tally
    /// committed every message published so far (it acks only after the commit).
    pub async fn wait_drained(&self, js: &Js, timeout: Duration) {
        let (stream, consumer) = (self.input_stream(), self.consumer());
        let (stream, consumer) = (&stream, &consumer);
        let drained = wait_until(timeout, move || async move { js.consumer_drained(stream, consumer).await }).await;
        assert!(
            drained,
            "tally did not ack all of {stream} within {timeout:?} (consumer: {:?})\n{}",
            js.consumer_summary(stream, consumer).await,
            self.logs()
        );
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            if self.runs > 0 {
                eprintln!("{}", self.logs());
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("tally-tests: keeping {} for inspection", dir.keep().display());
            }
        }
    }
}
