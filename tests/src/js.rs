//! JetStream from the outside: what a POS publisher, an alert consumer or an operator does.

use async_nats::jetstream::{self, stream::Stream};
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
    pub async fn connect(url: &str) -> Js {
        let client = async_nats::connect(url).await.unwrap_or_else(|err| panic!("connect to {url}: {err}"));
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

    /// True when `consumer` on `stream` has acked every message the stream holds right now.
    pub async fn consumer_drained(&self, stream: &str, consumer: &str) -> bool {
        let Ok(stream_handle) = self.context.get_stream(stream).await else { return false };
        let Ok(stream_info) = stream_handle.get_info().await else { return false };
        let Ok(info) = stream_handle.consumer_info(consumer).await else { return false };
        info.num_pending == 0
            && info.num_ack_pending == 0
            && info.ack_floor.stream_sequence >= stream_info.state.last_sequence
    }

    /// A one-line picture of a consumer, for failure messages.
    pub async fn consumer_summary(&self, stream: &str, consumer: &str) -> String {
        let Ok(stream_handle) = self.context.get_stream(stream).await else { return format!("no stream {stream}") };
        let last = stream_handle.get_info().await.map(|i| i.state.last_sequence).unwrap_or(0);
        match stream_handle.consumer_info(consumer).await {
            Ok(info) => format!(
                "stream last seq {last}, delivered {}, ack floor {}, pending {}, ack pending {}, redelivered {}",
                info.delivered.stream_sequence,
                info.ack_floor.stream_sequence,
                info.num_pending,
                info.num_ack_pending,
                info.num_redelivered
            ),
            Err(err) => format!("no consumer {consumer} on {stream}: {err}"),
        }
    }
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
