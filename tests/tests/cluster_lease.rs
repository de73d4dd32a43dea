//! Partition ownership by leases (docs/operations.md, "Several instances: partition
//! ownership"): members of `tally_processor::cluster` on a real three-server NATS cluster with an
//! R3 bucket. Each member is followed the way `tally run` will follow it: a follower "runs"
//! exactly the partitions owned, notes when each starts and stops, and reports every stop at
//! once. Every test checks from those notes that no partition ever had two owners at a time,
//! and that each new owner's epoch is higher than the last.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use tally_processor::cluster::{assign, lease_key, Cluster, Epoch, LeaseValue, Ownership, Settings, StopReports};
use tally_tests::{wait_until, NatsCluster};
use tokio::sync::watch;
use tokio::time::Instant;

const PARTITIONS: u32 = 16;
const BUCKET: &str = "tally_cluster";
/// How long a test waits for the partitions to reach the owners it expects.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Short leases, so that an expiry shows within a test; the heartbeat a third, as by default.
fn settings(instance: &str) -> Settings {
    Settings {
        instance: instance.into(),
        advertise: format!("{instance}.test:9464"),
        bucket: BUCKET.into(),
        replicas: 3,
        lease_ttl: Duration::from_secs(3),
        heartbeat: Duration::from_secs(1),
        settle: Duration::from_secs(1),
    }
}

/// A time one member ran one partition, as its follower saw it.
#[derive(Debug, Clone)]
struct Span {
    instance: String,
    partition: u32,
    epoch: Epoch,
    start: Instant,
    end: Option<Instant>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

/// A member with its follower.
struct Member {
    instance: String,
    cluster: Option<Cluster>,
    ownership: watch::Receiver<Ownership>,
}

impl Member {
    async fn join(nats: &NatsCluster, instance: &str, spans: &Spans) -> Member {
        Member::join_with(nats, settings(instance), spans).await
    }

    async fn join_with(nats: &NatsCluster, settings: Settings, spans: &Spans) -> Member {
        let instance = settings.instance.clone();
        let instance = instance.as_str();
        let js = async_nats::jetstream::new(nats.connect().await);
        let cluster = Cluster::join(&js, settings, PARTITIONS)
            .await
            .unwrap_or_else(|err| panic!("{instance} cannot join: {err:#}"));
        tokio::spawn(follow(instance.to_string(), cluster.ownership(), cluster.stop_reports(), Arc::clone(spans)));
        Member { instance: instance.to_string(), ownership: cluster.ownership(), cluster: Some(cluster) }
    }

    fn owned(&self) -> BTreeMap<u32, Epoch> {
        self.ownership.borrow().partitions.clone()
    }

    /// Leaves as `tally` will on shutdown (its follower stops every partition as it goes).
    async fn leave(mut self) {
        let cluster = self.cluster.take().expect("joined");
        cluster.leave().await.unwrap_or_else(|err| panic!("{} cannot leave: {err:#}", self.instance));
    }

    /// Stops without leaving, as a crashed instance: no more heartbeats or renewals.
    fn crash(mut self) {
        drop(self.cluster.take());
    }
}

/// Runs exactly the partitions `ownership` lists: notes each start and stop, and reports each
/// stop at once, as a pipeline that stops instantly would.
async fn follow(instance: String, mut ownership: watch::Receiver<Ownership>, reports: StopReports, spans: Spans) {
    let mut running: BTreeMap<u32, Epoch> = BTreeMap::new();
    loop {
        let owned = ownership.borrow_and_update().partitions.clone();
        let now = Instant::now();
        let stopped: Vec<(u32, Epoch)> =
            running.iter().filter(|(p, e)| owned.get(p) != Some(e)).map(|(p, e)| (*p, *e)).collect();
        {
            let mut spans = spans.lock().unwrap();
            for (partition, epoch) in &stopped {
                close(&mut spans, &instance, *partition, *epoch, now);
            }
            for (partition, epoch) in owned.iter().filter(|(p, e)| running.get(p) != Some(e)) {
                let span =
                    Span { instance: instance.clone(), partition: *partition, epoch: *epoch, start: now, end: None };
                spans.push(span);
            }
        }
        for (partition, epoch) in stopped {
            reports.stopped(partition, epoch);
        }
        running = owned;
        if ownership.changed().await.is_err() {
            // The member left or crashed: it runs nothing any more.
            let mut spans = spans.lock().unwrap();
            for (partition, epoch) in &running {
                close(&mut spans, &instance, *partition, *epoch, Instant::now());
            }
            return;
        }
    }
}

fn close(spans: &mut [Span], instance: &str, partition: u32, epoch: Epoch, at: Instant) {
    let open = spans
        .iter_mut()
        .find(|s| s.instance == instance && s.partition == partition && s.epoch == epoch && s.end.is_none());
    open.expect("a partition stops only after it started").end = Some(at);
}

/// Asserts that no partition ever ran on two members at once, and each next run had a higher epoch.
fn assert_one_owner_at_a_time(spans: &Spans) {
    let spans = spans.lock().unwrap();
    for partition in 0..PARTITIONS {
        let mut runs: Vec<&Span> = spans.iter().filter(|s| s.partition == partition).collect();
        runs.sort_by_key(|s| s.start);
        for pair in runs.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let ended = before.end.unwrap_or_else(|| {
                panic!("partition {partition} runs on {} and {} at once: {runs:?}", before.instance, after.instance)
            });
            assert!(ended <= after.start, "partition {partition} ran twice at once: {runs:?}");
            assert!(after.epoch > before.epoch, "partition {partition}'s epoch did not grow: {runs:?}");
        }
    }
}

