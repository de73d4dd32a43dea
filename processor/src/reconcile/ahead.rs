//! Reading the output streams ahead, for a warm standby (docs/operations.md, "Warm standby"):
//! while this instance stands by for some partitions, it reads what the output streams hold of
//! their stores, and goes on reading as the streams grow, so that taking those partitions over
//! reads back only what the last second brought instead of every stream from its start.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{read_back, ReadBack, ReconcileError};
use crate::config::Config;

/// How long a read ahead waits between two reads of what the streams got since.
const EVERY: Duration = Duration::from_secs(1);

/// The outputs of some partitions' stores, read ahead and kept up to date in the background.
pub struct ReadAhead {
    partitions: BTreeSet<u32>,
    read: Arc<Mutex<ReadBack>>,
    reading: JoinHandle<()>,
}

impl ReadAhead {
    /// Starts reading the outputs of the stores of `partitions` (of `count`) from the streams'
    /// first messages, then what comes, until dropped or finished.
    pub fn start(js: jetstream::Context, config: Config, partitions: BTreeSet<u32>, count: u32) -> ReadAhead {
        let mut empty = ReadBack::empty(None);
        empty.partitions = Some((partitions.clone(), count));
        let read = Arc::new(Mutex::new(empty));
        let reading = tokio::spawn(keep_reading(js, config, Arc::clone(&read), partitions.clone()));
        ReadAhead { partitions, read, reading }
    }

    /// Whether it reads the outputs of every one of `partitions`.
    pub fn covers<'p>(&self, partitions: impl IntoIterator<Item = &'p u32>) -> bool {
        partitions.into_iter().all(|p| self.partitions.contains(p))
    }

    /// What the output streams hold of its partitions' stores now: what it has read, and what
    /// came since. A read under way ends first.
    pub async fn finish(self, js: &jetstream::Context, config: &Config) -> Result<ReadBack, ReconcileError> {
        let mut read = self.read.lock().await;
        self.reading.abort();
        read_back(js, config, &mut read, true, None).await?;
        let mut read = std::mem::replace(&mut *read, ReadBack::empty(None));
        // Every store of its partitions was kept: none is left to read back after a catch-up.
        read.stores = None;
        Ok(read)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.reading.abort();
    }
}

