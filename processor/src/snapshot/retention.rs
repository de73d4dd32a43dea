//! Whether the input stream keeps what a restored checkpoint must replay (docs/operations.md,
//! "Checkpoints in the Object Store"): a new owner restores a checkpoint up to
//! `cluster.checkpoint_interval` old, after an outage of its own length, and replays the input
//! from there. `tally setup` refuses a stream that surely drops it and warns about one that may.

use std::time::Duration;

use async_nats::jetstream::stream;

/// The outage, on top of the checkpoint interval, that the input stream should outlast.
pub const OUTAGE_MARGIN: Duration = Duration::from_secs(3600);

/// What the input stream's limits mean for checkpoints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the stream cannot serve checkpoints; `tally setup` refuses it.
    pub refusal: Option<String>,
    /// What may go wrong, for the operator to check.
    pub warnings: Vec<String>,
}

/// Judges the input stream `config` for checkpoints made every `interval`.
pub fn judge(config: &stream::Config, interval: Duration) -> Verdict {
    let name = &config.name;
    let mut verdict = Verdict::default();
    let wanted = interval + OUTAGE_MARGIN;
    if !config.max_age.is_zero() && config.max_age < interval {
        verdict.refusal = Some(format!(
            "stream {name} keeps messages for {:?}, less than cluster.checkpoint_interval ({interval:?}): a new owner \
             could not replay from the last checkpoint. Raise its max_age to at least {wanted:?} (`nats stream edit \
             {name} --max-age {}s`) or checkpoint more often",
            config.max_age,
            wanted.as_secs()
        ));
    } else if !config.max_age.is_zero() && config.max_age < wanted {
        verdict.warnings.push(format!(
            "stream {name} keeps messages for {:?}: an outage longer than {:?} loses input a new owner must replay \
             after the last checkpoint. Raise its max_age to at least {wanted:?} (`nats stream edit {name} --max-age \
             {}s`)",
            config.max_age,
            config.max_age.saturating_sub(interval),
            wanted.as_secs()
        ));
    }
    for (limit, value) in [
        ("max_msgs", config.max_messages),
        ("max_bytes", config.max_bytes),
        ("max_msgs_per_subject", config.max_messages_per_subject),
    ] {
        if value > 0 {
            verdict.warnings.push(format!(
                "stream {name} has {limit} = {value}: tally cannot tell whether it keeps cluster.checkpoint_interval \
                 ({interval:?}) plus an outage of input; make sure it does, or remove the limit and bound the stream \
                 by max_age"
            ));
        }
    }
    if config.retention != stream::RetentionPolicy::Limits {
        verdict.warnings.push(format!(
            "stream {name} has retention {:?}: it drops acknowledged input, which a new owner must replay after the \
             last checkpoint; use limits retention",
            config.retention
        ));
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(max_age_secs: u64) -> stream::Config {
        stream::Config {
            name: "RETAIL_IN".into(),
            max_age: Duration::from_secs(max_age_secs),
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            ..Default::default()
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    // Proves an unbounded stream passes, one that keeps less than the interval is refused, and
    // one that keeps less than the interval plus an hour's outage is warned about.
    #[test]
    fn max_age_against_the_interval() {
        assert_eq!(judge(&stream(0), MINUTE), Verdict::default());
        assert_eq!(judge(&stream(7 * 86400), MINUTE), Verdict::default());
        let refused = judge(&stream(30), MINUTE);
        assert!(refused.refusal.as_deref().is_some_and(|r| r.contains("--max-age 3660s")), "{refused:?}");
        let warned = judge(&stream(1800), MINUTE);
        assert_eq!(warned.refusal, None);
        assert_eq!(warned.warnings.len(), 1, "{warned:?}");
        assert!(warned.warnings[0].contains("RETAIL_IN"), "{warned:?}");
    }

    // Proves limits by messages or bytes, which cannot be checked against time, are warned about
    // one by one, as is a retention that drops acknowledged input.
    #[test]
    fn limits_that_cannot_be_proved_are_warned_about() {
        let mut config = stream(0);
        config.max_messages = 1_000_000;
        config.max_bytes = 1 << 30;
        config.retention = stream::RetentionPolicy::WorkQueue;
        let verdict = judge(&config, MINUTE);
        assert_eq!(verdict.refusal, None);
        let said: Vec<bool> = ["max_msgs = 1000000", "max_bytes = 1073741824", "WorkQueue"]
            .iter()
            .map(|needle| verdict.warnings.iter().any(|w| w.contains(needle)))
            .collect();
        assert_eq!(said, [true, true, true], "{verdict:?}");
    }
}
