//! Issue 7: the core as an attacker tries it. Each test is one finding of the
//! attack on the core, over real sockets with real certificates, named after
//! what it checks.

use crate::support::*;
use datagate::gateway::listener::HIBERNATE_AFTER;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A contract for the ministry that is valid now (its pilot contract has expired).
fn ministry_current_contract() -> String {
    ministry_expired_contract()
        .replace("id: ministry-citizen-pilot", "id: ministry-citizen-current")
        .replace("2021-01-01T00:00:00+07:00", "2099-01-01T00:00:00+07:00")
}

/// A citizen search head (POST, takes a JSON body) as the portal, for raw requests.
fn search_head() -> String {
    format!(
        "POST /r1/{CITIZEN_SERVICE}/search HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Road-Client: {PORTAL}\r\n\
         X-Purpose: {PURPOSE}\r\nContent-Type: application/json"
    )
}

/// A citizen lookup head as the portal, for raw requests.
fn lookup_head(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Road-Client: {PORTAL}\r\nX-Purpose: {PURPOSE}"
    )
}

/// Polls an async condition every 20 ms for up to 5 s.
async fn eventually_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(node: &TestNode) -> String {
    reqwest::get(node.ops_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one Prometheus sample line starting with `prefix`, or 0.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

// --- Finding 0: a certificate is bound to subsystems, not to a member --------------

/// 003 Điều 50: only registered systems exchange data; a certificate speaks only for
/// the subsystems it is registered for.
/// 004 Điều 55 khoản 3: sender identity is the subsystem the certificate is bound to, not its whole member.
#[tokio::test]
async fn certificate_cannot_claim_a_sibling_subsystem_of_its_member() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    // A sibling subsystem of the portal's member with a contract of its own.
    let sibling = "VN/GOV/000.00.00.H29/land-office";
    let contract = portal_citizen_contract()
        .replace("id: portal-citizen", "id: land-office-citizen")
        .replace(PORTAL, sibling);
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .contract("land-office", &contract)
        .start()
        .await;

    let response = node
        .lookup_citizen_as(&pki.portal, sibling, Some(PURPOSE))
        .await;
    expect_problem(response, 403, "trust.subsystem_not_bound").await;
    assert_eq!(upstream.hits(), 0);
}

/// Design §5 (no article): a secure server's certificate is never a caller on the consumer listener.
#[tokio::test]
async fn secure_server_certificate_is_not_a_caller_on_the_consumer_listener() {
    init();
    let pki = TestPki::new();
    let server = pki.client("hcm-lgsp-1");
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .register_server(&server, PORTAL_MEMBER, Effective::Already)
        .start()
        .await;

    let response = node.lookup_citizen_as(&server, PORTAL, Some(PURPOSE)).await;
    expect_problem(response, 403, "trust.certificate_unregistered").await;
    assert_eq!(upstream.hits(), 0);
}

// --- Finding 1: SIGHUP reloads the demo ---------------------------------------------

/// 003 Điều 50 khoản 1: SIGHUP applies the configuration without interrupting service.
#[cfg(unix)]
#[tokio::test]
async fn demo_reloads_on_sighup_and_keeps_serving() {
    init();
    let state = tempfile::tempdir().expect("temp dir");
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(["demo", "--state-dir"])
        .arg(state.path())
        .arg("--project-dir")
        .arg(repo_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the demo");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = i32::try_from(demo.id()).expect("a pid fits in i32");
    let demo = Kill(&mut demo);
    let ops = "http://127.0.0.1:9090";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(format!("{ops}/healthz")).await
            && response.status() == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo did not start within 60 s (is another demo holding 127.0.0.1:9090?)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pid = rustix::process::Pid::from_raw(pid).expect("a process id");
    // One signal at a time: two sent back to back may arrive as one.
    for applied in 1..=2 {
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
        eventually_async("the reload to be applied", || async {
            let text = reqwest::get(format!("{ops}/metrics"))
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            sample(&text, "datagate_reloads_total{outcome=\"applied\"}") >= f64::from(applied)
        })
        .await;
    }
    assert!(
        demo.0.try_wait().expect("wait").is_none(),
        "SIGHUP ended the demo"
    );
    let health = reqwest::get(format!("{ops}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    portal_page_fills_the_form_with_provenance().await;
}

/// Issue 10 §8, on the running demo: the portal page lists sample citizens; following a link
/// fills the social-allowance form through the gateway (preview, assertion, fill over mTLS)
/// and shows each field with its provenance; every input has its label; a sign-in at
/// `medium` shows the step-up answer with a link to sign in again at `high`.
async fn portal_page_fills_the_form_with_provenance() {
    let portal = "http://127.0.0.1:18080";
    let get = |url: String| async move {
        let response = reqwest::get(&url).await.expect("portal page");
        assert_eq!(response.status(), 200, "{url}");
        response.text().await.expect("html")
    };
    let index = get(format!("{portal}/")).await;
    assert!(index.contains("<html lang=\"vi\">"), "{index}");
    let link = index
        .split("href=\"")
        .skip(1)
        .map(|rest| {
            rest.split('"')
                .next()
                .unwrap_or_default()
                .replace("&amp;", "&")
        })
        .find(|href| href.starts_with("/forms/social-allowance?") && href.ends_with("level=high"))
        .expect("a link to fill the form");
    let filled = get(format!("{portal}{link}")).await;
    assert_eq!(filled.matches("<h1>").count(), 1);
    assert!(filled.contains("Đã điền sẵn"), "{filled}");
    assert!(
        filled.contains("VN/GOV/000.00.00.G10/population-db/citizen")
            && filled.contains("VN/GOV/000.00.00.G22/insurance-db/participant")
            && filled.contains("VN/GOV/000.00.00.G06/enterprise-db/enterprise"),
        "every source named in the provenance: {filled}"
    );
    let inputs = filled.matches("<input id=\"").count();
    assert_eq!(inputs, 15, "the form's 15 fields");
    for id in filled
        .split("<input id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default())
    {
        assert!(
            filled.contains(&format!("<label for=\"{id}\">")),
            "input {id} has no label"
        );
    }
    let step_up = get(format!(
        "{portal}{}",
        link.replace("level=high", "level=medium")
    ))
    .await;
    assert!(step_up.contains("citizen.step_up_required"), "{step_up}");
    assert!(step_up.contains("role=\"alert\""), "{step_up}");
    assert!(
        step_up.contains("level=high\">"),
        "a link to sign in at high: {step_up}"
    );
}

// --- Finding 2: one tenant inside its quota cannot shut out the others --------------

/// A request whose chunked body never ends: answered 408 `request.timeout` (the
/// sender's fault) at the receive deadline, long before the exchange deadline.
/// 002 Điều 26 khoản 2: a sender that never finishes its body cannot hold the node.
#[tokio::test]
async fn body_that_never_ends_gets_408_at_the_receive_deadline() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("request_receive_timeout_ms = 300")
        .limit("request_timeout_ms = 15000")
        .start()
        .await;

    let started = std::time::Instant::now();
    let answer = node
        .raw_request(
            &pki.portal,
            &format!("{}\r\nTransfer-Encoding: chunked", search_head()),
            b"5\r\n{\"cit\r\n",
        )
        .await;
    let body = answer.expect_problem(408, "request.timeout");
    assert_eq!(body["origin"], "consumer");
    assert_eq!(
        answer.header("x-road-error"),
        Some("Client.request.timeout")
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered at the exchange deadline, not the receive deadline"
    );
    assert_eq!(upstream.hits(), 0);
}

/// A consumer holding its whole share of in-flight exchanges with slow bodies is
/// refused more, while another consumer is still served.
/// 003 Điều 50 khoản 1: one consumer cannot interrupt the service of the others.
#[tokio::test]
async fn consumer_at_its_in_flight_share_leaves_room_for_the_others() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .contract("ministry-current", &ministry_current_contract())
        .limit("max_concurrent_requests = 8")
        .limit("max_in_flight_per_consumer = 2")
        .limit("request_receive_timeout_ms = 3000")
        .start()
        .await;

    // Two slow requests take the portal's whole share.
    let slow = slow_searches(&node, &pki, 2).await;
    let portal = node.client(&pki.portal);
    eventually_async("the portal's share to be taken", || async {
        let response = node.lookup(&portal, CITIZEN_ID).send().await.expect("send");
        response.status() == 429
    })
    .await;
    let refused = node.lookup(&portal, CITIZEN_ID).send().await.expect("send");
    assert!(refused.headers().contains_key("retry-after"));
    let body = expect_problem(refused, 429, "ratelimit.in_flight_share_exceeded").await;
    assert_eq!(body["retryable"], true);

    // The other ministry is served meanwhile.
    let response = node
        .lookup_citizen_as(&pki.ministry, MINISTRY, Some("LAND-TITLE"))
        .await;
    assert_eq!(response.status(), 200);

    // The slow ones end as the sender's fault.
    for mut tls in slow {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
}

/// `n` searches by the portal, each on its own connection, whose chunked bodies never
/// finish: admitted exchanges that hold their places until the receive deadline.
async fn slow_searches(
    node: &TestNode,
    pki: &TestPki,
    n: usize,
) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut slow = Vec::new();
    for _ in 0..n {
        let mut tls = node
            .tls_connect(Some(&pki.portal), None)
            .await
            .expect("connect");
        let head = format!(
            "{}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"cit\r\n",
            search_head()
        );
        tls.write_all(head.as_bytes()).await.expect("write");
        tls.flush().await.expect("flush");
        slow.push(tls);
    }
    slow
}

/// Decision 0016 over real mTLS: with the overload control's limit reached, a request
/// waits (its connection gets no answer yet), is admitted the moment the limit rises, and
/// one that waits its longest is refused with 503 `gateway.overloaded`, `Retry-After` and
/// problem+json. The limit is set from outside (one sample of a saturated runtime, then one
/// of a quick one), as the node's probe would under load.
/// 003 Điều 50 khoản 1: the node keeps serving what it admits under overload.
#[tokio::test]
async fn past_the_overload_limit_requests_wait_newest_first_then_are_shed() {
    use datagate::gateway::admission::{Control, TARGET_DELAY, WAIT_AT_MOST};
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .contract("ministry-current", &ministry_current_contract())
        .limit("max_concurrent_requests = 64")
        .limit("max_in_flight_per_consumer = 64")
        .limit("request_receive_timeout_ms = 5000")
        .start()
        .await;
    let admission = node.gateway.admission().clone();

    // Eight slow requests run (admitted, their bodies never finish).
    let slow = slow_searches(&node, &pki, 8).await;
    eventually_async("eight exchanges to run", || async {
        admission.in_flight() == 8
    })
    .await;
    // The probe's verdict on a saturated runtime: the limit falls to what runs (its floor).
    let mut control = Control::default();
    admission.adjust(&mut control, TARGET_DELAY * 5);
    admission.adjust(&mut control, TARGET_DELAY * 5);
    assert_eq!(admission.limit(), Some(8));

    // A request waits its longest, then is shed.
    let refused = node
        .lookup_citizen_as(&pki.ministry, MINISTRY, Some("LAND-TITLE"))
        .await;
    assert!(refused.headers().contains_key("retry-after"));
    let body = expect_problem(refused, 503, "gateway.overloaded").await;
    assert_eq!(body["retryable"], true);
    assert_eq!(admission.waiting(), 0, "the shed request left the queue");

    // A waiting request is admitted when the limit rises, and served.
    let waiting = tokio::spawn({
        let request = node
            .client(&pki.ministry)
            .get(node.citizen_url(CITIZEN_ID))
            .header("X-Road-Client", MINISTRY)
            .header("X-Purpose", "LAND-TITLE");
        async move { request.send().await.expect("send").status() }
    });
    eventually_async("the request to wait", || async { admission.waiting() == 1 }).await;
    admission.adjust(&mut control, std::time::Duration::ZERO);
    assert_eq!(admission.limit(), Some(10));
    let status = tokio::time::timeout(WAIT_AT_MOST * 50, waiting)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(status, 200);
    drop(slow);
}

// --- Finding 3: connections are bounded ---------------------------------------------

/// A TLS connection that completes the handshake and never sends a request is closed
/// at the idle deadline, counted from accept.
/// 002 Điều 26 khoản 2: idle connections cannot exhaust the node.
#[tokio::test]
async fn silent_connection_is_closed_at_the_idle_deadline() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("idle_timeout_ms = 300")
        .start()
        .await;

    let mut tls = node
        .tls_connect(Some(&pki.portal), None)
        .await
        .expect("handshake");
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buffer)).await;
    assert!(
        closed.is_ok(),
        "the node kept a silent connection open for 10 s"
    );
    assert!(buffer.is_empty(), "nothing was asked, nothing answered");
}

