//! The registry: which certificate belongs to whom.
//!
//! Two kinds of registration, each binding a certificate's SHA-256 fingerprint:
//!
//! - a **secure server** (máy chủ bảo mật) of a member, effective from a moment.
//!   Changes must be registered three working days in advance (003 Điều 50
//!   khoản 2), so an entry whose `effective_from` is earlier than three working
//!   days after `submitted_at` (in Vietnam's time zone, UTC+7) is rejected when
//!   the registry is loaded. Secure servers talk to each other (the exchange
//!   listener of the federation); they are not accepted as callers on the
//!   consumer listener.
//! - an **information system** of a member, bound to the subsystems it is
//!   registered for. It calls its own gateway on the consumer listener and may
//!   claim in `X-Road-Client` only a subsystem it is bound to. The notice rule is
//!   for secure servers and does not apply here.
//!
//! The authenticated identity ([`Authenticated`]) is what every per-consumer
//! limit, share and metric is keyed on, never the header a caller sends.

use super::calendar::WorkingCalendar;
use crate::base::clock::VIETNAM_OFFSET;
use crate::error::{ErrorCode, GatewayError};
use crate::identity::{ClientId, MemberId};
use serde::Deserialize;
use std::sync::Arc;
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
    /// Registered information systems (consumer-listener clients).
    #[serde(default)]
    pub information_systems: Vec<RawInformationSystem>,
}

/// One information system as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInformationSystem {
    /// The member that runs it: `instance/class/code`.
    pub member: String,
    /// A name for operators, e.g. `dvc-portal-prod`.
    pub name: String,
    /// The subsystem codes of that member the certificate may act for (at least one).
    pub subsystems: Vec<String>,
    /// Lowercase or uppercase hex SHA-256 of the certificate's DER; `:` separators allowed.
    pub fingerprint_sha256: String,
    /// From when the binding is accepted (RFC 3339); default: at once.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub effective_from: Option<OffsetDateTime>,
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

/// A validated information system: a certificate bound to some subsystems of one member.
#[derive(Debug, Clone)]
pub struct InformationSystem {
    /// The owning member.
    pub member: MemberId,
    /// Operator-facing name.
    pub name: String,
    /// The subsystems it may act for, each as the identity a request claiming it is
    /// authenticated as: built once here and shared, not rebuilt per request (issue 12).
    pub bindings: Vec<Arc<Authenticated>>,
    /// From when it is accepted.
    pub effective_from: Option<OffsetDateTime>,
}

/// A registration found by fingerprint.
#[derive(Debug, Clone)]
pub enum Registration {
    /// A secure server of a member.
    SecureServer(SecureServer),
    /// An information system bound to subsystems.
    InformationSystem(Arc<InformationSystem>),
}

/// The identity a consumer-listener request was authenticated as: the
/// subsystem it claimed, now proven by its certificate's binding. Per-consumer
/// limits, shares and metric labels are keyed on this, never on the header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authenticated {
    /// The subsystem the certificate is bound to and the request claimed.
    pub client: ClientId,
    /// The registration's operator-facing name.
    pub system: String,
}

/// The loaded registry: fingerprint → registration.
#[derive(Debug, Clone, Default)]
pub struct SecureServerRegistry {
    by_fingerprint: foldhash::HashMap<String, Registration>,
}

pub use crate::base::hex::normalise_fingerprint;

/// The member and normalised fingerprint of one entry, each problem reported at its path.
fn member_and_fingerprint(
    member: &str,
    fingerprint: &str,
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<(String, String)>,
) -> (Option<MemberId>, Option<String>) {
    let member = member
        .parse::<MemberId>()
        .map_err(|error| errors.push((at("member"), error.to_string())))
        .ok();
    let fingerprint = normalise_fingerprint(fingerprint);
    if fingerprint.is_none() {
        errors.push((
            at("fingerprint_sha256"),
            "must be 64 hex digits (SHA-256 of the certificate DER)".into(),
        ));
    }
    (member, fingerprint)
}

/// Adds a registration; a fingerprint registered twice (in either section) is an error.
fn register_once(
    by_fingerprint: &mut foldhash::HashMap<String, Registration>,
    fingerprint: String,
    registration: Registration,
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<(String, String)>,
) {
    if by_fingerprint.insert(fingerprint, registration).is_some() {
        errors.push((
            at("fingerprint_sha256"),
            "this certificate is registered twice".into(),
        ));
    }
}

