//! The node's place in the federation: the signed global configuration it holds
//! (polled, verified, applied atomically), its signing identity, its replay memory,
//! and the mTLS client it reaches other gateways with.
//!
//! Owns: refreshing the global configuration ([`Federation::refresh`]); deciding
//! whether cross-gateway exchange is possible now ([`Federation::global`]: none held
//! or expired → a clear 503, while local adapters keep serving); nonces
//! ([`NonceMemory`]); signing this node's messages ([`Federation::sign`]); turning the
//! codes of the cryptographic modules into the node's [`ErrorCode`]s.
//!
//! Does not own: the wire protocol's steps (consumer side: [`super::remote`]; provider
//! side: [`super::inbound`]; hub: [`super::hub`]).

use crate::config::federation::{FederationSettings, GlobalSource};
use crate::error::{ErrorCode, GatewayError};
use crate::jwe::JweError;
use crate::msgsig::{Component, HttpMessage, SignatureError, SignatureParams, SignedHeaders};
use crate::trust::global::{GlobalConfError, GlobalConfiguration, Verification, Verifier};
use crate::trust::tls::TlsFiles;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// The header carrying the signer's certificate (base64 DER); its SHA-256 is the
/// signature's `keyid`, so it needs no signature of its own.
pub const SIGNER_CERTIFICATE: &str = "x-road-signer-certificate";
/// The header carrying a hub's certificate, for its `hub` signature.
pub const HUB_CERTIFICATE: &str = "x-road-hub-certificate";
/// The secure server a request is meant for (covered by the signature): it fixes the
/// `@target-uri` every node of the path computes, so a hub never rewrites a covered part.
pub const TARGET_SERVER: &str = "x-road-target-server";
/// The signature label of the sending gateway.
pub const LABEL: &str = "sig1";
/// The signature label a hub adds.
pub const HUB_LABEL: &str = "hub";
/// How long a signature this node makes is valid.
pub const SIGNATURE_LIFETIME_SECS: i64 = 60;
/// The largest signed global configuration fetched.
const MAX_GLOBAL_CONFIGURATION_BYTES: usize = 4 << 20;

/// Nonces seen within the replay window, bounded.
///
/// A nonce is remembered until its `created` leaves the window (then freshness alone
/// refuses a replay). When the memory is full the oldest entry is forgotten and the
/// `floor` rises to its `created`: from then on anything created at or before the
/// floor is refused, so forgetting never lets a replay through; under a flood the
/// window only narrows.
#[derive(Debug)]
pub struct NonceMemory {
    capacity: usize,
    state: Mutex<NonceState>,
}

#[derive(Debug, Default)]
struct NonceState {
    seen: HashSet<(String, String)>,
    order: VecDeque<((String, String), i64)>,
    floor: i64,
}

impl NonceMemory {
    /// A memory of at most `capacity` nonces that refuses anything created at or before
    /// `floor`: the moment the process started, since the nonces seen before then are
    /// gone (a replay of a message signed before a restart is refused, not forgotten).
    pub fn new(capacity: usize, floor: i64) -> Self {
        NonceMemory {
            capacity: capacity.max(1),
            state: Mutex::new(NonceState {
                floor,
                ..NonceState::default()
            }),
        }
    }

