use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn deliver(store: &str, seq: u64) -> Option<Job> {
    Some(Job::Deliver { store: store.into(), seq })
}

/// Offers `(store, seq)` postings from the main consumer; the handle is the sequence.
fn offer_all(schedule: &mut Schedule<u64>, postings: &[(&str, u64)]) {
    for &(store, seq) in postings {
        assert_eq!(schedule.offer(store, seq, seq, Source::Main), Offered::Held, "{store} {seq}");
    }
}

// Proves a store's postings go out one at a time in stream order while other stores go ahead,
// the oldest posting first.
#[test]
fn one_posting_per_store_in_order_stores_side_by_side() {
    let now = Instant::now();
    let mut schedule = Schedule::new(8, 1024);
    offer_all(&mut schedule, &[("A", 1), ("A", 2), ("B", 3), ("A", 4), ("B", 5)]);
    assert_eq!(schedule.next(now), deliver("A", 1));
    assert_eq!(schedule.next(now), deliver("B", 3));
    assert_eq!(schedule.next(now), None, "A and B each have a posting in flight");
    assert_eq!(schedule.finished("B", 3, true), 3);
    assert_eq!(schedule.next(now), deliver("B", 5));
    assert_eq!(schedule.finished("A", 1, true), 1);
    assert_eq!(schedule.next(now), deliver("A", 2));
    assert_eq!(schedule.finished("A", 2, true), 2);
    assert_eq!(schedule.next(now), deliver("A", 4));
    assert_eq!(schedule.waiting("A"), 1);
    assert_eq!(schedule.waiting("B"), 1);
}

// Proves at most `concurrency` postings are in flight across stores.
#[test]
fn concurrency_bounds_postings_in_flight() {
    let now = Instant::now();
    let mut schedule = Schedule::new(2, 1024);
    offer_all(&mut schedule, &[("A", 1), ("B", 2), ("C", 3)]);
    assert_eq!(schedule.next(now), deliver("A", 1));
    assert_eq!(schedule.next(now), deliver("B", 2));
    assert_eq!(schedule.next(now), None, "two in flight");
    schedule.finished("A", 1, true);
    assert_eq!(schedule.next(now), deliver("C", 3));
}

// Proves a failing store backs off alone, with its wait doubling, without holding a slot, and
// is retried with the same posting before its later ones.
#[test]
fn a_failing_store_backs_off_alone() {
    let now = Instant::now();
    let mut schedule = Schedule::new(1, 1024);
    offer_all(&mut schedule, &[("A", 1), ("A", 2), ("B", 3), ("B", 4)]);
    assert_eq!(schedule.next(now), deliver("A", 1));
    assert_eq!(schedule.failed("A", 1, now), BACKOFF_MIN);
    assert_eq!(schedule.next_wakeup(), Some(now + BACKOFF_MIN));
    assert_eq!(schedule.next(now), deliver("B", 3), "the slot went to B");
    schedule.finished("B", 3, true);
    assert_eq!(schedule.next(now), deliver("B", 4));
    schedule.finished("B", 4, true);
    assert_eq!(schedule.next(now), None, "A waits out its backoff");
    let later = now + BACKOFF_MIN;
    assert_eq!(schedule.next(later), deliver("A", 1), "the same posting again");
    assert_eq!(schedule.failed("A", 1, later), BACKOFF_MIN * 2);
    let later = later + BACKOFF_MIN * 2;
    assert_eq!(schedule.next(later), deliver("A", 1));
    schedule.finished("A", 1, true);
    assert_eq!(schedule.next(later), deliver("A", 2));
    assert_eq!(schedule.failed("A", 2, later), BACKOFF_MIN, "a success starts the backoff again");
}

// Proves the backoff stops doubling at its maximum.
#[test]
fn backoff_is_capped() {
    let mut now = Instant::now();
    let mut schedule = Schedule::new(1, 1024);
    offer_all(&mut schedule, &[("A", 1)]);
    let mut last = Duration::ZERO;
    for _ in 0..20 {
        assert_eq!(schedule.next(now), deliver("A", 1));
        last = schedule.failed("A", 1, now);
        now += last;
    }
    assert_eq!(last, BACKOFF_MAX);
}

