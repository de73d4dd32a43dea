//! Membership: each instance rewrites `members.<instance id>` every heartbeat, and the live
//! members are the entries the bucket still holds (its `max_age` drops one not rewritten within
//! `cluster.lease_ttl`). A leaving instance deletes its entry, so the others need not wait.

use std::collections::BTreeMap;

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

/// The live members by instance id. An entry that does not parse is someone else's writing, not
/// a member: it is skipped, never guessed at.
pub async fn live(store: &kv::Store) -> anyhow::Result<BTreeMap<String, Member>> {
    let keys: Vec<String> = store.keys().await.context("listing the cluster bucket")?.try_collect().await?;
    let mut members = BTreeMap::new();
    for key in keys.iter().filter(|key| key.starts_with(MEMBER_PREFIX)) {
        let Some(entry) = store.entry(key.as_str()).await.with_context(|| format!("reading {key}"))? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        if let Ok(member) = serde_json::from_slice::<Member>(&entry.value) {
            if key.strip_prefix(MEMBER_PREFIX) == Some(member.instance.as_str()) {
                members.insert(member.instance.clone(), member);
            }
        }
    }
    Ok(members)
}
