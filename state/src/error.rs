//! The one error type of every store.

use crate::Cf;

/// What failed in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused an operation.
    #[cfg(feature = "rocksdb")]
    #[error("rocksdb {op} failed: {source}")]
    Rocks {
        /// The operation that failed, such as "open" or "write".
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },

    /// An open database lacks a column family this crate needs.
    #[cfg(feature = "rocksdb")]
    #[error("column family {name} is missing from the database")]
    MissingColumnFamily { name: &'static str },

    /// A file system operation around the store failed.
    #[error("{op} {path} failed: {source}")]
    Io {
        /// The operation that failed, such as "create checkpoint parent".
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A fault-injection wrapper failed the operation on purpose; nothing was applied.
    #[error("injected failure: {what}")]
    Injected { what: String },

    /// A stored key or value could not be decoded.
    #[error("corrupt data in column family {cf}: {detail}")]
    Corrupt { cf: Cf, detail: String },
}