/// An HTTP/2 connection that answers every PING but sends no request is still
/// closed at the idle deadline: pings are not activity.
/// 002 Điều 26 khoản 2: pings do not keep an idle connection alive.
#[tokio::test]
async fn http2_pings_do_not_keep_an_idle_connection_open() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("idle_timeout_ms = 400")
        .start()
        .await;

    let mut config = node.tls_client_config(Some(&pki.portal));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(node.consumer)
        .await
        .expect("tcp");
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(50))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let driver = tokio::spawn(connection);
    // One request, then only pings.
    let request = http::Request::get(node.citizen_url(CITIZEN_ID))
        .header("x-road-client", PORTAL)
        .header("x-purpose", PURPOSE)
        .body(http_body_util::Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("answer");
    assert_eq!(response.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    assert!(
        ended.is_ok(),
        "the node kept a pinging, idle HTTP/2 connection open for 10 s"
    );
}

/// Connections from one IP are capped before the handshake; another IP is still served.
/// 002 Điều 26 khoản 2, 003 Điều 53 khoản 3: connections per IP are capped, and the refusals are counted.
#[tokio::test]
async fn connections_per_ip_are_capped_before_the_handshake() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("max_connections_per_ip = 3")
        .limit("handshake_timeout_ms = 10000")
        .start()
        .await;
    let flooder: std::net::IpAddr = "127.0.0.2".parse().expect("ip");

    // Three bare TCP connections from the flooder hold its whole allowance.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            tcp_connect(node.consumer, Some(flooder))
                .await
                .expect("tcp"),
        );
    }
    let before = sample(
        &metrics(&node).await,
        "datagate_connections_refused_total{reason=\"max_connections_per_ip\",listener=\"consumer\"}",
    );
    // The fourth is closed at once, before any TLS.
    let refused = node.tls_connect(Some(&pki.portal), Some(flooder)).await;
    assert!(
        refused.is_err(),
        "a fourth connection from one IP completed a handshake"
    );
    let after = sample(
        &metrics(&node).await,
        "datagate_connections_refused_total{reason=\"max_connections_per_ip\",listener=\"consumer\"}",
    );
    assert!(after > before, "the refusal was not counted");

    // 127.0.0.3 is served.
    let client = reqwest::Client::builder()
        .local_address(Some("127.0.0.3".parse().expect("ip")))
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem().as_bytes()).expect("CA")])
        .identity(
            reqwest::Identity::from_pem(
                format!("{}{}", pki.ministry.cert_pem, pki.ministry.key_pem).as_bytes(),
            )
            .expect("identity"),
        )
        .no_proxy()
        .build()
        .expect("client");
    let response = client
        .get(node.citizen_url(CITIZEN_ID))
        .header("X-Road-Client", MINISTRY)
        .header("X-Purpose", "LAND-TITLE")
        .send()
        .await
        .expect("served");
    expect_problem(response, 403, "contract.outside_validity").await;
    drop(held);
}

