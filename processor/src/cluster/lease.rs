//! One partition's lease, `partitions.<n>` in the cluster bucket: acquired by a KV create (which
//! fails while anyone holds it), renewed by an update that names the last revision (which fails
//! once anyone else wrote), released by a delete that names it too. The revision the create
//! returns is the partition's epoch: stream sequences only grow, so each owner's epoch is higher
//! than every earlier one's.
//!
//! A write that times out or fails on the way may still have been stored. That is resolved by
//! reading the key back (is the revision there ours, by this session?), never by assuming
//! either way.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;

use super::bucket::{lease_key, LeaseValue};

/// The leases of one instance's session.
#[derive(Clone)]
pub struct Leases {
    pub store: kv::Store,
    pub instance: String,
    pub session: String,
    /// How long one KV request may take before it counts as ambiguous.
    pub op_timeout: Duration,
}

/// What an attempt to acquire a lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is ours, at this epoch.
    Ours(u64),
    /// Another holds it; written then (the NATS server's clock), when it can be read: unless
    /// renewed or released, it expires `lease_ttl` after that.
    Held(Option<SystemTime>),
}

/// What a renewal came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The lease is ours at this revision.
    Renewed(u64),
    /// The lease could not be renewed; the partition must stop now. Why, for the log.
    Lost(String),
}

impl Leases {
    /// Takes the partition's lease if it is free.
    pub async fn acquire(&self, partition: u32) -> anyhow::Result<Acquired> {
        let key = lease_key(partition);
        let created = tokio::time::timeout(self.op_timeout, self.store.create(&key, self.value(None))).await;
        let failure = match created {
            Ok(Ok(revision)) => return Ok(Acquired::Ours(revision)),
            Ok(Err(err)) if err.kind() == CreateErrorKind::AlreadyExists => {
                // When it was written says when to try again; without an answer, next round.
                let written = self.read(&key).await.ok().flatten().map(|entry| SystemTime::from(entry.created));
                return Ok(Acquired::Held(written));
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.op_timeout),
        };
        // The create may have been stored all the same: the key says whether it was.
        let entry = self.read(&key).await.map_err(|err| {
            anyhow::anyhow!("acquiring {key} failed ({failure}) and reading it back failed too: {err}")
        })?;
        Ok(match entry {
            // Ours and never renewed: our create was stored. Ours and renewed is a lease this
            // session held before and lost (its renewals went unanswered): still standing until
            // it expires, and not a new epoch.
            Some(entry) if self.is_ours(&entry) && !is_renewed(&entry) => Acquired::Ours(entry.revision),
            Some(entry) => Acquired::Held(Some(SystemTime::from(entry.created))),
            None => Acquired::Held(None),
        })
    }

    /// Renews the lease held at `revision` (acquired at `epoch`).
    pub async fn renew(&self, partition: u32, epoch: u64, revision: u64) -> Renewal {
        let key = lease_key(partition);
        let update = self.store.update(&key, self.value(Some(epoch)), revision);
        let failure = match tokio::time::timeout(self.op_timeout, update).await {
            Ok(Ok(renewed)) => return Renewal::Renewed(renewed),
            Ok(Err(err)) if err.kind() == UpdateErrorKind::WrongLastRevision => {
                return Renewal::Lost(format!("{key} was written by someone else since revision {revision}"));
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.op_timeout),
        };
        match self.read(&key).await {
            Ok(Some(entry)) if self.is_ours(&entry) && entry.revision > revision => Renewal::Renewed(entry.revision),
            Ok(Some(entry)) if self.is_ours(&entry) => {
                Renewal::Lost(format!("renewing {key} failed ({failure}); it still stands at revision {revision}"))
            }
            Ok(Some(entry)) => {
                Renewal::Lost(format!("renewing {key} failed ({failure}); revision {} is not ours", entry.revision))
            }
            Ok(None) => Renewal::Lost(format!("renewing {key} failed ({failure}); the lease has expired")),
            Err(err) => Renewal::Lost(format!("renewing {key} failed ({failure}), and reading it back: {err}")),
        }
    }

    /// Gives the lease up, so that another instance can create it at once. Deleting only our own
    /// revision: a lease someone else holds by now is left alone.
    pub async fn release(&self, partition: u32, revision: u64) -> anyhow::Result<()> {
        let key = lease_key(partition);
        let delete = self.store.delete_expect_revision(&key, Some(revision));
        let failure = match tokio::time::timeout(self.op_timeout, delete).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.op_timeout),
        };
        match self.read(&key).await {
            Ok(Some(entry)) if self.is_ours(&entry) => anyhow::bail!(
                "releasing {key} failed ({failure}); it stays ours until it expires, unrenewed, within the lease TTL"
            ),
            // Gone, deleted, or someone else's: released either way.
            Ok(_) => Ok(()),
            Err(err) => anyhow::bail!("releasing {key} failed ({failure}), and reading it back: {err}"),
        }
    }

    /// The key's current entry; `None` when it holds no lease (absent, expired or deleted).
    async fn read(&self, key: &str) -> anyhow::Result<Option<kv::Entry>> {
        let entry = tokio::time::timeout(self.op_timeout, self.store.entry(key))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {:?}", self.op_timeout))??;
        Ok(entry.filter(|entry| entry.operation == kv::Operation::Put))
    }

    fn is_ours(&self, entry: &kv::Entry) -> bool {
        serde_json::from_slice::<LeaseValue>(&entry.value)
            .is_ok_and(|value| value.instance == self.instance && value.session == self.session)
    }

    fn value(&self, epoch: Option<u64>) -> Bytes {
        let value = LeaseValue { instance: self.instance.clone(), session: self.session.clone(), epoch };
        // A struct of strings and a number always encodes.
        serde_json::to_vec(&value).map(Bytes::from).unwrap_or_default()
    }
}

/// Whether a lease entry was written by a renewal (which names the epoch) rather than by the
/// create that acquired it.
fn is_renewed(entry: &kv::Entry) -> bool {
    serde_json::from_slice::<LeaseValue>(&entry.value).is_ok_and(|value| value.epoch.is_some())
}
