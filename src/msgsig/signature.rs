//! Creating and verifying one labelled signature (RFC 9421 §3), coverage checks and
//! freshness.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sfv::{BareItem, Dictionary, KeyRef, ListEntry, Parser};

use super::base::{
    ComponentId, HttpMessage, build_base, check_duplicate, inner_list_line, params_line,
    resolve_components,
};
use super::keys::{SigningKey, VerifyingKey};
use super::{Algorithm, Component, SignatureError, SignatureParams};

/// The two field values to add to the message. When the message already carries
/// signatures, add them as further field lines (or append with `", "`): both fields
/// are dictionaries, and field lines combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `Signature-Input`: `sig1=("@method" ...);created=...;keyid="..."`.
    pub signature_input: String,
    /// `Signature`: `sig1=:base64:`.
    pub signature: String,
}

/// Signs `components` of `message` under `label`.
///
/// `params.alg`, when set, must be the key's algorithm. Time is the caller's: set
/// `params.created` (and `expires`) yourself.
pub fn sign(
    label: &str,
    components: &[Component],
    params: &SignatureParams,
    message: &dyn HttpMessage,
    key: &SigningKey,
) -> Result<SignedHeaders, SignatureError> {
    KeyRef::from_str(label).map_err(|_| SignatureError::InvalidParameter("label"))?;
    if let Some(alg) = params.alg
        && alg != key.algorithm()
    {
        return Err(SignatureError::KeyMismatch(alg));
    }
    let ids = resolve_components(components)?;
    let line = params_line(&ids, params)?;
    let base = build_base(&ids, &line, message)?;
    let signature = key.sign(base.as_bytes())?;
    Ok(SignedHeaders {
        signature_input: format!("{label}={line}"),
        signature: format!("{label}=:{}:", STANDARD.encode(signature)),
    })
}

/// A signature that verified: its parameters, the algorithm used and what it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The label.
    pub label: String,
    /// The signature parameters.
    pub params: SignatureParams,
    /// The covered components, in signed order (normalised).
    pub components: Vec<Component>,
    /// The algorithm the signature verified with.
    pub algorithm: Algorithm,
}

impl Verified {
    /// Whether `component` is covered.
    pub fn covers(&self, component: &Component) -> bool {
        let wanted = component.normalized();
        self.components.contains(&wanted)
    }

    /// `signature.component_not_covered` for the first of `required` not covered.
    pub fn require_covered(&self, required: &[Component]) -> Result<(), SignatureError> {
        match required.iter().find(|c| !self.covers(c)) {
            Some(c) => Err(SignatureError::ComponentNotCovered(c.name())),
            None => Ok(()),
        }
    }
}

fn dictionary(
    message: &dyn HttpMessage,
    field: &'static str,
) -> Result<Dictionary, SignatureError> {
    let lines = message.header_values(field);
    if lines.is_empty() {
        return Err(SignatureError::FieldMissing(field));
    }
    Parser::new(&lines.join(", "))
        .parse()
        .map_err(|_| SignatureError::MalformedField(field))
}

/// Verifies the signature labelled `label` in `message`.
///
/// Reads `Signature-Input` and `Signature`, asks `key_resolver` for the key (from the
/// parameters: `keyid`, `alg`, `tag`...), checks that `alg` (if present) is one the
/// key allows, rebuilds the base and checks the bytes. Coverage
/// ([`Verified::require_covered`]) and freshness ([`check_freshness`]) are the
/// caller's next steps.
pub fn verify(
    label: &str,
    message: &dyn HttpMessage,
    key_resolver: impl Fn(&SignatureParams) -> Result<VerifyingKey, SignatureError>,
) -> Result<Verified, SignatureError> {
    let inputs = dictionary(message, "signature-input")?;
    let signatures = dictionary(message, "signature")?;
    let malformed = |reason| SignatureError::MalformedSignature {
        label: label.to_string(),
        reason,
    };
    let input = inputs
        .get(label)
        .ok_or_else(|| SignatureError::LabelMissing(label.to_string()))?;
    let signature = signatures
        .get(label)
        .ok_or_else(|| SignatureError::LabelMissing(label.to_string()))?;
    let ListEntry::InnerList(list) = input else {
        return Err(malformed("signature-input member is not an inner list"));
    };
    let signature_bytes = match signature {
        ListEntry::Item(item) => match &item.bare_item {
            BareItem::ByteSequence(b) => b.clone(),
            _ => return Err(malformed("signature member is not a byte sequence")),
        },
        ListEntry::InnerList(_) => {
            return Err(malformed("signature member is not a byte sequence"));
        }
    };
    let mut ids: Vec<ComponentId> = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let id = ComponentId::from_item(item)?;
        check_duplicate(&ids, &id)?;
        ids.push(id);
    }
    let params = SignatureParams::from_sfv(label, &list.params)?;
    let key = key_resolver(&params)?;
    let algorithm = key.algorithm_for(params.alg)?;
    let base = build_base(&ids, &inner_list_line(list), message)?;
    key.verify(algorithm, base.as_bytes(), &signature_bytes)?;
    Ok(Verified {
        label: label.to_string(),
        params,
        components: ids.iter().map(ComponentId::to_component).collect(),
        algorithm,
    })
}