/// Who owns each partition now, over `members`; a partition owned twice is a failure.
fn owners(members: &[&Member]) -> BTreeMap<u32, (String, Epoch)> {
    let mut owners = BTreeMap::new();
    for member in members {
        for (partition, epoch) in member.owned() {
            let earlier = owners.insert(partition, (member.instance.clone(), epoch));
            assert!(earlier.is_none(), "partition {partition} is owned by {earlier:?} and {}", member.instance);
        }
    }
    owners
}

/// Waits until `members` own exactly the rendezvous assignment over themselves; returns the owners.
async fn wait_for_assignment(members: &[&Member]) -> BTreeMap<u32, (String, Epoch)> {
    let ids: BTreeSet<String> = members.iter().map(|m| m.instance.clone()).collect();
    let wanted = assign::assignment(PARTITIONS, &ids);
    let matches =
        || owners(members).into_iter().map(|(p, (owner, _))| (p, owner)).collect::<BTreeMap<_, _>>() == wanted;
    let reached = wait_until(SETTLE_TIMEOUT, move || {
        let now = matches();
        async move { now }
    })
    .await;
    assert!(reached, "after {SETTLE_TIMEOUT:?} the owners are {:?}, not {wanted:?}", owners(members));
    owners(members)
}

/// Waits until the acquisitions counted in `moves` reach `expected` in all, then asserts it is
/// exactly that.
async fn assert_acquisitions(moves: &Mutex<BTreeMap<u32, usize>>, expected: usize, step: &str) {
    let total = || moves.lock().unwrap().values().sum::<usize>();
    wait_until(SETTLE_TIMEOUT, move || async move { total() >= expected }).await;
    assert_eq!(total(), expected, "{step}: lease acquisitions so far");
}

type Owners = BTreeMap<u32, (String, Epoch)>;

fn ids(members: &[&Member]) -> BTreeSet<String> {
    members.iter().map(|m| m.instance.clone()).collect()
}

/// One scaling step: waits for the assignment over `now`, then checks that exactly the partitions
/// whose rendezvous owner changed from `was` moved (new lease, new epoch) and no other.
async fn scaled(
    acquired: &Mutex<BTreeMap<u32, usize>>,
    total: &mut usize,
    before: (&[&Member], &Owners),
    now: &[&Member],
    step: &str,
) -> Owners {
    let (was, owned_before) = before;
    let after = wait_for_assignment(now).await;
    let fewest = assign::moves_between(PARTITIONS, &ids(was), &ids(now));
    let new_epochs = (0..PARTITIONS).filter(|p| owned_before[p].1 != after[p].1).count();
    *total += fewest;
    assert_acquisitions(acquired, *total, step).await;
    println!("{step}: {new_epochs} of {PARTITIONS} partitions moved; rendezvous hashing moves {fewest}");
    assert_eq!(new_epochs, fewest, "{step}: partitions that changed epoch");
    after
}