// Proves a redelivery of a posting finished in this run without a confirmed ack is acked again,
// not sent, and that a redelivery of a held one replaces its handle.
#[test]
fn redeliveries_are_recognised() {
    let now = Instant::now();
    let mut schedule = Schedule::new(1, 1024);
    offer_all(&mut schedule, &[("A", 1), ("A", 2)]);
    assert_eq!(schedule.offer("A", 2, 20, Source::Main), Offered::Again(2));
    assert_eq!(schedule.item("A", 2), Some(&20));
    assert_eq!(schedule.next(now), deliver("A", 1));
    schedule.finished("A", 1, false);
    assert_eq!(schedule.offer("A", 1, 10, Source::Main), Offered::Done(10));
    assert_eq!(schedule.next(now), deliver("A", 2));
    assert_eq!(schedule.finished("A", 2, true), 20);
    assert_eq!(schedule.main_held(), 0);
}

// Proves that after a restart nothing goes out until the postings the last run left unacked
// are back, so that a store's new posting cannot overtake a redelivered older one.
#[test]
fn the_gate_waits_for_the_postings_left_unacked() {
    let now = Instant::now();
    let mut schedule = Schedule::new(8, 1024);
    schedule.close_gate(10, 2, now + Duration::from_secs(60));
    offer_all(&mut schedule, &[("A", 12), ("B", 11)]);
    assert_eq!(schedule.next(now), None, "new postings wait");
    offer_all(&mut schedule, &[("A", 9)]);
    assert_eq!(schedule.next(now), None, "one of two is back");
    offer_all(&mut schedule, &[("B", 4)]);
    assert_eq!(schedule.next(now), deliver("B", 4));
    assert_eq!(schedule.next(now), deliver("A", 9));
    schedule.finished("A", 9, true);
    assert_eq!(schedule.next(now), deliver("A", 12));
}

// Proves the gate opens at its deadline even when a posting never comes back (it was removed
// from the stream meanwhile).
#[test]
fn the_gate_opens_at_its_deadline() {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(45);
    let mut schedule = Schedule::new(8, 1024);
    schedule.close_gate(10, 3, deadline);
    offer_all(&mut schedule, &[("A", 12)]);
    assert_eq!(schedule.next_wakeup(), Some(deadline));
    assert_eq!(schedule.next(now), None);
    assert_eq!(schedule.next(deadline), deliver("A", 12));
    assert_eq!(schedule.next_wakeup(), None);
}

// Proves a gate with nothing pending lets everything through at once.
#[test]
fn no_gate_without_pending_postings() {
    let now = Instant::now();
    let mut schedule = Schedule::new(8, 1024);
    schedule.close_gate(10, 0, now + Duration::from_secs(45));
    offer_all(&mut schedule, &[("A", 12)]);
    assert_eq!(schedule.next(now), deliver("A", 12));
}

// Proves a posting that comes back after the gate, older than one of its store already handed
// out, is reported late and still goes out next: never skipped, though a later one of its store
// was finished (and acked) meanwhile.
#[test]
fn a_late_posting_is_sent_not_skipped() {
    let now = Instant::now();
    let mut schedule = Schedule::new(8, 1024);
    offer_all(&mut schedule, &[("A", 12)]);
    assert_eq!(schedule.next(now), deliver("A", 12));
    assert_eq!(schedule.offer("A", 9, 9, Source::Main), Offered::Late);
    schedule.finished("A", 12, true);
    assert_eq!(schedule.next(now), deliver("A", 9));
    schedule.finished("A", 9, true);
    assert_eq!(schedule.offer("A", 7, 7, Source::Main), Offered::Late, "older than a finished one");
    assert_eq!(schedule.next(now), deliver("A", 7));
}

/// A schedule whose window (100, crowded from 100 - WINDOW_HEADROOM = 36 on) holds store A's
/// postings 1..=20, B's 100..=115 and C's 200..=229.
fn crowded_schedule() -> Schedule<u64> {
    let mut schedule = Schedule::new(8, 100);
    for seq in 1..=20 {
        offer_all(&mut schedule, &[("A", seq)]);
    }
    assert_eq!(schedule.crowded(), None, "20 of 100 is not crowded");
    for seq in 100..=115 {
        offer_all(&mut schedule, &[("B", seq)]);
    }
    for seq in 200..=229 {
        offer_all(&mut schedule, &[("C", seq)]);
    }
    schedule
}

