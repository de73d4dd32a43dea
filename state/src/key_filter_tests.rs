use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

fn key(i: u32) -> Vec<u8> {
    format!("store-0042/id-{i:08}").into_bytes()
}

fn put_batch(keys: impl IntoIterator<Item = Vec<u8>>) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for key in keys {
        batch.put(Cf::Dedupe, key, b"v".to_vec());
    }
    batch
}

/// Writes `batch` as a store does: its keys into the filter, then (here) into `held`.
fn write(filter: &KeyFilter, held: &Mutex<BTreeSet<Vec<u8>>>, batch: &WriteBatch) {
    let writing = filter.writing(batch);
    held.lock().unwrap().extend(batch.ops().map(|op| op.key().to_vec()));
    filter.written(writing, || held.lock().unwrap().len() as u64);
}

/// Runs the filter's scans over `held` on a thread, as `RocksStore` does over its families.
fn scan_thread(filter: &Arc<KeyFilter>, held: &Arc<Mutex<BTreeSet<Vec<u8>>>>) -> std::thread::JoinHandle<()> {
    let (filter, held) = (Arc::clone(filter), Arc::clone(held));
    std::thread::spawn(move || {
        let scan = |insert: &dyn Fn(Cf, &[u8]), stop: &AtomicBool| {
            let keys: Vec<_> = held.lock().unwrap().iter().cloned().collect();
            for key in keys {
                if stop.load(Ordering::Acquire) {
                    return Ok::<_, ()>(false);
                }
                insert(Cf::Dedupe, &key);
            }
            Ok(true)
        };
        filter.run_scans(scan).unwrap();
    })
}