/// Reads what the streams got since the last read, every [`EVERY`]. A failed read is logged
/// once until one succeeds again; what it read so far is kept, and the next read goes on from
/// the last read in full (a message read twice changes nothing).
async fn keep_reading(js: jetstream::Context, config: Config, read: Arc<Mutex<ReadBack>>, partitions: BTreeSet<u32>) {
    let (started, mut caught_up, mut failing) = (Instant::now(), false, false);
    loop {
        let outcome = {
            let mut read = read.lock().await;
            read_back(&js, &config, &mut read, true, None).await
        };
        let failed = outcome.is_err();
        match outcome {
            Ok(()) if !caught_up => {
                caught_up = true;
                info!(
                    partitions = ?partitions,
                    ms = started.elapsed().as_millis(),
                    "Read the output streams ahead for the partitions stood by for; following them."
                );
            }
            Ok(()) => {}
            Err(err) if !failing => warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                "Cannot read the output streams ahead for now; a takeover reads what is missing."
            ),
            Err(_) => {}
        }
        failing = failed;
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_nats::NatsServer;
    use async_nats::jetstream::stream;
    use chrono::NaiveDate;
    use tally_topologies::partition;

    /// A nats-server with the output streams of the default configuration, and a client.
    async fn output_streams() -> (NatsServer, jetstream::Context, Config) {
        let nats = NatsServer::start();
        let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
        let config = Config::default();
        for (name, subjects, _) in crate::nats::streams(&config).into_iter().skip(1) {
            js.create_stream(stream::Config { name, subjects, ..Default::default() }).await.expect("an output stream");
        }
        (nats, js, config)
    }

    /// An `interim` posting of `store` on 2026-11-27, seq `seq`, of one transaction of `net`.
    fn posting(store: &str, seq: u32, net: &str) -> String {
        serde_json::json!({
            "store": store, "business_day": "2026-11-27", "seq": seq, "kind": "interim",
            "control": {"transactions": 1, "lines": 1, "net": net, "tax": "0.00"},
        })
        .to_string()
    }

    // Proves a read ahead keeps the outputs of its partitions' stores only, goes on from where it
    // was as the streams grow (a message read again counts once), and that finishing it reads
    // what came since its last read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_ahead_follows_its_partitions_stores_and_finishing_reads_the_rest() {
        let (_nats, js, config) = output_streams().await;
        let store_in = |p: u32| (0..).map(|n| format!("{n:04}")).find(|s| partition::of_store(s, 16) == p).unwrap();
        let (ours, theirs) = (store_in(3), store_in(4));
        let publish = |store: String, seq: u32, net: &'static str| {
            let js = js.clone();
            async move {
                let subject = format!("retail.erp.postings.{store}");
                js.publish(subject, posting(&store, seq, net).into()).await.expect("publish").await.expect("PubAck");
            }
        };
        publish(ours.clone(), 1, "10.00").await;
        publish(theirs.clone(), 1, "99.00").await;

        let ahead = ReadAhead::start(js.clone(), config.clone(), BTreeSet::from([3]), 16);
        assert!(ahead.covers(&[3]) && !ahead.covers(&[3, 4]));
        let first_read = || async {
            let read = ahead.read.lock().await;
            read.next.postings > 2
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !first_read().await {
            assert!(Instant::now() < deadline, "the read ahead read nothing within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The second posting lands between two reads ahead, or after the last: either way it is read.
        publish(ours.clone(), 2, "5.50").await;
        let read = ahead.finish(&js, &config).await.expect("the rest read");

        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert!(read.received.days.contains_key(&(ours.clone(), day)), "its partition's store");
        assert!(!read.received.days.contains_key(&(theirs, day)), "another partition's store is not kept");
        assert_eq!(read.summary.postings_read, 2, "each of its store's postings once");
        assert!(read.received.postings_complete, "the stream held every posting when the reading began");
        assert_eq!((read.next.postings, read.stores), (4, None), "read up to the end; nothing left to read");
    }

    // Proves a store that appears in a state after its outputs were read (a catch-up brought
    // it) has its outputs read back from the streams' start, not from where the first read
    // ended: the posting it had before is found, and its book is not reset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_appears_while_catching_up_is_read_back_from_the_start() {
        use tally_state::{Cf, MemStore, Store, WriteBatch};
        use tally_topologies::aggregates::StoreDay;
        use tally_topologies::{codec, keys};

        let (_nats, js, config) = output_streams().await;
        let (first, later) = ("0001", "0002");
        for (store, net) in [(later, "7.00"), (first, "10.00")] {
            let subject = format!("retail.erp.postings.{store}");
            js.publish(subject, posting(store, 1, net).into()).await.expect("publish").await.expect("PubAck");
        }
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let state = MemStore::new();
        let hold = |store: &str| {
            let mut batch = WriteBatch::default();
            batch.put(Cf::Aggregates, keys::store_day(store, day), codec::encode(&StoreDay::default()));
            state.write(&batch).expect("a store-day");
        };
        hold(first);
        let partitions = [(crate::partitions::Partition { index: 3, count: 16 }, &state as &dyn Store)];
        let read = super::super::read(&partitions, &js, &config, None).await.expect("read back");
        assert_eq!(read.summary.postings_read, 1, "the first store's posting only");

        hold(later);
        let summary = super::super::apply(&partitions, read, &js, &config).await.expect("reconciled");
        assert_eq!(summary.postings_read, 2, "the later store's posting, published before the first read, too");
        assert_eq!(summary.days.get("matched"), Some(&2), "{summary}");
    }
}