// Proves a crowded window moves the store holding the most postings to its own consumer from
// its second posting on: its first finishes from memory, the rest come from the own consumer,
// and the main consumer's later postings of it are handed over.
#[test]
fn a_crowding_store_moves_to_its_own_consumer() {
    let now = Instant::now();
    let mut schedule = crowded_schedule();
    assert_eq!(schedule.main_held(), 66);
    assert_eq!(schedule.crowded(), Some(("C".into(), 201)));
    assert_eq!(schedule.next(now), deliver("A", 1));
    assert_eq!(schedule.next(now), deliver("B", 100));
    assert_eq!(schedule.next(now), deliver("C", 200));
    schedule.moving("C", 201);
    assert_eq!(schedule.crowded(), None, "one move at a time");
    schedule.finished("C", 200, true);
    assert_eq!(schedule.next(now), None, "C's postings from 201 on wait for the move");
    offer_all(&mut schedule, &[("C", 230)]);
    let handed_over = schedule.moved("C");
    assert_eq!(handed_over, (201..=230).collect::<Vec<_>>());
    assert_eq!(schedule.main_held(), 20 + 16, "A's and B's");
    assert_eq!(schedule.offer("C", 231, 231, Source::Main), Offered::Moved(231));
    assert_eq!(schedule.next(now), Some(Job::Fetch { store: "C".into() }));
    assert_eq!(schedule.offer("C", 201, 201, Source::Own), Offered::Held);
    assert!(!schedule.fetch_done("C", Fetched::Posting, now));
    assert_eq!(schedule.next(now), deliver("C", 201));
    schedule.finished("C", 201, true);
    assert_eq!(schedule.next(now), Some(Job::Fetch { store: "C".into() }));
    assert!(!schedule.fetch_done("C", Fetched::Drained { upto: 230 }, now), "231 was handed over");
    assert_eq!(schedule.next(now), None, "C asks again later");
    let later = now + FETCH_AGAIN;
    assert_eq!(schedule.next(later), Some(Job::Fetch { store: "C".into() }));
    assert!(schedule.fetch_done("C", Fetched::Drained { upto: 231 }, later), "C goes back");
    assert_eq!(schedule.offer("C", 240, 240, Source::Main), Offered::Held);
    assert_eq!(schedule.next(later), deliver("C", 240));
}

// Proves a failed move leaves the store's postings with the main consumer, in order.
#[test]
fn a_failed_move_keeps_the_postings() {
    let now = Instant::now();
    let mut schedule = crowded_schedule();
    schedule.moving("C", 201);
    schedule.move_failed("C");
    assert_eq!(schedule.waiting("C"), 30);
    let mut sent = Vec::new();
    while let Some(job) = schedule.next(now) {
        if let Job::Deliver { store, seq } = job {
            schedule.finished(&store, seq, true);
            sent.push(seq);
        }
    }
    assert_eq!(sent.len(), 66);
    assert!(sent.iter().filter(|&&s| s >= 200).is_sorted(), "C in order: {sent:?}");
}

// Proves a store that moved in an earlier run fetches from its own consumer after the
// postings of the main consumer before the move.
#[test]
fn a_restored_move_delivers_the_main_postings_first() {
    let now = Instant::now();
    let mut schedule = Schedule::new(8, 1024);
    schedule.restore_own("A", 5);
    offer_all(&mut schedule, &[("A", 3)]);
    assert_eq!(schedule.offer("A", 6, 6, Source::Main), Offered::Moved(6));
    assert_eq!(schedule.next(now), deliver("A", 3));
    assert_eq!(schedule.next(now), None);
    schedule.finished("A", 3, true);
    assert_eq!(schedule.next(now), Some(Job::Fetch { store: "A".into() }));
}

