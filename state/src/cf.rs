//! The column families. Every store provides all of them; a key lives in exactly one.

use std::fmt;

/// A column family: an independent, ordered key space inside one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Running totals the topology maintains.
    Aggregates,
    /// Identifiers already seen, so a redelivered event is counted once.
    Dedupe,
    /// Voided transactions waiting to be matched or expired.
    Voids,
    /// Messages committed with the state and waiting to be published.
    Outbox,
    /// Bookkeeping such as the last committed stream sequence.
    Meta,
    /// Deadlines the topology must act on.
    Timers,
}

impl Cf {
    /// Every column family, in declaration order.
    pub const ALL: [Cf; 6] = [Cf::Aggregates, Cf::Dedupe, Cf::Voids, Cf::Outbox, Cf::Meta, Cf::Timers];

    /// The name under which the family is stored on disk. Never change one: existing data
    /// would become unreachable.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Aggregates => "aggregates",
            Cf::Dedupe => "dedupe",
            Cf::Voids => "voids",
            Cf::Outbox => "outbox",
            Cf::Meta => "meta",
            Cf::Timers => "timers",
        }
    }

    /// Position of the family in [`Cf::ALL`], for per-family arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Cf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_index_matches_all() {
        // Proves each family has its own on-disk name and `index` is its position in `ALL`.
        let names: HashSet<_> = Cf::ALL.iter().map(|cf| cf.name()).collect();
        assert_eq!(names.len(), Cf::ALL.len());
        for (i, cf) in Cf::ALL.iter().enumerate() {
            assert_eq!(cf.index(), i);
        }
    }
}
