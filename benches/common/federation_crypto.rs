//! The cryptographic work of one federated exchange, role by role, done with the
//! library's own functions (`datagate::msgsig`, `datagate::jwe`, `datagate::keystore`)
//! and the gateway's own component lists, so that "the floor" means the same calls
//! in the criterion benchmark (`benches/crypto_floor.rs`) and in the load harness
//! (`benches/load/floor.rs`), which both include this file.
//!
//! Per exchange (docs/PROTOCOL.md; `src/gateway/remote.rs`, `inbound.rs`, `hub.rs`):
//!
//! - **consumer side** (LGSP A): encrypt the body for the provider's server (when
//!   there is one), `Content-Digest` of what is sent, sign the request (`sig1`); on
//!   the way back verify the answer's signature (over `sig1`), its digest, and
//!   decrypt it;
//! - **provider side** (LGSP B): verify `sig1` (and the hub's `hub` signature when
//!   relayed), check the body's digest, decrypt it (when any); encrypt the answer for
//!   the consumer's server, digest it, sign it over the request's `sig1`;
//! - **hub**: verify `sig1`, countersign (`hub`), check the body's digest as it streams.
//!
//! What is *not* in the floor, on purpose: reading the signer's certificate from its
//! header and turning it into a key, the global-configuration look-ups, the nonce
//! memory, HTTP and TLS. Those are the gateway's own overhead over the floor.

use anyhow::Context as _;
use base64::Engine as _;
use datagate::gateway::federation::{
    HUB_LABEL, LABEL, TARGET_SERVER, request_components, response_components,
};
use datagate::gateway::inbound::hub_components;
use datagate::jwe;
use datagate::keystore::PrivateKey;
use datagate::msgsig::{
    self, Algorithm, DigestAlgorithm, DigestVerifier, HttpMessage, Message, ResponseWithRequest,
    SignatureParams, SigningKey, VerifyingKey,
};

/// The key types measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// EC P-256: `ecdsa-p256-sha256` signatures, `ECDH-ES+A256KW` + `A256GCM` (the default).
    EcdsaP256,
    /// RSA-2048: `rsa-pss-sha512` signatures, `RSA-OAEP-256` + `A256GCM` (what the
    /// national CA often issues).
    Rsa2048,
}

impl KeyType {
    /// Short name for reports and benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ec-p256",
            KeyType::Rsa2048 => "rsa-2048",
        }
    }

    /// The algorithms, for reports.
    pub fn algorithms(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256-sha256, ECDH-ES+A256KW + A256GCM",
            KeyType::Rsa2048 => "rsa-pss-sha512, RSA-OAEP-256 + A256GCM",
        }
    }

    /// A fresh private key of this type, PKCS#8 DER.
    fn generate(self) -> anyhow::Result<Vec<u8>> {
        let key = match self {
            KeyType::EcdsaP256 => {
                let group =
                    openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
                openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?
            }
            KeyType::Rsa2048 => openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?,
        };
        Ok(key.private_key_to_pkcs8()?)
    }
}

/// One gateway's keys: a signing key (with its verifying half, as its peers hold it)
/// and a decryption key (with its public half, as the global configuration publishes it).
pub struct Party {
    signing: SigningKey,
    verifying: VerifyingKey,
    key_id: String,
    /// Its decryption key made ready once, as the gateway holds it.
    opener: jwe::Opener,
    /// Its published encryption key made ready once, as its peers hold it.
    recipient: jwe::Recipient,
    kid: String,
}