/// One step of a random run: a posting offered, a job outcome, a redelivery, or time passing.
#[derive(Debug, Clone)]
enum Step {
    Offer {
        store: u8,
    },
    Succeed {
        acked: bool,
    },
    Fail,
    /// The server delivers an earlier posting again (the `n`th offered, modulo).
    Redeliver {
        n: usize,
    },
    Wait {
        millis: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..5).prop_map(|store| Step::Offer { store }),
        3 => any::<bool>().prop_map(|acked| Step::Succeed { acked }),
        1 => Just(Step::Fail),
        1 => any::<usize>().prop_map(|n| Step::Redeliver { n }),
        1 => (0u64..5_000).prop_map(|millis| Step::Wait { millis }),
    ]
}

/// A random run's bookkeeping: what was offered, what is in flight, what was finished.
#[derive(Default)]
struct Run {
    offered: Vec<(String, u64)>,
    in_flight: Vec<(String, u64)>,
    finished: BTreeMap<String, Vec<u64>>,
    /// Finished with a confirmed ack: the server never delivers these again.
    acked: std::collections::BTreeSet<u64>,
    /// Finished without one: a redelivery must be recognised.
    unacked: std::collections::BTreeSet<u64>,
}

impl Run {
    fn dispatch(&mut self, schedule: &mut Schedule<u64>, now: Instant, concurrency: usize) {
        while let Some(job) = schedule.next(now) {
            let Job::Deliver { store, seq } = job else { panic!("no own consumers here") };
            assert!(!self.in_flight.iter().any(|(s, _)| *s == store), "two postings of {store} in flight");
            self.in_flight.push((store, seq));
            assert!(self.in_flight.len() <= concurrency);
        }
    }

    fn finish(&mut self, schedule: &mut Schedule<u64>, acked: bool) {
        let (store, seq) = self.in_flight.remove(0);
        assert_eq!(schedule.finished(&store, seq, acked), seq);
        self.finished.entry(store).or_default().push(seq);
        if acked {
            self.acked.insert(seq)
        } else {
            self.unacked.insert(seq)
        };
    }

    fn redeliver(&mut self, schedule: &mut Schedule<u64>, n: usize) {
        let Some((store, seq)) = self.offered.get(n % self.offered.len().max(1)).cloned() else { return };
        if self.acked.contains(&seq) {
            return;
        }
        let expected = if self.unacked.contains(&seq) { Offered::Done(seq) } else { Offered::Again(seq) };
        assert_eq!(schedule.offer(&store, seq, seq, Source::Main), expected, "{store} {seq}");
    }
}

proptest! {
    // Proves, over random arrivals, failures, redeliveries and waits: every store's postings are
    // finished in stream order and each once, never more than `concurrency` are in flight, never
    // two of one store, a redelivery is recognised, and once the ERP answers every posting is
    // finished.
    #[test]
    fn random_runs_keep_store_order(steps in proptest::collection::vec(step(), 1..300), concurrency in 1usize..4) {
        let mut now = Instant::now();
        let mut schedule = Schedule::new(concurrency, 1024);
        let mut run = Run::default();
        for step in steps {
            match step {
                Step::Offer { store } => {
                    let (store, seq) = (format!("S{store}"), run.offered.len() as u64 + 1);
                    prop_assert_eq!(schedule.offer(&store, seq, seq, Source::Main), Offered::Held);
                    run.offered.push((store, seq));
                }
                Step::Succeed { .. } | Step::Fail if run.in_flight.is_empty() => {}
                Step::Succeed { acked } => run.finish(&mut schedule, acked),
                Step::Fail => {
                    let (store, seq) = run.in_flight.remove(0);
                    schedule.failed(&store, seq, now);
                }
                Step::Redeliver { n } => run.redeliver(&mut schedule, n),
                Step::Wait { millis } => now += Duration::from_millis(millis),
            }
            run.dispatch(&mut schedule, now, concurrency);
        }
        // The ERP recovers: everything held goes out.
        while !run.in_flight.is_empty() || schedule.next_wakeup().is_some() {
            while !run.in_flight.is_empty() {
                run.finish(&mut schedule, true);
            }
            now += BACKOFF_MAX;
            run.dispatch(&mut schedule, now, concurrency);
        }
        for (store, seqs) in &run.finished {
            prop_assert!(seqs.is_sorted(), "{} out of order: {:?}", store, seqs);
        }
        prop_assert_eq!(run.finished.values().map(Vec::len).sum::<usize>(), run.offered.len(), "each finished once");
        prop_assert_eq!(schedule.main_held(), 0);
    }
}
