//! Security (issue 5, item 5), seen from outside: tally against a real nats-server that requires
//! user/password, a token, an nkey-signed user JWT (creds file), a bare nkey seed or mutual
//! TLS; the HTTP API's optional bearer token on /v1. With the right credentials tally becomes
//! ready and counts a transaction; with wrong ones it never becomes ready and its log says why,
//! and no secret (password, token, nkey seed, bearer token) ever appears in a log or an answer.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use tally_tests::fixtures::{example_transaction, pos_subject, DAY};
use tally_tests::{DayTotals, Js, Model, NatsServer, Tally, DRAIN_TIMEOUT};

/// How long a tally with wrong credentials is watched for not becoming ready.
const NOT_READY_WATCH: Duration = Duration::from_secs(12);

/// A JetStream client of the test's own, connected with `options`.
async fn js_with(url: &str, options: async_nats::ConnectOptions) -> Js {
    let client = options.connect(url).await.unwrap_or_else(|err| panic!("test client cannot connect to {url}: {err}"));
    let context = jetstream::new(client.clone());
    Js { client, context }
}

/// Publishes a transaction and checks that tally counts it exactly.
async fn assert_counts_a_transaction(tally: &Tally, js: &Js) {
    let tx = example_transaction("T-secure", "0042", DAY);
    js.publish_json(&pos_subject("retail", "0042"), &tx).await;
    tally.wait_drained(js, DRAIN_TIMEOUT).await;
    let mut model = Model::new();
    model.apply(&tx);
    let day = tally.day("0042", DAY).await;
    assert_eq!(DayTotals::from_http(&day), model.day("0042", DAY), "day: {day}");
}

/// Asserts that no `secrets` occur in `text` (a log or an answer), naming where.
fn assert_no_secret(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} contains the secret {secret:?}:\n{text}");
    }
}

/// Runs `tally setup` and starts `tally run` with credentials the server refuses; asserts that
/// setup fails, /readyz never answers 200 while it is watched, that the process
/// keeps trying rather than exiting silently or that it exits with a reason, and that its log
/// names the cause (one of `because`, case-insensitive) without any of `secrets`.
async fn assert_refused(mut tally: Tally, because: &[&str], secrets: &[&str]) {
    // `tally setup` fails too, and says nothing secret either.
    let setup = tally.setup();
    let setup_text = format!("{}{}", String::from_utf8_lossy(&setup.stdout), String::from_utf8_lossy(&setup.stderr));
    assert!(!setup.status.success(), "`tally setup` succeeded with wrong credentials:\n{setup_text}");
    assert_no_secret(&setup_text, secrets, "`tally setup` output");
    tally.spawn_run_no_wait();
    let deadline = Instant::now() + NOT_READY_WATCH;
    while Instant::now() < deadline {
        if let Ok((200, body)) = tally.try_http_get("/readyz").await {
            panic!("tally became ready with wrong credentials: {body}\n{}", tally.logs());
        }
        if !tally.is_running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logs = tally.full_logs();
    let lower = logs.to_lowercase();
    assert!(
        because.iter().any(|word| lower.contains(&word.to_lowercase())),
        "the log does not say why tally cannot connect (expected one of {because:?}):\n{}",
        tally.logs()
    );
    assert_no_secret(&logs, secrets, "tally's log");
    if tally.is_running() {
        // While it cannot connect, /readyz says so (503 with a reason) rather than hanging.
        if let Ok((status, body)) = tally.try_http_get("/readyz").await {
            assert_eq!(status, 503, "/readyz with wrong credentials: {body}");
            assert_no_secret(&body.to_string(), secrets, "/readyz");
        }
    }
}

/// The right credentials: tally sets up, becomes ready, counts a transaction, and neither its
/// log nor its answers show `secrets`.
async fn assert_accepted(tally: Tally, js: &Js, secrets: &[&str]) {
    assert_counts_a_transaction(&tally, js).await;
    let (_, day) = tally.http_get(&format!("/v1/stores/0042/days/{DAY}")).await;
    let (_, alerts) = tally.http_get("/v1/alerts").await;
    let (_, metrics) = tally.http_get_text("/metrics").await;
    for (what, text) in [("the day answer", day.to_string()), ("/v1/alerts", alerts.to_string()), ("/metrics", metrics)]
    {
        assert_no_secret(&text, secrets, what);
    }
    assert_no_secret(&tally.full_logs(), secrets, "tally's log");
    let setup = tally.setup();
    let setup_text = format!("{}{}", String::from_utf8_lossy(&setup.stdout), String::from_utf8_lossy(&setup.stderr));
    assert_no_secret(&setup_text, secrets, "`tally setup` output");
}

/// A TOML string literal.
fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

// Proves: user/password auth works with the right password, and with a wrong one tally is never
// ready, says "authorization" in its log, and never prints either password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    let password = "pw-Correct-Horse-8817";
    let wrong = "pw-Wrong-Battery-2203";
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users = [ {{ user: tally, password: {} }} ] }}",
        toml_str(password)
    ));
    let js =
        js_with(&nats.url(), async_nats::ConnectOptions::with_user_and_password("tally".into(), password.into())).await;
    let tally =
        Tally::start(&nats.url(), &format!("[nats]\nuser = \"tally\"\npassword = {}\n", toml_str(password))).await;
    assert_accepted(tally, &js, &[password]).await;

    let refused = Tally::builder(&nats.url())
        .toml(&format!("[nats]\nuser = \"tally\"\npassword = {}\n", toml_str(wrong)))
        .setup(false)
        .prepare();
    assert_refused(refused, &["authorization"], &[password, wrong]).await;

    // Credentials in the URL (nats://user:password@host) are secrets too.
    let in_url = nats.url().replace("nats://", &format!("nats://tally:{wrong}@"));
    let refused = Tally::builder(&in_url).setup(false).prepare();
    assert_refused(refused, &["authorization"], &[password, wrong]).await;
}

