//! The demo's **dev identity provider**: it issues citizen assertions for the synthetic
//! citizens, at either level, to whoever asks. It stands where VNeID stands in production
//! (the citizen signs in there, by SMS OTP or by USB token / SIM signature, and consents);
//! here nobody signs in. Its issuer and keys are listed in the demo's global configuration,
//! so every gateway of the demo federation trusts it. Nothing here is for production.
//!
//! `POST /assertions` (form-encoded or JSON): `subject` (12 digits), `level` (`medium` |
//! `high`, default `medium`), `audience` (default the portal's subsystem), `form` (the
//! form the citizen consents to), `services` (comma-separated; default every service of
//! the demo), `lifetime_seconds` (default 600). Answers the compact JWS as
//! `application/jwt`. `GET /jwks.json`: its public keys.

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::Path;
use std::sync::Arc;

/// The dev identity provider's issuer (`iss`): a name, not an address (`.invalid`).
pub const ISSUER: &str = "https://dev-idp.datagate.invalid";
/// Where its issuing endpoint listens (plain HTTP, loopback).
pub const ADDR: &str = "127.0.0.1:18090";

/// The services the demo's citizens consent to when the request names none.
pub const DEMO_SERVICES: [&str; 3] = [
    super::CITIZEN_SERVICE,
    super::INSURANCE_SERVICE,
    super::ENTERPRISE_SERVICE,
];

/// The issuer's key and published keys.
#[derive(Debug, Clone)]
pub struct DevIdentityProvider {
    key_pem: String,
    /// `{"keys": [...]}`, each with its `kid`.
    pub jwks: serde_json::Value,
}

/// What an assertion says.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AssertionRequest {
    /// The citizen's 12-digit id.
    pub subject: String,
    /// `medium` or `high`.
    #[serde(default = "default_level")]
    pub level: String,
    /// The portal's subsystem.
    #[serde(default)]
    pub audience: Option<String>,
    /// The form consented to.
    #[serde(default)]
    pub form: Option<String>,
    /// Comma-separated service ids consented to.
    #[serde(default)]
    pub services: Option<String>,
    /// Seconds until it expires (at most 3600).
    #[serde(default)]
    pub lifetime_seconds: Option<i64>,
}

fn default_level() -> String {
    "medium".to_owned()
}

impl DevIdentityProvider {
    /// Its EC P-256 key in `dir/dev-idp-key.pem`, made once and kept across demo runs.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("dev-idp-key.pem");
        let key_pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(_) => {
                let group =
                    openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
                let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
                let pem = String::from_utf8(key.private_key_to_pem_pkcs8()?)?;
                std::fs::write(&path, &pem)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                pem
            }
        };
        let public = crate::keystore::PrivateKey::from_pem(key_pem.as_bytes(), None)
            .and_then(|key| key.public_key())
            .map_err(|e| anyhow::anyhow!("dev identity provider key: {e}"))?;
        // The kid `trust::global::sign` writes into the JWS header: the SPKI fingerprint.
        let kid = crate::base::hex::encode(&openssl::sha::sha256(public.spki_der()));
        let jwk = public
            .to_jwk(Some(&kid))
            .map_err(|e| anyhow::anyhow!("dev identity provider key: {e}"))?;
        Ok(DevIdentityProvider {
            key_pem,
            jwks: serde_json::json!({ "keys": [jwk] }),
        })
    }

    /// The global configuration's entry for this provider.
    pub fn global_entry(&self) -> serde_json::Value {
        serde_json::json!({ "issuer": ISSUER, "jwks": self.jwks })
    }

    /// Signs an assertion for `request`, issued at `now`.
    pub fn issue(
        &self,
        request: &AssertionRequest,
        now: time::OffsetDateTime,
    ) -> Result<String, String> {
        if request.subject.len() != 12 || !request.subject.bytes().all(|b| b.is_ascii_digit()) {
            return Err("subject must be a 12-digit citizen id".into());
        }
        if !matches!(request.level.as_str(), "medium" | "high") {
            return Err("level must be medium or high".into());
        }
        let lifetime = request.lifetime_seconds.unwrap_or(600);
        if !(1..=3600).contains(&lifetime) {
            return Err("lifetime_seconds must be between 1 and 3600".into());
        }
        let services: Vec<String> = match &request.services {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => DEMO_SERVICES.iter().map(|s| (*s).to_owned()).collect(),
        };
        let iat = now.unix_timestamp();
        let mut consent = serde_json::json!({ "services": services });
        if let Some(form) = &request.form {
            consent["form"] = serde_json::Value::String(form.clone());
        }
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": request.subject,
            "aud": request.audience.as_deref().unwrap_or(super::PORTAL_CLIENT),
            "iat": iat,
            "exp": iat + lifetime,
            "acr": request.level,
            "consent": consent,
        });
        crate::trust::global::sign(
            claims.to_string().as_bytes(),
            &self.key_pem,
            crate::trust::global::SigningAlg::Es256,
        )
        .map_err(|e| e.to_string())
    }

    /// The provider's HTTP interface.
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/assertions", axum::routing::post(issue_endpoint))
            .route(
                "/jwks.json",
                axum::routing::get(|State(idp): State<Arc<DevIdentityProvider>>| async move {
                    axum::Json(idp.jwks.clone())
                }),
            )
            .with_state(self)
    }
}

async fn issue_endpoint(
    State(idp): State<Arc<DevIdentityProvider>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request: Result<AssertionRequest, String> = if json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        // Form fields, all text; `lifetime_seconds` parsed as a number.
        let mut map = serde_json::Map::new();
        for (name, value) in url::form_urlencoded::parse(&body) {
            let value = match (name.as_ref(), value.parse::<i64>()) {
                ("lifetime_seconds", Ok(number)) => serde_json::Value::from(number),
                _ => serde_json::Value::String(value.into_owned()),
            };
            map.insert(name.into_owned(), value);
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())
    };
    #[allow(clippy::disallowed_methods)] // The demo's issuer stamps the time it issues.
    let now = time::OffsetDateTime::now_utc();
    match request.and_then(|request| idp.issue(&request, now)) {
        Ok(token) => ([(header::CONTENT_TYPE, "application/jwt")], token).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}
