//! [`WriteBatch`]: the unit of atomic change. A store applies all of its operations or none.

use crate::Cf;

/// One change in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { cf: Cf, key: Vec<u8>, value: Vec<u8> },
    Delete { cf: Cf, key: Vec<u8> },
}

impl Op {
    /// The column family the operation changes.
    pub fn cf(&self) -> Cf {
        match self {
            Op::Put { cf, .. } | Op::Delete { cf, .. } => *cf,
        }
    }

    /// The key the operation changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// The value a put stores; `None` for a delete.
    pub fn value(&self) -> Option<&Vec<u8>> {
        match self {
            Op::Put { value, .. } => Some(value),
            Op::Delete { .. } => None,
        }
    }
}

/// Puts and deletes in the order they were added; when two touch the same key, the later wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `ops` operations, for a caller that knows how many it
    /// will add: a batch of a few thousand grown by doubling copies itself a dozen times.
    pub fn with_capacity(ops: usize) -> Self {
        Self { ops: Vec::with_capacity(ops) }
    }

    /// Stores `value` under `key`, replacing any earlier value.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put { cf, key: key.into(), value: value.into() });
    }

    /// Removes `key`; deleting a missing key is not an error.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { cf, key: key.into() });
    }

    /// Number of operations, counting repeated keys each time.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in the order they were added.
    pub fn ops(&self) -> impl ExactSizeIterator<Item = &Op> {
        self.ops.iter()
    }

    pub(crate) fn as_slice(&self) -> &[Op] {
        &self.ops
    }
}

impl IntoIterator for WriteBatch {
    type Item = Op;
    type IntoIter = std::vec::IntoIter<Op>;

    fn into_iter(self) -> Self::IntoIter {
        self.ops.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_keep_insertion_order() {
        // Proves a batch hands back its operations in the order they were added.
        let mut batch = WriteBatch::new();
        assert!(batch.is_empty());
        batch.put(Cf::Meta, b"a".as_slice(), b"1".as_slice());
        batch.delete(Cf::Meta, b"a".as_slice());
        batch.put(Cf::Outbox, vec![9], vec![8]);
        assert_eq!(batch.len(), 3);
        let keys: Vec<_> = batch.ops().map(|op| (op.cf(), op.key().to_vec())).collect();
        assert_eq!(keys, vec![(Cf::Meta, b"a".to_vec()), (Cf::Meta, b"a".to_vec()), (Cf::Outbox, vec![9])]);
        assert!(matches!(batch.ops().nth(1), Some(Op::Delete { .. })));
    }
}
