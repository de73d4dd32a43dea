//! How values are stored: MessagePack by position (read by position or by name), and typed
//! reads of them from an overlay.

use serde::de::DeserializeOwned;
use tally_state::{Cf, Overlay, StateError};

use crate::error::TopologyError;
pub use crate::pack::{Pack, Packer};

/// Encodes a stored value: by hand for the values every record writes (`pack`), through serde
/// for the others, to the same bytes either way. Writing to memory cannot fail.
///
/// Fields are written by position, not by name: every value is decoded and re-encoded on each
/// touch, and the names were a third of the bytes and of the time spent on them.
///
/// The value is written into a buffer kept per thread and copied out at its exact size: written
/// into a new Vec, a sku-day of 150 bytes grew it five times (8, 16, … 256 bytes), each a
/// reallocation and a copy, for every value of every record.
pub fn encode<T: Pack>(value: &T) -> Vec<u8> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        value.pack(&mut Packer(scratch));
        let encoded = scratch.as_slice().to_vec();
        // A rare large value (a store-day of a busy store) must not keep its buffer's size.
        if scratch.capacity() > SCRATCH_KEPT {
            *scratch = Vec::new();
        }
        encoded
    })
}

/// The scratch buffer's size kept between values.
const SCRATCH_KEPT: usize = 64 << 10;

/// Decodes a stored value, by position or by name; a failure means the state is corrupt or
/// from an unknown version.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

pub fn read_meta_u64(txn: &Overlay<'_>, key: &[u8]) -> Result<Option<u64>, TopologyError> {
    let Some(bytes) = txn.get(Cf::Meta, key)? else { return Ok(None) };
    let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| StateError::Corrupt {
        cf: Cf::Meta,
        detail: format!("meta value {:?} is {} bytes, not 8", String::from_utf8_lossy(key), bytes.len()),
    })?;
    Ok(Some(u64::from_be_bytes(array)))
}

/// Reads and decodes a stored value.
pub fn read<T: serde::de::DeserializeOwned>(
    txn: &Overlay<'_>,
    cf: Cf,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, TopologyError> {
    match txn.get(cf, key)? {
        Some(bytes) => decode(&bytes).map(Some).map_err(|source| TopologyError::Corrupt { what, source }),
        None => Ok(None),
    }
}
