//! The HTTP API of one of several instances (docs/http-api.md, "Several instances"): a request
//! about one store whose partition runs elsewhere is redirected to the instance that owns it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::join_all;
use serde::Deserialize;
use serde_json::json;
use tally_topologies::drift::DriftAlert;
use tally_topologies::partition;
use tokio::sync::watch;

use super::{error, ApiState};
use crate::cluster::{assign, Member, Ownership};
use crate::partitions::UnionStore;

/// What the HTTP API knows of the cluster.
#[derive(Clone)]
pub struct ClusterView {
    /// This instance's id among the members.
    pub instance: String,
    /// The input stream's partitions.
    pub partitions: u32,
    pub ownership: watch::Receiver<Ownership>,
    pub members: watch::Receiver<BTreeMap<String, Member>>,
    /// The partitions whose state this instance's API reads (taken over and running).
    pub serving: Arc<UnionStore>,
    /// Asks the other instances (`/v1/alerts`).
    pub client: reqwest::Client,
}

impl ClusterView {
    /// The partitions this instance owns now (some may still be catching up).
    pub fn owned(&self) -> Vec<u32> {
        self.ownership.borrow().partitions.keys().copied().collect()
    }

    /// The partitions whose state this instance reads now.
    pub fn running(&self) -> Vec<u32> {
        self.serving.indices()
    }
}

/// How long another instance may take to answer `/v1/alerts` or `/v1/trace/<id>` with
/// `?scope=instance`.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// One instance's answer to `/v1/alerts?scope=instance`.
#[derive(Debug, Deserialize)]
pub struct InstanceAlerts {
    pub alerts: Vec<DriftAlert>,
    pub partitions: Vec<u32>,
}

/// `/v1/alerts` over every instance: this one's alerts and those each other live member
/// answers for its partitions, merged in (store, day, sku) order. Exact or an error: `503` when
/// a member does not answer, or when some partition is read by none (it is moving).
pub(super) async fn everywhere(
    view: &ClusterView,
    token: Option<&str>,
    state: Option<&str>,
    mine: InstanceAlerts,
    limit: usize,
) -> Response {
    let answers = match gather(view, (mine.alerts, mine.partitions), |advertise| async move {
        ask(&view.client, &advertise, token, state).await.map(|answer| (answer.alerts, answer.partitions))
    })
    .await
    {
        Ok(answers) => answers,
        Err(response) => return response,
    };
    let mut latest: BTreeMap<String, DriftAlert> = BTreeMap::new();
    for alert in answers.into_iter().flatten() {
        // A partition read by two instances while it moves: the later revision counts.
        match latest.get(&alert.id) {
            Some(seen) if seen.revision >= alert.revision => {}
            _ => {
                latest.insert(alert.id.clone(), alert);
            }
        }
    }
    let mut alerts: Vec<DriftAlert> = latest.into_values().collect();
    alerts.sort_by(|a, b| (&a.store, &a.business_day, &a.sku).cmp(&(&b.store, &b.business_day, &b.sku)));
    alerts.truncate(limit);
    Json(json!({ "alerts": alerts })).into_response()
}

/// One instance's answer to `/v1/trace/<id>?scope=instance`.
#[derive(Debug, Deserialize)]
pub struct InstanceTrace {
    pub records: Vec<serde_json::Value>,
    pub partitions: Vec<u32>,
}

/// `/v1/trace/<id>` over every instance: this one's records of `id` and those each other live
/// member finds in its partitions, one per store. Exact or an error, as [`everywhere`]: `503`
/// when a member does not answer or a partition is read by none; `404` when no partition holds
/// the id.
pub(super) async fn trace_everywhere(
    view: &ClusterView,
    token: Option<&str>,
    id: &str,
    mine: InstanceTrace,
) -> Response {
    let answers = match gather(view, (mine.records, mine.partitions), |advertise| async move {
        let url = trace_url(&advertise, id)?;
        let answer: InstanceTrace = get_json(&view.client, url, &[("scope", "instance")], token).await?;
        Ok((answer.records, answer.partitions))
    })
    .await
    {
        Ok(answers) => answers,
        Err(response) => return response,
    };
    // By store: a partition read by two instances while it moves answers twice.
    let mut by_store: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for record in answers.into_iter().flatten() {
        let store = record["store"].as_str().unwrap_or_default().to_string();
        by_store.entry(store).or_insert(record);
    }
    if by_store.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("no record with id {id:?}: never received, or pruned"));
    }
    let records: Vec<serde_json::Value> = by_store.into_values().collect();
    Json(json!({"id": id, "records": records})).into_response()
}