impl Party {
    fn generate(keys: KeyType, name: &str) -> anyhow::Result<Self> {
        let algorithm = match keys {
            KeyType::EcdsaP256 => Algorithm::EcdsaP256Sha256,
            KeyType::Rsa2048 => Algorithm::RsaPssSha512,
        };
        let signing = SigningKey::from_pkcs8_der(&keys.generate()?, Some(algorithm))
            .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
        let decryption = PrivateKey::from_pkcs8_der(&keys.generate()?)
            .map_err(|e| anyhow::anyhow!("decryption key: {e}"))?;
        let encryption = decryption
            .public_key()
            .map_err(|e| anyhow::anyhow!("encryption key: {e}"))?;
        Ok(Party {
            verifying: signing.verifying_key(),
            signing,
            // The gateway's keyid is its certificate's SHA-256 in hex: 64 characters.
            key_id: format!("{name:0>64}"),
            opener: jwe::Opener::new(&decryption)
                .map_err(|e| anyhow::anyhow!("decryption key: {e}"))?,
            recipient: jwe::Recipient::new(&encryption)
                .map_err(|e| anyhow::anyhow!("encryption key: {e}"))?,
            kid: format!("{name}-enc"),
        })
    }

    /// Signature parameters as `Federation::sign` makes them: created, expires, a fresh
    /// 16-byte nonce, keyid, alg.
    fn params(&self, now: i64) -> anyhow::Result<SignatureParams> {
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
        Ok(SignatureParams {
            created: Some(now),
            expires: Some(now + 60),
            nonce: Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce)),
            keyid: Some(self.key_id.clone()),
            alg: Some(self.signing.algorithm()),
            tag: None,
        })
    }
}

/// A request as it leaves the consumer's gateway (or the hub): its signed head and body.
#[derive(Clone)]
pub struct SentRequest {
    /// Method, `@target-uri` and headers (with `Signature-Input` and `Signature`).
    pub message: Message,
    /// The body as sent: empty, or a compact JWE.
    pub payload: Vec<u8>,
}

/// An answer as it leaves the provider's gateway.
#[derive(Clone)]
pub struct SentAnswer {
    /// Status and headers (with `Signature-Input` and `Signature`).
    pub message: Message,
    /// The body: a compact JWE.
    pub payload: Vec<u8>,
}

/// The shape of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `GET` lookup, no body.
    Get,
    /// `POST` with a JSON body of about 1 KiB.
    Post1k,
}

impl Shape {
    /// Short name for reports and benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Get => "get",
            Shape::Post1k => "post-1k",
        }
    }
}

/// The roles whose floor is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// LGSP A: sign + encrypt (body) on the way out, verify + digest + decrypt on the way back.
    Consumer,
    /// LGSP B, called directly: verify + digest + decrypt (body), encrypt + digest + sign.
    Provider,
    /// LGSP B behind the hub: the same plus the hub's signature to verify.
    ProviderViaHub,
    /// The hub: verify `sig1`, countersign, digest check of the streamed body.
    Hub,
}

impl Role {
    /// Every role, in path order.
    pub const ALL: [Role; 4] = [
        Role::Consumer,
        Role::Provider,
        Role::ProviderViaHub,
        Role::Hub,
    ];

    /// Short name for reports and benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Provider => "provider",
            Role::ProviderViaHub => "provider-via-hub",
            Role::Hub => "hub",
        }
    }
}

/// The client, target and record of the measured exchange (the load harness's names).
const CLIENT: &str = "VN/GOV/000.00.00.H29/bench-client";
const TARGET: &str = "/exchange/v1/r1/VN/GOV/000.00.00.G10/bench-db/record/001085012345";
const SEARCH: &str = "/exchange/v1/r1/VN/GOV/000.00.00.G10/bench-db/record/search";
const MESSAGE_ID: &str = "6f1c2b1e-8f0e-4d6a-9d2b-0c6a1f4e9b3a";

