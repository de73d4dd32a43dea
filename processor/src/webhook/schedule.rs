//! Which ERP posting the webhook sends next (docs/configuration.md, "ERP webhook"). Pure: no
//! I/O and no clock of its own (the caller passes `now`), so the ordering rules are tested in
//! microseconds.
//!
//! - Per store, postings go in stream order: a store's posting is handed out only once every
//!   earlier posting of that store is delivered or parked, and a store has at most one posting
//!   in flight.
//! - Stores are independent: at most `concurrency` postings are in flight across stores, and a
//!   store whose ERP call failed waits out its own backoff without holding a slot.
//! - After a restart nothing is handed out until the postings the previous run left unacked are
//!   back (the gate): JetStream redelivers those only after their ack wait, but hands out newer
//!   postings at once, so without the gate a store's newer posting could overtake an older one.
//! - A store whose postings crowd the window (the consumer's `max_ack_pending`) moves its later
//!   postings to a consumer of its own, so that the other stores keep receiving theirs.
//!
//! It must never hand out a posting while an earlier posting of the same store is held.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// The first wait after a failed attempt; doubles per failure of the same store up to
/// [`BACKOFF_MAX`], and starts again at the store's next success.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
const _: () = assert!(BACKOFF_MIN.as_millis() < BACKOFF_MAX.as_millis());
/// Postings per store remembered as finished without a confirmed ack; the oldest are forgotten
/// beyond (the server has long redelivered them, or had the ack after all).
const UNACKED_MAX: usize = 1024;
/// How long a store whose own consumer had nothing waits before asking it again.
pub const FETCH_AGAIN: Duration = Duration::from_secs(1);
/// The window is crowded when fewer than this many of its places are free: room for what
/// arrives while a store moves to its own consumer.
pub const WINDOW_HEADROOM: usize = 64;

/// Where a posting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The webhook's consumer, over every store.
    Main,
    /// The store's own consumer, once the store has moved.
    Own,
}

/// What became of an offered posting.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered<T> {
    /// Held; it goes out in its turn.
    Held,
    /// Held, though a later posting of its store was handed out already: a posting left unacked
    /// by the last run that came back after the gate opened. It goes out next (out of order, but
    /// never skipped); the caller warns.
    Late,
    /// Already held: the new delivery replaces it, and the older handle is returned.
    Again(T),
    /// Delivered or parked earlier in this run, and its ack was not confirmed: ack it again,
    /// send nothing.
    Done(T),
    /// The store's own consumer delivers it: ack it on the main consumer, send nothing.
    Moved(T),
}

/// Work for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// POST the posting, then report [`Schedule::finished`] or [`Schedule::failed`].
    Deliver { store: String, seq: u64 },
    /// Fetch the next posting from the store's own consumer (offer it as [`Source::Own`]), then
    /// report [`Schedule::fetch_done`].
    Fetch { store: String },
}

/// How a [`Job::Fetch`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// A posting came and was offered.
    Posting,
    /// Nothing came, or the fetch failed: ask again after [`FETCH_AGAIN`].
    Nothing,
    /// The own consumer has delivered and acked everything up to stream sequence `upto`, and
    /// nothing more is waiting in the stream for it.
    Drained { upto: u64 },
}

struct Entry<T> {
    item: T,
    source: Source,
}

/// A store's move to its own consumer.
struct Own {
    /// The first stream sequence the own consumer delivers.
    from: u64,
    /// False while the consumer is being created: the postings from `from` on are still held
    /// here then, and none of them is handed out.
    ready: bool,
    /// The highest posting the main consumer handed over to the own consumer in this run.
    moved_max: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Busy {
    Delivering(u64),
    Fetching,
}

/// Where a store sits in the indexes: ready to deliver its head, ready to fetch, or asleep.
#[derive(Clone, PartialEq, Eq)]
enum Key {
    Ready(u64),
    Fetch,
    Sleeping(Instant),
}

struct StoreState<T> {
    held: BTreeMap<u64, Entry<T>>,
    busy: Option<Busy>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// The highest stream sequence of this store delivered or parked in this run.
    done_upto: u64,
    /// Postings delivered or parked in this run whose ack the server did not confirm: the only
    /// finished ones it may deliver again.
    unacked: BTreeSet<u64>,
    own: Option<Own>,
    key: Option<Key>,
}

impl<T> StoreState<T> {
    fn new() -> Self {
        StoreState {
            held: BTreeMap::new(),
            busy: None,
            retry_at: None,
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            done_upto: 0,
            unacked: BTreeSet::new(),
            own: None,
            key: None,
        }
    }

