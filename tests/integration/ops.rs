//! The ops listener (`/healthz`, `/readyz`, `/metrics`) and graceful shutdown.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test]
async fn healthz_answers_ok() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = plain_client()
        .get(node.ops_url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "ok");
}

/// 003 Điều 48 khoản 4, 002 Điều 24 khoản 1: backend connections are checked and their state reported.
#[tokio::test]
async fn readyz_is_ready_when_every_health_url_answers() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let health = format!("{}/health", upstream.url());
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .citizen_rest_service(&upstream.url(), "", Some(&health))
        .start()
        .await;

    let response = plain_client()
        .get(node.ops_url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["backends_down"], serde_json::json!([]), "{body}");
    assert_eq!(body["contracts"], 3, "{body}");
    assert_eq!(body["secure_servers"], 2, "{body}");
}

/// 003 Điều 48 khoản 4, 002 Điều 24 khoản 1: a lost backend connection is named in /readyz.
#[tokio::test]
async fn readyz_names_the_adapter_whose_health_url_is_dead() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let health = format!("{}/health", upstream.url());
    let dead = format!("http://{}", dead_address().await);
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .citizen_rest_service(&upstream.url(), "", Some(&health))
        .adapter(
            "archive-rest",
            &citizen_rest_adapter(
                "archive-rest",
                &dead,
                "timeout_ms = 1000",
                Some(&format!("{dead}/health")),
            ),
        )
        .service(
            "VN/GOV/000.00.00.G10/archive-db/citizen-archive",
            "archive-rest",
        )
        .start()
        .await;

    let response = plain_client()
        .get(node.ops_url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(
        body["backends_down"],
        serde_json::json!(["archive-rest"]),
        "{body}"
    );
}

/// 002 Điều 16 khoản 1, Điều 26 khoản 1: automatic monitoring per service and per participant, without personal ids.
#[tokio::test]
async fn metrics_count_requests_by_service_consumer_and_status_without_citizen_ids() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    // A subsystem of its own, so the process-wide counters are this test's alone.
    let consumer = "VN/GOV/000.00.00.H29/metrics-probe";
    let contract = portal_citizen_contract()
        .replace("id: portal-citizen", "id: metrics-probe-citizen")
        .replace(PORTAL, consumer);
    let probe = pki.client("metrics-probe");
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .contract("metrics-probe", &contract)
        .register(&probe, consumer)
        .start()
        .await;
    let client = node.client(&probe);
    let citizen_id = "048177665544";

    for _ in 0..2 {
        let response = client
            .get(node.citizen_url(citizen_id))
            .header("X-Road-Client", consumer)
            .header("X-Purpose", PURPOSE)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    let denied = client
        .get(node.citizen_url(citizen_id))
        .header("X-Road-Client", consumer)
        .header("X-Purpose", "MARKETING")
        .send()
        .await
        .expect("request");
    assert_eq!(denied.status(), 403);

    let response = plain_client()
        .get(node.ops_url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let sample = |status: &str, service: &str| -> Option<f64> {
        text.lines()
            .filter(|line| line.starts_with("datagate_requests_total{"))
            .filter(|line| {
                line.contains(&format!("consumer=\"{consumer}\""))
                    && line.contains(&format!("service=\"{service}\""))
                    && line.contains(&format!("status=\"{status}\""))
            })
            .find_map(|line| line.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(sample("200", CITIZEN_SERVICE), Some(2.0), "{text}");
    // Kept handles (the contract's) carry the same labels as the first registration.
    assert!(
        text.lines()
            .any(|line| line.starts_with("datagate_requests_total{")
                && line.contains(&format!("consumer=\"{consumer}\""))
                && line.contains("leg=\"local\"")
                && line.ends_with(" 2")),
        "{text}"
    );
    assert!(
        text.lines().any(|line| line.starts_with(&format!(
            "datagate_request_duration_seconds_count{{service=\"{CITIZEN_SERVICE}\"}}"
        ))),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("datagate_upstream_duration_seconds_count{adapter=")),
        "{text}"
    );
    // Refused before a contract matched: the service label stays bounded.
    assert_eq!(sample("403", "unknown"), Some(1.0), "{text}");
    assert!(!text.contains(citizen_id), "a citizen id is in the metrics");
}

/// 003 Điều 50 khoản 1: stopping a node does not cut the exchanges it has accepted.
#[tokio::test]
async fn shutdown_drains_in_flight_request_then_refuses_connections() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Slow(
        Duration::from_millis(500),
        Box::new(Reply::Citizen),
    ))
    .await;
    let mut node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let request = node.lookup(&node.client(&pki.portal), CITIZEN_ID).send();
    let in_flight = tokio::spawn(request);
    eventually("the request to reach the upstream", || upstream.hits() == 1).await;

    node.shutdown();
    let response = in_flight
        .await
        .expect("task")
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, projected_citizen(CITIZEN_ID));

    // The listener is closed: new connections are refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(node.consumer).await {
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused,
                    "{error}"
                );
                break;
            }
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the consumer listener still accepts"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    node.stopped().await.expect("the node stops cleanly");
    assert!(
        tokio::net::TcpStream::connect(node.ops).await.is_err(),
        "the ops listener is closed too"
    );
}