/// A ~1 KiB JSON search request, the POST body.
pub fn search_body() -> Vec<u8> {
    let mut body = serde_json::json!({
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1985-03-02",
        "address": {"province": "Hà Nội", "district": "Quận Ba Đình"},
        "reason": "",
    });
    let unpadded = serde_json::to_vec(&body).unwrap_or_default().len();
    body["reason"] = serde_json::Value::String("x".repeat(1024usize.saturating_sub(unpadded)));
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A ~300-byte JSON record, the answer of the criterion benchmark.
pub fn small_record() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "record_id": "001085012345",
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1985-03-02",
        "sex": "F",
        "nationality": "VN",
        "address": {"province": "Hà Nội", "district": "Quận Ba Đình",
                    "ward": "Phường Điện Biên", "street": "Số 12 Hoàng Diệu"},
        "status": "active",
        "updated_at": "2026-11-20T08:15:00+07:00",
    }))
    .unwrap_or_default()
}

/// Three gateways' keys and one exchange's plaintexts.
pub struct Exchange {
    consumer: Party,
    provider: Party,
    hub: Party,
    shape: Shape,
    body: Vec<u8>,
    answer: Vec<u8>,
    target_uri: String,
    now: i64,
}

impl Exchange {
    /// An exchange of `shape` answering `answer`, between freshly generated keys of type `keys`.
    pub fn new(keys: KeyType, shape: Shape, answer: Vec<u8>) -> anyhow::Result<Self> {
        let path = match shape {
            Shape::Get => TARGET,
            Shape::Post1k => SEARCH,
        };
        Ok(Exchange {
            consumer: Party::generate(keys, "lgsp-a")?,
            provider: Party::generate(keys, "lgsp-b")?,
            hub: Party::generate(keys, "ndxp")?,
            shape,
            body: match shape {
                Shape::Get => Vec::new(),
                Shape::Post1k => search_body(),
            },
            answer,
            target_uri: format!("https://127.0.0.1:8643{path}"),
            now: time::OffsetDateTime::now_utc().unix_timestamp(),
        })
    }

