//! The federation over real sockets: a provincial LGSP (A), the ministry's LGSP (B)
//! and, where a test needs it, the NDXP hub, each a real node with its own
//! certificate, encryption key and journal, trusting one signed global configuration.
//! Attacks are made by hand against B's exchange listener: a request signed as A would
//! sign it, then altered.

use crate::support::*;
use base64::Engine as _;
use datagate::msgsig::{self, Component, DigestAlgorithm, Message, SignatureParams, SigningKey};
use datagate::pki::{IssuedCertificate, LeafSpec, LeafUsage};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use time::OffsetDateTime;

/// The province's member and its LGSP's secure-server name.
const A_SERVER: &str = "lgsp-hcm";
/// The ministry's LGSP.
const B_SERVER: &str = "lgsp-bca";
/// The hub.
const HUB: &str = "ndxp";
const HUB_MEMBER: &str = "VN/GOV/000.00.00.G01";

/// A fresh EC P-256 key: (PKCS#8 PEM, public JWK with `kid`).
fn ec_key(kid: &str) -> (String, Value) {
    let group =
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("curve");
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("key"))
        .expect("pkey");
    let pem = String::from_utf8(key.private_key_to_pem_pkcs8().expect("pem")).expect("utf8");
    let jwk = datagate::keystore::PrivateKey::from_pem(pem.as_bytes(), None)
        .expect("our key loads")
        .public_key()
        .expect("public")
        .to_jwk(Some(kid))
        .expect("jwk");
    (pem, jwk)
}