/// This instance's answer `mine` and each other live member's (`ask` of its advertised
/// address), each a list of items with the partitions it read: the lists, this instance's
/// first, once every partition was read by someone. Otherwise the `503` to answer: a member
/// did not answer, or a partition is read by none (it is moving).
async fn gather<T, F, Fut>(view: &ClusterView, mine: (Vec<T>, Vec<u32>), ask: F) -> Result<Vec<Vec<T>>, Response>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Vec<u32>), String>>,
{
    let members = view.members.borrow().clone();
    let others = members.iter().filter(|(id, _)| **id != view.instance);
    let asked = join_all(others.map(|(id, member)| {
        let answer = ask(member.advertise.clone());
        async move { (id.clone(), answer.await) }
    }))
    .await;
    let mut covered: BTreeSet<u32> = BTreeSet::new();
    let mut lists = Vec::new();
    for (id, answer) in std::iter::once((view.instance.clone(), Ok(mine))).chain(asked) {
        let (items, partitions) = match answer {
            Ok(answer) => answer,
            Err(why) => return Err(retry_later(format!("instance {id:?} did not answer for its partitions: {why}"))),
        };
        covered.extend(partitions);
        lists.push(items);
    }
    let missing: Vec<u32> = (0..view.partitions).filter(|p| !covered.contains(p)).collect();
    if !missing.is_empty() {
        return Err(retry_later(format!("partitions {missing:?} are moving between instances")));
    }
    Ok(lists)
}

/// `/v1/trace/<id>` at `advertise`, the id as one path segment (percent-encoded).
fn trace_url(advertise: &str, id: &str) -> Result<reqwest::Url, String> {
    let mut url =
        reqwest::Url::parse(&format!("http://{advertise}/v1/trace")).map_err(|err| format!("{advertise}: {err}"))?;
    url.path_segments_mut().map_err(|()| format!("{advertise}: not a base URL"))?.push(id);
    Ok(url)
}

/// `/v1/alerts?scope=instance` of the instance at `advertise`.
async fn ask(
    client: &reqwest::Client,
    advertise: &str,
    token: Option<&str>,
    state: Option<&str>,
) -> Result<InstanceAlerts, String> {
    let url =
        reqwest::Url::parse(&format!("http://{advertise}/v1/alerts")).map_err(|err| format!("{advertise}: {err}"))?;
    let mut query = vec![("scope", "instance")];
    query.extend(state.map(|state| ("state", state)));
    get_json(client, url, &query, token).await
}

/// GETs `url` with `query` from another instance and reads its JSON answer; the error says
/// which instance and why.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: reqwest::Url,
    query: &[(&str, &str)],
    token: Option<&str>,
) -> Result<T, String> {
    let instance = url.authority().to_string();
    let mut request = client.get(url).query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.timeout(ASK_TIMEOUT).send().await.map_err(|err| format!("{instance}: {err}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{instance} answered {status}: {body}"));
    }
    response.json().await.map_err(|err| format!("{instance}: {err}"))
}

fn retry_later(message: String) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Sends a request about a store whose partition this instance does not run to the instance
/// that should: `307 Temporary Redirect` to its `cluster.advertise` address, same path and
/// query; `503` with `Retry-After` while the partition is on its way to this instance, or
/// held by it but not running (taking over, or handing over).
pub(super) async fn to_owner(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(view) = &state.cluster else { return next.run(request).await };
    let Some(store) = store_of(&request) else { return next.run(request).await };
    let partition = partition::of_store(&store, view.partitions);
    if view.ownership.borrow().partitions.contains_key(&partition) {
        // Its lease is held, but its state is read only while it runs: a partition still
        // catching up, or stopped to be handed over, would answer an empty 404.
        if !view.running().contains(&partition) {
            return retry_later(format!(
                "store {store:?} is in partition {partition}, which is moving to or from this instance; \
                 try again shortly"
            ));
        }
        return next.run(request).await;
    }
    let members = view.members.borrow().clone();
    let ids: BTreeSet<String> = members.keys().cloned().collect();
    let owner = assign::owner(partition, &ids).filter(|owner| *owner != view.instance).and_then(|o| members.get(o));
    let Some(owner) = owner else {
        return retry_later(format!(
            "store {store:?} is in partition {partition}, which is moving to this instance; try again shortly"
        ));
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("http://{}{path}", owner.advertise);
    match HeaderValue::from_str(&location) {
        Ok(value) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, value)]).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the owner's address {location:?} is not a URL")),
    }
}