/// Connections per client certificate are capped after the handshake; another
/// certificate is still served.
/// 002 Điều 26 khoản 2: connections per client certificate are capped.
#[tokio::test]
async fn connections_per_certificate_are_capped() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .contract("ministry-current", &ministry_current_contract())
        .limit("max_connections_per_certificate = 2")
        .start()
        .await;

    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            node.tls_connect(Some(&pki.portal), None)
                .await
                .expect("within the cap"),
        );
    }
    // The third connection with the same certificate gets no answer.
    let answer = async {
        let mut tls = node.tls_connect(Some(&pki.portal), None).await?;
        let head = format!(
            "{}\r\nConnection: close\r\n\r\n",
            lookup_head(&format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"))
        );
        tls.write_all(head.as_bytes()).await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(bytes)) => assert!(
            bytes.is_empty(),
            "the node answered over the cap: {}",
            String::from_utf8_lossy(&bytes)
        ),
        Ok(Err(_)) => {}
        Err(_) => panic!("the connection over the cap was neither answered nor closed"),
    }
    let response = node
        .lookup_citizen_as(&pki.ministry, MINISTRY, Some("LAND-TITLE"))
        .await;
    assert_eq!(response.status(), 200);
    drop(held);
}

// --- Finding 4: metric labels only from configuration ------------------------------