    /// Its place in the indexes, from its state.
    fn key(&self) -> Option<Key> {
        if self.busy.is_some() {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(Key::Sleeping(at));
        }
        match (self.held.keys().next(), &self.own) {
            (Some(&head), Some(own)) if !own.ready && head >= own.from => None,
            (Some(&head), _) => Some(Key::Ready(head)),
            (None, Some(own)) if own.ready => Some(Key::Fetch),
            (None, _) => None,
        }
    }
}

/// Postings left unacked by the previous run, which must all be back before anything goes out.
struct Gate {
    /// The consumer's last delivered stream sequence at start: anything up to it is a
    /// redelivery.
    delivered_upto: u64,
    expected: u64,
    seen: HashSet<u64>,
    deadline: Instant,
}

/// The held postings of every store, and what may go out next. `T` is the caller's handle of a
/// posting (the JetStream message).
pub struct Schedule<T> {
    stores: BTreeMap<String, StoreState<T>>,
    /// Stores whose head may be delivered, lowest stream sequence (the oldest posting) first.
    ready: BTreeSet<(u64, String)>,
    /// Stores that may fetch from their own consumer.
    fetch: BTreeSet<String>,
    /// Stores backing off, until when.
    sleeping: BTreeSet<(Instant, String)>,
    concurrency: usize,
    in_flight: usize,
    /// Postings held from the main consumer: its unacked postings, at most `window`.
    main_held: usize,
    window: usize,
    gate: Option<Gate>,
    /// A store is being moved to its own consumer; one at a time.
    moving: Option<String>,
}

impl<T> Schedule<T> {
    /// At most `concurrency` deliveries at once; `window` is the main consumer's
    /// `max_ack_pending`.
    pub fn new(concurrency: usize, window: usize) -> Self {
        assert!(concurrency > 0 && window > WINDOW_HEADROOM, "concurrency {concurrency}, window {window}");
        Schedule {
            stores: BTreeMap::new(),
            ready: BTreeSet::new(),
            fetch: BTreeSet::new(),
            sleeping: BTreeSet::new(),
            concurrency,
            in_flight: 0,
            main_held: 0,
            window,
            gate: None,
            moving: None,
        }
    }

    /// Holds everything back until the `pending` postings the main consumer had out at start
    /// (all at stream sequences up to `delivered_upto`) are back, or until `deadline`, when
    /// JetStream has redelivered every one that still exists.
    pub fn close_gate(&mut self, delivered_upto: u64, pending: u64, deadline: Instant) {
        if pending > 0 {
            self.gate = Some(Gate { delivered_upto, expected: pending, seen: HashSet::new(), deadline });
        }
    }

    /// Whether the gate still holds everything back.
    pub fn gated(&self, now: Instant) -> bool {
        self.gate.as_ref().is_some_and(|gate| (gate.seen.len() as u64) < gate.expected && now < gate.deadline)
    }

    /// The store moved to its own consumer, starting at stream sequence `from`, in an earlier
    /// run (its consumer still exists).
    pub fn restore_own(&mut self, store: &str, from: u64) {
        let state = self.stores.entry(store.to_string()).or_insert_with(StoreState::new);
        state.own = Some(Own { from, ready: true, moved_max: 0 });
        self.reindex(store);
    }

    /// Takes in a posting of `store` at stream sequence `seq`.
    pub fn offer(&mut self, store: &str, seq: u64, item: T, source: Source) -> Offered<T> {
        if let Some(gate) = self.gate.as_mut().filter(|gate| source == Source::Main && seq <= gate.delivered_upto) {
            gate.seen.insert(seq);
        }
        let state = self.stores.entry(store.to_string()).or_insert_with(StoreState::new);
        // Kept after a match: the ack sent again may be lost as well.
        if state.unacked.contains(&seq) {
            return Offered::Done(item);
        }
        if let Some(own) = state.own.as_mut().filter(|own| source == Source::Main && own.ready && seq >= own.from) {
            own.moved_max = own.moved_max.max(seq);
            return Offered::Moved(item);
        }
        if let Some(entry) = state.held.get_mut(&seq) {
            return Offered::Again(std::mem::replace(&mut entry.item, item));
        }
        let late = seq < state.done_upto || matches!(state.busy, Some(Busy::Delivering(busy)) if busy > seq);
        state.held.insert(seq, Entry { item, source });
        if source == Source::Main {
            self.main_held += 1;
        }
        self.reindex(store);
        if late {
            Offered::Late
        } else {
            Offered::Held
        }
    }

