//! Which member should own each partition, and the next move an instance makes towards that
//! (docs/operations.md, "Several instances: partition ownership"). Pure: every instance computes
//! the same answer from the same members, with nothing to agree on but the member ids.
//!
//! Rendezvous (highest-random-weight) hashing: each member gets a weight per partition from a
//! hash of (member id, partition), and the heaviest member owns it. A new member takes exactly
//! the partitions where it is heaviest (about 1/M of them, from every other member alike); a
//! member that leaves gives up only its own partitions, each to its runner-up.

use std::collections::{BTreeMap, BTreeSet};

/// A member's weight for a partition: FNV-1a (64 bits) of the id, mixed with the partition by
/// SplitMix64's finalizer so that nearby partitions get unrelated weights. Fixed forever: every
/// version on every instance must weigh alike, or two would each think a partition is theirs to
/// take (the lease still keeps it to one owner; they would only pull it back and forth).
pub fn weight(member: &str, partition: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash ^ mix(u64::from(partition).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The member that should own `partition`: the heaviest, ties to the greater id. `None` without
/// members.
pub fn owner(partition: u32, members: &BTreeSet<String>) -> Option<&str> {
    members.iter().max_by_key(|member| (weight(member, partition), member.as_str())).map(String::as_str)
}

/// The member that should own `partition` if its owner left: the second heaviest. `None` with
/// fewer than two members.
pub fn runner_up(partition: u32, members: &BTreeSet<String>) -> Option<&str> {
    let owner = owner(partition, members)?;
    members
        .iter()
        .filter(|member| member.as_str() != owner)
        .max_by_key(|member| (weight(member, partition), member.as_str()))
        .map(String::as_str)
}

/// The partitions of `count` that `me` would take over if their owner left: where it is the
/// runner-up (docs/operations.md, "Warm standby").
pub fn standing_by(count: u32, members: &BTreeSet<String>, me: &str) -> BTreeSet<u32> {
    (0..count).filter(|p| runner_up(*p, members) == Some(me)).collect()
}

/// The owner of every partition of `count`.
pub fn assignment(count: u32, members: &BTreeSet<String>) -> BTreeMap<u32, String> {
    (0..count).filter_map(|p| owner(p, members).map(|m| (p, m.to_string()))).collect()
}

/// How many partitions change owner when the members change from `before` to `after`: the least
/// number of moves any scheme that ends in the rendezvous assignment can make.
pub fn moves_between(count: u32, before: &BTreeSet<String>, after: &BTreeSet<String>) -> usize {
    (0..count).filter(|p| owner(*p, before) != owner(*p, after)).count()
}

/// One step an instance takes towards the assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Hand this partition over: its owner-to-be is a live member.
    Release(u32),
    /// Try to take this free partition (a lease create; it fails while another holds it).
    Acquire(u32),
}

/// What one instance knows when it decides its next move.
#[derive(Debug)]
pub struct View<'a> {
    pub me: &'a str,
    pub count: u32,
    /// The live members; this instance is among them once its entry is written.
    pub members: &'a BTreeSet<String>,
    /// The partitions whose lease this instance holds and is not already handing over.
    pub held: &'a BTreeSet<u32>,
    /// Partitions tried since the last renewal round and found taken: not tried again until
    /// the next round, so a partition its owner has not yet released is not hammered.
    pub tried: &'a BTreeSet<u32>,
}