/// Checks `created`/`expires` against `now_unix` (the caller's clock).
///
/// - no `created`: `signature.created_missing`;
/// - `created` more than `max_skew_secs` in the future: `signature.not_yet_valid`;
/// - `created` more than `max_age_secs` ago, or `expires` more than `max_skew_secs`
///   in the past: `signature.expired`.
pub fn check_freshness(
    params: &SignatureParams,
    now_unix: i64,
    max_age_secs: i64,
    max_skew_secs: i64,
) -> Result<(), SignatureError> {
    let created = params.created.ok_or(SignatureError::CreatedMissing)?;
    if created > now_unix.saturating_add(max_skew_secs) {
        return Err(SignatureError::NotYetValid);
    }
    if now_unix.saturating_sub(created) > max_age_secs {
        return Err(SignatureError::Expired);
    }
    if let Some(expires) = params.expires
        && now_unix > expires.saturating_add(max_skew_secs)
    {
        return Err(SignatureError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgsig::Message;

    const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";

    fn signed() -> Result<(Message, SigningKey), SignatureError> {
        let key = SigningKey::from_pem(ED25519_PRIVATE, None)?;
        let mut m = Message::request("GET", "https://lgsp-b.example/exchange/v1/x")
            .header("x-road-client", "VN/GOV/000/a");
        let params = SignatureParams {
            created: Some(100),
            keyid: Some("k".into()),
            ..SignatureParams::default()
        };
        let h = sign(
            "sig1",
            &[Component::Method, Component::Header("x-road-client".into())],
            &params,
            &m,
            &key,
        )?;
        m.add_header("Signature-Input", &h.signature_input);
        m.add_header("Signature", &h.signature);
        Ok((m, key))
    }

    #[test]
    fn sign_then_verify_and_coverage() -> Result<(), SignatureError> {
        let (m, key) = signed()?;
        let vk = key.verifying_key();
        let v = verify("sig1", &m, |p| {
            assert_eq!(p.keyid.as_deref(), Some("k"));
            Ok(vk.clone())
        })?;
        assert!(v.covers(&Component::Method));
        assert!(!v.covers(&Component::TargetUri));
        assert_eq!(
            v.require_covered(&[Component::Method, Component::TargetUri]),
            Err(SignatureError::ComponentNotCovered("@target-uri".into()))
        );
        assert_eq!(v.algorithm, Algorithm::Ed25519);
        Ok(())
    }

    #[test]
    fn freshness() {
        let p = |created, expires| SignatureParams {
            created,
            expires,
            ..SignatureParams::default()
        };
        let code = |p: &SignatureParams| check_freshness(p, 1000, 300, 5).err().map(|e| e.code());
        assert_eq!(code(&p(Some(1000), None)), None);
        assert_eq!(code(&p(Some(1004), None)), None);
        assert_eq!(code(&p(Some(1006), None)), Some("signature.not_yet_valid"));
        assert_eq!(code(&p(Some(699), None)), Some("signature.expired"));
        assert_eq!(code(&p(Some(990), Some(994))), Some("signature.expired"));
        assert_eq!(code(&p(Some(990), Some(996))), None);
        assert_eq!(
            code(&p(None, Some(2000))),
            Some("signature.created_missing")
        );
    }

    #[test]
    fn alg_must_match_signing_key() -> Result<(), SignatureError> {
        let key = SigningKey::from_pem(ED25519_PRIVATE, None)?;
        let params = SignatureParams {
            alg: Some(Algorithm::EcdsaP256Sha256),
            ..SignatureParams::default()
        };
        let m = Message::response(200);
        let err = sign("sig1", &[Component::Status], &params, &m, &key);
        assert_eq!(err.err().map(|e| e.code()), Some("signature.key_mismatch"));
        let err = sign(
            "Bad Label",
            &[Component::Status],
            &SignatureParams::default(),
            &m,
            &key,
        );
        assert_eq!(err.err().map(|e| e.code()), Some("signature.malformed"));
        Ok(())
    }
}