// Proves scaling 1 -> 2 -> 3 -> 2 members splits 16 partitions as rendezvous hashing says, and
// moves at each step exactly the partitions whose owner it changes, counted as lease creates in
// the bucket and as partitions whose epoch changed, each once; the last step is a graceful
// leave, whose partitions the others take without waiting for a lease to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_moves_the_fewest_partitions() {
    let nats = NatsCluster::start().await;
    let spans = Spans::default();
    let a = Member::join(&nats, "a", &spans).await;
    let acquired = count_moves(&nats).await;
    let alone = wait_for_assignment(&[&a]).await;
    let mut total = PARTITIONS as usize;
    assert_acquisitions(&acquired, total, "1 member").await;
    println!("1 member: all {PARTITIONS} partitions acquired");

    let b = Member::join(&nats, "b", &spans).await;
    let two = scaled(&acquired, &mut total, (&[&a], &alone), &[&a, &b], "1 -> 2").await;
    let c = Member::join(&nats, "c", &spans).await;
    let three = scaled(&acquired, &mut total, (&[&a, &b], &two), &[&a, &b, &c], "2 -> 3").await;
    c.leave().await;
    let gone = three.values().filter(|(owner, _)| owner == "c").count();
    let after = wait_for_assignment(&[&a, &b]).await;
    let new_epochs = (0..PARTITIONS).filter(|p| three[p].1 != after[p].1).count();
    total += gone;
    assert_acquisitions(&acquired, total, "3 -> 2").await;
    println!("3 -> 2: {new_epochs} of {PARTITIONS} partitions moved; rendezvous hashing moves {gone}, c's");
    assert_eq!(new_epochs, gone, "3 -> 2: only c's partitions move");
    assert_one_owner_at_a_time(&spans);
}

/// Counts, per partition, the lease acquisitions as they happen in the bucket from now on: a
/// write to `partitions.<n>` without an epoch is a create (renewals carry their epoch).
async fn count_moves(nats: &NatsCluster) -> Arc<Mutex<BTreeMap<u32, usize>>> {
    let js = async_nats::jetstream::new(nats.connect().await);
    let kv = js.get_key_value(BUCKET).await.expect("the cluster bucket exists once a member joined");
    let mut watch = kv.watch("partitions.>").await.expect("watching the leases");
    let moves = Arc::new(Mutex::new(BTreeMap::new()));
    let counted = Arc::clone(&moves);
    tokio::spawn(async move {
        while let Some(entry) = watch.next().await {
            let entry = entry.expect("a lease write");
            if entry.operation != async_nats::jetstream::kv::Operation::Put {
                continue;
            }
            let value: LeaseValue = serde_json::from_slice(&entry.value).expect("a lease value");
            let partition: u32 = entry.key.trim_start_matches("partitions.").parse().expect("partitions.<n>");
            if value.epoch.is_none() {
                *counted.lock().unwrap().entry(partition).or_insert(0) += 1;
            }
        }
    });
    moves
}

// Proves the rolling-restart target of issue "Several tallies on a NATS cluster": three members
// restarted one after another (each leaves, joins again under the same id, and the next goes
// once the partitions are back where rendezvous hashing puts them, as a StatefulSet's rolling
// update waits for readiness) move each partition at most twice: away from its restarted owner
// and back. Counted as lease creates per partition in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_moves_each_partition_at_most_twice() {
    let nats = NatsCluster::start().await;
    let spans = Spans::default();
    let mut members = vec![
        Member::join(&nats, "a", &spans).await,
        Member::join(&nats, "b", &spans).await,
        Member::join(&nats, "c", &spans).await,
    ];
    let before = wait_for_assignment(&members.iter().collect::<Vec<_>>()).await;
    let moves = count_moves(&nats).await;
    for restarted in 0..members.len() {
        let old = members.remove(restarted);
        let instance = old.instance.clone();
        old.leave().await;
        members.insert(restarted, Member::join(&nats, &instance, &spans).await);
        wait_for_assignment(&members.iter().collect::<Vec<_>>()).await;
    }
    let moves = moves.lock().unwrap().clone();
    let owned_by = |instance: &str| before.values().filter(|(owner, _)| owner == instance).count();
    println!(
        "rolling restart of a ({} partitions), b ({}), c ({}): moves per partition {moves:?}, {} in all",
        owned_by("a"),
        owned_by("b"),
        owned_by("c"),
        moves.values().sum::<usize>()
    );
    assert_eq!(moves.len(), PARTITIONS as usize, "every partition's owner was restarted once: each moved");
    assert!(moves.values().all(|n| (1..=2).contains(n)), "a partition moved more than twice: {moves:?}");
    assert_one_owner_at_a_time(&spans);
}