/// Design §10 invariant 9 (no article): metric labels never take what a caller sends.
#[tokio::test]
async fn made_up_subsystems_create_no_metric_series() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let portal = node.client(&pki.portal);
    for n in 0..20 {
        let response = portal
            .get(node.citizen_url(CITIZEN_ID))
            .header("X-Road-Client", format!("VN/GOV/000.00.00.H29/made-up-{n}"))
            .header("X-Purpose", PURPOSE)
            .send()
            .await
            .expect("request");
        expect_problem(response, 403, "trust.subsystem_not_bound").await;
    }
    let text = metrics(&node).await;
    assert!(!text.contains("made-up"), "a caller chose a metric label");
}

// --- Finding 5: only declared query parameters reach the backend -------------------

/// 004 Điều 3: only the query parameters the operation declares reach the data owner's backend.
#[tokio::test]
async fn only_declared_query_parameters_reach_the_backend() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let adapter = citizen_rest_adapter("population-rest", &upstream.url(), "", None).replacen(
        "path = \"/{citizen_id}\"\n",
        "path = \"/{citizen_id}\"\nquery = [\"lang\"]\n",
        1,
    );
    let schema = CITIZEN_REQUEST_SCHEMA.replace(
        r#""query": { "type": "object", "maxProperties": 0 }"#,
        r#""query": { "type": "object" }"#,
    );
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .adapter("population-rest", &adapter)
        .schema("citizen-request.json", &schema)
        .start()
        .await;
    let portal = node.client(&pki.portal);
    let get = |query: &str| {
        portal
            .get(format!("{}?{query}", node.citizen_url(CITIZEN_ID)))
            .header("X-Road-Client", PORTAL)
            .header("X-Purpose", PURPOSE)
            .send()
    };

    let response = get("lang=vi").await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.last_uri().as_deref(),
        Some(format!("/citizens/{CITIZEN_ID}?lang=vi").as_str())
    );
    let hits = upstream.hits();
    for query in [
        "lang=vi&include=legal_representative&fields=all",
        "%00=%00",
        "lang=vi&lang=en",
    ] {
        let response = get(query).await.expect("request");
        expect_problem(response, 400, "request.query_not_allowed").await;
    }
    let long = format!("lang={}", "a".repeat(60 * 1024));
    let response = get(&long).await.expect("request");
    expect_problem(response, 414, "request.uri_too_long").await;
    assert_eq!(upstream.hits(), hits, "a refused query reached the backend");
}

