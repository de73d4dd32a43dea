//! `[cluster]`: several tally instances sharing the input's partitions through leases in a NATS
//! KV bucket (docs/operations.md, "Several instances: partition ownership";
//! docs/configuration.md, "Several instances").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{parse_duration, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Share the partitions with the other instances that use the same bucket. Default false.
    pub enabled: bool,
    /// This instance's name among the members: letters, digits, `_`, `-` and inner `.`, unique
    /// per instance. Default: none, which takes the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The HTTP address (`host:port`) at which the other instances reach this one's
    /// `http.listen`; `{hostname}` stands for the host name (a StatefulSet pod's name), so one
    /// configuration serves every pod: `{hostname}.tally-headless:9464`. Required when
    /// `enabled`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// The NATS KV bucket of members and leases; created when absent. Default `tally_cluster`.
    pub bucket: String,
    /// Replicas of the bucket, and of the streams, when tally creates them; 3 on a NATS cluster
    /// of three or more servers, 1 on a single server. Default 3.
    pub replicas: usize,
    /// How long a lease and a member entry live without being renewed: the bucket's `max_age`,
    /// and how long a crashed instance's partitions wait before another takes them. The same on
    /// every instance. Default `10s`.
    pub lease_ttl: String,
    /// How often leases are renewed and the member entry rewritten; at most a third of
    /// `lease_ttl`. Default: none, which is a third of `lease_ttl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// How long the members must stay the same before any partition moves, so that instances
    /// starting or stopping one after another move each partition once. Default `5s`.
    pub settle: String,
    /// How often each owner checkpoints its partitions' state to `checkpoint_bucket`, so that a
    /// new owner restores it instead of replaying the input stream from its start
    /// (docs/operations.md, "Checkpoints in the Object Store"); `0s` turns checkpoints off.
    /// Default `60s`.
    pub checkpoint_interval: String,
    /// The JetStream Object Store bucket of checkpoint files, created with `replicas` replicas
    /// when absent; the manifests go to the KV bucket `<checkpoint_bucket>_manifests`. Default
    /// `tally_checkpoints`.
    pub checkpoint_bucket: String,
    /// Warm standby: tail the partitions this instance would take over if their owner left
    /// into its own state, without publishing, so that a failover replays seconds of input
    /// instead of everything since the last checkpoint (docs/operations.md, "Warm standby").
    /// Default false.
    pub standby: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            instance_id: None,
            advertise: None,
            bucket: "tally_cluster".into(),
            replicas: 3,
            lease_ttl: "10s".into(),
            heartbeat: None,
            settle: "5s".into(),
            checkpoint_interval: "60s".into(),
            checkpoint_bucket: "tally_checkpoints".into(),
            standby: false,
        }
    }
}

