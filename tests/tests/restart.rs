//! Effectively once across restarts (docs/operations.md, "The guarantees"): graceful stops, kill -9 mid-stream, and a
//! NATS restart under a running processor.

use std::time::Duration;

use serde_json::Value;
use tally_tests::fixtures::{self, DAY};
use tally_tests::{start_all, wait_until, DayTotals, Js, Model, DLQ_STREAM, DRAIN_TIMEOUT};

async fn publish_all(js: &Js, model: &mut Model, records: &[(String, Value)]) {
    for (subject, record) in records {
        js.publish_json(subject, record).await;
        model.apply(record);
    }
}

async fn assert_matches_model(tally: &tally_tests::Tally, model: &Model) {
    for (store, day) in model.store_days() {
        let got = DayTotals::from_http(&tally.day(&store, &day).await);
        assert_eq!(got, model.day(&store, &day), "store {store} day {day}\n{}", tally.logs());
    }
}

// Proves: stop (SIGTERM), publish more while down, start again: the totals are exact, nothing
// lost and nothing counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_resumes_without_double_counting() {
    let (_nats, mut tally, js) = start_all("").await;
    let mut model = Model::new();
    for store in ["0042", "0077"] {
        publish_all(&js, &mut model, &fixtures::traffic("retail", store, DAY, "a", 150, 1)).await;
    }
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_matches_model(&tally, &model).await;

    let status = tally.stop_gracefully();
    assert!(status.success(), "SIGTERM must end tally cleanly, got {status}\n{}", tally.logs());
    for store in ["0042", "0077"] {
        publish_all(&js, &mut model, &fixtures::traffic("retail", store, DAY, "b", 150, 2)).await;
    }
    tally.restart().await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_matches_model(&tally, &model).await;
}

// Proves: kill -9 at arbitrary points while a backlog is being consumed (small batches) loses
// nothing and counts nothing twice, and the DLQ gets each rejected input exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let (_nats, mut tally, js) = start_all("[input]\nbatch_max = 10\n").await;
    tally.kill();
    let mut model = Model::new();
    let mut garbage = 0u64;
    let mut records = fixtures::traffic("retail", "0042", DAY, "k", 1000, 7);
    records.extend(fixtures::traffic("retail", "0043", DAY, "k", 500, 8));
    for (i, (subject, record)) in records.iter().enumerate() {
        if i % 50 == 25 {
            js.publish(subject, b"{not json".to_vec(), &[]).await;
            garbage += 1;
        }
        js.publish_json(subject, record).await;
        model.apply(record);
    }
    let total = js.stream_info("RETAIL_IN").await.state.last_sequence;

    // Crash it repeatedly, each time soon after it has acked another eighth of the backlog.
    let (stream_name, consumer_name) = (tally.input_stream(), tally.consumer());
    // The messages acked so far, over every partition's consumer.
    let ack_floor = || async { js.consumer_acked(&stream_name, &consumer_name).await };
    let mut kills_mid_stream = 0;
    for _ in 0..6 {
        let floor = ack_floor().await;
        if floor >= total {
            break;
        }
        let target = (floor + total / 8).min(total);
        tally.spawn_run_no_wait();
        let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
        while ack_floor().await < target {
            assert!(
                std::time::Instant::now() < deadline,
                "tally made no progress towards seq {target}\n{}",
                tally.logs()
            );
            assert!(tally.is_running(), "tally exited by itself\n{}", tally.logs());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tally.kill();
        let floor = ack_floor().await;
        eprintln!("killed tally at ack floor {floor} of {total}");
        if floor < total {
            kills_mid_stream += 1;
        }
    }
    assert!(kills_mid_stream >= 2, "the test must crash tally mid-stream at least twice, did {kills_mid_stream}");
    tally.restart().await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;
    assert_matches_model(&tally, &model).await;

    let dlq = tally_tests::wait_for_messages(&js, DLQ_STREAM, garbage).await;
    // Give a wrongly repeated publish time to show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dlq =
        if js.message_count(DLQ_STREAM).await as usize != dlq.len() { js.messages(DLQ_STREAM).await } else { dlq };
    assert_eq!(dlq.len() as u64, garbage, "each rejected input is dead-lettered exactly once");
}

// Proves: tally rides through a NATS restart: /readyz turns 503 with a JSON reason while NATS
// is down, 200 again after, and what is published afterwards is counted exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_through_a_nats_restart() {
    let (mut nats, tally, js) = start_all("").await;
    let mut model = Model::new();
    publish_all(&js, &mut model, &fixtures::traffic("retail", "0042", DAY, "a", 100, 3)).await;
    tally.wait_drained(&js, DRAIN_TIMEOUT).await;

    nats.stop();
    let tally_ref = &tally;
    let unready =
        wait_until(
            DRAIN_TIMEOUT,
            move || async move { matches!(tally_ref.try_http_get("/readyz").await, Ok((503, _))) },
        )
        .await;
    assert!(unready, "/readyz must report NATS being down\n{}", tally.logs());
    let (_, body) = tally.http_get("/readyz").await;
    assert!(body.is_object(), "/readyz 503 carries a JSON reason, got {body}");
    assert!(tally.http_get("/healthz").await.0 == 200, "/healthz stays 200: the process is alive");

    nats.start_again();
    // Publish while tally reconnects: it must resume consuming by itself…
    let js = Js::connect(&nats.url()).await;
    publish_all(&js, &mut model, &fixtures::traffic("retail", "0042", DAY, "b", 100, 4)).await;
    tally.wait_drained(&js, Duration::from_secs(60)).await;
    assert_matches_model(&tally, &model).await;
    // …and report ready again, also once it is idle.
    let ready =
        wait_until(
            DRAIN_TIMEOUT,
            move || async move { matches!(tally_ref.try_http_get("/readyz").await, Ok((200, _))) },
        )
        .await;
    if !ready {
        let last = tally.try_http_get("/readyz").await;
        panic!("/readyz must recover after NATS is back; last /readyz: {last:?}\n{}", tally.logs());
    }
}

// Proves: an idle tally reports ready again by itself once NATS is back, without needing new
// input to arrive first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_recovers_while_idle_after_a_nats_restart() {
    let (mut nats, tally, _js) = start_all("").await;
    nats.stop();
    let tally_ref = &tally;
    let unready =
        wait_until(
            DRAIN_TIMEOUT,
            move || async move { matches!(tally_ref.try_http_get("/readyz").await, Ok((503, _))) },
        )
        .await;
    assert!(unready, "/readyz must report NATS being down\n{}", tally.logs());
    nats.start_again();
    let ready = wait_until(Duration::from_secs(60), move || async move {
        matches!(tally_ref.try_http_get("/readyz").await, Ok((200, _)))
    })
    .await;
    if !ready {
        let last = tally.try_http_get("/readyz").await;
        panic!("/readyz must recover after NATS is back; last /readyz: {last:?}\n{}", tally.logs());
    }
}
