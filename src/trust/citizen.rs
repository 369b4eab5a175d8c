//! Citizen assertions: a JWS (compact, `ES256` or `RS256`) issued by an identity provider
//! the federation lists, saying that a citizen (the 12-digit personal id in `sub`) signed
//! in at an assurance level (`acr`: `medium` = SMS OTP, `high` = USB token or SIM
//! signature; 003 Điều 9–11) to one portal (`aud`), for a short time (`iat`, `nbf`,
//! `exp`), and consented to the lookups of one form (`consent`).
//!
//! Owns: checking one assertion completely, in an order that touches no key before the
//! algorithm and issuer are known, and naming what failed with a stable code. Does not
//! own: which identity providers are trusted and their keys (the global configuration,
//! [`super::global::IdentityProvider`]), which contract needs which level, or whether the
//! assertion's subject is the request's (the gateway, which knows the request).

use super::global::IdentityProvider;
use super::global::jws::Compact;
use serde::Deserialize;
use time::OffsetDateTime;

/// The largest assertion read, in bytes.
pub const MAX_ASSERTION_BYTES: usize = 16 * 1024;
/// The longest an assertion may live (`exp − iat`): a form's session, not a login's.
pub const MAX_LIFETIME: time::Duration = time::Duration::hours(1);
/// Clock skew tolerated between the identity provider and this node.
pub const LEEWAY: time::Duration = time::Duration::seconds(60);

/// An assurance level (003 Điều 9–11), ordered: `High` satisfies `Medium`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CitizenLevel {
    /// Signed in with a one-time code by SMS.
    Medium,
    /// Signed in with a USB token or a SIM signature.
    High,
}

impl CitizenLevel {
    /// The level an `acr` value names.
    pub fn from_acr(acr: &str) -> Option<Self> {
        match acr {
            "medium" => Some(CitizenLevel::Medium),
            "high" => Some(CitizenLevel::High),
            _ => None,
        }
    }

    /// Its `acr` name.
    pub fn as_str(self) -> &'static str {
        match self {
            CitizenLevel::Medium => "medium",
            CitizenLevel::High => "high",
        }
    }
}

/// What the citizen consented to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// The services the portal may look up for this citizen.
    pub services: Vec<String>,
    /// The form the lookups fill, if any.
    #[serde(default)]
    pub form: Option<String>,
}

/// A verified assertion.
#[derive(Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The identity provider (`iss`).
    pub issuer: String,
    /// The citizen's 12-digit personal id (`sub`).
    pub subject: String,
    /// The level the citizen signed in at.
    pub level: CitizenLevel,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    /// What the citizen consented to.
    pub consent: Consent,
}

impl std::fmt::Debug for Assertion {
    // The subject is a personal id: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("issuer", &self.issuer)
            .field("level", &self.level)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why an assertion was refused. Messages name the claim, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a JWS of an accepted algorithm, or its claims are missing or mistyped.
    #[error("the citizen assertion is malformed: {0}")]
    Malformed(&'static str),
    /// `iss` is not an identity provider the federation lists.
    #[error("the citizen assertion's issuer is not a listed identity provider")]
    UnknownIssuer,
    /// No `kid`, or none of the provider's keys has it.
    #[error("the citizen assertion's key is not one its identity provider publishes")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the citizen assertion's signature does not verify")]
    SignatureInvalid,
    /// `aud` does not name the calling portal.
    #[error("the citizen assertion was issued to another audience")]
    WrongAudience,
    /// Past `exp`.
    #[error("the citizen assertion has expired")]
    Expired,
    /// Before `nbf`, or issued in the future.
    #[error("the citizen assertion is not valid yet")]
    NotYetValid,
    /// No `consent`.
    #[error("the citizen assertion carries no consent")]
    ConsentMissing,
}

impl AssertionError {
    /// Its stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AssertionError::Malformed(_) => "citizen.assertion_invalid",
            AssertionError::UnknownIssuer => "citizen.issuer_unknown",
            AssertionError::UnknownKey => "citizen.assertion_invalid",
            AssertionError::SignatureInvalid => "citizen.assertion_invalid",
            AssertionError::WrongAudience => "citizen.audience_mismatch",
            AssertionError::Expired => "citizen.assertion_expired",
            AssertionError::NotYetValid => "citizen.assertion_not_yet_valid",
            AssertionError::ConsentMissing => "citizen.consent_missing",
        }
    }
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    iat: i64,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    acr: String,
    #[serde(default)]
    consent: Option<Consent>,
}