/// The next move, one at a time: release first (the other instance is waiting for it), then
/// acquire the lowest partition this instance should own and does not. `None` when this
/// instance holds what it should (or is not among the members, as after its entry expired).
pub fn next_move(view: &View) -> Option<Move> {
    if !view.members.contains(view.me) {
        return None;
    }
    let should_own = |p: u32| owner(p, view.members) == Some(view.me);
    if let Some(p) = view.held.iter().copied().find(|p| !should_own(*p)) {
        return Some(Move::Release(p));
    }
    (0..view.count).find(|p| should_own(*p) && !view.held.contains(p) && !view.tried.contains(p)).map(Move::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    // Proves the weights are fixed: a change here would make two versions disagree.
    #[test]
    fn weights_are_stable() {
        assert_eq!(weight("tally-0", 0), weight("tally-0", 0));
        assert_ne!(weight("tally-0", 0), weight("tally-0", 1));
        assert_ne!(weight("tally-0", 0), weight("tally-1", 0));
        let all = members(&["tally-0", "tally-1", "tally-2"]);
        let owners: Vec<String> = assignment(8, &all).into_values().collect();
        assert_eq!(owners, ["tally-2", "tally-1", "tally-0", "tally-1", "tally-0", "tally-2", "tally-0", "tally-1"]);
    }

    // Proves a member joining takes only partitions for itself, about 1/M of them, and leaving
    // moves only the leaver's partitions, for memberships of 1 to 8 over 256 partitions.
    #[test]
    fn joining_and_leaving_move_the_least() {
        let count = 256;
        for size in 1..8 {
            let before: BTreeSet<String> = (0..size).map(|n| format!("tally-{n}")).collect();
            let mut after = before.clone();
            after.insert(format!("tally-{size}"));
            let (old, new) = (assignment(count, &before), assignment(count, &after));
            let moved: Vec<u32> = (0..count).filter(|p| old[p] != new[p]).collect();
            assert!(
                moved.iter().all(|p| new[p] == format!("tally-{size}")),
                "a join moves partitions to the joiner only"
            );
            let share = count as f64 / (size + 1) as f64;
            assert!(
                (moved.len() as f64 - share).abs() < share * 0.5,
                "{} moved of {count}, expected ~{share}",
                moved.len()
            );
            assert_eq!(moves_between(count, &before, &after), moved.len());
            // Leaving is the same move backwards: only the leaver's partitions go.
            assert!(moved.iter().all(|p| new[p] == format!("tally-{size}")));
            let leaver_owned = new.values().filter(|m| **m == format!("tally-{size}")).count();
            assert_eq!(moves_between(count, &after, &before), leaver_owned);
        }
        let three = members(&["a", "b", "c"]);
        let without_b = members(&["a", "c"]);
        let (old, new) = (assignment(count, &three), assignment(count, &without_b));
        assert!((0..count).all(|p| old[&p] == "b" || old[&p] == new[&p]), "removing b moves only b's partitions");
    }

    // Proves every partition has exactly one owner and the load is roughly even.
    #[test]
    fn every_partition_has_one_owner() {
        let all = members(&["x", "y", "z"]);
        let owners = assignment(16, &all);
        assert_eq!(owners.len(), 16);
        for member in &all {
            let owned = owners.values().filter(|m| *m == member).count();
            assert!((2..=10).contains(&owned), "{member} owns {owned} of 16");
        }
        assert!(assignment(16, &BTreeSet::new()).is_empty());
    }

    // Proves the runner-up is whom a partition goes to when its owner leaves, never the owner,
    // and that with two members each stands by every partition of the other.
    #[test]
    fn the_runner_up_takes_over_when_the_owner_leaves() {
        let all = members(&["a", "b", "c", "d"]);
        for partition in 0..64 {
            let owner = owner(partition, &all).unwrap().to_string();
            let second = runner_up(partition, &all).unwrap().to_string();
            assert_ne!(owner, second);
            let mut without_owner = all.clone();
            without_owner.remove(&owner);
            assert_eq!(super::owner(partition, &without_owner), Some(second.as_str()), "partition {partition}");
        }
        let pair = members(&["a", "b"]);
        let of_a: BTreeSet<u32> = assignment(16, &pair).into_iter().filter(|(_, m)| m == "a").map(|(p, _)| p).collect();
        assert_eq!(standing_by(16, &pair, "b"), of_a);
        assert!(standing_by(16, &members(&["a"]), "a").is_empty(), "alone: no one to stand by for");
    }

    // Proves the plan: release what belongs to another live member first, then acquire one
    // partition at a time, skip partitions tried this round, and do nothing while this
    // instance is not among the members.
    #[test]
    fn next_move_releases_then_acquires_one() {
        let count = 16;
        let pair = members(&["a", "b"]);
        let wanted = assignment(count, &pair);
        let of = |m: &str| -> BTreeSet<u32> { wanted.iter().filter(|(_, o)| *o == m).map(|(p, _)| *p).collect() };
        let everything: BTreeSet<u32> = (0..count).collect();
        let none = BTreeSet::new();
        let view = View { me: "a", count, members: &pair, held: &everything, tried: &none };
        let first_of_b = *of("b").iter().next().unwrap();
        assert_eq!(next_move(&view), Some(Move::Release(first_of_b)));

        let view = View { me: "b", count, members: &pair, held: &none, tried: &none };
        assert_eq!(next_move(&view), Some(Move::Acquire(first_of_b)));
        let tried: BTreeSet<u32> = [first_of_b].into();
        let view = View { me: "b", count, members: &pair, held: &none, tried: &tried };
        let second_of_b = *of("b").iter().nth(1).unwrap();
        assert_eq!(next_move(&view), Some(Move::Acquire(second_of_b)));

        let mine = of("a");
        let view = View { me: "a", count, members: &pair, held: &mine, tried: &none };
        assert_eq!(next_move(&view), None, "a holds exactly its share");
        let alone = members(&["b"]);
        let view = View { me: "a", count, members: &alone, held: &none, tried: &none };
        assert_eq!(next_move(&view), None, "not a member: take nothing");
    }
}