impl SecureServerRegistry {
    /// Validates every entry, returning every problem as `(path, message)`.
    pub fn build(
        raw: &RawRegistry,
        calendar: &WorkingCalendar,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut by_fingerprint = foldhash::HashMap::default();
        for (index, entry) in raw.secure_servers.iter().enumerate() {
            let at = |field: &str| format!("secure_servers[{index}].{field}");
            let (member, fingerprint) =
                member_and_fingerprint(&entry.member, &entry.fingerprint_sha256, &at, &mut errors);
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
                register_once(
                    &mut by_fingerprint,
                    fingerprint,
                    Registration::SecureServer(server),
                    &at,
                    &mut errors,
                );
            }
        }
        for (index, entry) in raw.information_systems.iter().enumerate() {
            let at = |field: &str| format!("information_systems[{index}].{field}");
            let (member, fingerprint) =
                member_and_fingerprint(&entry.member, &entry.fingerprint_sha256, &at, &mut errors);
            if entry.subsystems.is_empty() {
                errors.push((
                    at("subsystems"),
                    "list at least one subsystem the certificate may act for".into(),
                ));
            }
            let mut clients = Vec::new();
            for (i, code) in entry.subsystems.iter().enumerate() {
                let Some(member) = &member else { break };
                match ClientId::from_parts(
                    &member.instance,
                    member.class.as_str(),
                    &member.code,
                    code,
                ) {
                    Ok(client) if clients.contains(&client) => errors.push((
                        format!("information_systems[{index}].subsystems[{i}]"),
                        "listed twice".into(),
                    )),
                    Ok(client) => clients.push(client),
                    Err(error) => errors.push((
                        format!("information_systems[{index}].subsystems[{i}]"),
                        error.to_string(),
                    )),
                }
            }
            if let (Some(member), Some(fingerprint)) = (member, fingerprint) {
                let bindings = clients
                    .into_iter()
                    .map(|client| {
                        Arc::new(Authenticated {
                            client,
                            system: entry.name.clone(),
                        })
                    })
                    .collect();
                let system = InformationSystem {
                    member,
                    name: entry.name.clone(),
                    bindings,
                    effective_from: entry.effective_from,
                };
                register_once(
                    &mut by_fingerprint,
                    fingerprint,
                    Registration::InformationSystem(Arc::new(system)),
                    &at,
                    &mut errors,
                );
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

    /// Decides whether the consumer-listener peer with `fingerprint` may act for
    /// `client` at `now`: it must be a registered information system of the
    /// client's member, bound to the client's subsystem, and effective.
    pub fn authenticate_client(
        &self,
        fingerprint: &str,
        client: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Arc<Authenticated>, GatewayError> {
        let system = match self.by_fingerprint.get(fingerprint) {
            Some(Registration::InformationSystem(system)) => system,
            Some(Registration::SecureServer(_)) => {
                return Err(GatewayError::new(
                    ErrorCode::TrustCertificateUnregistered,
                    "the client certificate is registered as a secure server, not as an \
                     information system; secure servers do not call the consumer listener",
                ));
            }
            None => {
                return Err(GatewayError::new(
                    ErrorCode::TrustCertificateUnregistered,
                    "the client certificate is not registered as an information system of any member",
                ));
            }
        };
        if system.member != client.member {
            return Err(GatewayError::new(
                ErrorCode::TrustMemberMismatch,
                "the client certificate is registered for another member than X-Road-Client names",
            ));
        }
        let Some(binding) = system.bindings.iter().find(|b| &b.client == client) else {
            return Err(GatewayError::new(
                ErrorCode::TrustSubsystemNotBound,
                "the client certificate is not registered for the subsystem X-Road-Client names",
            ));
        };
        if system.effective_from.is_some_and(|from| now < from) {
            return Err(GatewayError::new(
                ErrorCode::TrustRegistrationNotEffective,
                "the registration of the client certificate is not yet effective",
            ));
        }
        Ok(binding.clone())
    }

    /// Decides whether the secure server with `fingerprint` may act for `member` at `now`
    /// (the exchange listener of the federation).
    pub fn authenticate_server(
        &self,
        fingerprint: &str,
        member: &MemberId,
        now: OffsetDateTime,
    ) -> Result<&SecureServer, GatewayError> {
        let Some(Registration::SecureServer(server)) = self.by_fingerprint.get(fingerprint) else {
            return Err(GatewayError::new(
                ErrorCode::TrustCertificateUnregistered,
                "the certificate is not registered as a secure server of any member",
            ));
        };
        if &server.member != member {
            return Err(GatewayError::new(
                ErrorCode::TrustMemberMismatch,
                "the certificate is registered for another member",
            ));
        }
        if now < server.effective_from {
            return Err(GatewayError::new(
                ErrorCode::TrustRegistrationNotEffective,
                "the secure-server registration of the certificate is not yet effective",
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

    /// 003 Điều 50 khoản 2: three working days' notice is enough.
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

    /// 003 Điều 50 khoản 2: less than three working days' notice is refused.
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

    /// 003 Điều 50 khoản 2: working days are counted in Vietnam time.
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

    /// 003 Điều 50 khoản 2–3: a secure server counts only for its member, from its effective date.
    #[test]
    fn authenticates_secure_servers_by_member_and_effective_date() {
        let registry = SecureServerRegistry::build(
            &raw("2026-11-02T10:00:00+07:00", "2026-11-05T00:00:00+07:00"),
            &WorkingCalendar::default(),
        )
        .expect("valid");
        let fp = "ab".repeat(32);
        let own: MemberId = "VN/GOV/000.00.00.H29".parse().expect("id");
        let other: MemberId = "VN/GOV/000.00.00.G10".parse().expect("id");
        let after = time::macros::datetime!(2026-11-06 00:00 +7);
        let before = time::macros::datetime!(2026-11-04 00:00 +7);
        assert!(registry.authenticate_server(&fp, &own, after).is_ok());
        let code = |r: Result<&SecureServer, GatewayError>| r.expect_err("refused").code();
        assert_eq!(
            code(registry.authenticate_server(&fp, &other, after)),
            ErrorCode::TrustMemberMismatch
        );
        assert_eq!(
            code(registry.authenticate_server(&fp, &own, before)),
            ErrorCode::TrustRegistrationNotEffective
        );
        assert_eq!(
            code(registry.authenticate_server(&"cd".repeat(32), &own, after)),
            ErrorCode::TrustCertificateUnregistered
        );
    }

    fn systems(extra: &str) -> Result<SecureServerRegistry, Vec<(String, String)>> {
        let raw: RawRegistry = toml::from_str(&format!(
            r#"[[information_systems]]
member = "VN/GOV/000.00.00.H29"
name = "portal"
subsystems = ["dvc-portal", "dvc-portal-test"]
fingerprint_sha256 = "{}"
{extra}
"#,
            "ab".repeat(32)
        ))
        .expect("valid toml");
        SecureServerRegistry::build(&raw, &WorkingCalendar::default())
    }

    /// 004 Điều 55 khoản 3: a certificate speaks only for the subsystems it is bound to.
    #[test]
    fn information_system_may_claim_only_its_own_subsystems() {
        let registry = systems("").expect("valid");
        let fp = "ab".repeat(32);
        let now = time::macros::datetime!(2026-11-06 00:00 +7);
        let own: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
        let second: ClientId = "VN/GOV/000.00.00.H29/dvc-portal-test".parse().expect("id");
        let sibling: ClientId = "VN/GOV/000.00.00.H29/land-office".parse().expect("id");
        let foreign: ClientId = "VN/GOV/000.00.00.G12/dvc-portal".parse().expect("id");
        let authenticated = registry
            .authenticate_client(&fp, &own, now)
            .expect("own subsystem");
        assert_eq!(authenticated.client, own);
        assert!(registry.authenticate_client(&fp, &second, now).is_ok());
        let code = |client: &ClientId| {
            registry
                .authenticate_client(&fp, client, now)
                .expect_err("refused")
                .code()
        };
        assert_eq!(code(&sibling), ErrorCode::TrustSubsystemNotBound);
        assert_eq!(code(&foreign), ErrorCode::TrustMemberMismatch);
    }

    /// Design §5 (no article): a secure server's certificate is not a consumer.
    #[test]
    fn secure_server_certificate_is_not_a_consumer() {
        let registry = SecureServerRegistry::build(
            &raw("2026-11-02T10:00:00+07:00", "2026-11-05T00:00:00+07:00"),
            &WorkingCalendar::default(),
        )
        .expect("valid");
        let own: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
        let now = time::macros::datetime!(2026-11-06 00:00 +7);
        assert_eq!(
            registry
                .authenticate_client(&"ab".repeat(32), &own, now)
                .expect_err("a secure server")
                .code(),
            ErrorCode::TrustCertificateUnregistered
        );
    }

    /// Design §5 (no article): an information system's binding takes effect at its effective_from.
    #[test]
    fn information_system_needs_no_notice_but_honours_effective_from() {
        let registry =
            systems(r#"effective_from = "2026-11-06T00:00:00+07:00""#).expect("no notice rule");
        let own: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
        let fp = "ab".repeat(32);
        assert_eq!(
            registry
                .authenticate_client(&fp, &own, time::macros::datetime!(2026-11-05 23:00 +7))
                .expect_err("early")
                .code(),
            ErrorCode::TrustRegistrationNotEffective
        );
        assert!(
            registry
                .authenticate_client(&fp, &own, time::macros::datetime!(2026-11-06 00:00 +7))
                .is_ok()
        );
    }

    #[test]
    fn rejects_information_system_without_or_with_bad_subsystems() {
        let raw: RawRegistry = toml::from_str(&format!(
            r#"[[information_systems]]
member = "VN/GOV/000.00.00.H29"
name = "portal"
subsystems = []
fingerprint_sha256 = "{fp}"

[[information_systems]]
member = "VN/GOV/000.00.00.H29"
name = "portal-2"
subsystems = ["..", "ok", "ok"]
fingerprint_sha256 = "{fp2}"
"#,
            fp = "ab".repeat(32),
            fp2 = "cd".repeat(32),
        ))
        .expect("valid toml");
        let errors =
            SecureServerRegistry::build(&raw, &WorkingCalendar::default()).expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert!(
            paths.contains(&"information_systems[0].subsystems"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"information_systems[1].subsystems[0]"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"information_systems[1].subsystems[2]"),
            "{paths:?}"
        );
    }
}
