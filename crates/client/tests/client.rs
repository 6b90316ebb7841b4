//! The client against a live in-process member serving its API on a loopback port.

use beaufort_client::{Client, ClientError, WatchEvent, Write, PAGE};
use beaufort_node::config::{init_local, Config, InitOptions, DEFAULT_NEIGHBOURS};
use beaufort_node::{api, NodeHandle, StartOptions};

/// A consortium of one member on free loopback ports.
fn one_member(name: &str) -> InitOptions {
    InitOptions {
        members: 1,
        name: name.into(),
        p2p_base_port: 0,
        api_base_port: 0,
        write_once_prefixes: Vec::new(),
        neighbours: DEFAULT_NEIGHBOURS,
        aggregate_wait_ms: None,
    }
}

/// A one-member consortium serving its API: the client with its token, the API address, and
/// the directory.
async fn member() -> (Client, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("directory");
    let consortium = init_local(dir.path(), &one_member("client-test")).expect("init");
    let config = Config::load(&consortium.config_files[0]).expect("configuration");
    let token = config.node.api_token.clone();
    let node = NodeHandle::start(config, StartOptions::default()).expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(api::serve(node, listener));
    let client = Client::new(address.to_string()).with_token(token);
    (client, address.to_string(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reads_lists_and_watches_with_types() {
    let (client, address, _dir) = member().await;
    let mut watch = client.watch("c/", None).await.expect("watch");
    let Write::Committed(put) = client.put("c/a b", b"one").await.expect("put") else {
        panic!("a one-member consortium commits at once");
    };
    assert_eq!(
        (put.key.as_str(), put.value.as_deref()),
        ("c/a b", Some("one"))
    );
    let got = client.get("c/a b").await.expect("get").expect("a value");
    assert_eq!(got.view, put.view);
    assert!(client.get("c/none").await.expect("get").is_none());
    let receipt = client
        .receipt("c/a b")
        .await
        .expect("receipt")
        .expect("a receipt");
    assert_eq!(receipt.value.key, "c/a b");

    let WatchEvent::Change { id, value } = watch.next().await.expect("event").expect("open") else {
        panic!("a change");
    };
    assert_eq!(value.key, "c/a b");
    let Write::Committed(deleted) = client.delete("c/a b").await.expect("delete") else {
        panic!("committed");
    };
    assert!(deleted.deleted);
    // Resuming after the put replays the delete.
    let mut resumed = client.watch("c/", id.as_deref()).await.expect("watch");
    let Some(WatchEvent::Change { value, .. }) = resumed.next().await.expect("event") else {
        panic!("a change");
    };
    assert!(value.deleted);

    // Errors carry the member's status and words.
    let refused = Client::new(address).put("c/x", b"v").await;
    assert!(
        matches!(refused, Err(ClientError::Http { status: 401, .. })),
        "{refused:?}"
    );
    let long = "k".repeat(300);
    assert!(matches!(
        client.get(&long).await,
        Err(ClientError::Http { status: 400, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_all_reads_every_page() {
    let (client, _address, _dir) = member().await;
    for i in 0..(PAGE + 5) {
        let key = format!("p/{i:04}");
        assert!(matches!(
            client.put(&key, b"v").await.expect("put"),
            Write::Committed(_)
        ));
    }
    let all = client.list_all("p/").await.expect("list");
    let keys: Vec<String> = all.into_iter().map(|v| v.key).collect();
    let expected: Vec<String> = (0..(PAGE + 5)).map(|i| format!("p/{i:04}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(
        client
            .list("p/", Some("p/0003"), 2)
            .await
            .expect("page")
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_https_by_host_name_trusting_only_what_it_is_given() {
    let dir = tempfile::tempdir().expect("directory");
    let consortium = init_local(dir.path(), &one_member("client-tls-test"))
        .expect("init")
        .with_self_signed_tls(dir.path(), &[])
        .expect("tls");
    let config = Config::load(&consortium.config_files[0]).expect("configuration");
    let token = config.node.api_token.clone();
    let cert = config.node.tls_cert.clone().expect("tls_cert");
    let tls = config.node.tls_server_config().expect("tls").expect("on");
    let node = NodeHandle::start(config, StartOptions::default()).expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(api::serve_tls_until(
        node,
        listener,
        Some(tls),
        std::future::pending(),
    ));
    let url = format!("https://localhost:{port}");

    let trust = beaufort_client::Trust::public_roots()
        .with_pem_file(&cert)
        .expect("certificate");
    let client = Client::with_trust(&url, &trust).with_token(token.clone());
    let Write::Committed(put) = client.put("t/1", b"x").await.expect("put over https") else {
        panic!("a one-member consortium commits at once");
    };
    assert_eq!(put.value.as_deref(), Some("x"));
    assert!(client.ready().await.is_ok());

    // The public roots alone do not vouch for a self-signed certificate.
    let stranger = Client::new(&url).with_token(token.clone());
    let error = stranger
        .get("t/1")
        .await
        .expect_err("untrusted")
        .to_string();
    assert!(error.contains("invalid peer certificate"), "{error}");
    // Plain HTTP to the TLS port gets no HTTP answer, and the error says what to do.
    let plain = Client::new(format!("127.0.0.1:{port}"));
    let error = plain.get("t/1").await.expect_err("plain").to_string();
    assert!(error.contains("https://"), "{error}");
}