// --- Finding 6: ambiguous headers ----------------------------------------------------

#[tokio::test]
async fn repeated_protocol_headers_are_refused() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let portal = node.client(&pki.portal);
    let citizen = node.citizen_url(CITIZEN_ID);

    let cases = [
        portal
            .get(&citizen)
            .header("X-Road-Client", PORTAL)
            .header("X-Road-Client", MINISTRY)
            .header("X-Purpose", PURPOSE),
        portal
            .get(&citizen)
            .header("X-Road-Client", PORTAL)
            .header("X-Purpose", PURPOSE)
            .header("X-Purpose", "MARKETING"),
        portal
            .get(&citizen)
            .header("X-Road-Client", PORTAL)
            .header("X-Purpose", PURPOSE)
            .header("X-Road-Id", "first")
            .header("X-Road-Id", "second"),
    ];
    for request in cases {
        let response = request.send().await.expect("request");
        let id = response.headers()["x-road-id"].clone();
        assert_ne!(id, "first");
        expect_problem(response, 400, "request.header_duplicated").await;
    }
    let accented = reqwest::header::HeaderValue::from_bytes("MỤC-ĐÍCH".as_bytes()).expect("bytes");
    let response = portal
        .get(&citizen)
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", accented)
        .send()
        .await
        .expect("request");
    expect_problem(response, 400, "request.purpose_invalid").await;
    assert_eq!(upstream.hits(), 0);
}

// --- Finding 7: one canonical path ---------------------------------------------------