// Proves: token auth works with the right token, and a wrong token is refused, said in the log,
// and neither token is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token() {
    let token = "tok-9d1c7f3a55e2";
    let wrong = "tok-000000bad000";
    let nats = NatsServer::start_with_config(&format!("authorization {{ token: {} }}", toml_str(token)));
    let js = js_with(&nats.url(), async_nats::ConnectOptions::with_token(token.into())).await;
    let tally = Tally::start(&nats.url(), &format!("[nats]\ntoken = {}\n", toml_str(token))).await;
    assert_accepted(tally, &js, &[token]).await;

    let refused =
        Tally::builder(&nats.url()).toml(&format!("[nats]\ntoken = {}\n", toml_str(wrong))).setup(false).prepare();
    assert_refused(refused, &["authorization"], &[token, wrong]).await;
}

/// NATS JWTs (the nats-io/jwt v2 format): base64url(header).base64url(claims).base64url(sig),
/// signed with the issuer's nkey.
mod jwt {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use nkeys::KeyPair;
    use serde_json::{json, Value};

    pub fn encode(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
        let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let claims = json!({
            // The server does not check jti; unique per token is enough.
            "jti": format!("{}{}", name.to_uppercase(), iat),
            "iat": iat,
            "iss": issuer.public_key(),
            "name": name,
            "sub": subject,
            "nats": nats,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = issuer.sign(signing_input.as_bytes()).expect("an nkey signs");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub fn operator(operator: &KeyPair) -> String {
        encode(operator, &operator.public_key(), "op", json!({"type": "operator", "version": 2}))
    }

    /// An account with JetStream enabled and no limits.
    pub fn account(operator: &KeyPair, account: &KeyPair) -> String {
        let limits = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
            "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1,
            "consumer": -1, "max_ack_pending": -1, "mem_max_stream_bytes": -1,
            "disk_max_stream_bytes": -1, "max_bytes_required": false
        });
        let nats =
            json!({"limits": limits, "default_permissions": {"pub": {}, "sub": {}}, "type": "account", "version": 2});
        encode(operator, &account.public_key(), "tally-account", nats)
    }

    /// The system account the server needs in operator mode (without JetStream).
    pub fn system_account(operator: &KeyPair, account: &KeyPair) -> String {
        let nats = json!({"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                                     "wildcards": true, "conn": -1, "leaf": -1},
                          "type": "account", "version": 2});
        encode(operator, &account.public_key(), "SYS", nats)
    }

    pub fn user(account: &KeyPair, user: &KeyPair) -> String {
        let nats = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2});
        encode(account, &user.public_key(), "tally", nats)
    }

    /// A `.creds` file as `nsc` writes it.
    pub fn creds(user_jwt: &str, user: &KeyPair) -> String {
        let seed = user.seed().expect("a generated key pair has a seed");
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        )
    }
}

