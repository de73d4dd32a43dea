//! tally's configuration: a TOML file, overridden by `TALLY_<SECTION>_<KEY>` variables.
//!
//! Every field is documented here, where it is declared, with its default and unit; the example
//! file `deploy/tally.example.toml` is checked against these declarations by a test. Unknown
//! keys are rejected by name, bad values with a sentence that names the key.
//!
//! - `env`: the `TALLY_*` variables, and which of them are not tally's (docs/configuration.md).
//! - `secrets`: secrets read from the files that `*_file` keys name.

mod cluster;
mod env;
mod secrets;
mod sku;

pub use cluster::{is_valid_instance_id, ClusterConfig};
pub use sku::SkuConfig;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use tally_topologies::decode::is_valid_store_id;
use tally_topologies::drift::DriftThresholds;
use tally_topologies::fiscal::{CalendarError, FiscalCalendar, FiscalSettings};
use tally_topologies::outputs::OutputFormat;
use tally_topologies::topology::TopologyConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
    /// A `*_file` key names a file that cannot be read; the secret itself is never quoted.
    #[error("config key {key}: cannot read {path}")]
    SecretFile {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub nats: NatsConfig,
    pub input: InputConfig,
    pub output: OutputConfig,
    pub state: StateConfig,
    pub drift: DriftConfig,
    pub erp: ErpConfig,
    pub http: HttpConfig,
    /// Optional push of drift alerts to Prometheus Alertmanager.
    pub alertmanager: AlertmanagerConfig,
    /// How tally writes its log (stderr).
    pub log: LogConfig,
    /// SKU aliases: the KV bucket and which system each record's codes belong to.
    pub sku: SkuConfig,
    /// The accounting periods of inventory adjustment postings.
    pub fiscal: FiscalConfig,
    /// Several instances sharing the partitions (docs/operations.md, "Several instances:
    /// partition ownership").
    pub cluster: ClusterConfig,
    /// Per-store settings; `default` applies to every store without its own table.
    pub stores: BTreeMap<String, StoreConfig>,
    /// `TALLY_*` variables that name no section of this configuration (Kubernetes sets
    /// `TALLY_SERVICE_HOST`, `TALLY_PORT_…` for a Service named `tally`): ignored, and left for
    /// the caller to log once logging is set up. Not a key of the file.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let mut stores = BTreeMap::new();
        stores.insert("default".to_string(), StoreConfig { timezone: Some("UTC".into()), drift: None });
        Config {
            nats: NatsConfig::default(),
            input: InputConfig::default(),
            output: OutputConfig::default(),
            state: StateConfig::default(),
            drift: DriftConfig::default(),
            erp: ErpConfig::default(),
            http: HttpConfig::default(),
            alertmanager: AlertmanagerConfig::default(),
            log: LogConfig::default(),
            sku: SkuConfig::default(),
            fiscal: FiscalConfig::default(),
            cluster: ClusterConfig::default(),
            stores,
            ignored_env: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated. Default `nats://127.0.0.1:4222`.
    pub url: String,
    /// A `.creds` file (JWT + nkey seed). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// A file holding an nkey user seed (`SU…`), for servers that list bare nkey users.
    /// Never logged. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    /// User name for user/password auth (with `password`). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password for user/password auth. Never logged. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A file holding `password` (trailing line breaks removed), e.g. a mounted Kubernetes
    /// Secret; setting both is an error. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Token auth. Never logged. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding `token` (trailing line breaks removed); setting both is an error.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server; setting it requires TLS. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with `tls_key`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            creds_file: None,
            nkey_seed_file: None,
            user: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// The input stream. Default `RETAIL_IN`.
    pub stream: String,
    /// The durable pull consumer tally reads through. Default `tally`.
    pub consumer: String,
    /// First token of every subject. Default `retail`.
    pub subject_prefix: String,
    /// Messages fetched and committed together, at most. Default 500.
    pub batch_max: usize,
    /// Larger input payloads go to the DLQ as `too_large`. Default 1048576 (bytes).
    pub max_message_bytes: usize,
    /// Records with more lines or tenders go to the DLQ as `too_large`. Default 1000.
    pub max_lines: usize,
    /// How long one fetch waits for messages before the loop looks around. Default `500ms`.
    pub fetch_wait: String,
    /// Partitions of the input stream, fixed when `tally setup` creates it (docs/operations.md,
    /// "Partitions"). Unset: 16 for a new stream, and whatever an existing stream has.
    pub partitions: Option<u32>,
    /// Partitions that apply at once, at most. Unset: the cores available.
    pub threads: Option<usize>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            stream: "RETAIL_IN".into(),
            consumer: "tally".into(),
            subject_prefix: "retail".into(),
            batch_max: 500,
            max_message_bytes: 1 << 20,
            max_lines: 1000,
            fetch_wait: "500ms".into(),
            partitions: None,
            threads: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Encoding of alerts and postings: `json` or `msgpack`. Default `json`.
    pub format: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { format: "json".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// RocksDB directory. Default `./tally-data`.
    pub path: PathBuf,
    /// Shared block cache for all column families. Default 134217728 (bytes, 128 MiB).
    pub cache_bytes: usize,
    /// Memtable budget across column families. Default 67108864 (bytes, 64 MiB).
    pub write_buffer_bytes: usize,
    /// Cache of recently read and written values in front of RocksDB, so hot keys
    /// (a store's day, a popular sku's day) skip the memtable and block cache. 0 turns it off.
    /// Default 0: the topology's working set keeps the hot values decoded, and at 10 M keys
    /// the cache cost 78 MiB of RSS for no throughput (docs/configuration.md).
    pub value_cache_bytes: usize,
    /// fsync every commit, so an acked input survives power loss, not only a crash. Default true.
    pub sync: bool,
    /// How long (event time, after the end of a business day) a day's totals and dedupe ids
    /// are kept; then they are pruned so state stays bounded. Default `35d`.
    pub retention: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: "./tally-data".into(),
            cache_bytes: 128 << 20,
            write_buffer_bytes: 64 << 20,
            value_cache_bytes: 0,
            sync: true,
            retention: "35d".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// A key needs at least this many units of drift to be over threshold. Default "2".
    pub min_units: Decimal,
    /// … and this drift ratio (0–1), or `min_value`. Default "0.05".
    pub min_ratio: Decimal,
    /// … or at least this drift value in the store's currency. Default "0" (off).
    pub min_value: Decimal,
    /// Drift of at least this many units is `critical`. Default "20".
    pub critical_units: Decimal,
    /// How long (event time) a key must stay over threshold before it fires. Default `15m`.
    pub settle: String,
    /// A store with no records for this long (processing time) has its event time advanced by
    /// processing time, so that it still settles and finalizes. Until then a quiet store's
    /// event time stands still: its pending settles and its day's final posting
    /// (`erp.close_grace` after the day-close) wait this long on top. Default `5m`.
    pub idle_timeout: String,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            min_units: Decimal::from(2),
            min_ratio: Decimal::new(5, 2),
            min_value: Decimal::ZERO,
            critical_units: Decimal::from(20),
            settle: "15m".into(),
            idle_timeout: "5m".into(),
        }
    }
}