    /// The next job, if one may start now.
    pub fn next(&mut self, now: Instant) -> Option<Job> {
        while let Some((at, store)) = self.sleeping.first().cloned() {
            if at > now {
                break;
            }
            if let Some(state) = self.stores.get_mut(&store) {
                state.retry_at = None;
            }
            self.reindex(&store);
        }
        if self.gated(now) {
            return None;
        }
        self.gate = None;
        if self.in_flight < self.concurrency {
            if let Some((seq, store)) = self.ready.pop_first() {
                let state = self.state(&store);
                state.key = None;
                state.busy = Some(Busy::Delivering(seq));
                self.in_flight += 1;
                return Some(Job::Deliver { store, seq });
            }
        }
        let store = self.fetch.pop_first()?;
        let state = self.state(&store);
        state.key = None;
        state.busy = Some(Busy::Fetching);
        Some(Job::Fetch { store })
    }

    /// The handle of a held posting.
    pub fn item(&self, store: &str, seq: u64) -> Option<&T> {
        self.stores.get(store)?.held.get(&seq).map(|entry| &entry.item)
    }

    /// The posting handed out by [`Job::Deliver`] was delivered or parked, and its ack confirmed
    /// by the server or not (`acked`); returns its handle.
    pub fn finished(&mut self, store: &str, seq: u64, acked: bool) -> T {
        let state = self.delivered(store, seq);
        let entry = state.held.remove(&seq).expect("a posting being delivered is held");
        state.done_upto = state.done_upto.max(seq);
        if !acked {
            state.unacked.insert(seq);
            if state.unacked.len() > UNACKED_MAX {
                state.unacked.pop_first();
            }
        }
        state.backoff.succeeded();
        if entry.source == Source::Main {
            self.main_held -= 1;
        }
        self.reindex(store);
        entry.item
    }

    /// The posting handed out by [`Job::Deliver`] must be sent again: the store backs off alone.
    /// Returns how long.
    pub fn failed(&mut self, store: &str, seq: u64, now: Instant) -> Duration {
        let state = self.delivered(store, seq);
        let wait = state.backoff.failed();
        state.retry_at = Some(now + wait);
        self.reindex(store);
        wait
    }

    /// A [`Job::Fetch`] ended. True when the store goes back to the main consumer: the caller
    /// deletes the store's own consumer.
    pub fn fetch_done(&mut self, store: &str, fetched: Fetched, now: Instant) -> bool {
        let state = self.state(store);
        assert!(state.busy == Some(Busy::Fetching), "store {store} was not fetching");
        state.busy = None;
        let mut back = false;
        match fetched {
            Fetched::Posting => {}
            // Every posting the main consumer handed over has come through the own consumer:
            // from now on the main consumer's postings of the store are held again.
            Fetched::Drained { upto } if state.own.as_ref().is_some_and(|own| own.moved_max <= upto) => {
                state.own = None;
                back = true;
            }
            Fetched::Drained { .. } | Fetched::Nothing => state.retry_at = Some(now + FETCH_AGAIN),
        }
        self.reindex(store);
        back
    }

    /// When the main consumer's window is nearly full: the store holding the most of it (at
    /// least two postings), and the stream sequence from which its own consumer should start
    /// (its second posting: the first may be in flight and stays). `None` while a move is under
    /// way.
    pub fn crowded(&self) -> Option<(String, u64)> {
        if self.moving.is_some() || self.main_held + WINDOW_HEADROOM < self.window {
            return None;
        }
        let (store, state) = self
            .stores
            .iter()
            .filter(|(_, state)| state.own.is_none() && state.held.len() >= 2)
            .max_by_key(|(_, state)| state.held.len())?;
        let from = *state.held.keys().nth(1).expect("at least two postings held");
        Some((store.clone(), from))
    }

