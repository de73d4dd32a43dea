//! Partitions: the unit of parallelism (docs/operations.md, "Partitions"). A store's records
//! all land in one partition, so that they keep their order and a partition's state holds
//! whole stores.
//!
//! The partition of a store is the one nats-server's subject transform
//! `{{partition(n, <store token>)}}` gives its subjects: FNV-1a (32 bits) of the token's bytes,
//! modulo `n`. tally computes it too, to know which partition holds a store without asking the
//! server (a test checks it against the server's transform on real subjects).

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The partition of `store` among `partitions` (at least 1).
pub fn of_store(store: &str, partitions: u32) -> u32 {
    let hash = store.bytes().fold(FNV_OFFSET, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(FNV_PRIME));
    hash % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the hash is FNV-1a 32 on published test vectors (the FNV reference's "" → offset
    // basis, "a" → 0xe40c292c, "foobar" → 0xbf9cf968), so that it is the server's function.
    #[test]
    fn the_hash_is_fnv_1a_32() {
        for (text, hash) in [("", 0x811c_9dc5u32), ("a", 0xe40c_292c), ("foobar", 0xbf9c_f968)] {
            assert_eq!(of_store(text, u32::MAX), hash % u32::MAX, "{text:?}");
        }
    }

    // Proves every partition is reached and a store always maps to the same one.
    #[test]
    fn stores_spread_over_every_partition() {
        let mut seen = [0u32; 16];
        for n in 0..400 {
            let store = format!("{n:04}");
            let partition = of_store(&store, 16);
            assert_eq!(partition, of_store(&store, 16));
            seen[partition as usize] += 1;
        }
        assert!(seen.iter().all(|&count| count > 10), "{seen:?}");
        assert_eq!(of_store("0042", 1), 0);
        assert_eq!(of_store("0042", 0), 0, "no partitions count as one");
    }
}