/// `[stores."<id>".drift]`: any key of `[drift]`, for one store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_units: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ratio: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_value: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_units: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErpConfig {
    /// Processing time between interim postings of a day with changes. Default `5m`.
    pub interval: String,
    /// Wait after a day-close before the final posting, in the store's event time: records
    /// that arrive meanwhile still count in it. A store that sends nothing after its day-close
    /// (the usual end of a day) has event time only once `drift.idle_timeout` passed, so its
    /// final posting goes out `drift.idle_timeout` + `close_grace` of processing time after the
    /// day-close (15 minutes by default; `tally setup` says it). Default `10m`.
    pub close_grace: String,
    /// Finalize a day without day-close this long after its end. Default `30h`.
    pub max_open: String,
    /// Currency of transactions that name none. Default `USD`.
    pub default_currency: String,
    /// Optional delivery of postings to an ERP over HTTP, besides `P.erp.postings.<store>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The ERP endpoint; one POST per posting, `Idempotency-Key: <posting id>`. Required.
    pub url: String,
    /// A header sent with every POST, `Name: value` (e.g. `Authorization: Bearer …`). Never
    /// logged. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// A file holding `auth_header` (trailing line breaks removed); setting both is an error.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_header_file: Option<PathBuf>,
    /// Time allowed for one POST before it is retried. Default `10s`.
    pub timeout: String,
    /// The durable consumer on `RETAIL_ERP` that feeds the webhook. Default `tally-erp-webhook`.
    pub consumer: String,
    /// POSTs in flight at once, each for a different store: a store's postings always go one
    /// at a time, in order, and a store whose posting fails waits alone. 1 to 256. Default 8.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            auth_header: None,
            auth_header_file: None,
            timeout: "10s".into(),
            consumer: "tally-erp-webhook".into(),
            concurrency: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093`; empty = off. Default: off.
    pub url: String,
    /// How often active alerts are re-sent (Alertmanager expects repeats). Default `1m`.
    pub resend_interval: String,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig { url: String::new(), resend_interval: "1m".into() }
    }
}

impl Default for ErpConfig {
    fn default() -> Self {
        ErpConfig {
            interval: "5m".into(),
            close_grace: "10m".into(),
            max_open: "30h".into(),
            default_currency: "USD".into(),
            webhook: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the metrics, health and `/v1` API. Default `127.0.0.1:9464` (loopback only).
    pub listen: String,
    /// When set, `/v1/*` requires `Authorization: Bearer <token>` (metrics and health stay
    /// open for scrapers and probes). Never logged. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// A file holding `bearer_token` (trailing line breaks removed); setting both is an error.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:9464".into(), bearer_token: None, bearer_token_file: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (a line for people) or `json` (one JSON object per line, fields at the top level,
    /// for log shippers). Default `text`.
    pub format: String,
    /// `error`, `warn`, `info`, `debug`, `trace` or `off`. `RUST_LOG`, when set, wins over it
    /// (and can filter by module). Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into(), level: "info".into() }
    }
}

/// `[fiscal]`: the calendar whose periods inventory adjustment postings are booked in
/// (docs/configuration.md, "Fiscal calendar").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FiscalConfig {
    /// `months` (calendar months), or `4-4-5`, `4-5-4`, `5-4-4` (13-week quarters of weeks,
    /// with `year_start`). Default `months`.
    pub calendar: String,
    /// For the week calendars: the first day of one fiscal year, `YYYY-MM-DD`; every year starts
    /// on its weekday nearest its anniversary. Default: none (required by the week calendars).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year_start: Option<String>,
    /// Event time after a period's last business day ends during which adjustments still book
    /// in it; later ones book in the open period. Default `0s`.
    pub close_grace: String,
}

impl Default for FiscalConfig {
    fn default() -> Self {
        FiscalConfig { calendar: "months".into(), year_start: None, close_grace: "0s".into() }
    }
}

impl FiscalConfig {
    /// The calendar, or an error that names the key to fix.
    fn calendar(&self) -> Result<FiscalCalendar, ConfigError> {
        FiscalCalendar::parse(&self.calendar, self.year_start.as_deref()).map_err(|err| {
            let key = match err {
                CalendarError::Unknown(_) => "fiscal.calendar",
                _ => "fiscal.year_start",
            };
            ConfigError::Invalid { key: key.into(), message: err.to_string() }
        })
    }
}

/// The values of `log.level`.
pub const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// IANA time zone, e.g. `America/New_York`; gives `business_day` when a record has none.
    /// Default `UTC` (from `[stores.default]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftOverride>,
}

impl Config {
    /// Reads the file (if any), applies the environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("TALLY_")).collect();
        let text = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?,
            None => String::new(),
        };
        let name = path.map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into());
        Config::from_parts(&name, &text, &vars)
    }

    /// The part of `load` that reads no environment, for tests: file text plus `TALLY_*`
    /// variables (and the secret files that `*_file` keys name).
    pub fn from_parts(name: &str, text: &str, vars: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: name.into(), message: e.to_string() })?;
        let ignored_env = env::apply(&mut table, vars)?;
        // Parsed again from text, so that an error quotes the offending line and key.
        let merged =
            toml::to_string(&table).map_err(|e| ConfigError::Parse { path: name.into(), message: e.to_string() })?;
        let mut config: Config =
            toml::from_str(&merged).map_err(|e| ConfigError::Parse { path: name.into(), message: e.to_string() })?;
        secrets::resolve(&mut config)?;
        config.validate()?;
        config.ignored_env = ignored_env;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
        for (key, value) in [
            ("input.fetch_wait", &self.input.fetch_wait),
            ("drift.settle", &self.drift.settle),
            ("drift.idle_timeout", &self.drift.idle_timeout),
            ("erp.interval", &self.erp.interval),
            ("erp.close_grace", &self.erp.close_grace),
            ("erp.max_open", &self.erp.max_open),
            ("alertmanager.resend_interval", &self.alertmanager.resend_interval),
            ("state.retention", &self.state.retention),
            ("fiscal.close_grace", &self.fiscal.close_grace),
        ] {
            parse_duration(value).map_err(|m| invalid(key, m))?;
        }
        self.fiscal.calendar()?;
        if let Some(webhook) = &self.erp.webhook {
            parse_duration(&webhook.timeout).map_err(|m| invalid("erp.webhook.timeout", m))?;
            if !webhook.url.starts_with("http://") && !webhook.url.starts_with("https://") {
                return Err(invalid("erp.webhook.url", format!("{:?} is not an http(s) URL", webhook.url)));
            }
            if webhook.auth_header.as_ref().is_some_and(|h| !h.contains(':')) {
                return Err(invalid("erp.webhook.auth_header", "must read `Name: value`".into()));
            }
            if !(1..=WEBHOOK_CONCURRENCY_MAX).contains(&webhook.concurrency) {
                return Err(invalid("erp.webhook.concurrency", format!("must be 1..={WEBHOOK_CONCURRENCY_MAX}")));
            }
        }
        if self.cluster.enabled && self.erp.webhook.is_some() {
            return Err(invalid(
                "erp.webhook",
                "cannot be used with cluster.enabled yet: every instance would deliver from the one webhook consumer \
                 and a store's postings could overtake each other. Deliver RETAIL_ERP with a single-instance tally, \
                 or read it directly (docs/operations.md, \"Several instances\")"
                    .into(),
            ));
        }
        if !self.alertmanager.url.is_empty() && !self.alertmanager.url.starts_with("http") {
            return Err(invalid("alertmanager.url", format!("{:?} is not an http(s) URL", self.alertmanager.url)));
        }
        if !matches!(self.output.format.as_str(), "json" | "msgpack") {
            return Err(invalid(
                "output.format",
                format!("{:?} is neither \"json\" nor \"msgpack\"", self.output.format),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", format!("{:?} is neither \"text\" nor \"json\"", self.log.format)));
        }
        if !LOG_LEVELS.contains(&self.log.level.as_str()) {
            return Err(invalid("log.level", format!("{:?} is not one of {}", self.log.level, LOG_LEVELS.join(", "))));
        }
        SocketAddr::from_str(&self.http.listen).map_err(|e| {
            invalid("http.listen", format!("{:?} is not an address like 127.0.0.1:9464: {e}", self.http.listen))
        })?;
        if self.input.batch_max == 0 || self.input.batch_max > BATCH_MAX_LIMIT {
            return Err(invalid("input.batch_max", format!("must be 1..={BATCH_MAX_LIMIT}")));
        }
        if self.input.partitions.is_some_and(|n| !(1..=PARTITIONS_MAX).contains(&n)) {
            return Err(invalid("input.partitions", format!("must be 1..={PARTITIONS_MAX}")));
        }
        if self.input.threads == Some(0) {
            return Err(invalid("input.threads", "must be at least 1".into()));
        }
        if !is_valid_token(&self.input.subject_prefix) {
            return Err(invalid("input.subject_prefix", "must be one subject token of letters, digits, _ or -".into()));
        }
        for (id, store) in &self.stores {
            if id != "default" && !is_valid_store_id(id) {
                return Err(invalid(&format!("stores.{id}"), "a store id is 1-64 of A-Z a-z 0-9 _ -".into()));
            }
            if let Some(zone) = &store.timezone {
                Tz::from_str(zone).map_err(|_| {
                    invalid(&format!("stores.{id}.timezone"), format!("{zone:?} is not an IANA time zone"))
                })?;
            }
            if let Some(settle) = store.drift.as_ref().and_then(|d| d.settle.as_ref()) {
                parse_duration(settle).map_err(|m| invalid(&format!("stores.{id}.drift.settle"), m))?;
            }
        }
        self.cluster.validate()?;
        self.sku.validate()
    }

    /// How many partitions apply at once: `input.threads`, else the cores available.
    pub fn apply_threads(&self) -> usize {
        self.input.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn fetch_wait(&self) -> Duration {
        parse_duration(&self.input.fetch_wait).unwrap_or(Duration::from_millis(500))
    }

    pub fn http_listen(&self) -> SocketAddr {
        SocketAddr::from_str(&self.http.listen).unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9464)))
    }

    /// What the pure topology needs; the config was validated, so zones parse.
    pub fn topology(&self) -> TopologyConfig {
        let zone = |store: &StoreConfig| store.timezone.as_deref().and_then(|z| Tz::from_str(z).ok());
        let default_timezone = self.stores.get("default").and_then(zone).unwrap_or(Tz::UTC);
        let store_timezones = self
            .stores
            .iter()
            .filter(|(id, _)| id.as_str() != "default")
            .filter_map(|(id, store)| zone(store).map(|z| (id.clone(), z)))
            .collect();
        let drift = self.thresholds(None);
        let drift_overrides = self
            .stores
            .iter()
            .filter(|(id, store)| id.as_str() != "default" && store.drift.is_some())
            .map(|(id, store)| (id.clone(), self.thresholds(store.drift.as_ref())))
            .collect();
        TopologyConfig {
            subject_prefix: self.input.subject_prefix.clone(),
            default_currency: self.erp.default_currency.clone(),
            default_timezone,
            store_timezones,
            max_message_bytes: self.input.max_message_bytes,
            max_lines: self.input.max_lines,
            drift,
            drift_overrides,
            idle_timeout: chrono_duration(&self.drift.idle_timeout),
            erp_interval: chrono_duration(&self.erp.interval),
            close_grace: chrono_duration(&self.erp.close_grace),
            max_open: chrono_duration(&self.erp.max_open),
            output_format: if self.output.format == "msgpack" { OutputFormat::Msgpack } else { OutputFormat::Json },
            retention: chrono_duration(&self.state.retention),
            sku_systems: self.sku.systems(),
            fiscal: FiscalSettings {
                // Validated at load; the default calendar stands in for a config built otherwise.
                calendar: self.fiscal.calendar().unwrap_or_default(),
                close_grace: chrono_duration(&self.fiscal.close_grace),
            },
        }
    }

    /// The global thresholds with one store's overrides (and `[stores.default.drift]`) applied.
    fn thresholds(&self, store: Option<&DriftOverride>) -> DriftThresholds {
        let base = &self.drift;
        let default = self.stores.get("default").and_then(|s| s.drift.as_ref());
        let pick = |get: fn(&DriftOverride) -> Option<Decimal>, global: Decimal| {
            store.and_then(get).or_else(|| default.and_then(get)).unwrap_or(global)
        };
        let settle = store
            .and_then(|d| d.settle.clone())
            .or_else(|| default.and_then(|d| d.settle.clone()))
            .unwrap_or_else(|| base.settle.clone());
        DriftThresholds {
            min_units: pick(|d| d.min_units, base.min_units),
            min_ratio: pick(|d| d.min_ratio, base.min_ratio),
            min_value: pick(|d| d.min_value, base.min_value),
            critical_units: pick(|d| d.critical_units, base.critical_units),
            settle: chrono_duration(&settle),
        }
    }

    /// Every key a config file may hold, as `section.key` (stores shown for `"<id>"`).
    pub fn documented_keys() -> Vec<String> {
        let mut keys: Vec<String> = env::key_paths().into_iter().map(|(path, _)| path.join(".")).collect();
        keys.push("stores.timezone".into());
        keys
    }

    /// The defaults with every optional key set to a sample, so that its key and type show.
    fn every_key() -> Config {
        let mut full = Config::default();
        let sample = || Some("x".to_string());
        let sample_path = || Some(PathBuf::from("x"));
        full.fiscal.year_start = sample();
        full.cluster.instance_id = sample();
        full.cluster.advertise = sample();
        full.cluster.heartbeat = sample();
        full.input.partitions = Some(PARTITIONS_DEFAULT);
        full.input.threads = Some(1);
        full.nats.creds_file = sample_path();
        full.nats.user = sample();
        full.nats.nkey_seed_file = sample_path();
        full.nats.password = sample();
        full.nats.password_file = sample_path();
        full.nats.token = sample();
        full.nats.token_file = sample_path();
        full.nats.tls_ca = sample_path();
        full.nats.tls_cert = sample_path();
        full.nats.tls_key = sample_path();
        full.http.bearer_token = sample();
        full.http.bearer_token_file = sample_path();
        full.erp.webhook =
            Some(WebhookConfig { auth_header: sample(), auth_header_file: sample_path(), ..WebhookConfig::default() });
        full
    }

    /// When a day's final posting goes out, in words, for `tally setup` and `tally check`: a
    /// quiet store's event time stands still for `drift.idle_timeout` (docs/configuration.md).
    pub fn final_posting_timing(&self) -> String {
        let grace = parse_duration(&self.erp.close_grace).unwrap_or_default();
        let idle = parse_duration(&self.drift.idle_timeout).unwrap_or_default();
        let max_open = parse_duration(&self.erp.max_open).unwrap_or_default();
        format!(
            "A day's final posting goes out erp.close_grace ({}) of event time after its day-close; a store that \
             goes quiet after its day-close reaches that after drift.idle_timeout ({}) + close_grace = {} of \
             processing time. A day without a day-close is finalized erp.max_open ({}) of event time after it ends.",
            format_duration(grace),
            format_duration(idle),
            format_duration(idle + grace),
            format_duration(max_open),
        )
    }
}

impl Config {
    /// The fiscal calendar in words, with the period `today` falls in, for `tally check`: so
    /// that an operator sees where periods begin before the first adjustment is posted
    /// (docs/configuration.md, "Fiscal calendar").
    pub fn fiscal_summary(&self, today: chrono::NaiveDate) -> String {
        let calendar = self.fiscal.calendar().unwrap_or_default();
        let kind = match &calendar {
            FiscalCalendar::Months => "calendar months".to_string(),
            FiscalCalendar::Weeks { year_start, .. } => format!(
                "{} periods, each fiscal year starting on the {} nearest {} (year_start {year_start})",
                self.fiscal.calendar,
                year_start.format("%A"),
                year_start.format("%B %-d")
            ),
        };
        let period = calendar.period_of(today);
        let grace = format_duration(parse_duration(&self.fiscal.close_grace).unwrap_or_default());
        format!(
            "Inventory adjustments are booked in {kind}; {today} is in {} ({} to {}). A period closes \
             fiscal.close_grace ({grace}) of event time after its last day ends.",
            period.id, period.first, period.last
        )
    }
}

/// `1h30m`, `15m`, `30h`, `2d`, `250ms`: a duration for people, in the largest units that add
/// up to it exactly (days only when whole).
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() != 0 {
        return format!("{}ms", duration.as_millis());
    }
    let mut left = duration.as_secs();
    if left > 0 && left.is_multiple_of(86_400) {
        return format!("{}d", left / 86_400);
    }
    let mut text = String::new();
    for (unit, seconds) in [("h", 3600), ("m", 60), ("s", 1)] {
        if left >= seconds {
            text.push_str(&format!("{}{unit}", left / seconds));
            left %= seconds;
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

/// A validated duration as chrono's type, which the topology uses.
fn chrono_duration(text: &str) -> chrono::Duration {
    parse_duration(text).ok().and_then(|d| chrono::Duration::from_std(d).ok()).unwrap_or_default()
}

/// A bound that keeps one commit's write batch and ack window modest.
pub const BATCH_MAX_LIMIT: usize = 10_000;

/// The most partitions an input stream may have: each is a RocksDB database, a consumer and a
/// publisher, so a few hundred are already more than one machine's cores can use.
pub const PARTITIONS_MAX: u32 = 256;

/// Partitions of a new input stream when `input.partitions` is not set.
pub const PARTITIONS_DEFAULT: u32 = 16;

/// The most POSTs the ERP webhook may have in flight (`erp.webhook.concurrency`).
pub const WEBHOOK_CONCURRENCY_MAX: usize = 256;

fn is_valid_token(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `250ms`, `30s`, `15m`, `30h`, `2d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 15m, 30h"))?;
    let seconds = |n: u64| Duration::from_secs(n);
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(seconds(number)),
        "m" => Ok(seconds(number * 60)),
        "h" => Ok(seconds(number * 3600)),
        "d" => Ok(seconds(number * 86_400)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/tally.example.toml");

    // Proves the example file is valid and its uncommented values are exactly the defaults.
    #[test]
    fn example_file_holds_the_defaults() {
        let parsed = Config::from_parts("example", EXAMPLE, &[]).unwrap();
        assert_eq!(parsed, Config::default());
    }

    // Proves every key the code accepts is documented in the example file, so they cannot drift.
    #[test]
    fn example_file_documents_every_key() {
        let lines: Vec<String> = EXAMPLE.lines().map(|l| l.trim_start_matches('#').trim().to_string()).collect();
        for key in Config::documented_keys() {
            let name = key.rsplit('.').next().unwrap();
            assert!(
                lines.iter().any(|l| l.starts_with(&format!("{name} ="))),
                "{key} is not in deploy/tally.example.toml"
            );
        }
    }

    // Proves unknown keys are rejected with their name.
    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_parts("t", "[nats]\nurll = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
    }

    // Proves environment variables override the file, typed like the key.
    #[test]
    fn env_overrides_file() {
        let vars = vec![
            ("TALLY_NATS_URL".to_string(), "nats://10.0.0.1:4222".to_string()),
            ("TALLY_INPUT_BATCH_MAX".to_string(), "64".to_string()),
            ("TALLY_ERP_CLOSE_GRACE".to_string(), "1m".to_string()),
            ("TALLY_STATE_SYNC".to_string(), "false".to_string()),
        ];
        let config = Config::from_parts("t", "[nats]\nurl = \"nats://a:1\"\n", &vars).unwrap();
        assert_eq!(config.nats.url, "nats://10.0.0.1:4222");
        assert_eq!(config.input.batch_max, 64);
        assert_eq!(config.erp.close_grace, "1m");
        assert!(!config.state.sync);
    }

    // Proves unknown keys of known sections, a bare section and badly typed values are errors
    // that name the variable, including the sections whose names begin alike.
    #[test]
    fn bad_env_is_named() {
        for var in [
            "TALLY_NATS_URLX",
            "TALLY_STATE_PATHS",
            "TALLY_STORES_0042_TIMEZON",
            "TALLY_STORES_0042",
            "TALLY_ERP",
            "TALLY_LOG",
            "TALLY_LOG_FORMATX",
            "TALLY_ERP_WEBHOOK",
            "TALLY_ERP_WEBHOOK_URLX",
        ] {
            let err = Config::from_parts("t", "", &vars(&[(var, "x")])).unwrap_err().to_string();
            assert!(err.contains(&format!("environment variable {var}:")), "{var}: {err}");
        }
        let err = Config::from_parts("t", "", &vars(&[("TALLY_INPUT_BATCH_MAX", "many")])).unwrap_err().to_string();
        assert!(err.contains("TALLY_INPUT_BATCH_MAX"), "{err}");
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// What Kubernetes sets in every pod of a namespace with a Service `tally` (port 9464, named
    /// `http`), and one the test harness and the benchmark use.
    const POD_VARIABLES: [(&str, &str); 9] = [
        ("TALLY_SERVICE_HOST", "10.96.0.12"),
        ("TALLY_SERVICE_PORT", "9464"),
        ("TALLY_SERVICE_PORT_HTTP", "9464"),
        ("TALLY_PORT", "tcp://10.96.0.12:9464"),
        ("TALLY_PORT_9464_TCP", "tcp://10.96.0.12:9464"),
        ("TALLY_PORT_9464_TCP_ADDR", "10.96.0.12"),
        ("TALLY_PORT_9464_TCP_PORT", "9464"),
        ("TALLY_PORT_9464_TCP_PROTO", "tcp"),
        ("TALLY_BIN", "/usr/bin/tally"),
    ];

    // Proves variables whose first token names no section are ignored and handed back (sorted)
    // for the log, while tally's own variables beside them still apply.
    #[test]
    fn stray_variables_are_ignored_and_reported() {
        let mut given = vars(&POD_VARIABLES);
        given.push(("TALLY_NATS_URL".into(), "nats://10.0.0.1:4222".into()));
        let config = Config::from_parts("t", "", &given).unwrap();
        assert_eq!(config.nats.url, "nats://10.0.0.1:4222");
        let mut expected: Vec<String> = POD_VARIABLES.iter().map(|(k, _)| k.to_string()).collect();
        expected.sort();
        assert_eq!(config.ignored_env, expected);
    }

    // Proves the variables of Services named `tally-nats`, `tally-state`, `tally-stores` are
    // ignored even though their first token names a section (no key has a service-link name).
    #[test]
    fn service_links_of_sections_are_ignored() {
        let links = [
            "TALLY_NATS_SERVICE_HOST",
            "TALLY_NATS_SERVICE_PORT_CLIENT",
            "TALLY_NATS_PORT",
            "TALLY_NATS_PORT_4222_TCP_ADDR",
            "TALLY_STATE_PORT_80_TCP",
            "TALLY_STORES_SERVICE_PORT",
            "TALLY_ERP_GATEWAY_SERVICE_HOST",
        ];
        let given: Vec<(String, String)> = links.iter().map(|k| (k.to_string(), "1".to_string())).collect();
        let config = Config::from_parts("t", "", &given).unwrap();
        assert_eq!(config.ignored_env.len(), links.len(), "{:?}", config.ignored_env);
    }

    // Proves every key of every section can be set from the environment, nested tables and new
    // sections included, and that no key's variable looks like one Kubernetes sets.
    #[test]
    fn every_key_is_settable_from_the_environment() {
        let paths = env::key_paths();
        for section in
            ["nats", "input", "output", "state", "drift", "erp", "http", "alertmanager", "log", "fiscal", "cluster"]
        {
            assert!(paths.iter().any(|(p, _)| p[0] == section), "no keys of [{section}]");
        }
        let mut names = std::collections::BTreeSet::new();
        for (path, sample) in &paths {
            let var = env::var_name(path);
            assert!(names.insert(var.clone()), "{var} names two keys");
            assert!(!env::is_service_link(&var["TALLY_".len()..].to_ascii_lowercase()), "{var}");
            assert!(!path[0].contains('_'), "section {} has a `_`", path[0]);
            let value = match sample {
                toml::Value::Integer(_) => toml::Value::Integer(7),
                toml::Value::Boolean(b) => toml::Value::Boolean(!b),
                _ => toml::Value::String("v".into()),
            };
            let text = match &value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut table = toml::Table::new();
            let ignored = env::apply(&mut table, &[(var.clone(), text)]).unwrap();
            assert!(ignored.is_empty(), "{var} was ignored");
            let mut at = &toml::Value::Table(table);
            for name in path {
                at = at.get(name).unwrap_or_else(|| panic!("{var} did not set {}", path.join(".")));
            }
            assert_eq!(at, &value, "{var}");
        }
    }

    // Proves `[erp.webhook]` can be given entirely from the environment.
    #[test]
    fn webhook_from_the_environment() {
        let given = vars(&[
            ("TALLY_ERP_WEBHOOK_URL", "https://erp.example.com/p"),
            ("TALLY_ERP_WEBHOOK_AUTH_HEADER", "Authorization: Bearer abc"),
            ("TALLY_ERP_WEBHOOK_TIMEOUT", "3s"),
        ]);
        let webhook = Config::from_parts("t", "", &given).unwrap().erp.webhook.unwrap();
        assert_eq!(webhook.url, "https://erp.example.com/p");
        assert_eq!(webhook.auth_header.as_deref(), Some("Authorization: Bearer abc"));
        assert_eq!(webhook.timeout, "3s");
        assert_eq!(webhook.consumer, "tally-erp-webhook");
    }

    // Proves per-store tables can be set from the environment, with ids as written (underscores
    // included) and DEFAULT meaning `[stores.default]`.
    #[test]
    fn stores_from_the_environment() {
        let given = vars(&[
            ("TALLY_STORES_DEFAULT_TIMEZONE", "Europe/Berlin"),
            ("TALLY_STORES_0042_TIMEZONE", "America/New_York"),
            ("TALLY_STORES_0042_DRIFT_MIN_UNITS", "5"),
            ("TALLY_STORES_north_7_DRIFT_SETTLE", "1m"),
        ]);
        let topology = Config::from_parts("t", "[stores.\"0042\"]\ntimezone = \"UTC\"\n", &given).unwrap().topology();
        assert_eq!(topology.default_timezone, chrono_tz::Europe::Berlin);
        assert_eq!(topology.store_timezones["0042"], chrono_tz::America::New_York);
        assert_eq!(topology.thresholds("0042").min_units, Decimal::from(5));
        assert_eq!(topology.thresholds("north_7").settle, chrono::Duration::minutes(1));
    }

    /// A file in a temp dir holding `text`.
    fn secret_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    // Proves each secret can come from its `*_file` key, given in the file or the environment,
    // with the trailing line break removed.
    #[test]
    fn secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let password = secret_file(&dir, "password", "pw-1\n");
        let token = secret_file(&dir, "token", "tok-2\r\n");
        let bearer = secret_file(&dir, "bearer", "bearer-3");
        let header = secret_file(&dir, "header", "X-Key: hdr-4\n");
        let text = format!("[nats]\npassword_file = {password:?}\n[erp.webhook]\nurl = \"http://erp:1/\"\nauth_header_file = {header:?}\n");
        let given = vars(&[("TALLY_NATS_TOKEN_FILE", &token), ("TALLY_HTTP_BEARER_TOKEN_FILE", &bearer)]);
        let config = Config::from_parts("t", &text, &given).unwrap();
        assert_eq!(config.nats.password.as_deref(), Some("pw-1"));
        assert_eq!(config.nats.token.as_deref(), Some("tok-2"));
        assert_eq!(config.http.bearer_token.as_deref(), Some("bearer-3"));
        assert_eq!(config.erp.webhook.unwrap().auth_header.as_deref(), Some("X-Key: hdr-4"));
    }

    // Proves a secret given twice, an unreadable or empty secret file are errors that name the
    // keys and the path, and that no error quotes a secret.
    #[test]
    fn bad_secret_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let password = secret_file(&dir, "password", "pw-Secret-77\n");
        let empty = secret_file(&dir, "empty", "\n");
        let missing = dir.path().join("missing").display().to_string();
        let both = format!("[nats]\npassword = \"pw-Secret-77\"\npassword_file = {password:?}\n");
        let err = Config::from_parts("t", &both, &[]).unwrap_err().to_string();
        assert!(err.contains("nats.password and nats.password_file"), "{err}");
        let err = Config::from_parts(
            "t",
            "",
            &vars(&[("TALLY_NATS_PASSWORD", "pw-Secret-77"), ("TALLY_NATS_PASSWORD_FILE", &password)]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nats.password and nats.password_file"), "{err}");
        assert!(!err.contains("pw-Secret-77"), "{err}");
        let err = format!(
            "{:#}",
            anyhow::Error::from(
                Config::from_parts("t", "", &vars(&[("TALLY_HTTP_BEARER_TOKEN_FILE", &missing)])).unwrap_err()
            )
        );
        assert!(err.contains("http.bearer_token_file") && err.contains(&missing), "{err}");
        let err = Config::from_parts("t", "", &vars(&[("TALLY_NATS_TOKEN_FILE", &empty)])).unwrap_err().to_string();
        assert!(err.contains("nats.token_file") && err.contains("empty"), "{err}");
        let header = secret_file(&dir, "header", "no colon pw-Secret-77");
        let text = format!("[erp.webhook]\nurl = \"http://erp:1/\"\nauth_header_file = {header:?}\n");
        let err = Config::from_parts("t", &text, &[]).unwrap_err().to_string();
        assert!(err.contains("erp.webhook.auth_header") && !err.contains("pw-Secret-77"), "{err}");
    }

    // Proves `[log]` is read and checked, from the file and the environment.
    #[test]
    fn log_settings() {
        let config =
            Config::from_parts("t", "[log]\nformat = \"json\"\n", &vars(&[("TALLY_LOG_LEVEL", "debug")])).unwrap();
        assert_eq!((config.log.format.as_str(), config.log.level.as_str()), ("json", "debug"));
        for (text, key) in [("[log]\nformat = \"xml\"\n", "log.format"), ("[log]\nlevel = \"loud\"\n", "log.level")] {
            let err = Config::from_parts("t", text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    // Proves the summary `tally setup` prints adds idle_timeout to close_grace, with the values
    // configured.
    #[test]
    fn final_posting_timing_adds_the_idle_timeout() {
        let default = Config::default().final_posting_timing();
        assert!(default.contains("erp.close_grace (10m)") && default.contains("drift.idle_timeout (5m)"), "{default}");
        assert!(default.contains("= 15m of processing time"), "{default}");
        let text = "[erp]\nclose_grace = \"45m\"\n[drift]\nidle_timeout = \"90s\"\n";
        let custom = Config::from_parts("t", text, &[]).unwrap().final_posting_timing();
        assert!(custom.contains("= 46m30s of processing time"), "{custom}");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(30 * 3600)), "30h");
        assert_eq!(format_duration(Duration::from_secs(2 * 86_400)), "2d");
        for (text, shown) in
            [("90s", "1m30s"), ("5400", "1h30m"), ("131401s", "36h30m1s"), ("0s", "0s"), ("15m", "15m")]
        {
            assert_eq!(format_duration(parse_duration(text).unwrap()), shown);
        }
    }

    // Proves bad values get a message naming the key.
    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("[stores.\"0042\"]\ntimezone = \"Mars/Base\"\n", "stores.0042.timezone"),
            ("[drift]\nsettle = \"15 fortnights\"\n", "drift.settle"),
            ("[output]\nformat = \"xml\"\n", "output.format"),
            ("[http]\nlisten = \"nowhere\"\n", "http.listen"),
            ("[drift]\nmin_units = \"two\"\n", "min_units"),
        ] {
            let err = Config::from_parts("t", text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    // Proves `[fiscal]` reaches the topology, and that a calendar it cannot follow is refused
    // at start with the key to fix and what to write there.
    #[test]
    fn fiscal_calendar_is_checked() {
        let text = "[fiscal]\ncalendar = \"4-5-4\"\nyear_start = \"2026-02-01\"\nclose_grace = \"3d\"\n";
        let topology = Config::from_parts("t", text, &[]).unwrap().topology();
        assert_eq!(topology.fiscal.calendar, FiscalCalendar::parse("4-5-4", Some("2026-02-01")).unwrap());
        assert_eq!(topology.fiscal.close_grace, chrono::Duration::days(3));
        assert_eq!(Config::default().topology().fiscal.calendar, FiscalCalendar::Months);
        for (text, key, hint) in [
            ("[fiscal]\ncalendar = \"quarters\"\n", "fiscal.calendar", "4-5-4"),
            ("[fiscal]\ncalendar = \"4-4-5\"\n", "fiscal.year_start", "needs year_start"),
            ("[fiscal]\ncalendar = \"5-4-4\"\nyear_start = \"1 Feb\"\n", "fiscal.year_start", "2026-02-01"),
            ("[fiscal]\nyear_start = \"2026-02-01\"\n", "fiscal.year_start", "need no year_start"),
            ("[fiscal]\nclose_grace = \"a week\"\n", "fiscal.close_grace", "duration"),
        ] {
            let err = Config::from_parts("t", text, &[]).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(hint), "{text}: {err}");
        }
        let given = vars(&[("TALLY_FISCAL_CALENDAR", "5-4-4"), ("TALLY_FISCAL_YEAR_START", "2025-02-02")]);
        assert_eq!(Config::from_parts("t", "", &given).unwrap().fiscal.calendar, "5-4-4");
    }

    // Proves `tally check`'s fiscal line names the calendar, the weekday rule and the period of
    // the day given.
    #[test]
    fn fiscal_summary_names_the_period_of_today() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let months = Config::default().fiscal_summary(today);
        assert!(months.contains("calendar months; 2026-12-03 is in 2026-12 (2026-12-01 to 2026-12-31)"), "{months}");
        let text = "[fiscal]\ncalendar = \"4-5-4\"\nyear_start = \"2026-02-01\"\nclose_grace = \"3d\"\n";
        let weeks = Config::from_parts("t", text, &[]).unwrap().fiscal_summary(today);
        assert!(weeks.contains("4-5-4 periods, each fiscal year starting on the Sunday nearest February 1"), "{weeks}");
        assert!(weeks.contains("is in FY2026-P11 (2026-11-29 to 2027-01-02)") && weeks.contains("(3d)"), "{weeks}");
    }

    // Proves per-store time zones reach the topology and the default applies elsewhere.
    #[test]
    fn store_timezones_reach_the_topology() {
        let text =
            "[stores.default]\ntimezone = \"Europe/Berlin\"\n[stores.\"0042\"]\ntimezone = \"America/New_York\"\n";
        let topology = Config::from_parts("t", text, &[]).unwrap().topology();
        assert_eq!(topology.default_timezone, chrono_tz::Europe::Berlin);
        assert_eq!(topology.store_timezones["0042"], chrono_tz::America::New_York);
    }

    // Proves per-store drift overrides replace only the keys they name.
    #[test]
    fn store_drift_overrides_reach_the_topology() {
        let text = "[drift]\nsettle = \"5m\"\n[stores.\"0042\".drift]\nmin_units = \"5\"\n";
        let topology = Config::from_parts("t", text, &[]).unwrap().topology();
        let store = topology.thresholds("0042");
        assert_eq!(store.min_units, Decimal::from(5));
        assert_eq!(store.settle, chrono::Duration::minutes(5));
        assert_eq!(topology.thresholds("0001").min_units, Decimal::from(2));
    }

    // Proves the duration syntax.
    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("30h"), Ok(Duration::from_secs(108_000)));
        assert!(parse_duration("1w").is_err());
    }
}
