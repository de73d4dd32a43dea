//! The cluster's KV bucket: its keys, what their values hold, and creating or checking it
//! (docs/operations.md, "Several instances: partition ownership").
//!
//! `members.<instance id>` holds a [`Member`]; `partitions.<n>` holds a [`LeaseValue`]. The
//! bucket's `max_age` is `cluster.lease_ttl`: an entry not rewritten within it expires, which is
//! what ends a member's membership and a lease alike.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tracing::info;

/// The key of a member's entry.
pub fn member_key(instance: &str) -> String {
    format!("{MEMBER_PREFIX}{instance}")
}

pub const MEMBER_PREFIX: &str = "members.";

/// The key of a partition's lease.
pub fn lease_key(partition: u32) -> String {
    format!("partitions.{partition}")
}

/// A member's entry: who it is and where to reach it, rewritten every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance: String,
    /// `cluster.advertise`: the HTTP address the other instances reach this one at.
    pub advertise: String,
    /// When this instance joined (RFC 3339).
    pub started_at: String,
    /// This run of the instance; a restart with the same id is another session.
    pub session: String,
}

/// A lease's value. The lease belongs to whoever wrote the current revision; the session tells
/// a restarted instance's new run from its old one, whose leases it must not take as its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    pub instance: String,
    pub session: String,
    /// The revision the lease was acquired at, once known (renewals write it; the create that
    /// acquires cannot, its revision being the answer to it). For operators reading the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// Opens the bucket, creating it with `max_age` = `lease_ttl` when absent. An existing bucket's
/// `max_age` must be `lease_ttl`: it is every lease's life, so instances that disagreed on it
/// could each think the other's lease had expired.
pub async fn open(
    js: &jetstream::Context,
    bucket: &str,
    lease_ttl: Duration,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    let store = match js.get_key_value(bucket).await {
        Ok(store) => store,
        Err(err) if err.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {
            create(js, bucket, lease_ttl, replicas).await?
        }
        Err(err) => return Err(err).with_context(|| format!("looking up the cluster bucket {bucket}")),
    };
    let info = store.stream.get_info().await.with_context(|| format!("reading the cluster bucket {bucket}"))?;
    if info.config.max_age != lease_ttl {
        bail!(
            "the cluster bucket {bucket} has max_age {:?} but cluster.lease_ttl is {lease_ttl:?}. Give every \
             instance the same cluster.lease_ttl; to change it, stop every instance and delete the bucket \
             (`nats kv rm {bucket}`), which the first to start creates again (docs/operations.md, \"Several \
             instances: partition ownership\")",
            info.config.max_age
        );
    }
    Ok(store)
}

async fn create(
    js: &jetstream::Context,
    bucket: &str,
    lease_ttl: Duration,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    let config = kv::Config {
        bucket: bucket.to_string(),
        description: "tally cluster: members.<instance> and partitions.<n> leases".into(),
        history: 1,
        max_age: lease_ttl,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => {
            info!(bucket, replicas, lease_ttl = ?lease_ttl, "Created the cluster bucket.");
            Ok(store)
        }
        // Another instance created it meanwhile: use theirs (checked by the caller).
        Err(_) if js.get_key_value(bucket).await.is_ok() => {
            js.get_key_value(bucket).await.with_context(|| format!("opening the cluster bucket {bucket}"))
        }
        Err(err) => Err(err).with_context(|| {
            format!(
                "creating the cluster bucket {bucket} with {replicas} replica(s); on a single NATS server set \
                 cluster.replicas = 1, on a cluster it must have at least that many JetStream servers"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the key layout operators read with `nats kv ls`, and that an acquire's value
    // leaves the epoch out until it is known.
    #[test]
    fn keys_and_values() {
        assert_eq!(member_key("tally-0"), "members.tally-0");
        assert_eq!(lease_key(7), "partitions.7");
        let value = LeaseValue { instance: "tally-0".into(), session: "s".into(), epoch: None };
        assert_eq!(serde_json::to_string(&value).unwrap(), r#"{"instance":"tally-0","session":"s"}"#);
    }
}
