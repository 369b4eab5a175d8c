//! The registry of secure servers: which certificate belongs to which member.
//!
//! Each entry says that the certificate with a SHA-256 fingerprint is a secure
//! server of a member, effective from a moment. Changes must be registered three
//! working days in advance (003 Điều 50 khoản 2), so an entry whose
//! `effective_from` is earlier than three working days after `submitted_at`
//! (in Vietnam's time zone, UTC+7) is rejected when the registry is loaded.

use super::calendar::WorkingCalendar;
use crate::base::clock::VIETNAM_OFFSET;
use crate::error::{ErrorCode, GatewayError};
use crate::identity::{ClientId, MemberId};
use serde::Deserialize;
use std::collections::HashMap;
use time::OffsetDateTime;

/// Working days of notice a registration needs (003 Điều 50 khoản 2).
pub const NOTICE_WORKING_DAYS: u32 = 3;

/// The registry file as written (`registry.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// Registered secure servers.
    #[serde(default)]
    pub secure_servers: Vec<RawSecureServer>,
}

/// One registration as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecureServer {
    /// The member the server belongs to: `instance/class/code`.
    pub member: String,
    /// A name for operators, e.g. `hcm-lgsp-1`.
    pub name: String,
    /// Where the server is reached, for the catalogue of secure servers.
    #[serde(default)]
    pub address: Option<String>,
    /// Lowercase or uppercase hex SHA-256 of the certificate's DER; `:` separators allowed.
    pub fingerprint_sha256: String,
    /// When the registration was submitted (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    /// From when the registration takes effect (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub effective_from: OffsetDateTime,
}

/// A validated registration.
#[derive(Debug, Clone)]
pub struct SecureServer {
    /// The owning member.
    pub member: MemberId,
    /// Operator-facing name.
    pub name: String,
    /// From when it is accepted.
    pub effective_from: OffsetDateTime,
}

/// The loaded registry: fingerprint → registration.
#[derive(Debug, Clone, Default)]
pub struct SecureServerRegistry {
    by_fingerprint: HashMap<String, SecureServer>,
}

/// Normalises a fingerprint to 64 lowercase hex digits, if it is one.
pub fn normalise_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