#[tokio::test]
async fn non_canonical_paths_and_dot_subsystems_are_refused() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    for path in [
        format!("/r1/VN/GOV/000.00.00.G10/../population-db/citizen/{CITIZEN_ID}"),
        format!("/r1/{CITIZEN_SERVICE}//{CITIZEN_ID}"),
        format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}/"),
        format!("/r1/{CITIZEN_SERVICE}/%30{}", &CITIZEN_ID[1..]),
    ] {
        let answer = node
            .raw_request(&pki.portal, &lookup_head(&path), b"")
            .await;
        answer.expect_problem(400, "request.path_invalid");
    }
    let answer = node
        .raw_request(
            &pki.portal,
            &format!(
                "GET /r1/{CITIZEN_SERVICE}/{CITIZEN_ID} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 X-Road-Client: VN/GOV/000.00.00.H29/..\r\nX-Purpose: {PURPOSE}"
            ),
            b"",
        )
        .await;
    answer.expect_problem(400, "request.client_invalid");
    assert_eq!(upstream.hits(), 0);
}

// --- Finding 8: every refusal a client can see is ours, and counted -----------------

/// 002 Điều 26 khoản 2: oversized heads and URIs are refused.
#[tokio::test]
async fn oversized_heads_are_refused_by_us_with_problem_json() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let many: String = (0..80).map(|n| format!("\r\nX-Filler-{n}: x")).collect();
    let answer = node
        .raw_request(
            &pki.portal,
            &format!(
                "{}{many}",
                lookup_head(&format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"))
            ),
            b"",
        )
        .await;
    answer.expect_problem(431, "request.headers_too_large");

    let big = format!("\r\nX-Filler: {}", "x".repeat(20 * 1024));
    let answer = node
        .raw_request(
            &pki.portal,
            &format!(
                "{}{big}",
                lookup_head(&format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"))
            ),
            b"",
        )
        .await;
    answer.expect_problem(431, "request.headers_too_large");

    let long = format!("/r1/{CITIZEN_SERVICE}/{}", "1".repeat(10 * 1024));
    let answer = node
        .raw_request(&pki.portal, &lookup_head(&long), b"")
        .await;
    answer.expect_problem(414, "request.uri_too_long");
    assert_eq!(upstream.hits(), 0);
}

/// What hyper refuses before our layer (conflicting framing) is still counted.
/// 003 Điều 53 khoản 3: refusals by the HTTP layer are counted for security monitoring.
#[tokio::test]
async fn framing_refused_by_the_http_layer_is_counted() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let counter = "datagate_refusals_total{code=\"http.malformed\"}";
    let before = sample(&metrics(&node).await, counter);

    let answer = node
        .raw_request(
            &pki.portal,
            &format!(
                "{}\r\nContent-Length: 5\r\nContent-Length: 6",
                lookup_head(&format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"))
            ),
            b"hello!",
        )
        .await;
    assert_eq!(answer.status, 400);
    eventually_async("the refusal to be counted", || async {
        sample(&metrics(&node).await, counter) > before
    })
    .await;
    assert_eq!(upstream.hits(), 0);
}

// --- Finding 9 and 13: whose error is it ---------------------------------------------

/// pr-rest 1.0 §4.3/§4.6: a gateway error says so in `X-Road-Error`; a success does not.
#[tokio::test]
async fn xroad_error_names_who_failed_and_upstream_4xx_is_final() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::new(&pki)
        .citizen_rest_service(&upstream.url(), "retries = 2", None)
        .register(&pki.portal, PORTAL)
        .start()
        .await;
    let portal = node.client(&pki.portal);

    let ok = node
        .lookup(&portal, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    assert!(!ok.headers().contains_key("x-road-error"));

    upstream.set(Reply::Json(503, serde_json::json!({"error": "down"})));
    let response = node
        .lookup(&portal, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.headers()["x-road-error"],
        "Server.ServerProxy.upstream.bad_status"
    );
    expect_problem(response, 502, "upstream.bad_status").await;

    // A 4xx is the backend refusing this very request: not retried, not retryable.
    upstream.set(Reply::Json(400, serde_json::json!({"error": "bad"})));
    let hits = upstream.hits();
    let response = node
        .lookup(&portal, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 502, "upstream.rejected").await;
    assert_eq!(body["retryable"], false);
    assert_eq!(upstream.hits(), hits + 1, "a 4xx was retried");
}

// --- Finding 11: reload resizes the in-flight limit ---------------------------------

/// 003 Điều 50 khoản 1: limits change on reload, without a restart.
#[tokio::test]
async fn reload_resizes_the_in_flight_limit() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Slow(
        Duration::from_millis(600),
        Box::new(Reply::Citizen),
    ))
    .await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("max_concurrent_requests = 1")
        .limit("max_in_flight_per_consumer = 1")
        .start()
        .await;
    let pair = || async {
        // Two clients, two connections: HTTP/2 would otherwise queue the second
        // stream behind the connection's stream limit (the consumer's share).
        let (one, two) = (node.client(&pki.portal), node.client(&pki.portal));
        let (a, b) = tokio::join!(
            node.lookup(&one, CITIZEN_ID).send(),
            node.lookup(&two, "079099000124").send()
        );
        let mut statuses = [
            a.expect("a").status().as_u16(),
            b.expect("b").status().as_u16(),
        ];
        statuses.sort_unstable();
        statuses
    };
    assert_eq!(pair().await, [200, 503]);

    let file = &node.written.config_file;
    let text = std::fs::read_to_string(file).expect("config");
    std::fs::write(
        file,
        text.replace("max_concurrent_requests = 1", "max_concurrent_requests = 8")
            .replace(
                "max_in_flight_per_consumer = 1",
                "max_in_flight_per_consumer = 4",
            ),
    )
    .expect("rewrite");
    assert!(node.reload(), "the reload was refused");
    assert_eq!(pair().await, [200, 200]);
}