    /// Remembers `(key_id, nonce)` created at `created`, or refuses it as a replay.
    /// Entries created before `oldest` (the window's start) are forgotten first.
    pub fn check_and_remember(
        &self,
        key_id: &str,
        nonce: &str,
        created: i64,
        oldest: i64,
    ) -> Result<(), GatewayError> {
        let replayed = || {
            GatewayError::new(
                ErrorCode::SignatureReplayed,
                "this signature's nonce was seen before",
            )
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((_, at)) = state.order.front() {
            if *at >= oldest {
                break;
            }
            if let Some((key, _)) = state.order.pop_front() {
                state.seen.remove(&key);
            }
        }
        if created <= state.floor {
            return Err(replayed());
        }
        let key = (key_id.to_owned(), nonce.to_owned());
        if state.seen.contains(&key) {
            return Err(replayed());
        }
        if state.order.len() >= self.capacity
            && let Some((forgotten, at)) = state.order.pop_front()
        {
            state.seen.remove(&forgotten);
            state.floor = state.floor.max(at);
            if created <= state.floor {
                return Err(replayed());
            }
        }
        state.seen.insert(key.clone());
        state.order.push_back((key, created));
        Ok(())
    }

    /// Nonces held now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .order
            .len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The federation state of a running node.
pub struct Federation {
    /// The validated `[federation]` section.
    pub settings: FederationSettings,
    verifier: ArcSwap<Verifier>,
    held: ArcSwapOption<GlobalConfiguration>,
    /// Replays refused on the exchange listener.
    pub nonces: NonceMemory,
    client: ArcSwap<reqwest::Client>,
    tls: TlsFiles,
    exchange_tls: Arc<ArcSwap<rustls::ServerConfig>>,
    key_id: String,
    certificate_header: String,
    copies: ArcSwap<super::publication::ContractCopies>,
    /// This node's decryption key, made ready once.
    opener: crate::jwe::Opener,
    /// Peers' encryption keys made ready once (by their SPKI); emptied when a new
    /// global configuration is applied, so it holds at most its servers' keys.
    recipients: Mutex<std::collections::HashMap<Vec<u8>, Arc<crate::jwe::Recipient>>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// The federation state for `settings`; its client presents the node's `[tls]`
    /// certificate and trusts the node's CAs.
    pub fn new(
        settings: FederationSettings,
        tls: &TlsFiles,
        started: OffsetDateTime,
    ) -> anyhow::Result<Self> {
        // Until a global configuration is held, the node's own CAs; then the CAs the
        // global configuration lists (see [`Federation::apply`]).
        let roots = crate::trust::tls::load_roots(&tls.trusted_cas)?;
        let client = Self::build_client(tls, roots.clone())?;
        let exchange_tls = crate::trust::tls::server_config_with_roots(tls, roots)?;
        let key_id = settings.certificate.fingerprint_hex();
        use base64::Engine as _;
        let certificate_header =
            base64::engine::general_purpose::STANDARD.encode(settings.certificate.der());
        let opener = crate::jwe::Opener::new(&settings.encryption_key)
            .map_err(|e| anyhow::anyhow!("[federation] encryption_key: {e}"))?;
        Ok(Federation {
            verifier: ArcSwap::from_pointee(Verifier::new(
                settings.anchor.clone(),
                settings.instance.clone(),
            )),
            // One second of slack below the start: a message signed in the same second
            // the node started may still be in flight to it.
            nonces: NonceMemory::new(settings.nonce_memory, started.unix_timestamp() - 1),
            settings,
            held: ArcSwapOption::empty(),
            client: ArcSwap::from_pointee(client),
            tls: tls.clone(),
            exchange_tls: Arc::new(ArcSwap::from_pointee(exchange_tls)),
            key_id,
            certificate_header,
            copies: ArcSwap::from_pointee(Default::default()),
            opener,
            recipients: Mutex::new(Default::default()),
        })
    }

    /// An mTLS client presenting the node's certificate and trusting `roots`.
    fn build_client(
        tls: &TlsFiles,
        roots: rustls::RootCertStore,
    ) -> anyhow::Result<reqwest::Client> {
        let chain = crate::trust::tls::load_certificates(&tls.certificate)?;
        let key = crate::trust::tls::load_key(&tls.key)?;
        let config = rustls::ClientConfig::builder_with_provider(crate::trust::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()?)
    }

    /// Trusts, on the exchange listener and in the client, exactly the CAs `config` lists.
    fn trust_cas_of(&self, config: &GlobalConfiguration) -> anyhow::Result<()> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in config.trusted_cas() {
            roots.add(rustls_pki_types::CertificateDer::from(ca.der().to_vec()))?;
        }
        let server = crate::trust::tls::server_config_with_roots(&self.tls, roots.clone())?;
        let client = Self::build_client(&self.tls, roots)?;
        self.exchange_tls.store(Arc::new(server));
        self.client.store(Arc::new(client));
        Ok(())
    }

    /// This node's decryption key (production policy).
    pub fn opener(&self) -> &crate::jwe::Opener {
        &self.opener
    }

    /// The JWE recipient for a peer's published encryption key, prepared once.
    pub fn recipient(
        &self,
        key: &crate::trust::global::PublicJwk,
    ) -> Result<Arc<crate::jwe::Recipient>, GatewayError> {
        let mut recipients = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(recipient) = recipients.get(key.spki_der()) {
            return Ok(recipient.clone());
        }
        let unusable = || {
            GatewayError::new(
                ErrorCode::InternalUnexpected,
                "a peer's published encryption key is unusable",
            )
        };
        let public =
            crate::keystore::PublicKey::from_spki_der(key.spki_der()).map_err(|_| unusable())?;
        let recipient = Arc::new(crate::jwe::Recipient::new(&public).map_err(|_| unusable())?);
        recipients.insert(key.spki_der().to_vec(), recipient.clone());
        Ok(recipient)
    }

    /// The mTLS client to other gateways.
    pub fn client(&self) -> Arc<reqwest::Client> {
        self.client.load_full()
    }

    /// The exchange listener's TLS configuration (its trusted CAs follow the global
    /// configuration).
    pub fn exchange_tls(&self) -> Arc<ArcSwap<rustls::ServerConfig>> {
        self.exchange_tls.clone()
    }

    /// This node's key id: the SHA-256 of its secure-server certificate.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The value of [`SIGNER_CERTIFICATE`] for this node's messages.
    pub fn certificate_header(&self) -> &str {
        &self.certificate_header
    }

    /// The global configuration, if one is held and has not expired at `now`.
    pub fn global(&self, now: OffsetDateTime) -> Result<Arc<GlobalConfiguration>, GatewayError> {
        let held = self.held.load_full().ok_or_else(|| {
            GatewayError::new(
                ErrorCode::FederationConfigurationMissing,
                "this node holds no verified global configuration yet",
            )
        })?;
        if held.is_expired(now) {
            return Err(GatewayError::new(
                ErrorCode::FederationConfigurationExpired,
                "the global configuration this node holds has expired",
            ));
        }
        Ok(held)
    }

    /// The verified copies of the providers' contracts.
    pub fn copies(&self) -> Arc<super::publication::ContractCopies> {
        self.copies.load_full()
    }

    /// Replaces the copies (after a refresh).
    pub fn set_copies(&self, copies: super::publication::ContractCopies) {
        self.copies.store(Arc::new(copies));
    }

    /// The held global configuration, expired or not (status pages).
    pub fn held(&self) -> Option<Arc<GlobalConfiguration>> {
        self.held.load_full()
    }

    /// Verifies `signed` and applies it when it is newer than the one held. Returns
    /// whether it replaced the held one.
    pub fn apply(&self, signed: &[u8], now: OffsetDateTime) -> Result<bool, GlobalConfError> {
        let held = self.held.load_full();
        match self.verifier.load().verify(signed, held.as_deref(), now)? {
            Verification::Unchanged => Ok(false),
            Verification::Accepted(accepted) => {
                // Exchange peers must chain to the CAs this configuration lists. A set the
                // TLS stack cannot use is refused: the held configuration stays in force.
                if let Err(error) = self.trust_cas_of(&accepted.config) {
                    tracing::error!(error = %error, "the global configuration's CAs are unusable; keeping the held one");
                    return Err(GlobalConfError::Invalid {
                        problems: vec![crate::trust::global::Problem {
                            path: "trusted_cas".into(),
                            message: "unusable by the TLS stack".into(),
                        }],
                    });
                }
                if accepted.anchor_rotated {
                    tracing::warn!(
                        anchor = %accepted.signed_by.fingerprint(),
                        "the federation's anchor was rotated; the new anchor is written to the anchor file"
                    );
                    self.verifier.store(Arc::new(Verifier::new(
                        accepted.signed_by.clone(),
                        self.settings.instance.clone(),
                    )));
                    // Written back, so a restart trusts the anchor in force (write, then
                    // rename: a crash leaves the old file or the new one, never half).
                    let path = &self.settings.anchor_path;
                    let staged = path.with_extension("pem.new");
                    if let Err(error) = std::fs::write(&staged, accepted.signed_by.to_pem())
                        .and_then(|()| std::fs::rename(&staged, path))
                    {
                        tracing::error!(error = %error, path = %path.display(), "cannot persist the rotated anchor");
                    }
                }
                tracing::info!(
                    version = accepted.config.version(),
                    "global configuration applied"
                );
                metrics::gauge!("datagate_global_configuration_version")
                    .set(accepted.config.version() as f64);
                self.held.store(Some(Arc::new(accepted.config)));
                self.recipients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                Ok(true)
            }
        }
    }

    /// Fetches the signed global configuration from its source and applies it.
    pub async fn refresh(&self, now: OffsetDateTime) -> Result<bool, String> {
        let signed = match &self.settings.source {
            GlobalSource::File(path) => {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
            GlobalSource::Url(url) => {
                let mut response = self
                    .client()
                    .get(url.clone())
                    .timeout(std::time::Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| format!("cannot fetch the global configuration: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!(
                        "the global configuration source answered {}",
                        response.status()
                    ));
                }
                read_limited(&mut response, MAX_GLOBAL_CONFIGURATION_BYTES)
                    .await
                    .map_err(|e| format!("cannot read the global configuration: {e}"))?
                    .to_vec()
            }
        };
        self.apply(&signed, now)
            .map_err(|e| format!("global configuration refused ({}): {e}", e.code()))
    }

    /// Signs `message` under `label` with this node's key, covering `components`;
    /// `created` is `now`, with a fresh nonce.
    pub fn sign(
        &self,
        label: &str,
        components: &[Component],
        message: &dyn HttpMessage,
        now: OffsetDateTime,
    ) -> Result<SignedHeaders, GatewayError> {
        let created = now.unix_timestamp();
        let params = SignatureParams {
            created: Some(created),
            expires: Some(created + SIGNATURE_LIFETIME_SECS),
            nonce: Some(fresh_nonce()?),
            keyid: Some(self.key_id.clone()),
            alg: Some(self.settings.signing_key.algorithm()),
            tag: None,
        };
        crate::msgsig::sign(
            label,
            components,
            &params,
            message,
            &self.settings.signing_key,
        )
        .map_err(|error| {
            tracing::error!(code = error.code(), "cannot sign a message");
            GatewayError::new(ErrorCode::InternalUnexpected, "the node could not sign")
        })
    }
}

/// The largest body accepted between gateways: the JWE of a body of
/// `request_body_bytes`, which base64url grows by 4/3, plus its header.
pub fn jwe_body_limit(limits: &crate::config::Limits) -> usize {
    limits.request_body_bytes.saturating_mul(4) / 3 + 4096
}

/// 16 random bytes, base64url: a signature's nonce.
fn fresh_nonce() -> Result<String, GatewayError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| GatewayError::new(ErrorCode::InternalUnexpected, "no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a response body of at most `limit` bytes.
pub async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, String> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The node's code for a message-signature or digest failure of a peer's request.
pub fn signature_error(error: &SignatureError) -> GatewayError {
    let code = match error.code() {
        "signature.missing" => ErrorCode::SignatureMissing,
        "signature.invalid" | "signature.key_mismatch" => ErrorCode::SignatureInvalid,
        "signature.component_missing" => ErrorCode::SignatureComponentMissing,
        "signature.component_not_covered" => ErrorCode::SignatureComponentNotCovered,
        "signature.algorithm_unsupported" => ErrorCode::SignatureAlgorithmUnsupported,
        "signature.key_unknown" | "signature.key_invalid" => ErrorCode::SignatureKeyUnknown,
        "signature.expired" => ErrorCode::SignatureExpired,
        "signature.not_yet_valid" => ErrorCode::SignatureNotYetValid,
        "digest.mismatch" => ErrorCode::DigestMismatch,
        "digest.missing" | "digest.malformed" | "digest.algorithm_unsupported" => {
            ErrorCode::DigestMissing
        }
        _ => ErrorCode::SignatureMalformed,
    };
    GatewayError::new(code, error.to_string())
}

/// The node's code for a JWE failure of a peer's payload.
pub fn jwe_error(error: &JweError) -> GatewayError {
    let code = match error.code() {
        "jwe.algorithm_unsupported" => ErrorCode::JweAlgorithmUnsupported,
        "jwe.decryption_failed" | "jwe.key_unsupported" => ErrorCode::JweDecryptionFailed,
        _ => ErrorCode::JweMalformed,
    };
    GatewayError::new(code, error.to_string())
}

/// Headers every exchange request carries and its signature covers.
pub const REQUIRED_HEADERS: [&str; 3] = ["x-road-client", "x-road-id", TARGET_SERVER];
/// Headers the signature covers whenever they are present.
pub const PROTECTED_HEADERS: [&str; 4] = [
    "x-purpose",
    "x-road-userid",
    "x-road-issue",
    "x-citizen-assertion",
];

/// The components a gateway's request signature covers: `@method`, `@target-uri`,
/// `content-digest`, the required headers, and each protected header present.
pub fn request_components(message: &dyn HttpMessage) -> Vec<Component> {
    let mut components = vec![
        Component::Method,
        Component::TargetUri,
        Component::Header("content-digest".into()),
    ];
    components.extend(
        REQUIRED_HEADERS
            .iter()
            .map(|h| Component::Header((*h).into())),
    );
    components.extend(
        PROTECTED_HEADERS
            .iter()
            .filter(|h| !message.header_values(h).is_empty())
            .map(|h| Component::Header((*h).into())),
    );
    components
}

/// The components a provider's answer signature covers: `@status`, `content-digest`,
/// `x-road-id`, and the request's signature (`"signature";req;key="sig1"`), which binds
/// the answer to the question.
pub fn response_components() -> Vec<Component> {
    vec![
        Component::Status,
        Component::Header("content-digest".into()),
        Component::Header("x-road-id".into()),
        Component::request_signature(LABEL),
    ]
}

/// The `@target-uri` of an exchange: the named secure server's address from the global
/// configuration, then `/exchange/v1` and the canonical `/r1/...` target.
pub fn target_uri(address: &url::Url, canonical_target: &str) -> String {
    format!(
        "{}{}{}",
        address.as_str().trim_end_matches('/'),
        super::inbound::EXCHANGE_PREFIX,
        canonical_target
    )
}

/// Who signed a message under `label`: the certificate in `certificate_header` (its
/// SHA-256 must be the `keyid`), the key it holds, and its registration.
pub struct Signer {
    /// The certificate's SHA-256 (the `keyid`).
    pub key_id: String,
    /// The registered peer.
    pub peer: crate::trust::global::Peer,
    /// What the signature covered, and its parameters.
    pub verified: crate::msgsig::Verified,
}

/// Verifies the signature under `label` of `message`, whose signer's certificate is in
/// the header `certificate_header`, against the global configuration at `now`.
/// Freshness is checked; replay is the caller's (only a receiver remembers nonces).
pub fn verify_signer(
    global: &GlobalConfiguration,
    message: &dyn HttpMessage,
    label: &str,
    certificate_header: &str,
    now: OffsetDateTime,
    settings: &FederationSettings,
) -> Result<Signer, GatewayError> {
    use base64::Engine as _;
    if message.header_values("signature-input").is_empty()
        || message.header_values("signature").is_empty()
    {
        return Err(GatewayError::new(
            ErrorCode::SignatureMissing,
            "the message carries no signature",
        ));
    }
    let certificate = message
        .header_values(certificate_header)
        .first()
        .and_then(|value| {
            base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok()
        })
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::SignatureKeyUnknown,
                format!("no usable {certificate_header} header"),
            )
        })?;
    let key_id = crate::trust::fingerprint_sha256(&certificate);
    let verified = crate::msgsig::verify(label, message, |params| {
        if params.keyid.as_deref() != Some(key_id.as_str()) {
            return Err(SignatureError::KeyUnknown);
        }
        let key = crate::msgsig::VerifyingKey::from_certificate_der(&certificate, None)?;
        // An RSA certificate may sign with either RSA padding the protocol allows.
        match params.alg {
            Some(alg) if alg.is_rsa() && !key.allowed_algorithms().contains(&alg) => key.allow(alg),
            _ => Ok(key),
        }
    })
    .map_err(|error| signature_error(&error))?;
    let peer = global
        .authenticate_peer(&key_id, now)
        .map_err(|error| match error.code() {
            "globalconf.peer_unknown" => GatewayError::new(
                ErrorCode::SignatureKeyUnknown,
                "no secure server of the global configuration has the signing certificate",
            ),
            "globalconf.expired" => GatewayError::new(
                ErrorCode::FederationConfigurationExpired,
                "the global configuration this node holds has expired",
            ),
            _ => GatewayError::new(
                ErrorCode::SignatureKeyNotAuthorised,
                "the signing certificate's registration is not effective now",
            ),
        })?;
    let params = &verified.params;
    if params.nonce.is_none() || params.expires.is_none() {
        return Err(GatewayError::new(
            ErrorCode::SignatureMalformed,
            "the signature lacks a nonce or an expiry",
        ));
    }
    crate::msgsig::check_freshness(
        params,
        now.unix_timestamp(),
        settings.max_signature_age.as_secs() as i64,
        settings.max_clock_skew.as_secs() as i64,
    )
    .map_err(|error| signature_error(&error))?;
    Ok(Signer {
        key_id,
        peer,
        verified,
    })
}

