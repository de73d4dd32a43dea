//! Configuration as users meet it (docs/configuration.md): unknown keys rejected by name, bad
//! values explained, environment variables over the file, the variables Kubernetes puts into a
//! pod ignored, secrets read from files, and what `tally setup` says about final postings.

use std::time::Duration;

use tally_tests::fixtures::{example_transaction, pos_subject, DAY};
use tally_tests::{DayTotals, Js, NatsServer, Tally, DRAIN_TIMEOUT};

fn failed_setup_stderr(tally: &Tally) -> String {
    let out = tally.setup();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "setup must refuse this config; stderr:\n{stderr}");
    stderr
}

// Proves: an unknown key, in a known section or as an unknown section, is rejected with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_rejected_by_name() {
    let nats = NatsServer::start();
    let tally = Tally::builder(&nats.url()).toml("[input]\nbatch_maxx = 10\n").prepare();
    let stderr = failed_setup_stderr(&tally);
    assert!(stderr.contains("batch_maxx"), "the error names the key; stderr:\n{stderr}");

    let tally = Tally::builder(&nats.url()).toml("[natss]\nurl = \"nats://127.0.0.1:4222\"\n").prepare();
    let stderr = failed_setup_stderr(&tally);
    assert!(stderr.contains("natss"), "the error names the section; stderr:\n{stderr}");
}

// Proves: a bad value is refused with a message that names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_are_refused_with_the_key_name() {
    let nats = NatsServer::start();
    let tally = Tally::builder(&nats.url()).toml("[output]\nformat = \"xml\"\n").prepare();
    let stderr = failed_setup_stderr(&tally);
    assert!(stderr.contains("format"), "the error names output.format; stderr:\n{stderr}");
}

// Proves: TALLY_<SECTION>_<KEY> overrides the file: a config pointing at a dead NATS works when
// TALLY_NATS_URL names the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_file() {
    let nats = NatsServer::start();
    let dead = format!("nats://127.0.0.1:{}", tally_tests::free_port());
    let tally = Tally::builder(&dead).env("TALLY_NATS_URL", &nats.url()).start().await;
    let js = Js::connect(&nats.url()).await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-1", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await).transactions, 1);
}

/// What Kubernetes puts into every pod of a namespace with a Service `tally` (port 9464 named
/// `http`) and a Service `tally-nats` (port 4222 named `client`).
const POD_VARIABLES: [(&str, &str); 14] = [
    ("TALLY_SERVICE_HOST", "10.96.0.12"),
    ("TALLY_SERVICE_PORT", "9464"),
    ("TALLY_SERVICE_PORT_HTTP", "9464"),
    ("TALLY_PORT", "tcp://10.96.0.12:9464"),
    ("TALLY_PORT_9464_TCP", "tcp://10.96.0.12:9464"),
    ("TALLY_PORT_9464_TCP_ADDR", "10.96.0.12"),
    ("TALLY_PORT_9464_TCP_PORT", "9464"),
    ("TALLY_PORT_9464_TCP_PROTO", "tcp"),
    ("TALLY_NATS_SERVICE_HOST", "10.96.0.13"),
    ("TALLY_NATS_SERVICE_PORT", "4222"),
    ("TALLY_NATS_SERVICE_PORT_CLIENT", "4222"),
    ("TALLY_NATS_PORT", "tcp://10.96.0.13:4222"),
    ("TALLY_NATS_PORT_4222_TCP", "tcp://10.96.0.13:4222"),
    ("TALLY_NATS_PORT_4222_TCP_ADDR", "10.96.0.13"),
];

/// The log lines of `text` that say which variables were ignored.
fn ignored_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|line| line.contains("Ignoring environment variables")).collect()
}

// Proves: in a pod-like environment full of TALLY_SERVICE_* / TALLY_PORT_* variables (also those
// of a Service `tally-nats`), `tally setup` and `tally run` start, become ready and count; the
// variables are named once in the log at INFO. A typo'd TALLY_NATS_URLX still stops both setup
// and run with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_environment_variables_are_ignored_but_typos_are_not() {
    let nats = NatsServer::start();
    let mut builder = Tally::builder(&nats.url());
    for (key, value) in POD_VARIABLES {
        builder = builder.env(key, value);
    }
    let tally = builder.start().await;
    let js = Js::connect(&nats.url()).await;
    js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-pod", "0042", DAY)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_eq!(DayTotals::from_http(&tally.day("0042", DAY).await).transactions, 1);
    let log = tally.stderr_text();
    let lines = ignored_lines(&log);
    assert_eq!(lines.len(), 1, "one line names the ignored variables:\n{log}");
    assert!(lines[0].contains("INFO"), "{}", lines[0]);
    for (key, _) in POD_VARIABLES {
        assert!(lines[0].contains(key), "{key} is not named: {}", lines[0]);
    }

    let typo = Tally::builder(&nats.url()).env("TALLY_SERVICE_HOST", "10.96.0.12").env("TALLY_NATS_URLX", "nats://x:1");
    let typo = typo.prepare();
    let stderr = failed_setup_stderr(&typo);
    assert!(stderr.contains("TALLY_NATS_URLX"), "setup names the variable; stderr:\n{stderr}");
    let run = typo.run_to_end("run", Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("TALLY_NATS_URLX"), "run names the variable; stderr:\n{stderr}");
}