fn wait_for_scans(filter: &KeyFilter, scans: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while filter.stats().scans < scans {
        assert!(Instant::now() < deadline, "scan {scans} did not complete: {:?}", filter.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_bloom_never_forgets_and_rarely_guesses() {
    let bloom = Bloom::with_capacity(100_000);
    (0..100_000).for_each(|i| bloom.insert(Cf::Dedupe, &key(i)));
    assert!((0..100_000).all(|i| bloom.may_contain(Cf::Dedupe, &key(i))));
    let guessed = (100_000..200_000).filter(|&i| bloom.may_contain(Cf::Dedupe, &key(i))).count();
    // 10 bits and 6 probes per key in 512-bit blocks: about 1 %.
    assert!(guessed < 2_000, "{guessed} false positives in 100 000");
    // A key is its family and its bytes.
    assert!(!bloom.may_contain(Cf::Voids, &key(7)) || !bloom.may_contain(Cf::Voids, &key(8)));
    assert!(bloom.keys() > 99_000 && !bloom.is_full());
}

#[test]
fn nothing_is_answered_before_the_first_scan_completes() {
    let filter = KeyFilter::new(0, 64);
    assert!(filter.may_contain(Cf::Dedupe, &key(1)));
    assert_eq!(filter.stats().answered, 0);
    assert_eq!(filter.stats().passed, 1);
}

#[test]
fn keys_held_before_and_written_during_the_scan_are_kept_and_others_answered() {
    let held = Arc::new(Mutex::new((0..1_000).map(key).collect::<BTreeSet<_>>()));
    let filter = KeyFilter::new(1_000, 64);
    // Written before the scan runs: only the write put them in.
    write(&filter, &held, &put_batch((1_000..1_100).map(key)));
    let scanner = scan_thread(&filter, &held);
    wait_for_scans(&filter, 1);
    assert!((0..1_100).all(|i| filter.may_contain(Cf::Dedupe, &key(i))));
    let answered = (5_000..6_000).filter(|&i| !filter.may_contain(Cf::Dedupe, &key(i))).count();
    assert!(answered > 950, "only {answered} of 1 000 absent keys answered");
    assert_eq!(filter.stats().answered, answered as u64);
    filter.stop();
    scanner.join().unwrap();
}

#[test]
fn a_full_filter_keeps_answering_while_a_larger_one_is_built() {
    let held = Arc::new(Mutex::new(BTreeSet::new()));
    let filter = KeyFilter::new(0, 64);
    let scanner = scan_thread(&filter, &held);
    wait_for_scans(&filter, 1);
    let first = filter.stats().bytes;
    for chunk in (0..2_000u32).collect::<Vec<_>>().chunks(50) {
        write(&filter, &held, &put_batch(chunk.iter().map(|&i| key(i))));
        // Every key written is there at every moment, whichever filter answers.
        assert!(chunk.iter().all(|&i| filter.may_contain(Cf::Dedupe, &key(i))));
    }
    wait_for_scans(&filter, 2);
    // The rebuilds that the last writes started finish in the background (on a loaded machine,
    // well after the writes): wait for a filter sized for all the keys to answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = filter.stats();
        let answered = (10_000..11_000).filter(|&i| !filter.may_contain(Cf::Dedupe, &key(i))).count();
        if stats.bytes > first * 4 && answered > 900 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats:?}, first {first} bytes, {answered} of 1 000 absent keys answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!((0..2_000).all(|i| filter.may_contain(Cf::Dedupe, &key(i))));
    filter.stop();
    scanner.join().unwrap();
}

// Proves a filter that its scan leaves over its size is rebuilt at once: no later write may
// come to start the larger one (a store written no more).
#[test]
fn a_filter_filled_past_its_size_during_its_scan_is_rebuilt_without_another_write() {
    let held = Arc::new(Mutex::new(BTreeSet::new()));
    let filter = KeyFilter::new(0, 64);
    // Written before the first scan completes: it ends with 2 000 keys in a filter made for 64.
    write(&filter, &held, &put_batch((0..2_000u32).map(key)));
    let scanner = scan_thread(&filter, &held);
    wait_for_scans(&filter, 2);
    let stats = filter.stats();
    assert!(stats.keys >= 1_800, "{stats:?}");
    assert!((0..2_000).all(|i| filter.may_contain(Cf::Dedupe, &key(i))));
    let answered = (10_000..11_000).filter(|&i| !filter.may_contain(Cf::Dedupe, &key(i))).count();
    assert!(answered > 950, "only {answered} of 1 000 absent keys answered: {stats:?}");
    filter.stop();
    scanner.join().unwrap();
}

#[test]
fn other_families_always_go_to_the_store() {
    let held = Arc::new(Mutex::new(BTreeSet::new()));
    let filter = KeyFilter::new(0, 64);
    let scanner = scan_thread(&filter, &held);
    wait_for_scans(&filter, 1);
    assert!(filter.may_contain(Cf::Outbox, b"never written"));
    assert!(filter.may_contain(Cf::Meta, b"position"));
    assert!(!filter.may_contain(Cf::Voids, b"never written"));
    filter.stop();
    scanner.join().unwrap();
}

#[test]
fn a_stopped_scan_lets_no_filter_answer() {
    let filter = KeyFilter::new(0, 64);
    filter.stop();
    let result = filter.run_scans(|_: &dyn Fn(Cf, &[u8]), _: &AtomicBool| -> Result<bool, ()> {
        panic!("a stopped filter runs no scan")
    });
    assert_eq!(result, Ok(()));
    assert!(filter.may_contain(Cf::Dedupe, &key(1)));
}

#[test]
fn a_failed_scan_leaves_the_filter_passing_everything() {
    let filter = KeyFilter::new(0, 64);
    let result = filter.run_scans(|_: &dyn Fn(Cf, &[u8]), _: &AtomicBool| Err::<bool, _>("disk gone"));
    assert_eq!(result, Err("disk gone"));
    assert!(filter.may_contain(Cf::Dedupe, &key(1)));
    assert_eq!(filter.stats().scans, 0);
}

#[test]
fn a_key_written_after_the_scan_began_is_kept() {
    let filter = KeyFilter::new(0, 64);
    let held = Mutex::new(BTreeSet::new());
    let result = filter.run_scans(|insert: &dyn Fn(Cf, &[u8]), _: &AtomicBool| {
        // The scan's view holds key 1; key 2 lands after the scan read past where it sorts.
        insert(Cf::Dedupe, &key(1));
        write(&filter, &held, &put_batch([key(2)]));
        filter.stop();
        Ok::<_, ()>(true)
    });
    assert_eq!(result, Ok(()));
    assert_eq!(filter.stats().scans, 1);
    assert!(filter.may_contain(Cf::Dedupe, &key(1)));
    assert!(filter.may_contain(Cf::Dedupe, &key(2)));
    assert!(!filter.may_contain(Cf::Dedupe, &key(3)));
}

#[test]
fn a_state_that_deletes_as_much_as_it_adds_keeps_a_filter_of_its_size() {
    // Retention deletes old days as new ones come: the keys held stay about 1 000, while 100 000
    // distinct keys pass through. Rebuilt for what the store holds (plus what was written while
    // its scan ran), the filter stays small; sized by what the full one counted (every key
    // deleted since included), it doubled at every rebuild: 94 KiB in one run, against 3 KiB.
    let held = Arc::new(Mutex::new(BTreeSet::new()));
    let filter = KeyFilter::new(0, 64);
    let scanner = scan_thread(&filter, &held);
    wait_for_scans(&filter, 1);
    for i in 0..100_000u32 {
        write(&filter, &held, &put_batch([key(i)]));
        if i >= 1_000 {
            held.lock().unwrap().remove(&key(i - 1_000));
        }
    }
    let stats = filter.stats();
    assert!(stats.scans >= 10, "{stats:?}");
    // 1 000 keys at 10 bits are 1.2 KiB; the bound leaves room for the keys written during a
    // scan, which the thread scheduling decides.
    assert!(stats.bytes <= 64 << 10, "{stats:?}");
    filter.stop();
    scanner.join().unwrap();
}