/// Authenticates the sender of an exchange request seen as `view`: its `sig1`
/// verifies with the attached certificate, which the global configuration registers,
/// effective now, as a secure server of `client_member` (the member in
/// `X-Road-Client`); it covers the protocol's components; and it is fresh. Returns the
/// signer and its server's name. The caller remembers the nonce ([`remember_nonce`])
/// once every other check has passed, so only authenticated messages fill the memory.
pub fn authenticate_sender(
    federation: &Federation,
    global: &GlobalConfiguration,
    view: &dyn HttpMessage,
    client_member: &crate::identity::MemberId,
    now: OffsetDateTime,
) -> Result<(Signer, String), GatewayError> {
    let settings = &federation.settings;
    let signer = verify_signer(global, view, LABEL, SIGNER_CERTIFICATE, now, settings)?;
    let name = match &signer.peer {
        crate::trust::global::Peer::SecureServer { member, name } if member == client_member => {
            name.clone()
        }
        crate::trust::global::Peer::SecureServer { .. } => {
            return Err(GatewayError::new(
                ErrorCode::SignatureKeyNotAuthorised,
                "the signing secure server belongs to another member than X-Road-Client's",
            ));
        }
        crate::trust::global::Peer::Hub { .. } => {
            return Err(GatewayError::new(
                ErrorCode::SignatureKeyNotAuthorised,
                "a hub's certificate cannot sign as a member's gateway",
            ));
        }
    };
    signer
        .verified
        .require_covered(&request_components(view))
        .map_err(|error| signature_error(&error))?;
    Ok((signer, name))
}