/// The most replicas a JetStream stream may have.
const REPLICAS_MAX: usize = 5;

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
        let lease_ttl = parse_duration(&self.lease_ttl).map_err(|m| invalid("cluster.lease_ttl", m))?;
        if lease_ttl < Duration::from_secs(1) {
            return Err(invalid("cluster.lease_ttl", "must be at least 1s (the bucket's max_age)".into()));
        }
        if let Some(heartbeat) = &self.heartbeat {
            let heartbeat = parse_duration(heartbeat).map_err(|m| invalid("cluster.heartbeat", m))?;
            // An instance stops a partition lease_ttl - heartbeat after its last renewal was sent
            // (docs/operations.md, "Several instances: partition ownership"); a renewal and the read
            // that resolves it take up to a heartbeat, so a third leaves no gap between them.
            if heartbeat.is_zero() || heartbeat * 3 > lease_ttl {
                return Err(invalid(
                    "cluster.heartbeat",
                    format!(
                        "must be more than 0 and at most a third of cluster.lease_ttl ({}), so that a lease is \
                         renewed twice before it could expire; leave it out to take that third",
                        self.lease_ttl
                    ),
                ));
            }
        }
        parse_duration(&self.settle).map_err(|m| invalid("cluster.settle", m))?;
        parse_duration(&self.checkpoint_interval).map_err(|m| invalid("cluster.checkpoint_interval", m))?;
        for (key, bucket) in [("cluster.bucket", &self.bucket), ("cluster.checkpoint_bucket", &self.checkpoint_bucket)]
        {
            if !is_valid_bucket(bucket) {
                return Err(invalid(key, "a bucket name is letters, digits, _ or -".into()));
            }
        }
        if !(1..=REPLICAS_MAX).contains(&self.replicas) {
            return Err(invalid("cluster.replicas", format!("must be 1..={REPLICAS_MAX}")));
        }
        if let Some(id) = &self.instance_id {
            if !is_valid_instance_id(id) {
                return Err(invalid("cluster.instance_id", format!("{id:?}: {INSTANCE_ID_RULE}")));
            }
        }
        if self.enabled && self.advertise.as_deref().is_none_or(|a| a.trim().is_empty()) {
            return Err(invalid(
                "cluster.advertise",
                "is required with cluster.enabled: the host:port at which the other instances reach this one's \
                 HTTP API, e.g. 10.0.0.5:9464"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `lease_ttl`, validated at load.
    pub fn lease_ttl(&self) -> Duration {
        parse_duration(&self.lease_ttl).unwrap_or(Duration::from_secs(10))
    }

    /// `heartbeat`, or a third of `lease_ttl`.
    pub fn heartbeat(&self) -> Duration {
        let third = self.lease_ttl() / 3;
        self.heartbeat.as_deref().and_then(|h| parse_duration(h).ok()).unwrap_or(third)
    }

    /// `settle`, validated at load.
    pub fn settle(&self) -> Duration {
        parse_duration(&self.settle).unwrap_or(Duration::from_secs(5))
    }

    /// `checkpoint_interval`, validated at load; `None` when checkpoints are off (`0s`).
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        parse_duration(&self.checkpoint_interval).ok().filter(|interval| !interval.is_zero())
    }
}

/// Whether `name` can name a NATS KV or Object Store bucket.
fn is_valid_bucket(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const INSTANCE_ID_RULE: &str = "an instance id is 1-128 of A-Z a-z 0-9 _ - and . (not first or last)";

/// Whether `id` can name a member: it becomes part of a KV key (`members.<id>`).
pub fn is_valid_instance_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && !id.ends_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, ConfigError};

    fn refused_key(text: &str) -> String {
        match Config::from_parts("test", text, &[]) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{text}: {other:?}"),
        }
    }

    // Proves the defaults (off, 10s leases renewed every third, 5s settle) and that the
    // heartbeat follows lease_ttl unless set.
    #[test]
    fn defaults_and_derived_heartbeat() {
        let cluster = Config::default().cluster;
        assert!(!cluster.enabled);
        assert_eq!((cluster.lease_ttl(), cluster.settle()), (Duration::from_secs(10), Duration::from_secs(5)));
        assert_eq!(cluster.heartbeat(), Duration::from_secs(10) / 3);
        assert_eq!(cluster.checkpoint_interval(), Some(Duration::from_secs(60)));
        assert_eq!(cluster.checkpoint_bucket, "tally_checkpoints");
        assert!(!cluster.standby);
        let vars = [("TALLY_CLUSTER_STANDBY".to_string(), "true".to_string())];
        assert!(Config::from_parts("t", "", &vars).unwrap().cluster.standby);
        let text = "[cluster]\ncheckpoint_interval = \"0s\"\n";
        assert_eq!(Config::from_parts("t", text, &[]).unwrap().cluster.checkpoint_interval(), None);
        let vars = [("TALLY_CLUSTER_CHECKPOINT_INTERVAL".to_string(), "1s".to_string())];
        let cluster = Config::from_parts("t", "", &vars).unwrap().cluster;
        assert_eq!(cluster.checkpoint_interval(), Some(Duration::from_secs(1)));
        let text = "[cluster]\nlease_ttl = \"9s\"\nheartbeat = \"3s\"\n";
        assert_eq!(Config::from_parts("t", text, &[]).unwrap().cluster.heartbeat(), Duration::from_secs(3));
        let text = "[cluster]\nlease_ttl = \"30s\"\n";
        assert_eq!(Config::from_parts("t", text, &[]).unwrap().cluster.heartbeat(), Duration::from_secs(10));
        let vars = [("TALLY_CLUSTER_HEARTBEAT".to_string(), "2s".to_string())];
        assert_eq!(Config::from_parts("t", "", &vars).unwrap().cluster.heartbeat(), Duration::from_secs(2));
    }

    // Proves bad values are refused naming the key: durations, a heartbeat not below the lease
    // TTL, ids and bucket names that cannot be KV keys, and enabling without an advertised
    // address.
    #[test]
    fn bad_values_are_refused_by_key() {
        for (text, key) in [
            ("[cluster]\nlease_ttl = \"ten\"\n", "cluster.lease_ttl"),
            ("[cluster]\nlease_ttl = \"500ms\"\n", "cluster.lease_ttl"),
            ("[cluster]\nheartbeat = \"10s\"\n", "cluster.heartbeat"),
            ("[cluster]\nlease_ttl = \"6s\"\nheartbeat = \"7s\"\n", "cluster.heartbeat"),
            ("[cluster]\nheartbeat = \"0s\"\n", "cluster.heartbeat"),
            ("[cluster]\nlease_ttl = \"9s\"\nheartbeat = \"3001ms\"\n", "cluster.heartbeat"),
            ("[cluster]\nsettle = \"soon\"\n", "cluster.settle"),
            ("[cluster]\nbucket = \"a.b\"\n", "cluster.bucket"),
            ("[cluster]\ncheckpoint_interval = \"often\"\n", "cluster.checkpoint_interval"),
            ("[cluster]\ncheckpoint_bucket = \"a b\"\n", "cluster.checkpoint_bucket"),
            ("[cluster]\ncheckpoint_bucket = \"\"\n", "cluster.checkpoint_bucket"),
            ("[cluster]\nreplicas = 0\n", "cluster.replicas"),
            ("[cluster]\ninstance_id = \"a b\"\n", "cluster.instance_id"),
            ("[cluster]\ninstance_id = \".a\"\n", "cluster.instance_id"),
            ("[cluster]\nenabled = true\n", "cluster.advertise"),
        ] {
            assert_eq!(refused_key(text), key, "{text}");
        }
        let text = "[cluster]\nenabled = true\nadvertise = \"10.0.0.5:9464\"\ninstance_id = \"tally-0.eu\"\n";
        let cluster = Config::from_parts("t", text, &[]).unwrap().cluster;
        assert_eq!(cluster.instance_id.as_deref(), Some("tally-0.eu"));
    }
}
