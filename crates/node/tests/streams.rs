//! Streams and listings that do not lose things: `/v1/watch` events carry ids and resume with
//! `Last-Event-ID`, with a `lagged` event where changes cannot be replayed; `/v1/kv` pages past
//! its 1,000-value limit with `after=`.

mod common;

use axum::http::{Method, StatusCode};
use beaufort_core::types::{Key, Value};
use common::Cluster;

async fn set(cluster: &Cluster, key: &str) {
    let key = Key::new(key.as_bytes().to_vec()).expect("key");
    let value = Value::data(b"v".to_vec()).expect("value");
    cluster.nodes[0].set(key, value).await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_the_last_event_id_and_reports_what_it_cannot_replay() {
    let cluster = Cluster::start(1).await;
    let mut first = cluster.watch(0, "w/", None).await;
    for key in ["w/1", "other/x", "w/2", "w/3"] {
        set(&cluster, key).await;
    }
    let mut seen = Vec::new();
    for expected in ["w/1", "w/2", "w/3"] {
        let event = first.next().await;
        assert_eq!(event.event, "change");
        assert_eq!(event.data["key"], expected);
        seen.push(event.id.expect("an id"));
    }
    // Reconnecting after w/1: w/2 and w/3 again, under the same ids, then what comes next.
    let mut resumed = cluster.watch(0, "w/", Some(&seen[0])).await;
    for (expected, id) in [("w/2", &seen[1]), ("w/3", &seen[2])] {
        let event = resumed.next().await;
        assert_eq!(
            (event.data["key"].as_str(), event.id.as_ref()),
            (Some(expected), Some(id))
        );
    }
    set(&cluster, "w/4").await;
    assert_eq!(resumed.next().await.data["key"], "w/4");
    assert_eq!(first.next().await.data["key"], "w/4");
    // An id this member never gave out (or gave out before a restart) cannot be resumed from.
    let mut stale = cluster.watch(0, "w/", Some("0000000000000000-1")).await;
    let event = stale.next().await;
    assert_eq!(event.event, "lagged");
    assert!(event.data["missed"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_pages_past_a_thousand_values_with_after() {
    let cluster = Cluster::start(1).await;
    let mut pending = Vec::new();
    for i in 0..1050 {
        let key = Key::new(format!("p/{i:04}").into_bytes()).expect("key");
        let value = Value::data(b"v".to_vec()).expect("value");
        pending.push(cluster.nodes[0].submit(key, value).await.expect("submit"));
    }
    for write in pending {
        write.wait().await.expect("commit");
    }
    let mut keys = Vec::new();
    let mut uri = "/v1/kv?prefix=p/&limit=1000".to_owned();
    loop {
        let page = cluster.call(0, Method::GET, &uri, None, false).await;
        assert_eq!(page.status, StatusCode::OK);
        let page = page.json();
        let page = page.as_array().expect("a list");
        keys.extend(
            page.iter()
                .map(|v| v["key"].as_str().expect("key").to_owned()),
        );
        if page.len() < 1000 {
            break;
        }
        uri = format!(
            "/v1/kv?prefix=p/&limit=1000&after={}",
            keys.last().expect("a key")
        );
    }
    let expected: Vec<String> = (0..1050).map(|i| format!("p/{i:04}")).collect();
    assert_eq!(keys, expected, "every key once, in order");
}