/// The store a request is about: `/v1/stores/<store>/…`, or `?store=` of `/v1/trace/<id>`.
fn store_of(request: &Request) -> Option<String> {
    let uri = request.uri();
    if let Some(rest) = uri.path().strip_prefix("/v1/stores/") {
        return rest.split('/').next().filter(|s| !s.is_empty()).map(str::to_string);
    }
    uri.query()?.split('&').find_map(|pair| pair.strip_prefix("store=")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Epoch;
    use crate::health::Health;
    use tally_state::{MemStore, Store};

    /// Serves an instance "me" of `members` owning `owned` of 4 partitions, reading `serving`;
    /// the base URL.
    async fn serve(owned: &[u32], serving: Arc<UnionStore>, members: &[&str]) -> String {
        let ownership = Ownership { partitions: owned.iter().map(|p| (*p, Epoch(1))).collect(), ..Default::default() };
        let members = members
            .iter()
            .map(|id| {
                let member = Member {
                    instance: id.to_string(),
                    advertise: format!("{id}.invalid:8080"),
                    started_at: String::new(),
                    session: String::new(),
                };
                (id.to_string(), member)
            })
            .collect();
        let view = ClusterView {
            instance: "me".to_string(),
            partitions: 4,
            ownership: watch::channel(ownership).1,
            members: watch::channel(members).1,
            serving: Arc::clone(&serving),
            client: reqwest::Client::new(),
        };
        let state = ApiState {
            store: serving,
            health: Arc::new(Health::default()),
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle(),
            bearer_token: None,
            cluster: Some(view),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, super::super::router(state)).await });
        format!("http://{address}")
    }

    async fn get(url: &str) -> reqwest::Response {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
        client.get(url).send().await.expect("an answer")
    }

    /// A store of partition `partition` of 4.
    fn store_in(partition: u32) -> String {
        (0..).map(|n| format!("{n:04}")).find(|s| partition::of_store(s, 4) == partition).expect("a store")
    }

    #[tokio::test]
    async fn a_partition_held_but_not_running_answers_retry_later_and_one_running_answers_itself() {
        let serving = Arc::new(UnionStore::new(Vec::new()));
        let base = serve(&[1], Arc::clone(&serving), &["me", "other"]).await;
        let day = format!("{base}/v1/stores/{}/days/2026-11-27", store_in(1));

        let taking_over = get(&day).await;
        assert_eq!(taking_over.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(taking_over.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let why = taking_over.text().await.expect("a body");
        assert!(why.contains("partition 1") && why.contains("moving"), "{why}");

        serving.replace_indexed(vec![(1, Arc::new(MemStore::new()) as Arc<dyn Store>)]);
        let running = get(&day).await;
        assert_eq!(running.status(), StatusCode::NOT_FOUND, "read here: this store has no data yet");
        assert!(running.text().await.expect("a body").contains("no data for store"));
    }

    #[tokio::test]
    async fn a_partition_owned_elsewhere_is_redirected_to_its_owner() {
        let serving = Arc::new(UnionStore::new(Vec::new()));
        let members = ["me", "other"];
        let ids: BTreeSet<String> = members.iter().map(|m| m.to_string()).collect();
        let theirs = (0..4).find(|p| assign::owner(*p, &ids) == Some("other")).expect("one of theirs");
        let base = serve(&[], serving, &members).await;
        let path = format!("/v1/stores/{}/days/2026-11-27", store_in(theirs));

        let redirected = get(&format!("{base}{path}")).await;
        assert_eq!(redirected.status(), StatusCode::TEMPORARY_REDIRECT);
        let location = redirected.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(location, Some(format!("http://other.invalid:8080{path}")));
    }
}
