//! Contracts travel with the federation.
//!
//! The data owner's gateway decides, on its own contracts, for every exchange. It also
//! publishes, on its exchange listener (`GET /exchange/v1/contracts`), the contracts it
//! holds for the calling gateway's member, schemas inline, in an answer signed with its
//! secure-server key ([`serve_contracts`]). Each consumer gateway fetches the copies of
//! every provider member the global configuration lists, verifies who signed them and
//! for whom, compiles them, and keeps the last good copy per provider
//! ([`refresh_copies`]). The pipeline uses a copy to deny early, before anything crosses
//! the network; the owner's copy still decides, so a stale copy can only deny more,
//! never allow more. A provider with no copy yet is asked directly, and decides.

use super::Gateway;
use super::federation::{self, Federation, LABEL, SIGNER_CERTIFICATE, read_limited};
use super::inbound::EXCHANGE_PREFIX;
use crate::contract::{ContractSet, RawContract};
use crate::error::{ErrorCode, GatewayError};
use crate::identity::MemberId;
use crate::msgsig::{Component, DigestAlgorithm, HttpMessage as _, Message};
use crate::trust::PeerCertificate;
use crate::trust::global::Peer as GlobalPeer;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The member a contract publication is for (covered by its signature).
pub const CONTRACTS_FOR: &str = "x-road-contracts-for";
/// The format of a contract publication.
pub const FORMAT: &str = "datagate-contracts/1";
/// The largest publication fetched.
const MAX_PUBLICATION_BYTES: usize = 4 << 20;

/// What a publication's signature covers.
fn publication_components() -> Vec<Component> {
    vec![
        Component::Status,
        Component::Header("content-digest".into()),
        Component::Header(CONTRACTS_FOR.into()),
    ]
}

/// The publication document.
#[derive(serde::Serialize, serde::Deserialize)]
struct Publication {
    format: String,
    provider: String,
    consumer_member: String,
    #[serde(with = "time::serde::rfc3339")]
    issued_at: time::OffsetDateTime,
    contracts: Vec<RawContract>,
}

/// `GET /exchange/v1/contracts`: the contracts this node holds for the calling
/// gateway's member, signed.
pub async fn serve_contracts(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    match publication(&gateway, &request) {
        Ok(response) => response,
        Err(error) => error.into_problem(None),
    }
}