/// Verifies `token` for the portal `audience` at `now` against `providers`. In order:
/// size, JWS structure and algorithm, claims' shape, issuer, key, signature, audience,
/// time (`nbf`, `iat`, `exp`, lifetime), subject and level shape, consent.
pub fn verify<'a>(
    token: &[u8],
    providers: impl IntoIterator<Item = &'a IdentityProvider>,
    audience: &str,
    now: OffsetDateTime,
) -> Result<Assertion, AssertionError> {
    if token.len() > MAX_ASSERTION_BYTES {
        return Err(AssertionError::Malformed("larger than 16 KiB"));
    }
    let compact =
        Compact::parse(token).map_err(|_| AssertionError::Malformed("not an ES256/RS256 JWS"))?;
    let claims: Claims = serde_json::from_slice(&compact.payload)
        .map_err(|_| AssertionError::Malformed("claims missing or mistyped"))?;
    let provider = providers
        .into_iter()
        .find(|provider| provider.issuer == claims.iss)
        .ok_or(AssertionError::UnknownIssuer)?;
    let key = compact
        .kid
        .as_deref()
        .and_then(|kid| provider.key(kid))
        .ok_or(AssertionError::UnknownKey)?;
    if !key.verifies(compact.alg, compact.signing_input, &compact.signature) {
        return Err(AssertionError::SignatureInvalid);
    }
    let audiences = match &claims.aud {
        Audience::One(one) => std::slice::from_ref(one),
        Audience::Many(many) => many.as_slice(),
    };
    if !audiences.iter().any(|aud| aud == audience) {
        return Err(AssertionError::WrongAudience);
    }
    let at = |seconds: i64| {
        OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|_| AssertionError::Malformed("a time is out of range"))
    };
    let (issued_at, expires_at) = (at(claims.iat)?, at(claims.exp)?);
    if expires_at <= issued_at || expires_at - issued_at > MAX_LIFETIME {
        return Err(AssertionError::Malformed(
            "exp must follow iat by at most an hour",
        ));
    }
    if issued_at > now + LEEWAY
        || claims
            .nbf
            .map(at)
            .transpose()?
            .is_some_and(|nbf| nbf > now + LEEWAY)
    {
        return Err(AssertionError::NotYetValid);
    }
    if now >= expires_at + LEEWAY {
        return Err(AssertionError::Expired);
    }
    if claims.sub.len() != 12 || !claims.sub.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AssertionError::Malformed(
            "sub must be a 12-digit personal id",
        ));
    }
    let level = CitizenLevel::from_acr(&claims.acr)
        .ok_or(AssertionError::Malformed("acr must be medium or high"))?;
    let consent = claims.consent.ok_or(AssertionError::ConsentMissing)?;
    Ok(Assertion {
        issuer: claims.iss,
        subject: claims.sub,
        level,
        expires_at,
        consent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::global::{PublicJwk, SigningAlg, sign};
    use base64::Engine as _;

    const ISSUER: &str = "https://vneid.example";
    const PORTAL: &str = "VN/GOV/000.00.00.G22/dvc-portal";
    const CITIZEN: &str = "079099000123";

    /// An EC P-256 key: its PKCS#8 PEM and its public JWK, `kid` = SPKI fingerprint (what
    /// [`sign`] writes in the header).
    fn key() -> (String, PublicJwk) {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
            .expect("group");
        let private =
            openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("key"))
                .expect("pkey");
        let pem =
            String::from_utf8(private.private_key_to_pem_pkcs8().expect("pem")).expect("utf8");
        let public = crate::keystore::PrivateKey::from_pem(pem.as_bytes(), None)
            .and_then(|key| key.public_key())
            .expect("public key");
        let kid = crate::base::hex::encode(&openssl::sha::sha256(public.spki_der()));
        let jwk = public.to_jwk(Some(&kid)).expect("jwk");
        (
            pem,
            PublicJwk::from_json(jwk.to_string().as_bytes()).expect("jwk"),
        )
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-12-01 09:00 UTC)
    }

    fn claims() -> serde_json::Value {
        let iat = now().unix_timestamp();
        serde_json::json!({
            "iss": ISSUER, "sub": CITIZEN, "aud": PORTAL, "iat": iat, "exp": iat + 600,
            "acr": "medium",
            "consent": {"services": ["VN/GOV/000.00.00.H01/BCA/cong-dan"], "form": "HK01"},
        })
    }

    fn providers(jwk: &PublicJwk) -> Vec<IdentityProvider> {
        vec![IdentityProvider {
            issuer: ISSUER.into(),
            keys: vec![jwk.clone()],
        }]
    }

    /// 003 Điều 9–11: a valid assertion gives its subject, level and consent.
    #[test]
    fn a_valid_assertion_gives_subject_level_and_consent() {
        let (pem, jwk) = key();
        let token = sign(claims().to_string().as_bytes(), &pem, SigningAlg::Es256).expect("jws");
        let assertion =
            verify(token.as_bytes(), &providers(&jwk), PORTAL, now()).expect("verifies");
        assert_eq!(assertion.subject, CITIZEN);
        assert_eq!(assertion.level, CitizenLevel::Medium);
        assert_eq!(assertion.consent.form.as_deref(), Some("HK01"));
        assert!(CitizenLevel::High > CitizenLevel::Medium);
        assert!(!format!("{assertion:?}").contains(CITIZEN));
    }

    /// Every way an assertion can be wrong is refused with its own code: wrong issuer,
    /// another key, a changed claim (bad signature), another audience, expired, not yet
    /// valid, too long-lived, a malformed subject or level, no consent, `alg: none`.
    #[test]
    fn each_fault_is_refused_with_its_code() {
        let (pem, jwk) = key();
        let (other_pem, _) = key();
        let providers = providers(&jwk);
        let signed = |claims: &serde_json::Value| {
            sign(claims.to_string().as_bytes(), &pem, SigningAlg::Es256).expect("jws")
        };
        let check = |token: &str| verify(token.as_bytes(), &providers, PORTAL, now());
        let with = |name: &str, value: serde_json::Value| {
            let mut claims = claims();
            claims[name] = value;
            claims
        };
        let iat = now().unix_timestamp();
        let cases: Vec<(String, &str)> = vec![
            (
                signed(&with("iss", "https://other.example".into())),
                "citizen.issuer_unknown",
            ),
            (
                sign(
                    claims().to_string().as_bytes(),
                    &other_pem,
                    SigningAlg::Es256,
                )
                .expect("jws"),
                "citizen.assertion_invalid",
            ),
            (
                signed(&with("aud", "VN/GOV/x/other".into())),
                "citizen.audience_mismatch",
            ),
            (signed(&with("aud", serde_json::json!(["a", PORTAL]))), "ok"),
            (
                signed(&with("exp", (iat - 120).into()).tap_iat(iat - 600)),
                "citizen.assertion_expired",
            ),
            (
                signed(&with("iat", (iat + 600).into()).tap_exp(iat + 900)),
                "citizen.assertion_not_yet_valid",
            ),
            (
                signed(&with("nbf", (iat + 600).into())),
                "citizen.assertion_not_yet_valid",
            ),
            (
                signed(&with("exp", (iat + 7200).into())),
                "citizen.assertion_invalid",
            ),
            (
                signed(&with("sub", "07909900012".into())),
                "citizen.assertion_invalid",
            ),
            (
                signed(&with("acr", "low".into())),
                "citizen.assertion_invalid",
            ),
            (
                {
                    let mut claims = claims();
                    claims.as_object_mut().expect("object").remove("consent");
                    signed(&claims)
                },
                "citizen.consent_missing",
            ),
        ];
        for (token, code) in cases {
            match check(&token) {
                Ok(_) => assert_eq!(code, "ok", "{code}: accepted"),
                Err(error) => assert_eq!(error.code(), code, "{error}"),
            }
        }
        // A claim changed after signing.
        let token = signed(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let changed = b64.encode(with("sub", "079099000999".into()).to_string());
        let forged = format!("{}.{}.{}", parts[0], changed, parts[2]);
        assert_eq!(
            check(&forged).map(|_| ()).map_err(|e| e.code()),
            Err("citizen.assertion_invalid")
        );
        // alg none, and a token too large.
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none"}"#),
            b64.encode(claims().to_string())
        );
        assert!(check(&none).is_err());
        assert!(check(&"a".repeat(MAX_ASSERTION_BYTES + 1)).is_err());
    }

    trait Tap {
        fn tap_iat(self, iat: i64) -> Self;
        fn tap_exp(self, exp: i64) -> Self;
    }

    impl Tap for serde_json::Value {
        fn tap_iat(mut self, iat: i64) -> Self {
            self["iat"] = iat.into();
            self
        }
        fn tap_exp(mut self, exp: i64) -> Self {
            self["exp"] = exp.into();
            self
        }
    }
}
