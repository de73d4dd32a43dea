//! Membership: each instance rewrites `members.<instance id>` every heartbeat, and the live
//! members are the entries the bucket still holds (its `max_age` drops one not rewritten within
//! `cluster.lease_ttl`). A leaving instance deletes its entry, so the others need not wait.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context as _;
use async_nats::jetstream::kv;
use futures::TryStreamExt as _;

use super::bucket::{member_key, Member, MEMBER_PREFIX};

/// Writes this instance's entry (which also renews it).
pub async fn heartbeat(store: &kv::Store, me: &Member) -> anyhow::Result<()> {
    let value = serde_json::to_vec(me).context("encoding the member entry")?;
    store
        .put(member_key(&me.instance), value.into())
        .await
        .with_context(|| format!("writing the member entry of {}", me.instance))?;
    Ok(())
}

/// Deletes this instance's entry when it leaves.
pub async fn remove(store: &kv::Store, instance: &str) -> anyhow::Result<()> {
    store.delete(member_key(instance)).await.with_context(|| format!("deleting the member entry of {instance}"))
}

/// The live members, and when each last wrote its entry (the NATS server's clock).
#[derive(Debug, Default)]
pub struct Live {
    pub members: BTreeMap<String, Member>,
    pub written: BTreeMap<String, SystemTime>,
}

/// The live members by instance id. An entry that does not parse is someone else's writing, not
/// a member: it is skipped, never guessed at.
pub async fn live(store: &kv::Store) -> anyhow::Result<Live> {
    let keys: Vec<String> = store.keys().await.context("listing the cluster bucket")?.try_collect().await?;
    let mut live = Live::default();
    for key in keys.iter().filter(|key| key.starts_with(MEMBER_PREFIX)) {
        let Some(entry) = store.entry(key.as_str()).await.with_context(|| format!("reading {key}"))? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        if let Ok(member) = serde_json::from_slice::<Member>(&entry.value) {
            if key.strip_prefix(MEMBER_PREFIX) == Some(member.instance.as_str()) {
                live.written.insert(member.instance.clone(), SystemTime::from(entry.created));
                live.members.insert(member.instance.clone(), member);
            }
        }
    }
    Ok(live)
}

/// Whether `instance`, no longer among the live members, left by its entry expiring (it
/// crashed, paused or lost NATS) rather than by deleting it (a graceful stop, as in a rolling
/// restart, after which it may come back at once). Only a delete marker says it left on
/// purpose: the entry itself may still be read for a moment after it expired, from a replica
/// of the bucket that has not yet removed it.
pub async fn expired(store: &kv::Store, instance: &str) -> anyhow::Result<bool> {
    let entry = store.entry(member_key(instance)).await.with_context(|| format!("reading the entry of {instance}"))?;
    Ok(entry.is_none_or(|entry| entry.operation == kv::Operation::Put))
}