/// A file in `dir` holding `text`; its path.
fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write a secret file");
    path.display().to_string()
}

// Proves: against a nats-server that requires a password, tally connects with the password
// given by `nats.password_file` (file key, trailing newline and all), by
// TALLY_NATS_PASSWORD_FILE and by TALLY_NATS_PASSWORD; `/v1` answers only with the bearer token
// read from TALLY_HTTP_BEARER_TOKEN_FILE; no secret appears in a log; a missing secret file
// stops setup naming the key and the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_and_the_environment() {
    let password = "pw-File-Horse-5531";
    let bearer = "bearer-Staple-7720";
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users = [ {{ user: tally, password: \"{password}\" }} ] }}"
    ));
    let client = async_nats::ConnectOptions::with_user_and_password("tally".into(), password.into())
        .connect(nats.url())
        .await
        .expect("the test connects with the password");
    let js = Js { client: client.clone(), context: async_nats::jetstream::new(client) };
    let dir = tempfile::tempdir().expect("a temp dir");
    let password_file = write_file(&dir, "nats-password", &format!("{password}\n"));
    let bearer_file = write_file(&dir, "http-bearer-token", bearer);
    let user = "[nats]\nuser = \"tally\"\n";
    let ways = [
        Tally::builder(&nats.url()).toml(&format!("{user}password_file = {password_file:?}\n")),
        Tally::builder(&nats.url()).toml(user).env("TALLY_NATS_PASSWORD_FILE", &password_file),
        Tally::builder(&nats.url()).toml(user).env("TALLY_NATS_PASSWORD", password),
    ];
    for (n, way) in ways.into_iter().enumerate() {
        // Each instance has its own state and consumer, and reads the input from the start.
        let consumer = format!("tally-{n}");
        let way =
            way.toml(&format!("[input]\nconsumer = {consumer:?}\n")).env("TALLY_HTTP_BEARER_TOKEN_FILE", &bearer_file);
        let tally = way.start().await;
        if n == 0 {
            js.publish_json(&pos_subject("retail", "0042"), &example_transaction("T-secret", "0042", DAY)).await;
        }
        tally.wait_drained(&js, DRAIN_TIMEOUT).await;
        let path = format!("/v1/stores/0042/days/{DAY}");
        let (status, _) = tally.http_get(&path).await;
        assert_eq!(status, 401, "way {n}: /v1 without the bearer token");
        let answer = reqwest::Client::new()
            .get(format!("{}{path}", tally.http_base()))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("GET with the bearer token");
        assert_eq!(answer.status().as_u16(), 200, "way {n}: /v1 with the bearer token");
        let day: serde_json::Value = answer.json().await.expect("a JSON day");
        assert_eq!(DayTotals::from_http(&day).transactions, 1, "way {n}: {day}");
        let log = tally.full_logs();
        for secret in [password, bearer] {
            assert!(!log.contains(secret), "way {n}: the log shows a secret:\n{log}");
        }
    }

    let missing = dir.path().join("missing").display().to_string();
    let broken = Tally::builder(&nats.url()).toml(user).env("TALLY_NATS_PASSWORD_FILE", &missing).prepare();
    let stderr = failed_setup_stderr(&broken);
    assert!(stderr.contains("nats.password_file") && stderr.contains(&missing), "stderr:\n{stderr}");
}

// Proves: `tally setup` and `tally check` say that a quiet store's final posting goes out
// drift.idle_timeout + erp.close_grace after its day-close, with the configured values; `check`
// needs no NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_and_check_say_when_final_postings_go_out() {
    let nats = NatsServer::start();
    let timing = "[erp]\nclose_grace = \"20m\"\n[drift]\nidle_timeout = \"2m\"\n";
    let tally = Tally::builder(&nats.url()).toml(timing).prepare();
    let setup = tally.setup_ok();
    let stdout = String::from_utf8_lossy(&setup.stdout);
    let expected = "drift.idle_timeout (2m) + close_grace = 22m of processing time";
    assert!(stdout.contains("erp.close_grace (20m)") && stdout.contains(expected), "setup's stdout:\n{stdout}");

    let dead = format!("nats://127.0.0.1:{}", tally_tests::free_port());
    let offline = Tally::builder(&dead).toml(timing).env("TALLY_SERVICE_HOST", "10.96.0.12").prepare();
    let check = offline.run_to_end("check", Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "check: {stdout}{}", String::from_utf8_lossy(&check.stderr));
    assert!(stdout.contains("The configuration is valid: ") && stdout.contains(expected), "check's stdout:\n{stdout}");
    assert!(stdout.contains("TALLY_SERVICE_HOST"), "check names what it ignored:\n{stdout}");
}