/// Whether a value's type is `Send`, decided at compile time without failing
/// compilation when it is not (autoref specialisation).
struct SendProbe<T>(std::marker::PhantomData<T>);

fn send_probe<T>(_: &T) -> SendProbe<T> {
    SendProbe(std::marker::PhantomData)
}

#[allow(dead_code)] // Unused while the probed type is not Send.
trait IsSend {
    fn is_send(&self) -> bool {
        true
    }
}
impl<T: Send> IsSend for SendProbe<T> {}

#[allow(dead_code)] // Unused once the probed type is Send.
trait NotSend {
    fn is_send(&self) -> bool {
        false
    }
}
impl<T> NotSend for &SendProbe<T> {}

/// An embedder (and this suite) runs a node with `tokio::spawn(node.run(rx))`
/// on a multi-thread runtime, which needs the future of `Node::run` to be `Send`.
#[tokio::test]
async fn node_run_future_is_send_so_it_can_be_spawned() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9").write();
    let config = datagate::config::load(&written.config_file).expect("valid configuration");
    let node = datagate::gateway::server::start(config)
        .await
        .expect("node starts");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let run = node.run(stopped);
    // The borrow selects the fallback method; the probe is checked on known types first.
    #[allow(clippy::needless_borrow)]
    let (control_send, control_not_send, is_send) = (
        (&send_probe(&std::future::ready(()))).is_send(),
        (&send_probe(&std::rc::Rc::new(()))).is_send(),
        (&send_probe(&run)).is_send(),
    );
    assert!(
        control_send && !control_not_send,
        "the Send probe itself is broken"
    );
    drop(run);
    assert!(
        is_send,
        "the future of Node::run is not Send: tokio::spawn(node.run(rx)) does not compile \
         (src/gateway/server.rs: the watch::Ref of `shutdown.wait_for(..)` lives in the select! output)"
    );
}

/// 003 Điều 50 khoản 1: changes apply without a restart, and a broken change never interrupts service.
#[tokio::test]
async fn reload_applies_a_valid_change_and_keeps_the_last_good_set_on_error() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let portal = node.client(&pki.portal);
    let citizen_id = "079099000123";
    let contract_file = node.written.path("contracts/portal-citizen.yaml");
    let response = node
        .lookup(&portal, citizen_id)
        .send()
        .await
        .expect("lookup");
    assert_eq!(response.status(), 200);

    // A broken contract is refused as a whole: the running set keeps answering.
    std::fs::write(&contract_file, "id: [unclosed").expect("write broken contract");
    assert!(!node.reload(), "a broken contract must not be applied");
    let response = node
        .lookup(&portal, citizen_id)
        .send()
        .await
        .expect("lookup");
    assert_eq!(response.status(), 200, "the last good set still serves");

    // A valid change (the purpose is withdrawn) takes effect on reload.
    let narrowed = portal_citizen_contract().replace(
        "purposes: [HOUSEHOLD-REGISTRATION, SOCIAL-ALLOWANCE]",
        "purposes: [LAND-TITLE]",
    );
    assert_ne!(narrowed, portal_citizen_contract());
    std::fs::write(&contract_file, narrowed).expect("write narrowed contract");
    assert!(node.reload(), "a valid contract set is applied");
    let response = node
        .lookup(&portal, citizen_id)
        .send()
        .await
        .expect("lookup");
    expect_problem(response, 403, "contract.purpose_not_allowed").await;
}

/// Issue 9, fix first: `/readyz` reports the journal (writer, last commit, queue, key
/// id), and every record names the id of the key its digests were made with, which is
/// the configured key file's.
#[tokio::test]
async fn readyz_reports_the_journal_and_records_name_their_key() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let expected = datagate::journal::key_id(
        &std::fs::read(node.written.path("journal.key")).expect("journal key"),
    );
    let body: Value = plain_client()
        .get(node.ops_url("/readyz"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["journal"]["writer_running"], true, "{body}");
    assert_eq!(body["journal"]["last_commit_ok"], true, "{body}");
    assert_eq!(body["journal"]["key_id"], expected.as_str(), "{body}");
    let response = node
        .lookup_citizen_as(&pki.portal, PORTAL, Some(PURPOSE))
        .await;
    assert_eq!(response.status(), 200);
    let rows = crate::journal::journal_rows(&node).await;
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|row| row["key_id"].as_deref() == Some(expected.as_str())),
        "{rows:?}"
    );
}
