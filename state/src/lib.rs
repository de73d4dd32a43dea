//! tally's key-value state. It stores bytes under byte keys in a handful of column families and
//! knows nothing about retail; the meaning of keys and values belongs to `tally-topologies`.
//!
//! - [`cf`]: the column families ([`Cf`]) every store provides.
//! - [`store`]: the narrow [`Store`] trait the logic is written against.
//! - [`batch`]: [`WriteBatch`], the ordered puts and deletes a store applies atomically.
//! - [`error`]: [`StateError`], what can go wrong in any store.
//! - [`key`]: order-preserving binary keys ([`KeyWriter`], [`KeyReader`]).
//! - [`overlay`]: [`Overlay`], a read-your-writes transaction that ends as one batch.
//! - [`cached`]: [`CachedStore`], a bounded cache of hot values in front of a store.
//! - [`key_filter`]: [`KeyFilter`], every key of the point-read families in a Bloom filter,
//!   so that most gets of absent keys need no read (used by [`RocksStore`]).
//! - [`mem`]: [`MemStore`], in memory, for unit tests and simulations.
//! - [`failing`]: [`FailingStore`], a wrapper that fails chosen writes for fault-injection tests.
//! - [`rocks`]: [`RocksStore`], the durable store on RocksDB (feature `rocksdb`).

pub mod batch;
pub mod cached;
pub mod cf;
pub mod error;
pub mod failing;
pub mod key;
pub mod key_filter;
pub mod mem;
pub mod overlay;
#[cfg(feature = "rocksdb")]
pub mod rocks;
pub mod store;

pub use batch::{Op, WriteBatch};
pub use cached::CachedStore;
pub use cf::Cf;
pub use error::StateError;
pub use failing::FailingStore;
pub use key::{KeyError, KeyReader, KeyWriter};
pub use key_filter::{KeyFilter, KeyFilterStats};
pub use mem::MemStore;
pub use overlay::{Overlay, Writes};
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksMemory, RocksOptions, RocksShared, RocksStore};
pub use store::{visit_prefix, Entries, Store};
