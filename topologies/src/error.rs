//! The topology's one error: state that cannot be read or decoded. Bad input is never an
//! error: it becomes a DLQ entry (docs/wire-format.md, "The dead-letter queue").

use tally_state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("state access failed")]
    State(#[from] StateError),
    #[error("stored {what} could not be decoded; the state is corrupt or from another version")]
    Corrupt {
        what: &'static str,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("stored {what} could not be decoded; the state is corrupt or from another version")]
    CorruptJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}