fn publication(gateway: &Gateway, request: &Request) -> Result<Response, GatewayError> {
    let federation = gateway
        .federation()
        .ok_or_else(|| GatewayError::new(ErrorCode::RequestRouteNotFound, "no such route"))?;
    let now = gateway.clock().now();
    let global = federation.global(now)?;
    let certificate = request
        .extensions()
        .get::<PeerCertificate>()
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::TrustCertificateMissing,
                "a client certificate is required",
            )
        })?;
    let Ok(GlobalPeer::SecureServer { member, .. }) =
        global.authenticate_peer(&certificate.fingerprint_sha256, now)
    else {
        return Err(GatewayError::new(
            ErrorCode::TrustCertificateUnregistered,
            "only a registered, effective secure server may fetch contracts",
        ));
    };
    let runtime = gateway.runtime();
    let contracts: Vec<RawContract> = runtime
        .contracts
        .iter()
        .filter(|contract| {
            contract.consumer.member == member && runtime.services.contains_key(&contract.service)
        })
        .map(|contract| contract.published.clone())
        .collect();
    let document = Publication {
        format: FORMAT.to_owned(),
        provider: runtime.member.to_string(),
        consumer_member: member.to_string(),
        issued_at: now,
        contracts,
    };
    let body = serde_json::to_vec(&document).map_err(|_| {
        GatewayError::new(
            ErrorCode::InternalUnexpected,
            "cannot write the publication",
        )
    })?;
    let digest = crate::msgsig::content_digest(&body, DigestAlgorithm::Sha256);
    let member = member.to_string();
    let answer = Message::response(200)
        .header("content-digest", &digest)
        .header(CONTRACTS_FOR, &member);
    let signed = federation.sign(LABEL, &publication_components(), &answer, now)?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    for (name, value) in [
        ("content-digest", digest.as_str()),
        (CONTRACTS_FOR, member.as_str()),
        ("signature-input", signed.signature_input.as_str()),
        ("signature", signed.signature.as_str()),
        (SIGNER_CERTIFICATE, federation.certificate_header()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}

/// The verified copies of the providers' contracts a consumer gateway holds.
#[derive(Debug, Default)]
pub struct ContractCopies {
    by_provider: HashMap<MemberId, Arc<ContractSet>>,
}

impl ContractCopies {
    /// The copy of `provider`'s contracts, if one was ever fetched.
    pub fn of(&self, provider: &MemberId) -> Option<&Arc<ContractSet>> {
        self.by_provider.get(provider)
    }

    /// Every contract held, of every provider.
    pub fn all(&self) -> impl Iterator<Item = &Arc<crate::contract::CompiledContract>> {
        self.by_provider.values().flat_map(|set| set.iter())
    }

    /// Provider member → number of contracts held, for status pages.
    pub fn summary(&self) -> std::collections::BTreeMap<String, usize> {
        self.by_provider
            .iter()
            .map(|(member, set)| (member.to_string(), set.len()))
            .collect()
    }
}

/// Fetches, verifies and compiles every provider member's publication for this node's
/// member; a provider whose fetch fails keeps its last good copy.
pub async fn refresh_copies(gateway: &Gateway, federation: &Federation) {
    let now = gateway.clock().now();
    let Ok(global) = federation.global(now) else {
        return;
    };
    let own = gateway.runtime().member.clone();
    let providers: BTreeSet<MemberId> = global
        .services()
        .iter()
        .map(|service| service.id.provider.member.clone())
        .filter(|member| *member != own)
        .collect();
    let previous = federation.copies();
    tracing::debug!(providers = providers.len(), "refreshing contract copies");
    let mut next = ContractCopies::default();
    for provider in providers {
        let mut fetched = None;
        for server in global.secure_servers_of(&provider) {
            // Each publication's freshness against the time it arrives.
            match fetch(
                federation,
                &global,
                &provider,
                &own,
                &server.address,
                gateway,
            )
            .await
            {
                Ok(set) => {
                    fetched = Some(set);
                    break;
                }
                Err(reason) => {
                    tracing::warn!(provider = %provider, server = %server.name, reason, "contract copy not refreshed");
                }
            }
        }
        let copy = match (fetched, previous.of(&provider)) {
            (Some(mut set), Some(old)) => {
                set.inherit_quotas(old);
                Some(Arc::new(set))
            }
            (Some(set), None) => Some(Arc::new(set)),
            (None, old) => old.cloned(),
        };
        if let Some(copy) = copy {
            next.by_provider.insert(provider, copy);
        }
    }
    federation.set_copies(next);
    // A provider's contract that changed or went takes its cached answers with it.
    gateway.sweep_cache();
}

async fn fetch(
    federation: &Federation,
    global: &crate::trust::global::GlobalConfiguration,
    provider: &MemberId,
    own: &MemberId,
    address: &url::Url,
    gateway: &Gateway,
) -> Result<ContractSet, String> {
    let url = format!(
        "{}{EXCHANGE_PREFIX}/contracts",
        address.as_str().trim_end_matches('/')
    );
    let mut response = federation
        .client()
        .get(&url)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| "unreachable".to_owned())?;
    let mut answer = Message::response(response.status().as_u16());
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            answer.add_header(name.as_str(), value);
        }
    }
    let body = read_limited(&mut response, MAX_PUBLICATION_BYTES).await?;
    let signer = federation::verify_signer(
        global,
        &answer,
        LABEL,
        SIGNER_CERTIFICATE,
        gateway.clock().now(),
        &federation.settings,
    )
    .map_err(|error| error.code().as_str().to_owned())?;
    if !matches!(&signer.peer, GlobalPeer::SecureServer { member, .. } if member == provider) {
        return Err("signed by another member's server".into());
    }
    signer
        .verified
        .require_covered(&publication_components())
        .map_err(|error| error.code().to_owned())?;
    crate::msgsig::verify_message_content_digest(&answer, &body)
        .map_err(|error| error.code().to_owned())?;
    if answer
        .header_values(CONTRACTS_FOR)
        .first()
        .map(String::as_str)
        != Some(&own.to_string())
        || answer.status() != Some(200)
    {
        return Err("a publication for another member".into());
    }
    let document: Publication =
        serde_json::from_slice(&body).map_err(|_| "not a contract publication".to_owned())?;
    if document.format != FORMAT || document.consumer_member != own.to_string() {
        return Err("not a contract publication for this member".into());
    }
    let mut compiled = Vec::new();
    for raw in &document.contracts {
        let file = std::path::PathBuf::from(format!("federation:{provider}/{}", raw.id));
        match crate::contract::compile(raw, &file, std::path::Path::new("/nonexistent")) {
            // The owner publishes only its own services' contracts for this member.
            Ok(contract)
                if contract.consumer.member == *own
                    && contract.service.provider.member == *provider =>
            {
                compiled.push((contract, file));
            }
            // Only the provider's own services' contracts for this member are taken
            // (a node may also serve another member's services locally).
            Ok(_) => {}
            Err(_) => {
                // A contract this node cannot compile is left out: the copy denies more.
                tracing::warn!(provider = %provider, contract = %raw.id, "a published contract does not compile here; left out");
            }
        }
    }
    ContractSet::new(compiled).map_err(|_| "duplicate contract ids".to_owned())
}