impl SecureServerRegistry {
    /// Validates every entry, returning every problem as `(path, message)`.
    pub fn build(
        raw: &RawRegistry,
        calendar: &WorkingCalendar,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut by_fingerprint = HashMap::new();
        for (index, entry) in raw.secure_servers.iter().enumerate() {
            let at = |field: &str| format!("secure_servers[{index}].{field}");
            let member = match entry.member.parse::<MemberId>() {
                Ok(member) => Some(member),
                Err(error) => {
                    errors.push((at("member"), error.to_string()));
                    None
                }
            };
            let fingerprint = normalise_fingerprint(&entry.fingerprint_sha256);
            if fingerprint.is_none() {
                errors.push((
                    at("fingerprint_sha256"),
                    "must be 64 hex digits (SHA-256 of the certificate DER)".into(),
                ));
            }
            let submitted = entry.submitted_at.to_offset(VIETNAM_OFFSET).date();
            let earliest = calendar.add_working_days(submitted, NOTICE_WORKING_DAYS);
            let effective = entry.effective_from.to_offset(VIETNAM_OFFSET).date();
            if entry.effective_from < entry.submitted_at || effective < earliest {
                errors.push((
                    at("effective_from"),
                    format!(
                        "takes effect {effective}, but a registration submitted {submitted} \
                         takes effect no earlier than {earliest} ({NOTICE_WORKING_DAYS} working \
                         days' notice, 003 Điều 50 khoản 2)"
                    ),
                ));
            }
            if let (Some(member), Some(fingerprint)) = (member, fingerprint) {
                let server = SecureServer {
                    member,
                    name: entry.name.clone(),
                    effective_from: entry.effective_from,
                };
                if by_fingerprint.insert(fingerprint, server).is_some() {
                    errors.push((
                        at("fingerprint_sha256"),
                        "this certificate is registered twice".into(),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(SecureServerRegistry { by_fingerprint })
        } else {
            Err(errors)
        }
    }

    /// Number of registrations.
    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }

    /// Decides whether the peer with `fingerprint` may act for `client` at `now`.
    pub fn authorise(
        &self,
        fingerprint: &str,
        client: &ClientId,
        now: OffsetDateTime,
    ) -> Result<&SecureServer, GatewayError> {
        let server = self.by_fingerprint.get(fingerprint).ok_or_else(|| {
            GatewayError::new(
                ErrorCode::TrustCertificateUnregistered,
                "the client certificate is not registered as a secure server of any member",
            )
        })?;
        if server.member != client.member {
            return Err(GatewayError::new(
                ErrorCode::TrustMemberMismatch,
                "the client certificate is registered for another member than X-Road-Client names",
            ));
        }
        if now < server.effective_from {
            return Err(GatewayError::new(
                ErrorCode::TrustRegistrationNotEffective,
                "the secure-server registration of the client certificate is not yet effective",
            ));
        }
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(submitted: &str, effective: &str) -> RawRegistry {
        toml::from_str(&format!(
            r#"[[secure_servers]]
member = "VN/GOV/000.00.00.H29"
name = "hcm-lgsp-1"
fingerprint_sha256 = "{}"
submitted_at = "{submitted}"
effective_from = "{effective}"
"#,
            "ab".repeat(32)
        ))
        .expect("valid toml")
    }

    #[test]
    fn accepts_three_working_days_notice() {
        // Friday 20 Nov 2026 10:00 +07 → effective Wednesday 25 Nov.
        let registry = SecureServerRegistry::build(
            &raw("2026-11-20T10:00:00+07:00", "2026-11-25T00:00:00+07:00"),
            &WorkingCalendar::default(),
        )
        .expect("valid");
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn rejects_less_than_three_working_days_notice() {
        // Friday → Tuesday is only two working days.
        let errors = SecureServerRegistry::build(
            &raw("2026-11-20T10:00:00+07:00", "2026-11-24T09:00:00+07:00"),
            &WorkingCalendar::default(),
        )
        .expect_err("too early");
        assert_eq!(errors[0].0, "secure_servers[0].effective_from");
    }

    #[test]
    fn counts_days_in_vietnam_time() {
        // 18:00 UTC Thursday is already Friday in Vietnam: Friday + 3 = Wednesday.
        let errors = SecureServerRegistry::build(
            &raw("2026-11-19T18:00:00Z", "2026-11-24T12:00:00+07:00"),
            &WorkingCalendar::default(),
        )
        .expect_err("too early in Vietnam time");
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn authorises_by_member_and_effective_date() {
        let registry = SecureServerRegistry::build(
            &raw("2026-11-02T10:00:00+07:00", "2026-11-05T00:00:00+07:00"),
            &WorkingCalendar::default(),
        )
        .expect("valid");
        let fp = "ab".repeat(32);
        let own: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
        let other: ClientId = "VN/GOV/000.00.00.G10/dvc-portal".parse().expect("id");
        let after = time::macros::datetime!(2026-11-06 00:00 +7);
        let before = time::macros::datetime!(2026-11-04 00:00 +7);
        assert!(registry.authorise(&fp, &own, after).is_ok());
        assert_eq!(
            registry
                .authorise(&fp, &other, after)
                .expect_err("other")
                .code(),
            ErrorCode::TrustMemberMismatch
        );
        assert_eq!(
            registry
                .authorise(&fp, &own, before)
                .expect_err("early")
                .code(),
            ErrorCode::TrustRegistrationNotEffective
        );
        assert_eq!(
            registry
                .authorise(&"cd".repeat(32), &own, after)
                .expect_err("unknown")
                .code(),
            ErrorCode::TrustCertificateUnregistered
        );
    }
}