/// A gateway certificate (server and client), for 127.0.0.1.
fn gateway_certificate(pki: &TestPki, name: &str) -> IssuedCertificate {
    let mut spec = LeafSpec::server(name, &["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    spec.usage = LeafUsage::ServerAndClient;
    pki.ca.issue(&spec).expect("gateway certificate")
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// One gateway's part in the global configuration.
struct Gateway {
    member: &'static str,
    name: &'static str,
    certificate: IssuedCertificate,
    encryption_pem: String,
    encryption_jwk: Value,
}

impl Gateway {
    fn new(pki: &TestPki, member: &'static str, name: &'static str) -> Self {
        let (encryption_pem, encryption_jwk) = ec_key(&format!("{name}-enc"));
        Gateway {
            member,
            name,
            certificate: gateway_certificate(pki, name),
            encryption_pem,
            encryption_jwk,
        }
    }

    /// The `[federation]` lines of its node.
    fn section(&self, hub: bool) -> String {
        format!(
            "instance = \"VN\"\nanchor = \"federation/anchor.pem\"\n\
             global_configuration = \"federation/global.jws\"\nrefresh_seconds = 1\n\
             server_name = \"{}\"\nencryption_key = \"federation/encryption.pem\"\nhub = {hub}\n",
            self.name
        )
    }
}

/// The central authority: its key, and the documents it signs.
struct Authority {
    key_pem: String,
    public_pem: String,
    version: u64,
}

impl Authority {
    fn new() -> Self {
        let (key_pem, _) = ec_key("anchor");
        let key = openssl::pkey::PKey::private_key_from_pem(key_pem.as_bytes()).expect("key");
        let public_pem = String::from_utf8(key.public_key_to_pem().expect("pem")).expect("utf8");
        Authority {
            key_pem,
            public_pem,
            version: 0,
        }
    }

    fn sign(&self, payload: &Value) -> String {
        datagate::trust::global::sign(
            payload.to_string().as_bytes(),
            &self.key_pem,
            datagate::trust::global::SigningAlg::Es256,
        )
        .expect("signed")
    }
}

/// A running federation: A (the portal's gateway), B (the population register's), and
/// optionally the hub.
struct Federation {
    pki: TestPki,
    authority: Authority,
    a: Gateway,
    b: Gateway,
    hub: Gateway,
    node_a: TestNode,
    node_b: TestNode,
    node_hub: Option<TestNode>,
    _upstream: MockUpstream,
    /// The identity provider A trusts (with `Layout::form`).
    idp: Idp,
}

/// How the service is reached and how A's registration reads.
#[derive(Clone, Copy)]
struct Layout {
    through_hub: bool,
    a_submitted_days_ago: i64,
    /// The hub's `[journal]` lines, when not the default.
    hub_journal: Option<&'static str>,
    /// Whether B's contract for the portal lets the consumer's gateway cache answers.
    cached: bool,
    /// Whether A offers the portal a once-only form whose source is B's citizen service.
    form: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            through_hub: false,
            a_submitted_days_ago: 30,
            hub_journal: None,
            cached: false,
            form: false,
        }
    }
}

impl Federation {
    async fn start(layout: Layout) -> Federation {
        init();
        let pki = TestPki::new();
        let authority = Authority::new();
        let a = Gateway::new(&pki, PORTAL_MEMBER, A_SERVER);
        let b = Gateway::new(&pki, NODE_MEMBER, B_SERVER);
        let hub = Gateway::new(&pki, HUB_MEMBER, HUB);
        let upstream = MockUpstream::start(Reply::Citizen).await;
        fn files<'p>(
            builder: NodeBuilder<'p>,
            gateway: &Gateway,
            authority: &Authority,
        ) -> NodeBuilder<'p> {
            builder
                .node_certificate(&gateway.certificate)
                .file("federation/anchor.pem", authority.public_pem.clone())
                .file("federation/encryption.pem", gateway.encryption_pem.clone())
        }
        // B: the owner, with the citizen service and the portal's contract.
        let mut owner = NodeBuilder::standard(&pki, &upstream.url()).federation(&b.section(false));
        if layout.cached {
            owner = owner.contract(
                "portal-citizen",
                &portal_citizen_contract().replace(
                    "subject: path:citizen_id",
                    "subject: path:citizen_id\ncache: { allowed: true, ttl_seconds: 300 }",
                ),
            );
        }
        let node_b = files(owner, &b, &authority).start().await;
        // A: the province, with the portal registered and no service of its own.
        let idp = Idp::new();
        let mut province = NodeBuilder::new(&pki);
        if layout.form {
            province = idp.trusted_by(province).file(
                "contracts/forms/household.yaml",
                format!(
                    "id: household\ntitle: Đăng ký thường trú (test)\nprocedure: \"1.004194\"\n\
                     legal_basis: Luật Cư trú 2020 (test)\npurpose: {PURPOSE}\nassurance_level: medium\n\
                     consumers: [{PORTAL}]\n\
                     sources:\n  citizen: {{ service: {CITIZEN_SERVICE}, path: \"/{{subject}}\" }}\n\
                     fields:\n  - {{ name: full_name, label: Họ tên, source: citizen, pointer: /full_name }}\n\
                     \x20 - {{ name: street, label: Địa chỉ, source: citizen, pointer: /permanent_address/street }}\n"
                ),
            );
        }
        let node_a = files(
            province
                .member(PORTAL_MEMBER)
                .register_system(
                    &pki.portal,
                    PORTAL_MEMBER,
                    &["dvc-portal"],
                    Effective::Already,
                )
                .federation(&a.section(false)),
            &a,
            &authority,
        )
        .start()
        .await;
        let node_hub = if layout.through_hub {
            Some(
                files(
                    NodeBuilder::new(&pki)
                        .member(HUB_MEMBER)
                        .journal(layout.hub_journal.unwrap_or("path = \"journal.sqlite\""))
                        .federation(&hub.section(true)),
                    &hub,
                    &authority,
                )
                .start()
                .await,
            )
        } else {
            None
        };
        let mut federation = Federation {
            pki,
            authority,
            a,
            b,
            hub,
            node_a,
            node_b,
            node_hub,
            _upstream: upstream,
            idp,
        };
        let document = federation.document(layout, OffsetDateTime::now_utc());
        federation.publish(&document);
        federation.wait_until_held().await;
        // A gateway still in its notice period is not served the owner's contracts.
        if layout.a_submitted_days_ago >= 7 {
            federation.wait_for_copy().await;
        }
        federation
    }

    /// Waits (bounded) until A holds B's published contracts.
    async fn wait_for_copy(&self) {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let status: Value = client
                .get(self.node_a.ops_url("/status/v1/federation"))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            if status["contract_copies"][NODE_MEMBER].as_u64().unwrap_or(0) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("A never held B's published contracts");
    }

    /// The global configuration for the running nodes.
    fn document(&mut self, layout: Layout, now: OffsetDateTime) -> Value {
        self.authority.version += 1;
        let entry = |cert: &IssuedCertificate, submitted_days_ago: i64| {
            json!([{
                "sha256": cert.fingerprint_sha256,
                "submitted_at": rfc3339(now - time::Duration::days(submitted_days_ago)),
                "effective_from": rfc3339(now - time::Duration::days(submitted_days_ago.min(1))),
            }])
        };
        let address = |node: &TestNode| {
            format!(
                "https://127.0.0.1:{}",
                node.exchange.expect("an exchange listener").port()
            )
        };
        let mut hubs = Vec::new();
        if let Some(node) = &self.node_hub {
            hubs.push(json!({
                "name": HUB, "member": HUB_MEMBER, "address": address(node),
                "certificates": entry(&self.hub.certificate, 30),
            }));
        }
        json!({
            "format": "datagate-global-configuration/1",
            "instance": "VN",
            "version": self.authority.version,
            "issued_at": rfc3339(now - time::Duration::minutes(1)),
            "expires_at": rfc3339(now + time::Duration::days(7)),
            "trusted_cas": [self.pki.ca.cert_pem()],
            "members": [
                { "id": PORTAL_MEMBER, "name": "UBND TP. Hồ Chí Minh", "subsystems": ["dvc-portal"] },
                { "id": NODE_MEMBER, "name": "Bộ Công an", "subsystems": ["population-db"] },
                { "id": HUB_MEMBER, "name": "NDXP", "subsystems": [] },
            ],
            "secure_servers": [
                {
                    "member": self.a.member, "name": self.a.name, "address": address(&self.node_a),
                    "certificates": entry(&self.a.certificate, layout.a_submitted_days_ago),
                    "encryption_key": self.a.encryption_jwk,
                },
                {
                    "member": self.b.member, "name": self.b.name, "address": address(&self.node_b),
                    "certificates": entry(&self.b.certificate, 30),
                    "encryption_key": self.b.encryption_jwk,
                },
            ],
            "services": [
                { "id": CITIZEN_SERVICE, "hubs": if layout.through_hub { vec![HUB] } else { vec![] } },
            ],
            "hubs": hubs,
            "holidays": [],
        })
    }

    /// Publishes a new version of the document, changed by `change`, and waits until
    /// every node holds it.
    async fn republish(&mut self, layout: Layout, change: impl FnOnce(&mut Value)) {
        let mut document = self.document(layout, OffsetDateTime::now_utc());
        change(&mut document);
        self.publish(&document);
        self.wait_until_held().await;
    }

    /// Writes the signed document where every node polls it.
    fn publish(&self, document: &Value) {
        let signed = self.authority.sign(document);
        let mut nodes = vec![&self.node_a, &self.node_b];
        nodes.extend(self.node_hub.as_ref());
        for node in nodes {
            std::fs::write(node.written.path("federation/global.jws"), &signed).expect("write");
        }
    }

    /// Waits (bounded) until every node reports the current version.
    async fn wait_until_held(&self) {
        let mut nodes = vec![&self.node_a, &self.node_b];
        nodes.extend(self.node_hub.as_ref());
        let client = reqwest::Client::new();
        for node in nodes {
            let mut held = false;
            for _ in 0..100 {
                if held_version(&client, node).await >= self.authority.version {
                    held = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(held, "a node did not take the global configuration");
        }
    }

    /// A citizen lookup by the portal through its own gateway A.
    async fn lookup(&self) -> reqwest::Response {
        self.node_a
            .lookup_citizen_as(&self.pki.portal, PORTAL, Some(PURPOSE))
            .await
    }

    /// B's exchange address.
    fn b_exchange(&self) -> SocketAddr {
        self.node_b.exchange.expect("B's exchange listener")
    }
}

/// The global configuration version `node` holds (0: none).
async fn held_version(client: &reqwest::Client, node: &TestNode) -> u64 {
    let status: Value = client
        .get(node.ops_url("/status/v1/federation"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    status["global_configuration"]["version"]
        .as_u64()
        .unwrap_or(0)
}

/// The value of the first sample of `metric` (no labels) in a Prometheus text page.
fn sample(page: &str, metric: &str) -> f64 {
    page.lines()
        .find(|line| line.starts_with(metric) && line[metric.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// A request to B's exchange listener, signed as A's gateway would sign it.
struct Forged {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What to change in a forged request.
#[derive(Default, Clone)]
struct Forge {
    /// Key and certificate that sign (default A's).
    signer: Option<IssuedCertificate>,
    /// `keyid` (default the signer certificate's SHA-256).
    key_id: Option<String>,
    /// `created` relative to now, in seconds.
    created_offset: i64,
    /// `expires` relative to `created`.
    lifetime: Option<i64>,
    /// `alg` parameter text to put instead of the key's.
    alg: Option<&'static str>,
    /// Leave `x-purpose` out of the covered set while sending it.
    uncover_purpose: bool,
    /// Encrypt the body to this JWK instead of B's key.
    encrypt_to: Option<Value>,
    /// POST this JSON to `/search` (encrypted) instead of the GET lookup.
    body: Option<Vec<u8>>,
    /// Cut the JWE short before the digest and signature are made.
    truncate: bool,
    /// `X-Road-Target-Server` (default B's name).
    target_server: Option<&'static str>,
}

impl Federation {
    fn forge(&self, forge: &Forge) -> Forged {
        let signer = forge.signer.as_ref().unwrap_or(&self.a.certificate);
        let (method, path) = match forge.body {
            None => (
                "GET",
                format!("/exchange/v1/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}"),
            ),
            Some(_) => ("POST", format!("/exchange/v1/r1/{CITIZEN_SERVICE}/search")),
        };
        let target = format!("https://127.0.0.1:{}{path}", self.b_exchange().port());
        let body: Vec<u8> = match &forge.body {
            None => Vec::new(),
            Some(plain) => {
                let jwk = forge.encrypt_to.as_ref().unwrap_or(&self.b.encryption_jwk);
                let key = datagate::keystore::PublicKey::from_jwk(jwk).expect("jwk");
                let mut jwe = datagate::jwe::encrypt(plain, &key, None, Some("application/json"))
                    .expect("jwe")
                    .into_bytes();
                if forge.truncate {
                    jwe.truncate(jwe.len() - 10);
                }
                jwe
            }
        };
        let mut message = Message::request(method, &target)
            .header(
                "content-digest",
                &msgsig::content_digest(&body, DigestAlgorithm::Sha256),
            )
            .header("x-road-client", PORTAL)
            .header("x-road-id", &uuid_like())
            .header(
                "x-road-target-server",
                forge.target_server.unwrap_or(B_SERVER),
            )
            .header("x-purpose", PURPOSE);
        let mut components = vec![
            Component::Method,
            Component::TargetUri,
            Component::Header("content-digest".into()),
            Component::Header("x-road-client".into()),
            Component::Header("x-road-id".into()),
            Component::Header("x-road-target-server".into()),
        ];
        if !forge.uncover_purpose {
            components.push(Component::Header("x-purpose".into()));
        }
        let key = SigningKey::from_pem(&signer.key_pem, None).expect("signing key");
        let created = OffsetDateTime::now_utc().unix_timestamp() + forge.created_offset;
        let params = SignatureParams {
            created: Some(created),
            expires: Some(created + forge.lifetime.unwrap_or(60)),
            nonce: Some(uuid_like()),
            keyid: Some(
                forge
                    .key_id
                    .clone()
                    .unwrap_or_else(|| signer.fingerprint_sha256.clone()),
            ),
            alg: Some(key.algorithm()),
            tag: None,
        };
        let signed = msgsig::sign("sig1", &components, &params, &message, &key).expect("sign");
        let mut input = signed.signature_input;
        if let Some(alg) = forge.alg {
            input = input.replace("ecdsa-p256-sha256", alg);
        }
        message.add_header("signature-input", &input);
        message.add_header("signature", &signed.signature);
        message.add_header(
            "x-road-signer-certificate",
            &base64::engine::general_purpose::STANDARD.encode(&signer.cert_der),
        );
        if !body.is_empty() {
            message.add_header("content-type", "application/jose");
        }
        Forged {
            method,
            path,
            headers: message.headers().to_vec(),
            body,
        }
    }

    /// Sends a forged request to B over mTLS as `tls` (default A's certificate).
    async fn send(&self, forged: &Forged, tls: Option<&IssuedCertificate>) -> RawAnswer {
        self.send_to(self.b_exchange(), forged, tls).await
    }

    /// Sends a forged request to `addr` (B's or the hub's exchange listener).
    async fn send_to(
        &self,
        addr: SocketAddr,
        forged: &Forged,
        tls: Option<&IssuedCertificate>,
    ) -> RawAnswer {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
            forged.method,
            forged.path,
            forged.body.len()
        );
        for (name, value) in &forged.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        raw_exchange(
            addr,
            &self.node_b,
            tls.unwrap_or(&self.a.certificate),
            head.as_bytes(),
            &forged.body,
        )
        .await
    }
}

/// The journal row of `message_id` on `node` (panics when absent).
async fn journaled(
    node: &TestNode,
    message_id: &str,
) -> std::collections::BTreeMap<String, Option<String>> {
    crate::journal::journal_rows(node)
        .await
        .into_iter()
        .find(|row| row["message_id"].as_deref() == Some(message_id))
        .expect("the exchange is journaled")
}

/// A unique token (message ids, nonces).
fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).expect("random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends raw bytes over mTLS to `addr` and reads the answer.
async fn raw_exchange(
    addr: SocketAddr,
    node: &TestNode,
    identity: &IssuedCertificate,
    head: &[u8],
    body: &[u8],
) -> RawAnswer {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        node.tls_client_config(Some(identity)),
    ));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("TCP connect");
    let name = rustls_pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut tls = connector.connect(name, tcp).await.expect("TLS connect");
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(body);
    tls.write_all(&bytes).await.expect("write");
    tls.flush().await.expect("flush");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no complete answer within 10 s");
    RawAnswer::parse(&answer)
}

/// 004 Điều 55 khoản 3, Điều 57: a lookup through the portal's own gateway travels
/// signed and encrypted to the owner's gateway, which decides on its contract and
/// answers signed over the request; both journals hold the exchange under one
/// `X-Road-Id`, with the same signature digest and each other's key id.
#[tokio::test]
async fn lookup_travels_signed_and_encrypted_between_gateways() {
    let federation = Federation::start(Layout::default()).await;
    let response = federation.lookup().await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let id = response.headers()["x-road-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, projected_citizen(CITIZEN_ID));

    let a = journaled(&federation.node_a, &id).await;
    let b = journaled(&federation.node_b, &id).await;
    assert_eq!(a["leg"].as_deref(), Some("consumer"));
    assert_eq!(b["leg"].as_deref(), Some("provider"));
    assert_eq!(
        a["remote_key_id"].as_deref(),
        Some(federation.b.certificate.fingerprint_sha256.as_str())
    );
    assert_eq!(
        b["remote_key_id"].as_deref(),
        Some(federation.a.certificate.fingerprint_sha256.as_str())
    );
    assert!(a["signature_digest"].is_some());
    assert_eq!(a["signature_digest"], b["signature_digest"]);
    assert!(b["contract_id"].is_some());
    // A decided early on the owner's published copy of the same contract.
    assert_eq!(a["contract_id"], b["contract_id"]);
    assert_eq!(a["status"].as_deref(), Some("200"));
    assert_eq!(b["status"].as_deref(), Some("200"));
}

/// 004 Điều 57, design §5: contracts travel with the federation: the consumer's gateway
/// denies early on the owner's published copy (nothing reaches the owner), and when the
/// owner withdraws a contract, its own decision stands at once, before the consumer's
/// copy catches up; then the refreshed copy denies early too.
#[tokio::test]
async fn consumer_gateway_denies_early_on_the_owners_published_contracts() {
    let federation = Federation::start(Layout::default()).await;
    let response = federation
        .node_a
        .client(&federation.pki.portal)
        .get(federation.node_a.citizen_url(CITIZEN_ID))
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", "UNLISTED-PURPOSE")
        .header("X-Road-Id", "early-denial-1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "contract.purpose_not_allowed");
    let at_b = crate::journal::journal_rows(&federation.node_b).await;
    assert!(
        !at_b
            .iter()
            .any(|row| row["message_id"].as_deref() == Some("early-denial-1")),
        "the early denial reached the owner"
    );
    let at_a = journaled(&federation.node_a, "early-denial-1").await;
    assert_eq!(at_a["leg"].as_deref(), Some("consumer"));
    assert_eq!(
        at_a["error_code"].as_deref(),
        Some("contract.purpose_not_allowed")
    );

    // The owner withdraws the portal's lookup contract and reloads.
    let dir = federation.node_b.written.path("contracts");
    std::fs::remove_file(dir.join("portal-citizen.yaml")).expect("remove contract");
    assert!(federation.node_b.reload(), "B reloads");
    // Whatever A's copy still says, the owner refuses.
    let response = federation.lookup().await;
    assert_eq!(response.status(), 403);
    // Once A's copy is refreshed (1 s here), A refuses without asking B.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = federation
        .node_a
        .client(&federation.pki.portal)
        .get(federation.node_a.citizen_url(CITIZEN_ID))
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", PURPOSE)
        .header("X-Road-Id", "early-denial-2")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let at_b = crate::journal::journal_rows(&federation.node_b).await;
    assert!(
        !at_b
            .iter()
            .any(|row| row["message_id"].as_deref() == Some("early-denial-2")),
        "the refreshed copy did not deny early"
    );
}

/// 003 Điều 3 khoản 3: each tampering of a signed request is refused with its code,
/// and a valid request on the same listener still passes.
#[tokio::test]
async fn tampered_and_forged_requests_are_refused_with_their_codes() {
    let federation = Federation::start(Layout::default()).await;

    // The untouched forgery passes: the harness signs as A does.
    let valid = federation.forge(&Forge::default());
    let answer = federation.send(&valid, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Replayed: the same signed bytes again.
    federation
        .send(&valid, None)
        .await
        .expect_problem(401, "signature.replayed");

    // A covered header changed after signing.
    let mut changed = federation.forge(&Forge::default());
    for (name, value) in &mut changed.headers {
        if name == "x-purpose" {
            *value = "SOCIAL-ALLOWANCE".into();
        }
    }
    federation
        .send(&changed, None)
        .await
        .expect_problem(401, "signature.invalid");

    // A covered header removed.
    let mut removed = federation.forge(&Forge::default());
    removed.headers.retain(|(name, _)| name != "x-purpose");
    federation
        .send(&removed, None)
        .await
        .expect_problem(400, "signature.component_missing");

    // A protected header sent but left out of the covered set.
    let uncovered = federation.forge(&Forge {
        uncover_purpose: true,
        ..Forge::default()
    });
    federation
        .send(&uncovered, None)
        .await
        .expect_problem(401, "signature.component_not_covered");

    // Expired, and created in the future.
    let expired = federation.forge(&Forge {
        created_offset: -3600,
        ..Forge::default()
    });
    federation
        .send(&expired, None)
        .await
        .expect_problem(401, "signature.expired");
    let future = federation.forge(&Forge {
        created_offset: 3600,
        ..Forge::default()
    });
    federation
        .send(&future, None)
        .await
        .expect_problem(401, "signature.not_yet_valid");

    // A keyid that is not the attached certificate's.
    let unknown = federation.forge(&Forge {
        key_id: Some("00".repeat(32)),
        ..Forge::default()
    });
    federation
        .send(&unknown, None)
        .await
        .expect_problem(401, "signature.key_unknown");

    // An algorithm the protocol does not know.
    let alg = federation.forge(&Forge {
        alg: Some("hmac-sha256"),
        ..Forge::default()
    });
    federation
        .send(&alg, None)
        .await
        .expect_problem(400, "signature.algorithm_unsupported");

    // Signed by a key the global configuration does not register (over A's TLS).
    let stranger = gateway_certificate(&federation.pki, "stranger");
    let unregistered = federation.forge(&Forge {
        signer: Some(stranger.clone()),
        ..Forge::default()
    });
    federation
        .send(&unregistered, None)
        .await
        .expect_problem(401, "signature.key_unknown");

    // Signed by B's own registered key, claiming the portal's member.
    let other_member = federation.forge(&Forge {
        signer: Some(federation.b.certificate.clone()),
        ..Forge::default()
    });
    federation
        .send(&other_member, None)
        .await
        .expect_problem(403, "signature.key_not_authorised");

    // An unregistered TLS certificate never gets that far.
    federation
        .send(&federation.forge(&Forge::default()), Some(&stranger))
        .await
        .expect_problem(403, "trust.certificate_unregistered");

    // Still served after all that.
    let answer = federation
        .send(&federation.forge(&Forge::default()), None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// 004 Điều 57: an altered body fails its digest; a payload encrypted to another key or
/// cut short does not open; the valid encrypted search passes.
#[tokio::test]
async fn altered_or_misencrypted_payloads_are_refused() {
    let federation = Federation::start(Layout::default()).await;
    let plain = format!(r#"{{"citizen_id": "{CITIZEN_ID}"}}"#).into_bytes();
    let search = Forge {
        body: Some(plain.clone()),
        ..Forge::default()
    };
    let answer = federation.send(&federation.forge(&search), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/jose"));

    let mut tampered = federation.forge(&search);
    let middle = tampered.body.len() / 2;
    tampered.body[middle] ^= 1;
    federation
        .send(&tampered, None)
        .await
        .expect_problem(400, "digest.mismatch");

    let wrong_key = federation.forge(&Forge {
        encrypt_to: Some(federation.a.encryption_jwk.clone()),
        ..search.clone()
    });
    federation
        .send(&wrong_key, None)
        .await
        .expect_problem(400, "jwe.decryption_failed");

    let truncated = federation.forge(&Forge {
        truncate: true,
        ..search.clone()
    });
    let answer = federation.send(&truncated, None).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let code = answer.expect_problem(400, answer_code(&answer).as_str());
    assert!(
        code["code"] == "jwe.malformed" || code["code"] == "jwe.decryption_failed",
        "{code}"
    );
}

fn answer_code(answer: &RawAnswer) -> String {
    serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// 003 Điều 50 khoản 2: a secure server registered less than three working days ago
/// is not yet a peer: its signed requests are refused.
#[tokio::test]
async fn secure_server_registered_without_three_working_days_notice_is_refused() {
    let federation = Federation::start(Layout {
        a_submitted_days_ago: 0,
        ..Layout::default()
    })
    .await;
    let answer = federation
        .send(&federation.forge(&Forge::default()), None)
        .await;
    answer.expect_problem(403, "trust.registration_not_effective");
    // And through A: B refuses A's leg; the portal is told the provider's gateway refused
    // this gateway, not that the portal did something wrong.
    let response = federation.lookup().await;
    assert_eq!(response.status(), 502);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "federation.provider_refused");
}

/// 004 Điều 57: through the NDXP hub the exchange still works end to end; the hub
/// journals the relay (leg `hub`) under the same `X-Road-Id` and signature digest, and
/// the provider sees the hub's countersignature.
#[tokio::test]
async fn lookup_through_the_hub_is_relayed_and_journaled_on_three_nodes() {
    let federation = Federation::start(Layout {
        through_hub: true,
        ..Layout::default()
    })
    .await;
    let response = federation.lookup().await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let id = response.headers()["x-road-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        projected_citizen(CITIZEN_ID)
    );
    let hub = federation.node_hub.as_ref().expect("hub");
    let mut digests = Vec::new();
    for (node, leg) in [
        (&federation.node_a, "consumer"),
        (hub, "hub"),
        (&federation.node_b, "provider"),
    ] {
        let row = journaled(node, &id).await;
        assert_eq!(row["leg"].as_deref(), Some(leg));
        digests.push(row["signature_digest"].clone());
    }
    assert!(digests.iter().all(|d| d.is_some() && *d == digests[0]));
}

/// 003 Điều 3 khoản 3: a global configuration signed by another key, or older than the
/// one held, never replaces it; the node keeps exchanging on the one it holds.
#[tokio::test]
async fn forged_or_stale_global_configuration_is_refused_and_the_held_one_kept() {
    let mut federation = Federation::start(Layout::default()).await;
    let held = federation.authority.version;
    // Another authority signs a newer version.
    let impostor = Authority::new();
    let mut document = federation.document(Layout::default(), OffsetDateTime::now_utc());
    document["version"] = json!(held + 10);
    let signed = impostor.sign(&document);
    std::fs::write(
        federation.node_a.written.path("federation/global.jws"),
        signed,
    )
    .expect("write");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        held_version(&reqwest::Client::new(), &federation.node_a).await,
        held
    );
    let metrics = reqwest::get(federation.node_a.ops_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(sample(&metrics, "datagate_global_configuration_refusals_total") >= 1.0);
    let response = federation.lookup().await;
    assert_eq!(response.status(), 200);
}

/// A closed port: a secure server that is down.
fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("https://127.0.0.1:{port}")
}

/// A second secure server of the provider's member, which is down.
fn dead_server(federation: &Federation, name: &str) -> Value {
    let certificate = gateway_certificate(&federation.pki, name);
    let now = OffsetDateTime::now_utc();
    json!({
        "member": NODE_MEMBER, "name": name, "address": dead_address(),
        "certificates": [{
            "sha256": certificate.fingerprint_sha256,
            "submitted_at": rfc3339(now - time::Duration::days(30)),
            "effective_from": rfc3339(now - time::Duration::days(20)),
        }],
        "encryption_key": federation.b.encryption_jwk,
    })
}

/// 004 Điều 57 (availability of the shared platform): with one of the provider's secure
/// servers down, every lookup still succeeds on the other; with all of them down the
/// portal gets a clear 503 within the deadline.
#[tokio::test]
async fn lookups_fail_over_between_the_providers_secure_servers() {
    let mut federation = Federation::start(Layout::default()).await;
    let dead = dead_server(&federation, "lgsp-bca-2");
    federation
        .republish(Layout::default(), |document| {
            let servers = document["secure_servers"].as_array_mut().expect("servers");
            servers.insert(1, dead);
        })
        .await;
    for _ in 0..4 {
        let response = federation.lookup().await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    // Every server of the provider down.
    federation
        .republish(Layout::default(), |document| {
            document["secure_servers"][1]["address"] = json!(dead_address());
        })
        .await;
    let started = std::time::Instant::now();
    let response = federation.lookup().await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "federation.provider_unavailable");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// 003 Điều 3 khoản 3: once the global configuration expires, cross-gateway exchange
/// stops with a clear code, while the provider's local consumers keep being served.
#[tokio::test]
async fn expired_global_configuration_stops_federated_exchange_only() {
    let mut federation = Federation::start(Layout::default()).await;
    // Long enough for every node to take it on a loaded machine, then wait it out.
    let soon = OffsetDateTime::now_utc() + time::Duration::seconds(8);
    federation
        .republish(Layout::default(), |document| {
            document["expires_at"] = json!(rfc3339(soon));
        })
        .await;
    let left = soon - OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(left.whole_milliseconds()).unwrap_or(0),
    ))
    .await;
    let response = federation.lookup().await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "federation.configuration_expired");
    // B's own information systems still reach B's adapters.
    let local = federation
        .node_b
        .lookup_citizen_as(&federation.pki.portal, PORTAL, Some(PURPOSE))
        .await;
    assert_eq!(local.status(), 200);
}

/// 003 Điều 3 khoản 3: a global configuration older than the one held is refused, even
/// when the authority signed it.
#[tokio::test]
async fn older_global_configuration_is_refused() {
    let mut federation = Federation::start(Layout::default()).await;
    let held = federation.authority.version;
    let mut older = federation.document(Layout::default(), OffsetDateTime::now_utc());
    older["version"] = json!(held - 1);
    federation.publish(&older);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        held_version(&reqwest::Client::new(), &federation.node_a).await,
        held
    );
}

/// 004 Điều 57: a request meant for another secure server is refused by a node that is
/// not a hub; a hub aborts a relay whose body does not match its digest; and it relays
/// only the routes the global configuration lists.
#[tokio::test]
async fn misdirected_altered_and_unrouted_relays_are_refused() {
    let mut federation = Federation::start(Layout {
        through_hub: true,
        ..Layout::default()
    })
    .await;
    let misdirected = federation.forge(&Forge {
        target_server: Some("another-server"),
        ..Forge::default()
    });
    federation
        .send(&misdirected, None)
        .await
        .expect_problem(421, "federation.misdirected");

    let hub = federation
        .node_hub
        .as_ref()
        .and_then(|hub| hub.exchange)
        .expect("hub");
    // A body altered after signing, through the hub: the hub checks the digest as the
    // bytes pass and aborts the relay.
    let plain = format!(r#"{{"citizen_id": "{CITIZEN_ID}"}}"#).into_bytes();
    let mut altered = federation.forge(&Forge {
        body: Some(plain.clone()),
        ..Forge::default()
    });
    let middle = altered.body.len() / 2;
    altered.body[middle] ^= 1;
    federation
        .send_to(hub, &altered, None)
        .await
        .expect_problem(400, "digest.mismatch");
    // The same request unaltered passes through the hub.
    let intact = federation.forge(&Forge {
        body: Some(plain),
        ..Forge::default()
    });
    let answer = federation.send_to(hub, &intact, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The authority stops routing the service through the hub: the hub refuses it.
    federation.republish(Layout::default(), |_| {}).await;
    federation
        .send_to(hub, &federation.forge(&Forge::default()), None)
        .await
        .expect_problem(403, "federation.route_not_allowed");
}

/// A provider impostor on B's exchange address: it holds B's certificate and key, and
/// answers every request with `answer(request headers)`: used to check what A accepts.
async fn fake_provider(
    certificate: &IssuedCertificate,
    answer: impl Fn(&axum::http::HeaderMap) -> axum::response::Response + Send + Sync + 'static,
) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    let chain = vec![
        rustls_pki_types::CertificateDer::from_pem_slice(certificate.cert_pem.as_bytes())
            .expect("cert"),
    ];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes())
        .expect("key");
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let response = answer(request.headers());
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    addr
}

/// 004 Điều 57: an answer must be signed by the server asked *over the request's
/// signature*; an answer signed with the right key but not bound to the request (or
/// bound to another request's signature) is refused by the consumer's gateway.
#[tokio::test]
async fn answer_not_bound_to_the_request_is_refused() {
    let mut federation = Federation::start(Layout::default()).await;
    let b = federation.b.certificate.clone();
    let a_jwk = federation.a.encryption_jwk.clone();
    // 0: no binding; 1: bound to another request's signature; 2: bound to this request's
    // (the control: the impostor's answer is otherwise well formed, so it passes).
    for binding in [0, 1, 2] {
        let (cert, jwk) = (b.clone(), a_jwk.clone());
        let impostor = fake_provider(&federation.b.certificate, move |headers| {
            let key = SigningKey::from_pem(&cert.key_pem, None).expect("key");
            let recipient = datagate::keystore::PublicKey::from_jwk(&jwk).expect("jwk");
            let body = datagate::jwe::encrypt(
                synthetic_citizen(CITIZEN_ID).to_string().as_bytes(),
                &recipient,
                None,
                Some("application/json"),
            )
            .expect("jwe");
            let digest = msgsig::content_digest(body.as_bytes(), DigestAlgorithm::Sha256);
            let id = headers["x-road-id"].to_str().expect("id").to_owned();
            let mut answer = Message::response(200)
                .header("content-digest", &digest)
                .header("x-road-id", &id);
            // Either no binding at all, or a binding to a signature of another request.
            let mut components = vec![
                Component::Status,
                Component::Header("content-digest".into()),
                Component::Header("x-road-id".into()),
            ];
            let bound = match binding {
                1 => Some("sig1=:AAAA:".to_owned()),
                2 => headers["signature"].to_str().ok().map(str::to_owned),
                _ => None,
            };
            if let Some(signature) = bound {
                components.push(Component::request_signature("sig1"));
                answer = answer.with_request(
                    Message::request("GET", "https://127.0.0.1/").header("signature", &signature),
                );
            }
            let created = OffsetDateTime::now_utc().unix_timestamp();
            let params = SignatureParams {
                created: Some(created),
                expires: Some(created + 60),
                nonce: Some(uuid_like()),
                keyid: Some(cert.fingerprint_sha256.clone()),
                alg: Some(key.algorithm()),
                tag: None,
            };
            let signed = msgsig::sign("sig1", &components, &params, &answer, &key).expect("sign");
            axum::response::Response::builder()
                .status(200)
                .header("content-type", "application/jose")
                .header("content-digest", digest)
                .header("x-road-id", id)
                .header("signature-input", signed.signature_input)
                .header("signature", signed.signature)
                .header(
                    "x-road-signer-certificate",
                    base64::engine::general_purpose::STANDARD.encode(&cert.cert_der),
                )
                .body(axum::body::Body::from(body))
                .expect("response")
        })
        .await;
        federation
            .republish(Layout::default(), |document| {
                document["secure_servers"][1]["address"] =
                    json!(format!("https://127.0.0.1:{}", impostor.port()));
            })
            .await;
        let response = federation.lookup().await;
        if binding == 2 {
            assert_eq!(response.status(), 200, "{:?}", response.text().await);
            continue;
        }
        assert_eq!(response.status(), 502, "binding {binding}");
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["code"], "federation.response_invalid");
    }
}

/// Design §3: between gateways both sides' certificates must chain to a CA the global
/// configuration lists, whatever CAs the node's own file trusts: when the authority
/// lists another CA only, no gateway of this CA can exchange; listing it again restores
/// the exchange.
#[tokio::test]
async fn exchange_peers_must_chain_to_the_global_configurations_cas() {
    let mut federation = Federation::start(Layout::default()).await;
    let other = datagate::pki::CertificateAuthority::new("Another CA").expect("CA");
    let other_pem = other.cert_pem().to_owned();
    federation
        .republish(Layout::default(), move |document| {
            document["trusted_cas"] = json!([other_pem]);
        })
        .await;
    let response = federation.lookup().await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "federation.provider_unavailable");
    // B's exchange listener refuses A's certificate at the handshake, too.
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        federation
            .node_b
            .tls_client_config(Some(&federation.a.certificate)),
    ));
    let tcp = tokio::net::TcpStream::connect(federation.b_exchange())
        .await
        .expect("tcp");
    let name = rustls_pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let refused = async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"GET /exchange/v1/contracts HTTP/1.1\r\nhost: x\r\n\r\n")
            .await?;
        let mut buf = [0u8; 16];
        let read = tls.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(read)
    }
    .await;
    assert!(
        !matches!(refused, Ok(n) if n > 0),
        "B answered a peer of a CA the global configuration does not list"
    );

    federation.republish(Layout::default(), |_| {}).await;
    let response = federation.lookup().await;
    assert_eq!(response.status(), 200);
}

/// Runs the real binary with `args`.
fn datagate(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(args)
        .output()
        .expect("datagate runs")
}

/// 003 Điều 33–35 (đối chiếu): the consumer gateway's and the provider gateway's exports
/// of the same period reconcile exchange by exchange (same `X-Road-Id`, status and
/// signature digest on both sides); an exchange missing from one side is named.
#[tokio::test]
async fn consumer_and_provider_journals_reconcile() {
    let federation = Federation::start(Layout::default()).await;
    let at = |offset: time::Duration| rfc3339(OffsetDateTime::now_utc() + offset);
    let from = at(time::Duration::minutes(-1));
    let client = federation.node_a.client(&federation.pki.portal);
    let mut mid = String::new();
    for n in 1..=3 {
        if n == 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            mid = at(time::Duration::ZERO);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let response = federation
            .node_a
            .lookup(&client, CITIZEN_ID)
            .header("X-Road-Id", format!("reconcile-{n}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    let to = at(time::Duration::minutes(1));
    // A bundle holds sealed records only: seals follow commits within
    // `chain::SEAL_MAX_DELAY` (500 ms).
    tokio::time::sleep(
        datagate::journal::chain::SEAL_MAX_DELAY + std::time::Duration::from_millis(700),
    )
    .await;
    let export = |node: &TestNode, to: &str, name: &str| {
        let out = node.written.path(name);
        let output = datagate(&[
            "journal".as_ref(),
            "export".as_ref(),
            "--journal".as_ref(),
            node.journal_path().as_os_str(),
            "--from".as_ref(),
            from.as_ref(),
            "--to".as_ref(),
            to.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert!(output.status.success(), "{output:?}");
        out
    };
    let a = export(&federation.node_a, &to, "a.json");
    let b = export(&federation.node_b, &to, "b.json");
    let agreed = datagate(&[
        "journal".as_ref(),
        "reconcile".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&agreed.stdout);
    assert!(agreed.status.success(), "{agreed:?}");
    assert!(stdout.contains("3 exchanges agree"), "{stdout}");

    // The provider's export of a shorter period lacks the third exchange.
    let partial = export(&federation.node_b, &mid, "b-partial.json");
    let differs = datagate(&[
        "journal".as_ref(),
        "reconcile".as_ref(),
        a.as_os_str(),
        partial.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&differs.stdout);
    assert!(!differs.status.success(), "{differs:?}");
    assert!(stdout.contains("only in A: reconcile-3"), "{stdout}");
    assert!(stdout.contains("2 exchanges agree"), "{stdout}");
}

/// 003 Điều 3 khoản 3: on the exchange listener a repeated signer certificate or digest
/// is ambiguous and refused; the contract publication is served only to a registered,
/// effective secure server (a certificate of the right CA is not enough).
#[tokio::test]
async fn duplicated_headers_and_unregistered_publication_fetches_are_refused() {
    let federation = Federation::start(Layout::default()).await;
    for name in ["x-road-signer-certificate", "content-digest"] {
        let mut doubled = federation.forge(&Forge::default());
        let value = doubled
            .headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.clone())
            .expect("header");
        doubled.headers.push((name.to_owned(), value));
        federation
            .send(&doubled, None)
            .await
            .expect_problem(400, "request.header_duplicated");
    }
    let stranger = gateway_certificate(&federation.pki, "stranger");
    let head =
        b"GET /exchange/v1/contracts HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    raw_exchange(
        federation.b_exchange(),
        &federation.node_b,
        &stranger,
        head,
        b"",
    )
    .await
    .expect_problem(403, "trust.certificate_unregistered");
    // A's own fetch is served, signed.
    let answer = raw_exchange(
        federation.b_exchange(),
        &federation.node_b,
        &federation.a.certificate,
        head,
        b"",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.header("signature").is_some());
}

/// Issue 9 (no exchange without its record, at the hub too; 004 Điều 27 k3): a hub whose
/// journal cannot record (here its disk is below the journal's free-space reserve) relays
/// nothing: the consumer is refused, and the owner's backend is never called.
#[tokio::test]
async fn a_hub_that_cannot_journal_relays_nothing() {
    let federation = Federation::start(Layout {
        through_hub: true,
        hub_journal: Some(
            "path = \"journal.sqlite\"\nmin_free_mb = 1000000000000\nmaintenance_interval_secs = 1",
        ),
        ..Layout::default()
    })
    .await;
    // The hub's writer checks its reserve at its next maintenance tick.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let hits = federation._upstream.hits();
    for _ in 0..2 {
        // The consumer's gateway sees the hub refuse to relay (503, unsigned: the hub
        // answers for itself) as the provider being unreachable through it.
        let response = federation.lookup().await;
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.expect("problem");
        assert_eq!(body["code"], "federation.provider_unavailable", "{body}");
    }
    assert_eq!(
        federation._upstream.hits(),
        hits,
        "the owner's backend was called"
    );
    let hub = federation.node_hub.as_ref().expect("the hub");
    let ready = reqwest::get(format!("http://{}/readyz", hub.ops))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["journal"]["last_commit_ok"], false, "{ready}");
}

/// 000 Điều 24 k3b; issue 10 §6: the consumer's gateway caches what the owner's published
/// contract allows (a hit is journaled as leg `cache`, with `Age`); the owner's gateway
/// pushes "record changed" and the next lookup asks the owner again. Only a secure
/// server of the service's owner may invalidate, and only with a well-formed message of at
/// most 4 KiB.
#[tokio::test]
async fn the_owners_invalidation_drops_the_consumer_gateways_cached_answer() {
    let federation = Federation::start(Layout {
        cached: true,
        ..Layout::default()
    })
    .await;
    let first = federation.lookup().await;
    assert_eq!(first.status(), 200);
    let second = federation.lookup().await;
    assert_eq!(second.status(), 200);
    assert!(
        second.headers().contains_key("age"),
        "a cached answer says its age"
    );
    let id = second.headers()["x-road-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        second.json::<Value>().await.expect("json"),
        projected_citizen(CITIZEN_ID)
    );
    assert_eq!(
        federation._upstream.hits(),
        1,
        "the second lookup came from A's cache"
    );
    assert_eq!(
        journaled(&federation.node_a, &id).await["leg"].as_deref(),
        Some("cache")
    );

    let exchange = format!(
        "https://127.0.0.1:{}/exchange/v1/cache/invalidate",
        federation
            .node_a
            .exchange
            .expect("exchange listener")
            .port()
    );
    let body = json!({"service": CITIZEN_SERVICE, "subject": CITIZEN_ID});
    for (who, cert) in [
        ("the consumer's own gateway", &federation.a.certificate),
        ("an information system", &federation.pki.portal),
    ] {
        let refused = federation
            .node_a
            .client(cert)
            .post(&exchange)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), 403, "{who}");
        let problem: Value = refused.json().await.expect("problem");
        assert_eq!(problem["code"], "cache.invalidation_not_allowed", "{who}");
    }
    assert_eq!(federation.lookup().await.status(), 200);
    assert_eq!(federation._upstream.hits(), 1, "still cached");

    // The owner's own malformed or oversized messages drop nothing.
    let oversized = json!({"service": CITIZEN_SERVICE, "subject": "9".repeat(5000)}).to_string();
    for (why, content, status, code) in [
        (
            "oversized",
            oversized.as_str(),
            413,
            "request.body_too_large",
        ),
        ("not JSON", "service=all", 400, "request.body_invalid"),
        (
            "an unknown field",
            r#"{"service": "x", "everything": true}"#,
            400,
            "request.body_invalid",
        ),
        (
            "not a service id",
            r#"{"service": "../*"}"#,
            400,
            "request.body_invalid",
        ),
    ] {
        let refused = federation
            .node_a
            .client(&federation.b.certificate)
            .post(&exchange)
            .header("content-type", "application/json")
            .body(content.to_owned())
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), status, "{why}");
        assert_eq!(
            refused
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{why}"
        );
        let problem: Value = refused.json().await.expect("problem");
        assert_eq!(problem["code"], code, "{why}");
    }
    assert_eq!(federation.lookup().await.status(), 200);
    assert_eq!(
        federation._upstream.hits(),
        1,
        "still cached after bad invalidations"
    );

    let invalidated = federation
        .node_a
        .client(&federation.b.certificate)
        .post(&exchange)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(invalidated.status(), 200);
    let third = federation.lookup().await;
    assert_eq!(third.status(), 200);
    assert!(!third.headers().contains_key("age"));
    assert_eq!(federation._upstream.hits(), 2, "the owner was asked again");
}

/// Issue 10 §3–4 across the federation: a form on the province's gateway whose source is the
/// ministry's service is filled through the federated pipeline: the source request is signed,
/// encrypted and journaled on both gateways under one `X-Road-Id`, decided on the owner's
/// contract; a field the owner's contract does not share is left to the citizen.
#[tokio::test]
async fn a_form_on_the_province_gateway_is_filled_from_the_ministrys_register() {
    let federation = Federation::start(Layout {
        form: true,
        ..Layout::default()
    })
    .await;
    let assertion = federation.idp.assertion(CITIZEN_ID, "medium", |claims| {
        claims["consent"] = json!({"form": "household", "services": [CITIZEN_SERVICE]});
    });
    let response = federation
        .node_a
        .client(&federation.pki.portal)
        .post(federation.node_a.url("/autofill/v1/household"))
        .header("X-Road-Client", PORTAL)
        .header("X-Citizen-Assertion", assertion)
        .json(&json!({"subject": CITIZEN_ID}))
        .send()
        .await
        .expect("fill");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    let fields = answer["fields"].as_array().expect("fields");
    assert_eq!(fields[0]["status"], "filled", "{answer}");
    assert_eq!(fields[0]["value"], "Trần Thị Thử Nghiệm");
    let provenance = &fields[0]["provenance"];
    assert_eq!(provenance["provider"], NODE_MEMBER);
    assert_eq!(
        provenance["contract"], "portal-citizen",
        "decided on the owner's copy"
    );
    assert_eq!(fields[1]["status"], "ask_citizen");
    assert_eq!(
        fields[1]["reason"], "autofill.value_missing",
        "the owner does not share the street"
    );
    let id = provenance["messageId"].as_str().expect("source message id");
    let a = journaled(&federation.node_a, id).await;
    let b = journaled(&federation.node_b, id).await;
    assert_eq!(a["leg"].as_deref(), Some("consumer"));
    assert_eq!(b["leg"].as_deref(), Some("provider"));
    assert!(a["signature_digest"].is_some());
    assert_eq!(a["signature_digest"], b["signature_digest"]);
    assert_eq!(a["purpose"].as_deref(), Some(PURPOSE));
}