// Proves three members joining at once split the partitions with no partition owned twice,
// and that a member that stops heartbeating and renewing (crashed, not left) loses its
// partitions to the others once its leases expire, each under a higher epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_loses_its_partitions_after_the_lease_ttl() {
    let nats = NatsCluster::start().await;
    let spans = Spans::default();
    let (a, b, c) = tokio::join!(
        Member::join(&nats, "a", &spans),
        Member::join(&nats, "b", &spans),
        Member::join(&nats, "c", &spans)
    );
    let split = wait_for_assignment(&[&a, &b, &c]).await;
    let of_c: BTreeMap<u32, Epoch> = split.iter().filter(|(_, (o, _))| o == "c").map(|(p, (_, e))| (*p, *e)).collect();
    assert!(!of_c.is_empty(), "c owns some of {split:?}");
    c.crash();
    let after = wait_for_assignment(&[&a, &b]).await;
    for (partition, epoch) in &of_c {
        let (owner, now) = &after[partition];
        assert!(now > epoch, "partition {partition}: {owner}'s epoch {now:?} is not above c's {epoch:?}");
    }
    for (partition, (owner, epoch)) in split.iter().filter(|(_, (o, _))| o != "c") {
        assert_eq!(&after[partition], &(owner.clone(), *epoch), "partition {partition} did not move");
    }
    let members = a.cluster.as_ref().expect("joined").members().borrow().keys().cloned().collect::<Vec<_>>();
    assert_eq!(members, ["a", "b"], "c's member entry expired");
    assert_one_owner_at_a_time(&spans);
    drop((a, b));
}

// Proves the settle is waited after a graceful leave (the member may be back at once, as in a
// rolling restart) but not after a crash: a crashed member's partitions are taken as soon as
// its leases expire. With a 12 s settle and 3 s leases, c's partitions are with a and b well
// before the settle could have passed since c's entry expired (about 3 s after the crash);
// b's, after b leaves, are still not with a 6 s later, and are once the settle has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_not_waited_out_but_a_graceful_leave_is() {
    const SETTLE: Duration = Duration::from_secs(12);
    let nats = NatsCluster::start().await;
    let spans = Spans::default();
    let slow = |instance: &str| Settings { settle: SETTLE, ..settings(instance) };
    let (a, b, c) = tokio::join!(
        Member::join_with(&nats, slow("a"), &spans),
        Member::join_with(&nats, slow("b"), &spans),
        Member::join_with(&nats, slow("c"), &spans)
    );
    let split = wait_for_assignment(&[&a, &b, &c]).await;
    let of =
        |owner: &str| -> BTreeSet<u32> { split.iter().filter(|(_, (o, _))| o == owner).map(|(p, _)| *p).collect() };
    assert!(!of("c").is_empty() && !of("b").is_empty(), "b and c own some of {split:?}");

    let crashed = Instant::now();
    c.crash();
    let taken = wait_until(SETTLE, || {
        let owned: BTreeSet<u32> = owners(&[&a, &b]).into_keys().collect();
        let all = of("c").is_subset(&owned);
        async move { all }
    })
    .await;
    assert!(taken, "c's partitions {:?} still not taken {SETTLE:?} after its crash: {:?}", of("c"), owners(&[&a, &b]));
    println!("c's partitions taken {:?} after its crash", crashed.elapsed());
    wait_for_assignment(&[&a, &b]).await;

    let of_b: BTreeSet<u32> = b.owned().into_keys().collect();
    b.leave().await;
    tokio::time::sleep(SETTLE / 2).await;
    let with_a: BTreeSet<u32> = a.owned().into_keys().collect();
    assert!(with_a.is_disjoint(&of_b), "a took b's partitions {of_b:?} before settling: it holds {with_a:?}");
    wait_for_assignment(&[&a]).await;
    assert_one_owner_at_a_time(&spans);
}