    /// The store's own consumer, from `from` on, is being created: its postings from `from` on
    /// are not handed out meanwhile.
    pub fn moving(&mut self, store: &str, from: u64) {
        assert!(self.moving.is_none(), "one move at a time");
        self.moving = Some(store.to_string());
        self.state(store).own = Some(Own { from, ready: false, moved_max: 0 });
        self.reindex(store);
    }

    /// The own consumer exists: returns the postings it now delivers, which the caller acks on
    /// the main consumer.
    pub fn moved(&mut self, store: &str) -> Vec<T> {
        self.moving = None;
        let state = self.state(store);
        let own = state.own.as_mut().expect("a store being moved");
        own.ready = true;
        let handed_over = state.held.split_off(&own.from);
        own.moved_max = handed_over.keys().next_back().copied().unwrap_or(0);
        assert!(
            !matches!(state.busy, Some(Busy::Delivering(busy)) if busy >= own.from),
            "a posting handed to the own consumer is in flight"
        );
        self.main_held -= handed_over.values().filter(|entry| entry.source == Source::Main).count();
        self.reindex(store);
        handed_over.into_values().map(|entry| entry.item).collect()
    }

    /// Creating the own consumer failed: the store stays on the main consumer.
    pub fn move_failed(&mut self, store: &str) {
        self.moving = None;
        self.state(store).own = None;
        self.reindex(store);
    }

    /// When the caller should look again without news: the earliest end of a backoff, or the
    /// gate's deadline.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let sleeping = self.sleeping.first().map(|(at, _)| *at);
        let gate = self.gate.as_ref().map(|gate| gate.deadline);
        sleeping.into_iter().chain(gate).min()
    }

    /// Every held posting, in no particular order (to keep their acks from expiring).
    pub fn held(&self) -> impl Iterator<Item = &T> {
        self.stores.values().flat_map(|state| state.held.values().map(|entry| &entry.item))
    }

    /// Every held posting in stream order, taken out (at shutdown, to hand them back).
    pub fn take_all(&mut self) -> Vec<T> {
        let mut all: Vec<(u64, T)> = Vec::new();
        for state in self.stores.values_mut() {
            all.extend(std::mem::take(&mut state.held).into_iter().map(|(seq, entry)| (seq, entry.item)));
        }
        all.sort_by_key(|(seq, _)| *seq);
        self.main_held = 0;
        all.into_iter().map(|(_, item)| item).collect()
    }

    /// How many postings of `store` are held.
    pub fn waiting(&self, store: &str) -> usize {
        self.stores.get(store).map_or(0, |state| state.held.len())
    }

    /// Postings held from the main consumer.
    #[cfg(test)]
    pub fn main_held(&self) -> usize {
        self.main_held
    }

    fn state(&mut self, store: &str) -> &mut StoreState<T> {
        self.stores.get_mut(store).expect("a store the schedule knows")
    }

    /// The store's delivery of `seq` has ended, either way.
    fn delivered(&mut self, store: &str, seq: u64) -> &mut StoreState<T> {
        self.in_flight -= 1;
        let state = self.state(store);
        assert!(state.busy == Some(Busy::Delivering(seq)), "store {store} was not delivering {seq}");
        state.busy = None;
        state
    }

    /// Puts the store where its state says in the indexes.
    fn reindex(&mut self, store: &str) {
        let Some(state) = self.stores.get_mut(store) else { return };
        let key = state.key();
        let old = std::mem::replace(&mut state.key, key.clone());
        if old == key {
            return;
        }
        match old {
            Some(Key::Ready(seq)) => self.ready.remove(&(seq, store.to_string())),
            Some(Key::Fetch) => self.fetch.remove(store),
            Some(Key::Sleeping(at)) => self.sleeping.remove(&(at, store.to_string())),
            None => false,
        };
        match key {
            Some(Key::Ready(seq)) => self.ready.insert((seq, store.to_string())),
            Some(Key::Fetch) => self.fetch.insert(store.to_string()),
            Some(Key::Sleeping(at)) => self.sleeping.insert((at, store.to_string())),
            None => false,
        };
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