// Proves: nkey auth through a creds file (a user JWT signed by an account the server trusts via
// its operator, plus the user's nkey seed) works, and a creds file of an untrusted account is
// refused, said in the log, and neither seed is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_creds_file() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let system = nkeys::KeyPair::new_account();
    let server_config = format!(
        "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{ {}: {}, {}: {} }}\n",
        toml_str(&jwt::operator(&operator)),
        system.public_key(),
        account.public_key(),
        toml_str(&jwt::account(&operator, &account)),
        system.public_key(),
        toml_str(&jwt::system_account(&operator, &system)),
    );
    let nats = NatsServer::start_with_config(&server_config);
    let creds = jwt::creds(&jwt::user(&account, &user), &user);
    let creds_path = nats.dir_for_files().join("tally.creds");
    std::fs::write(&creds_path, &creds).expect("write the creds file");
    let seed = user.seed().expect("seed");

    let js = js_with(&nats.url(), async_nats::ConnectOptions::with_credentials(&creds).expect("the creds file parses"))
        .await;
    let creds_toml = format!("[nats]\ncreds_file = {}\n", toml_str(&creds_path.display().to_string()));
    let tally = Tally::start(&nats.url(), &creds_toml).await;
    assert_accepted(tally, &js, &[&seed]).await;

    // A user of an account the operator never signed: the server cannot trust it.
    let rogue_account = nkeys::KeyPair::new_account();
    let rogue_user = nkeys::KeyPair::new_user();
    let rogue_seed = rogue_user.seed().expect("seed");
    let rogue_path = nats.dir_for_files().join("rogue.creds");
    std::fs::write(&rogue_path, jwt::creds(&jwt::user(&rogue_account, &rogue_user), &rogue_user)).expect("write");
    let refused = Tally::builder(&nats.url())
        .toml(&format!("[nats]\ncreds_file = {}\n", toml_str(&rogue_path.display().to_string())))
        .setup(false)
        .prepare();
    assert_refused(refused, &["authorization"], &[&seed, &rogue_seed]).await;
}

// Proves: a server whose users are bare nkeys (`authorization { users = [ { nkey: U… } ] }`, no
// operator, no JWT) accepts tally with the user's seed in `nats.nkey_seed_file`; another user's
// seed is refused, said in the log, and neither seed is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let nats =
        NatsServer::start_with_config(&format!("authorization {{ users = [ {{ nkey: {} }} ] }}", user.public_key()));
    let seed = user.seed().expect("seed");
    let seed_path = nats.dir_for_files().join("tally.nk");
    std::fs::write(&seed_path, format!("{seed}\n")).expect("write the seed file");
    let js = js_with(&nats.url(), async_nats::ConnectOptions::with_nkey(seed.clone())).await;
    let seed_toml =
        |path: &std::path::Path| format!("[nats]\nnkey_seed_file = {}\n", toml_str(&path.display().to_string()));
    let tally = Tally::start(&nats.url(), &seed_toml(&seed_path)).await;
    assert_accepted(tally, &js, &[&seed]).await;

    let stranger = nkeys::KeyPair::new_user();
    let stranger_seed = stranger.seed().expect("seed");
    let stranger_path = nats.dir_for_files().join("stranger.nk");
    std::fs::write(&stranger_path, &stranger_seed).expect("write the seed file");
    let refused = Tally::builder(&nats.url()).toml(&seed_toml(&stranger_path)).setup(false).prepare();
    assert_refused(refused, &["authorization"], &[&seed, &stranger_seed]).await;
}

/// A CA and the certificates it signs, as PEM.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let ca = params.self_signed(&ca_key).expect("a self-signed CA");
        Pki { ca, ca_key }
    }

    /// (certificate PEM, key PEM) for `name`, valid for 127.0.0.1 and localhost.
    fn issue(&self, name: &str, purpose: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).expect("a signed certificate");
        (cert.pem(), key.serialize_pem())
    }
}