// Proves a renewal refused because someone else wrote the lease stops the partition at once:
// while an intruder keeps its own lease on partition 5 alive (so it never expires), the member
// stops running 5 and only 5; once the intruder deletes its lease the member takes 5 again,
// under an epoch above every revision the intruder wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renewal_stops_the_partition_at_once() {
    let nats = NatsCluster::start().await;
    let spans = Spans::default();
    let a = Member::join(&nats, "a", &spans).await;
    let before = wait_for_assignment(&[&a]).await;

    let js = async_nats::jetstream::new(nats.connect().await);
    let kv = js.get_key_value(BUCKET).await.expect("the cluster bucket");
    let intruder = LeaseValue { instance: "intruder".into(), session: "i".into(), epoch: None };
    let value: bytes::Bytes = serde_json::to_vec(&intruder).unwrap().into();
    let mut revision = kv.put(lease_key(5), value.clone()).await.expect("the intruder's write");
    let a_ref = &a;
    let stopped = wait_until(SETTLE_TIMEOUT, move || async move { !a_ref.owned().contains_key(&5) });
    tokio::pin!(stopped);
    // Renew the intruder's lease while waiting, so that only a refused renewal can stop 5.
    let stopped = loop {
        tokio::select! {
            stopped = &mut stopped => break stopped,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                revision = kv.update(lease_key(5), value.clone(), revision).await.expect("the intruder renews its lease");
            }
        }
    };
    assert!(stopped, "a still runs partition 5 under the intruder's lease: {:?}", a.owned());
    let entry = kv.entry(lease_key(5)).await.expect("reading partition 5").expect("the intruder's lease");
    assert_eq!(entry.revision, revision, "the intruder's lease still stands");
    let now = a.owned();
    for (partition, (_, epoch)) in before.iter().filter(|(p, _)| **p != 5) {
        assert_eq!(now.get(partition), Some(epoch), "partition {partition} kept running under its epoch");
    }

    kv.delete_expect_revision(lease_key(5), Some(revision)).await.expect("the intruder releases");
    let after = wait_for_assignment(&[&a]).await;
    assert!(
        after[&5].1 > Epoch(revision),
        "partition 5's new epoch {:?} is above the intruder's {revision}",
        after[&5].1
    );
    assert_one_owner_at_a_time(&spans);
}

// Proves that killing (SIGKILL) the NATS server that leads the bucket's stream while three
// members renew gives no partition two owners at any time; the members recover the full split,
// and every partition that changed hands did so under a higher epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_bucket_leader_never_gives_a_partition_two_owners() {
    let mut nats = NatsCluster::start().await;
    let spans = Spans::default();
    let (a, b, c) = tokio::join!(
        Member::join(&nats, "a", &spans),
        Member::join(&nats, "b", &spans),
        Member::join(&nats, "c", &spans)
    );
    let before = wait_for_assignment(&[&a, &b, &c]).await;

    let js = async_nats::jetstream::new(nats.connect().await);
    let stream = format!("KV_{BUCKET}");
    let info = js.get_stream(&stream).await.expect("the bucket's stream").get_info().await.expect("stream info");
    let leader = info.cluster.and_then(|c| c.leader).expect("an R3 stream has a leader");
    let written_before = info.state.last_sequence;
    println!("killing {leader}, the leader of {stream}");
    nats.node_mut(&leader).kill();
    let js = &js;
    let (stream, killed) = (&stream, &leader);
    let new_leader = wait_until(SETTLE_TIMEOUT, move || async move {
        let Ok(stream) = js.get_stream(stream).await else { return false };
        let leader = stream.get_info().await.ok().and_then(|i| i.cluster).and_then(|c| c.leader);
        leader.is_some_and(|l| l != *killed)
    })
    .await;
    assert!(new_leader, "{stream} has no new leader after {leader} was killed");
    // Look at the split only once every lease was written again under the new leader.
    let kv = js.get_key_value(BUCKET).await.expect("the cluster bucket");
    let kv = &kv;
    let rewritten = wait_until(SETTLE_TIMEOUT, move || async move {
        for partition in 0..PARTITIONS {
            match kv.entry(lease_key(partition)).await {
                Ok(Some(entry)) if entry.revision > written_before => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    assert!(rewritten, "not every lease was renewed or taken again after {leader} died");

    let after = wait_for_assignment(&[&a, &b, &c]).await;
    let moved = (0..PARTITIONS).filter(|p| before[p].1 != after[p].1).count();
    println!("after the leader died, {moved} of {PARTITIONS} partitions were stopped and taken again");
    assert_one_owner_at_a_time(&spans);
    drop((a, b, c));
}