    fn method(&self) -> &'static str {
        match self.shape {
            Shape::Get => "GET",
            Shape::Post1k => "POST",
        }
    }

    /// Consumer side, outgoing: encrypt the body (when any) for the provider's server,
    /// digest what is sent, sign `sig1` over the protocol's components.
    pub fn consumer_send(&self) -> anyhow::Result<SentRequest> {
        let payload = if self.body.is_empty() {
            Vec::new()
        } else {
            self.provider
                .recipient
                .encrypt(
                    &self.body,
                    Some(&self.provider.kid),
                    Some("application/json"),
                )
                .context("encrypt the body")?
                .into_bytes()
        };
        let mut message = Message::request(self.method(), &self.target_uri)
            .header(
                "content-digest",
                &msgsig::content_digest(&payload, DigestAlgorithm::Sha256),
            )
            .header("x-road-client", CLIENT)
            .header("x-road-id", MESSAGE_ID)
            .header(TARGET_SERVER, "lgsp-b")
            .header("x-purpose", "BENCHMARK");
        if !payload.is_empty() {
            message.add_header("content-type", "application/jose");
        }
        let components = request_components(&message);
        let signed = msgsig::sign(
            LABEL,
            &components,
            &self.consumer.params(self.now)?,
            &message,
            &self.consumer.signing,
        )
        .context("sign the request")?;
        message.add_header("signature-input", &signed.signature_input);
        message.add_header("signature", &signed.signature);
        Ok(SentRequest { message, payload })
    }

    /// Hub: verify `sig1` (with the sender's key) and its coverage, countersign `hub`
    /// over `sig1`, the method, the target and the message id, and check the body
    /// against its digest as it streams through. Returns the request as relayed.
    pub fn hub_relay(&self, sent: &SentRequest) -> anyhow::Result<SentRequest> {
        let verified = msgsig::verify(LABEL, &sent.message, |_| {
            Ok(self.consumer.verifying.clone())
        })
        .context("hub: verify sig1")?;
        verified
            .require_covered(&request_components(&sent.message))
            .context("hub: sig1 coverage")?;
        let counter = msgsig::sign(
            HUB_LABEL,
            &hub_components(),
            &self.hub.params(self.now)?,
            &sent.message,
            &self.hub.signing,
        )
        .context("hub: countersign")?;
        let digest = sent.message.header_values("content-digest").join(", ");
        let mut verifier = DigestVerifier::new(&digest).context("hub: digest")?;
        verifier.update(&sent.payload);
        verifier.finish().context("hub: digest")?;
        let mut relayed = sent.clone();
        relayed
            .message
            .add_header("signature-input", &counter.signature_input);
        relayed.message.add_header("signature", &counter.signature);
        Ok(relayed)
    }

    /// Provider side, incoming: verify `sig1` (and the hub's signature when `via_hub`),
    /// their coverage, the body's digest, and decrypt the body (when any).
    pub fn provider_receive(&self, sent: &SentRequest, via_hub: bool) -> anyhow::Result<Vec<u8>> {
        let verified = msgsig::verify(LABEL, &sent.message, |_| {
            Ok(self.consumer.verifying.clone())
        })
        .context("provider: verify sig1")?;
        verified
            .require_covered(&request_components(&sent.message))
            .context("provider: sig1 coverage")?;
        if via_hub {
            let relay =
                msgsig::verify(HUB_LABEL, &sent.message, |_| Ok(self.hub.verifying.clone()))
                    .context("provider: verify the hub's signature")?;
            relay
                .require_covered(&hub_components())
                .context("provider: hub coverage")?;
        }
        let digest = sent.message.header_values("content-digest").join(", ");
        msgsig::verify_content_digest(&digest, &sent.payload).context("provider: digest")?;
        if sent.payload.is_empty() {
            return Ok(Vec::new());
        }
        let compact = std::str::from_utf8(&sent.payload)?;
        Ok(self
            .provider
            .opener
            .decrypt(compact)
            .context("provider: decrypt the body")?
            .plaintext)
    }

    /// Provider side, outgoing: encrypt the answer for the consumer's server, digest it,
    /// sign it over the request's `sig1` (`"signature";req;key="sig1"`).
    pub fn provider_answer(&self, sent: &SentRequest) -> anyhow::Result<SentAnswer> {
        let payload = self
            .consumer
            .recipient
            .encrypt(
                &self.answer,
                Some(&self.consumer.kid),
                Some("application/json"),
            )
            .context("encrypt the answer")?
            .into_bytes();
        let mut message = Message::response(200)
            .header(
                "content-digest",
                &msgsig::content_digest(&payload, DigestAlgorithm::Sha256),
            )
            .header("x-road-id", MESSAGE_ID);
        // What the answer is bound to: the request's signature fields, as received.
        let mut bound = Message::request(self.method(), &self.target_uri);
        for name in ["signature", "signature-input"] {
            for value in sent.message.header_values(name) {
                bound.add_header(name, &value);
            }
        }
        let view = ResponseWithRequest {
            response: &message,
            request: &bound,
        };
        let signed = msgsig::sign(
            LABEL,
            &response_components(),
            &self.provider.params(self.now)?,
            &view,
            &self.provider.signing,
        )
        .context("sign the answer")?;
        message.add_header("signature-input", &signed.signature_input);
        message.add_header("signature", &signed.signature);
        message.add_header("content-type", "application/jose");
        Ok(SentAnswer { message, payload })
    }

    /// Consumer side, incoming: verify the answer's signature over our `sig1` and its
    /// coverage, the answer's digest, and decrypt it.
    pub fn consumer_receive(
        &self,
        sent: &SentRequest,
        answer: &SentAnswer,
    ) -> anyhow::Result<Vec<u8>> {
        let bound = ResponseWithRequest {
            response: &answer.message,
            request: &sent.message,
        };
        let verified = msgsig::verify(LABEL, &bound, |_| Ok(self.provider.verifying.clone()))
            .context("consumer: verify the answer")?;
        verified
            .require_covered(&response_components())
            .context("consumer: answer coverage")?;
        msgsig::verify_message_content_digest(&bound, &answer.payload)
            .context("consumer: answer digest")?;
        let compact = std::str::from_utf8(&answer.payload)?;
        Ok(self
            .consumer
            .opener
            .decrypt(compact)
            .context("consumer: decrypt the answer")?
            .plaintext)
    }

    /// One primitive: the answer's JWE for the consumer's server (no digest, no signature).
    pub fn encrypt_answer(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self
            .consumer
            .recipient
            .encrypt(
                &self.answer,
                Some(&self.consumer.kid),
                Some("application/json"),
            )?
            .into_bytes())
    }

    /// One primitive: opening the answer's JWE with the consumer's key.
    pub fn decrypt_answer(&self, answer: &SentAnswer) -> anyhow::Result<Vec<u8>> {
        let compact = std::str::from_utf8(&answer.payload)?;
        Ok(self.consumer.opener.decrypt(compact)?.plaintext)
    }

    /// One primitive: verifying `sig1` of a request, with the key already in hand.
    pub fn verify_request(&self, sent: &SentRequest) -> anyhow::Result<()> {
        msgsig::verify(LABEL, &sent.message, |_| {
            Ok(self.consumer.verifying.clone())
        })?;
        Ok(())
    }

    /// Messages of one whole exchange, made once, for the roles that start from a
    /// received message: (request, request as relayed by the hub, answer).
    pub fn prepare(&self) -> anyhow::Result<Prepared> {
        let request = self.consumer_send()?;
        let relayed = self.hub_relay(&request)?;
        let answer = self.provider_answer(&request)?;
        // The whole round trip opens: every role's inputs are valid.
        anyhow::ensure!(self.provider_receive(&request, false)? == self.body);
        anyhow::ensure!(self.provider_receive(&relayed, true)? == self.body);
        anyhow::ensure!(self.consumer_receive(&request, &answer)? == self.answer);
        Ok(Prepared {
            request,
            relayed,
            answer,
        })
    }

    /// Everything `role` does for one exchange. Incoming messages come from `prepared`
    /// (the same work as for a fresh one: the cost does not depend on the nonce).
    pub fn role(&self, role: Role, prepared: &Prepared) -> anyhow::Result<()> {
        match role {
            Role::Consumer => {
                std::hint::black_box(self.consumer_send()?);
                std::hint::black_box(self.consumer_receive(&prepared.request, &prepared.answer)?);
            }
            Role::Provider => {
                std::hint::black_box(self.provider_receive(&prepared.request, false)?);
                std::hint::black_box(self.provider_answer(&prepared.request)?);
            }
            Role::ProviderViaHub => {
                std::hint::black_box(self.provider_receive(&prepared.relayed, true)?);
                std::hint::black_box(self.provider_answer(&prepared.relayed)?);
            }
            Role::Hub => {
                std::hint::black_box(self.hub_relay(&prepared.request)?);
            }
        }
        Ok(())
    }
}

/// The messages of one exchange, made once.
pub struct Prepared {
    /// As the consumer's gateway sent it.
    pub request: SentRequest,
    /// As the hub relayed it.
    pub relayed: SentRequest,
    /// As the provider's gateway answered.
    pub answer: SentAnswer,
}

/// Median wall time of `role` per exchange, in microseconds: `batches` batches of
/// `per_batch` after a warm-up of one batch. The caller pins the thread.
pub fn floor_us(
    exchange: &Exchange,
    prepared: &Prepared,
    role: Role,
    batches: usize,
    per_batch: usize,
) -> anyhow::Result<f64> {
    for _ in 0..per_batch {
        exchange.role(role, prepared)?;
    }
    let mut means = Vec::with_capacity(batches);
    for _ in 0..batches.max(1) {
        let started = std::time::Instant::now();
        for _ in 0..per_batch.max(1) {
            exchange.role(role, prepared)?;
        }
        means.push(started.elapsed().as_secs_f64() * 1e6 / per_batch.max(1) as f64);
    }
    means.sort_by(f64::total_cmp);
    Ok(means[means.len() / 2])
}