// Proves: mutual TLS works with a client certificate from the CA the server trusts, and a client
// certificate from another CA is refused, with a TLS reason in the log and no private key in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    let pki = Pki::new("tally test CA");
    let (server_cert, server_key) = pki.issue("nats-server", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = pki.issue("tally", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let rogue = Pki::new("rogue CA");
    let (rogue_cert, rogue_key) = rogue.issue("tally", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let ca_pem = pki.ca.pem();
    let files: Vec<(&str, &[u8])> = vec![
        ("ca.pem", ca_pem.as_bytes()),
        ("server.pem", server_cert.as_bytes()),
        ("server-key.pem", server_key.as_bytes()),
        ("client.pem", client_cert.as_bytes()),
        ("client-key.pem", client_key.as_bytes()),
        ("rogue.pem", rogue_cert.as_bytes()),
        ("rogue-key.pem", rogue_key.as_bytes()),
    ];
    let nats = NatsServer::with_files(
        &files,
        "tls { cert_file: \"{dir}/server.pem\", key_file: \"{dir}/server-key.pem\", ca_file: \"{dir}/ca.pem\", verify: true, timeout: 5 }",
    );
    let dir = nats.dir_for_files().to_path_buf();
    let path = |name: &str| toml_str(&dir.join(name).display().to_string());

    let js = js_with(
        &nats.url(),
        async_nats::ConnectOptions::new()
            .add_root_certificates(dir.join("ca.pem"))
            .add_client_certificate(dir.join("client.pem"), dir.join("client-key.pem"))
            .require_tls(true),
    )
    .await;
    // The private keys' base64 body, which must never be logged.
    let key_body = |pem: &str| pem.lines().nth(1).unwrap_or_default().to_string();
    let (client_secret, rogue_secret) = (key_body(&client_key), key_body(&rogue_key));

    let tls = |cert: &str, key: &str| {
        format!("[nats]\ntls_ca = {}\ntls_cert = {}\ntls_key = {}\n", path("ca.pem"), path(cert), path(key))
    };
    let tally = Tally::start(&nats.url(), &tls("client.pem", "client-key.pem")).await;
    assert_accepted(tally, &js, &[&client_secret]).await;

    // async-nats reports a refused TLS handshake only as "IO error" (see
    // `a_refused_tls_handshake_is_explained_in_the_log`), so that is what the log can show.
    let because = ["tls", "certificate", "handshake", "io error"];
    let refused = Tally::builder(&nats.url()).toml(&tls("rogue.pem", "rogue-key.pem")).setup(false).prepare();
    assert_refused(refused, &because, &[&client_secret, &rogue_secret]).await;

    // Without any client certificate the server refuses the handshake too.
    let no_cert =
        Tally::builder(&nats.url()).toml(&format!("[nats]\ntls_ca = {}\n", path("ca.pem"))).setup(false).prepare();
    assert_refused(no_cert, &because, &[&client_secret]).await;

    // And a server certificate from a CA tally does not trust is refused by tally.
    let wrong_ca = Tally::builder(&nats.url())
        .toml(&format!(
            "[nats]\ntls_ca = {}\ntls_cert = {}\ntls_key = {}\n",
            path("rogue.pem"),
            path("client.pem"),
            path("client-key.pem")
        ))
        .setup(false)
        .prepare();
    assert_refused(wrong_ca, &because, &[&client_secret]).await;
}

// Proves a TLS refusal is named as such in tally's log, not only as "IO error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_handshake_is_explained_in_the_log() {
    let pki = Pki::new("tally test CA");
    let (server_cert, server_key) = pki.issue("nats-server", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let ca_pem = pki.ca.pem();
    let files: Vec<(&str, &[u8])> = vec![
        ("ca.pem", ca_pem.as_bytes()),
        ("server.pem", server_cert.as_bytes()),
        ("server-key.pem", server_key.as_bytes()),
    ];
    let nats = NatsServer::with_files(
        &files,
        "tls { cert_file: \"{dir}/server.pem\", key_file: \"{dir}/server-key.pem\", ca_file: \"{dir}/ca.pem\", verify: true, timeout: 5 }",
    );
    let ca = toml_str(&nats.dir_for_files().join("ca.pem").display().to_string());
    let no_cert = Tally::builder(&nats.url()).toml(&format!("[nats]\ntls_ca = {ca}\n")).setup(false).prepare();
    assert_refused(no_cert, &["tls", "certificate", "handshake"], &[]).await;
}

// Proves: with http.bearer_token set, /v1 answers 401 without a token or with a wrong one and
// 200 with the right one; /metrics, /healthz and /readyz stay open; the token is never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bearer_token() {
    let token = "bearer-5f0e2b9c71d4a8";
    let nats = NatsServer::start();
    let tally = Tally::start(&nats.url(), &format!("[http]\nbearer_token = {}\n", toml_str(token))).await;
    let js = Js::connect(&nats.url()).await;
    let tx = example_transaction("T-1", "0042", DAY);
    js.publish_json(&pos_subject("retail", "0042"), &tx).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    let client = reqwest::Client::new();
    let day_url = format!("{}/v1/stores/0042/days/{DAY}", tally.http_base());
    let alerts_url = format!("{}/v1/alerts", tally.http_base());
    for url in [&day_url, &alerts_url] {
        let none = client.get(url).send().await.expect("GET");
        assert_eq!(none.status().as_u16(), 401, "{url} without a token");
        let body = none.text().await.unwrap_or_default();
        assert_no_secret(&body, &[token], "the 401 answer");
        for wrong in ["Bearer bearer-5f0e2b9c71d4a9", "Bearer ", "bearer-5f0e2b9c71d4a8", "Basic dGFsbHk6eA=="] {
            let answer = client.get(url).header("Authorization", wrong).send().await.expect("GET");
            assert_eq!(answer.status().as_u16(), 401, "{url} with Authorization: {wrong:?}");
        }
        let right = client.get(url).bearer_auth(token).send().await.expect("GET");
        assert_eq!(right.status().as_u16(), 200, "{url} with the right token");
        assert_no_secret(&right.text().await.unwrap_or_default(), &[token], "a /v1 answer");
    }
    let day: serde_json::Value =
        client.get(&day_url).bearer_auth(token).send().await.expect("GET").json().await.expect("JSON");
    let mut model = Model::new();
    model.apply(&tx);
    assert_eq!(DayTotals::from_http(&day), model.day("0042", DAY));

    for open in ["/metrics", "/healthz", "/readyz"] {
        let answer = client.get(format!("{}{open}", tally.http_base())).send().await.expect("GET");
        assert_eq!(answer.status().as_u16(), 200, "{open} must stay open without a token");
        assert_no_secret(&answer.text().await.unwrap_or_default(), &[token], open);
    }
    assert_no_secret(&tally.full_logs(), &[token], "tally's log");
}

// Proves: the HTTP API listens on loopback unless told otherwise: `tally run` with no [http]
// section binds 127.0.0.1:9464 (its log names the address, bound or busy), and the example
// config documents that default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listens_on_loopback_by_default() {
    let example = std::fs::read_to_string(tally_tests::workspace_root().join("deploy/tally.example.toml"))
        .expect("deploy/tally.example.toml exists");
    let listen: Vec<&str> = example.lines().filter(|l| l.trim_start().starts_with("listen")).collect();
    assert_eq!(listen, ["listen = \"127.0.0.1:9464\""], "the example config's http.listen");

    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("tally.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "[nats]\nurl = {}\n[state]\npath = {}\n",
            toml_str(&nats.url()),
            toml_str(&state.display().to_string())
        ),
    )
    .expect("write the config");
    let log_path = dir.path().join("run.log");
    let log = std::fs::File::create(&log_path).expect("create the log");
    let mut command = std::process::Command::new(tally_tests::tally_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("spawn tally run");
    let mentions = |text: &str| text.contains("127.0.0.1:9464");
    let found = tally_tests::wait_until(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        async move { mentions(&text) }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(found, "tally's log never named its HTTP address 127.0.0.1:9464:\n{text}");
    assert!(!text.contains("0.0.0.0"), "nothing listens on every interface by default:\n{text}");
}