/// A request head trickled byte by byte is cut off at the receive deadline, while an
/// idle keep-alive connection between two requests is governed by the (longer) idle
/// deadline, not by the head deadline.
#[tokio::test]
async fn trickled_head_is_cut_at_the_receive_deadline_but_keep_alive_is_not() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("request_receive_timeout_ms = 300")
        .limit("idle_timeout_ms = 10000")
        .start()
        .await;
    let counter = "datagate_refusals_total{code=\"http.header_timeout\"}";
    let before = sample(&metrics(&node).await, counter);

    // Keep-alive: two requests 800 ms apart on one connection both succeed.
    let mut tls = node
        .tls_connect(Some(&pki.portal), None)
        .await
        .expect("connect");
    let head = format!(
        "{}\r\n\r\n",
        lookup_head(&format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"))
    );
    for round in 0..2 {
        if round == 1 {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        tls.write_all(head.as_bytes()).await.expect("write");
        let mut buffer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buffer))
            .await
            .expect("an answer")
            .expect("read");
        let text = String::from_utf8_lossy(&buffer[..read]);
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
    }

    // Trickle: one byte of a head every 100 ms.
    let mut slow = node
        .tls_connect(Some(&pki.portal), None)
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let trickle = async {
        for byte in head.as_bytes() {
            slow.write_all(&[*byte]).await?;
            slow.flush().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, std::io::Error>(())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    assert!(
        matches!(outcome, Ok(Err(_))),
        "the node took the whole trickled head ({} bytes over {:?})",
        head.len(),
        started.elapsed()
    );
    eventually_async("the cut to be counted", || async {
        sample(&metrics(&node).await, counter) > before
    })
    .await;
}

/// A caller who goes away mid-exchange cannot cancel it: the backend call it started is
/// journaled (004 Điều 57: every exchange leaves a record) and keeps its place in the
/// consumer's share until it is over.
#[tokio::test]
async fn abandoned_exchanges_are_journaled_and_keep_their_place_in_the_share() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Slow(
        Duration::from_millis(1500),
        Box::new(Reply::Citizen),
    ))
    .await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("max_in_flight_per_consumer = 2")
        .start()
        .await;

    // Two requests whose callers hang up once the backend has them.
    for n in 0..2 {
        let mut tls = node
            .tls_connect(Some(&pki.portal), None)
            .await
            .expect("connect");
        let head = format!(
            "{}\r\nX-Road-Id: abandoned-{n}\r\n\r\n",
            lookup_head(&format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"))
        );
        tls.write_all(head.as_bytes()).await.expect("write");
        tls.flush().await.expect("flush");
        let hits = n + 1;
        eventually("the backend to receive the call", || {
            upstream.hits() >= hits
        })
        .await;
        drop(tls);
    }
    // Their places are still taken while the backend works.
    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    expect_problem(response, 429, "ratelimit.in_flight_share_exceeded").await;

    // And both are journaled when they end.
    eventually_async("the abandoned exchanges to be journaled", || async {
        let rows = crate::journal::journal_rows(&node).await;
        (0..2).all(|n| {
            rows.iter().any(|row| {
                row.get("message_id").and_then(Option::as_deref)
                    == Some(format!("abandoned-{n}").as_str())
                    && row.get("status").and_then(Option::as_deref) == Some("200")
            })
        })
    })
    .await;
}