/// Refuses a replay of `signer`'s message, or remembers its nonce.
pub fn remember_nonce(
    federation: &Federation,
    signer: &Signer,
    now: OffsetDateTime,
) -> Result<(), GatewayError> {
    let settings = &federation.settings;
    let params = &signer.verified.params;
    let window = (settings.max_signature_age + settings.max_clock_skew).as_secs() as i64;
    federation.nonces.check_and_remember(
        &signer.key_id,
        params.nonce.as_deref().unwrap_or_default(),
        params.created.unwrap_or_default(),
        now.unix_timestamp() - window,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 004 Điều 57: a nonce is accepted once; a second use within the window is a replay.
    #[test]
    fn nonce_is_accepted_once() {
        let memory = NonceMemory::new(10, 0);
        assert!(memory.check_and_remember("k", "n1", 100, 0).is_ok());
        let replay = memory.check_and_remember("k", "n1", 100, 0);
        assert_eq!(
            replay.map_err(|e| e.code()),
            Err(ErrorCode::SignatureReplayed)
        );
        // Another key's nonce of the same value is another nonce.
        assert!(memory.check_and_remember("other", "n1", 100, 0).is_ok());
    }

    /// A full memory forgets its oldest nonce but refuses everything created at or
    /// before it: forgetting never opens a replay.
    #[test]
    fn full_memory_raises_the_floor_instead_of_forgetting_safety() {
        let memory = NonceMemory::new(3, 0);
        for (i, nonce) in ["a", "b", "c"].iter().enumerate() {
            assert!(
                memory
                    .check_and_remember("k", nonce, 100 + i as i64, 0)
                    .is_ok()
            );
        }
        // A fourth evicts "a" (created 100): the floor is 100.
        assert!(memory.check_and_remember("k", "d", 103, 0).is_ok());
        assert_eq!(memory.len(), 3);
        // "a" replayed: forgotten, but at the floor, so refused.
        assert_eq!(
            memory
                .check_and_remember("k", "a", 100, 0)
                .map_err(|e| e.code()),
            Err(ErrorCode::SignatureReplayed)
        );
        // Fresh messages still pass.
        assert!(memory.check_and_remember("k", "e", 104, 0).is_ok());
    }

    /// After a restart nothing seen before is remembered: everything signed before the
    /// start is refused, so a replay cannot slip through the empty memory.
    #[test]
    fn memory_refuses_what_was_signed_before_the_process_started() {
        let memory = NonceMemory::new(10, 1_000);
        assert_eq!(
            memory
                .check_and_remember("k", "old", 999, 0)
                .map_err(|e| e.code()),
            Err(ErrorCode::SignatureReplayed)
        );
        assert!(memory.check_and_remember("k", "new", 1_001, 0).is_ok());
    }

    /// Entries that left the window are forgotten (freshness refuses their replays).
    #[test]
    fn nonces_outside_the_window_are_forgotten() {
        let memory = NonceMemory::new(10, 0);
        assert!(memory.check_and_remember("k", "a", 100, 0).is_ok());
        assert!(memory.check_and_remember("k", "b", 500, 200).is_ok());
        assert_eq!(memory.len(), 1);
    }
}
