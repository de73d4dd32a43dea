//! JetStream from the outside: what a POS publisher, an alert consumer or an operator does.

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self};
use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::Value;

/// A client connection and its JetStream context.
#[derive(Clone)]
pub struct Js {
    pub client: async_nats::Client,
    pub context: jetstream::Context,
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub subject: String,
    pub sequence: u64,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl StoredMessage {
    /// The first value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.as_str())
    }
}

impl Js {
    /// Connects to `url`, or to a comma-separated list of a cluster's servers (then it goes on
    /// with another when one dies).
    pub async fn connect(url: &str) -> Js {
        let servers: Vec<String> = url.split(',').map(|one| one.trim().to_string()).collect();
        let client = async_nats::connect(servers).await.unwrap_or_else(|err| panic!("connect to {url}: {err}"));
        let context = jetstream::new(client.clone());
        Js { client, context }
    }

    /// Publishes `payload` with `headers` and awaits the PubAck; returns the stream sequence.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>, headers: &[(&str, &str)]) -> u64 {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        let ack = self
            .context
            .publish_with_headers(subject.to_string(), map, payload.into())
            .await
            .unwrap_or_else(|err| panic!("publish to {subject}: {err}"))
            .await
            .unwrap_or_else(|err| panic!("PubAck for {subject}: {err}"));
        ack.sequence
    }

    /// Publishes `record` as a JSON object, without a Content-Type header.
    pub async fn publish_json(&self, subject: &str, record: &Value) -> u64 {
        self.publish(subject, serde_json::to_vec(record).expect("JSON encodes"), &[]).await
    }

    /// Publishes `record` as a MessagePack map with string keys, without a Content-Type header.
    pub async fn publish_msgpack(&self, subject: &str, record: &Value) -> u64 {
        self.publish(subject, to_msgpack(record, false), &[]).await
    }

    pub async fn stream(&self, name: &str) -> Stream {
        self.context.get_stream(name).await.unwrap_or_else(|err| panic!("get stream {name}: {err}"))
    }

    pub async fn stream_info(&self, name: &str) -> jetstream::stream::Info {
        self.stream(name).await.get_info().await.unwrap_or_else(|err| panic!("info of stream {name}: {err}"))
    }

    /// How many messages stream `name` holds; 0 when it does not exist.
    pub async fn message_count(&self, name: &str) -> u64 {
        match self.context.get_stream(name).await {
            Ok(stream) => stream.get_info().await.map(|info| info.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Every message of stream `name`, in sequence order, with headers.
    pub async fn messages(&self, name: &str) -> Vec<StoredMessage> {
        let stream = self.stream(name).await;
        let info = stream.get_info().await.unwrap_or_else(|err| panic!("info of stream {name}: {err}"));
        let mut out = Vec::new();
        if info.state.messages == 0 {
            return out;
        }
        for seq in info.state.first_sequence..=info.state.last_sequence {
            // A gap (a deleted message) is not an error when reading everything.
            if let Ok(message) = stream.get_raw_message(seq).await {
                out.push(StoredMessage {
                    subject: message.subject.to_string(),
                    sequence: message.sequence,
                    headers: message.headers,
                    payload: message.payload,
                });
            }
        }
        out
    }

    /// True when `consumer` on `stream` has acked every message the stream holds right now. On a
    /// partitioned input stream, `consumer` names tally's consumers: `<consumer>-p<n>`, one per
    /// partition, each of which must have acked the last message of its partition. tally
    /// recreates a consumer after its committed position on every start: one created past
    /// everything there is reports ack floor 0 and delivered = its start - 1, with nothing
    /// unacked, which counts as acked too.
    pub async fn consumer_drained(&self, stream: &str, consumer: &str) -> bool {
        let Ok(stream_handle) = self.context.get_stream(stream).await else { return false };
        let consumers = consumers_of(&stream_handle, consumer).await;
        for (name, last) in consumers.iter().flatten() {
            let Ok(info) = stream_handle.consumer_info(name).await else { return false };
            let reached = info.ack_floor.stream_sequence.max(info.delivered.stream_sequence);
            if info.num_pending != 0 || info.num_ack_pending != 0 || reached < *last {
                return false;
            }
        }
        consumers.is_some()
    }

    /// True when `consumer` (every partition's, on a partitioned stream) has been delivered every
    /// message and has nothing unacked. Unlike [`Js::consumer_drained`] it does not require the
    /// ack floor to reach the last message: tally recreates its consumers right after the
    /// committed position on every start, and a consumer created at a start sequence reports ack
    /// floor 0 until its first ack.
    pub async fn consumer_caught_up(&self, stream: &str, consumer: &str) -> bool {
        let Ok(stream_handle) = self.context.get_stream(stream).await else { return false };
        let consumers = consumers_of(&stream_handle, consumer).await;
        for (name, last) in consumers.iter().flatten() {
            let Ok(info) = stream_handle.consumer_info(name).await else { return false };
            if info.num_pending != 0 || info.num_ack_pending != 0 || info.delivered.stream_sequence < *last {
                return false;
            }
        }
        consumers.is_some()
    }

    /// A one-line picture of a consumer (of each partition's), for failure messages.
    pub async fn consumer_summary(&self, stream: &str, consumer: &str) -> String {
        let Ok(stream_handle) = self.context.get_stream(stream).await else { return format!("no stream {stream}") };
        let Some(consumers) = consumers_of(&stream_handle, consumer).await else {
            return format!("cannot read stream {stream}");
        };
        let mut lines = Vec::new();
        for (name, last) in consumers {
            lines.push(match stream_handle.consumer_info(&name).await {
                Ok(info) => format!(
                    "{name}: last seq {last}, delivered {}, ack floor {}, pending {}, ack pending {}, redelivered {}",
                    info.delivered.stream_sequence,
                    info.ack_floor.stream_sequence,
                    info.num_pending,
                    info.num_ack_pending,
                    info.num_redelivered
                ),
                Err(err) => format!("no consumer {name} on {stream}: {err}"),
            });
        }
        lines.join("; ")
    }

    /// The messages of `stream` that `consumer` (every partition's) has neither pending nor
    /// unacked: how far tally got, counted in messages.
    pub async fn consumer_acked(&self, stream: &str, consumer: &str) -> u64 {
        let Ok(stream_handle) = self.context.get_stream(stream).await else { return 0 };
        let Ok(stream_info) = stream_handle.get_info().await else { return 0 };
        let mut outstanding = 0;
        for (name, _) in consumers_of(&stream_handle, consumer).await.unwrap_or_default() {
            let Ok(info) = stream_handle.consumer_info(&name).await else { return 0 };
            outstanding += info.num_pending + info.num_ack_pending as u64;
        }
        stream_info.state.messages.saturating_sub(outstanding)
    }
}

/// The consumers that `consumer` names on `stream`, each with the last sequence it must reach:
/// itself and the stream's last sequence, or, on a stream with tally's partition transform,
/// `<consumer>-p<n>` for each partition and the last sequence of that partition's subjects.
/// `None` when the stream cannot be read.
async fn consumers_of(stream: &Stream, consumer: &str) -> Option<Vec<(String, u64)>> {
    let info = stream.get_info().await.ok()?;
    let partitions = info.config.subject_transform.as_ref().and_then(|t| partitions_of(&t.destination));
    let Some(count) = partitions else { return Some(vec![(consumer.to_string(), info.state.last_sequence)]) };
    let prefix = info.config.subject_transform.as_ref()?.source.trim_end_matches(".*.*").to_string();
    let mut consumers = Vec::new();
    for index in 0..count {
        let last = match stream.get_last_raw_message_by_subject(&format!("{prefix}.*.*.{index}")).await {
            Ok(message) => message.sequence,
            // A partition no store has published to yet.
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => 0,
            Err(_) => return None,
        };
        consumers.push((format!("{consumer}-p{index}"), last));
    }
    Some(consumers)
}

/// N of a transform destination ending in `{{partition(N,2)}}`.
fn partitions_of(destination: &str) -> Option<u32> {
    let start = destination.find("{{partition(")? + "{{partition(".len();
    destination[start..].split(',').next()?.trim().parse().ok()
}

/// Encodes a JSON value as MessagePack with string map keys. With `decimals_as_floats`, every
/// string that parses as a number under a decimal key (`qty`, `unit_price`, `discount`, `tax`,
/// `amount`, …) becomes a MessagePack float64, as some publishers send them.
pub fn to_msgpack(record: &Value, decimals_as_floats: bool) -> Vec<u8> {
    let value = to_rmpv(record, decimals_as_floats, None);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).expect("writing to a Vec cannot fail");
    out
}

const DECIMAL_KEYS: &[&str] = &["qty", "unit_price", "discount", "tax", "amount", "net_sales", "gross", "net"];

fn to_rmpv(value: &Value, floats: bool, key: Option<&str>) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else {
                rmpv::Value::F64(n.as_f64().expect("a JSON number is i64, u64 or f64"))
            }
        }
        Value::String(s) => {
            if floats && key.is_some_and(|k| DECIMAL_KEYS.contains(&k)) {
                if let Ok(f) = s.parse::<f64>() {
                    return rmpv::Value::F64(f);
                }
            }
            rmpv::Value::from(s.as_str())
        }
        Value::Array(items) => rmpv::Value::Array(items.iter().map(|v| to_rmpv(v, floats, key)).collect()),
        Value::Object(map) => rmpv::Value::Map(
            map.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), to_rmpv(v, floats, Some(k)))).collect(),
        ),
    }
}