/// A body on an operation whose method takes none is refused before it is read: it
/// would otherwise reach a REST backend that no contract describes (red-team finding).
#[tokio::test]
async fn body_on_a_get_never_reaches_the_backend() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .header("Content-Type", "application/json")
        .body(r#"{"where":"1=1","fields":"all","limit":100000}"#)
        .send()
        .await
        .expect("request");
    expect_problem(response, 400, "request.body_not_allowed").await;
    assert_eq!(upstream.hits(), 0);
}

/// Issue 12 (decision 0013): an idle HTTP/1 keep-alive connection hibernates (hyper's
/// buffers freed, the TLS session kept) and wakes for the next request on the same
/// connection; requests written back to back after a hibernation are both answered; a head
/// that has begun is never cut by a hibernation, only by its own receive deadline.
/// 002 Điều 26 khoản 2: idle connections cannot exhaust the node's memory, and the
/// connections a peer keeps stay usable.
#[tokio::test]
async fn idle_keep_alive_connections_hibernate_and_wake_on_the_same_connection() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("request_receive_timeout_ms = 3000")
        .limit("idle_timeout_ms = 10000")
        .start()
        .await;
    let counter = "datagate_connections_hibernated_total";
    let before = sample(&metrics(&node).await, counter);
    let mut tls = node
        .tls_connect(Some(&pki.portal), None)
        .await
        .expect("connect");
    let head = format!(
        "{}\r\n\r\n",
        lookup_head(&format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"))
    );
    // Reads until `answers` complete answers (each ends with the record's closing brace).
    async fn answers(tls: &mut (impl AsyncReadExt + Unpin), answers: usize) -> String {
        let mut text = String::new();
        let mut buffer = vec![0u8; 16 * 1024];
        while text.matches("HTTP/1.1 ").count() < answers || !text.trim_end().ends_with('}') {
            let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buffer))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(read > 0, "the node closed the connection: {text}");
            text.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
        text
    }

    tls.write_all(head.as_bytes()).await.expect("write");
    let first = answers(&mut tls, 1).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // Idle long enough to hibernate, then two requests at once on the same connection.
    // The counter is process-wide (other tests' connections count in it too), so the
    // test also stays quiet for several hibernation delays: that this connection
    // hibernates then is the watchdog's rule, unit-tested in `gateway::listener`.
    let quiet = tokio::time::Instant::now();
    eventually_async("a connection to hibernate", || async {
        sample(&metrics(&node).await, counter) > before
    })
    .await;
    tokio::time::sleep_until(quiet + HIBERNATE_AFTER * 4).await;
    tls.write_all(format!("{head}{head}").as_bytes())
        .await
        .expect("write");
    let both = answers(&mut tls, 2).await;
    assert_eq!(
        both.matches("HTTP/1.1 200").count(),
        2,
        "both pipelined requests answered after waking: {both}"
    );

    // A head begun before the connection went quiet: half now, the rest after several
    // hibernation delays (but inside the receive deadline). The bytes read before any
    // hibernation are kept, and the request is answered. (That a head under way never
    // hibernates is the watchdog's rule, unit-tested in `gateway::listener`: the
    // process-wide counter cannot tell this connection's hibernations from other tests'.)
    let (start, rest) = head.split_at(head.len() / 2);
    tls.write_all(start.as_bytes()).await.expect("write");
    tls.flush().await.expect("flush");
    tokio::time::sleep(HIBERNATE_AFTER * 7).await;
    tls.write_all(rest.as_bytes()).await.expect("write");
    let split = answers(&mut tls, 1).await;
    assert!(split.starts_with("HTTP/1.1 200"), "{split}");
}
