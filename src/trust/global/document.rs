//! The global configuration document in its typed form, and its lookups.
//!
//! A [`GlobalConfiguration`] exists only once [`super::validate`] found no problem in
//! the payload; its fields are private so that it stays what was validated and signed.

use super::json::parse_strict;
use super::keys::{Anchor, PublicJwk};
use super::validate::{build, normalise_fingerprint};
use super::{GlobalConfError, Peer};
use crate::base::hex;
use crate::identity::{ClientId, MemberId, ServiceId};
use crate::trust::calendar::WorkingCalendar;
use std::collections::HashMap;
use std::ops::Range;
use time::{Date, OffsetDateTime};
use url::Url;

/// The value of the document's `format` field.
pub const FORMAT: &str = "datagate-global-configuration/1";

/// Working days of notice a secure server's or hub's certificate needs before it
/// is accepted (003 Điều 50 khoản 2); the same number as the local registry's.
pub const NOTICE_WORKING_DAYS: u32 = 3;

/// A member of the federation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its identifier, in the document's instance.
    pub id: MemberId,
    /// Its name, for people.
    pub name: String,
    /// Its subsystems (information systems), as full client ids.
    pub subsystems: Vec<ClientId>,
}

/// One certificate registration of a secure server or hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateEntry {
    /// Lowercase hex SHA-256 of the certificate's DER (64 digits).
    pub sha256: String,
    /// When the registration was submitted to the central authority.
    pub submitted_at: OffsetDateTime,
    /// From when the registration is meant to take effect.
    pub effective_from: OffsetDateTime,
    /// When it ends, if it does (the old certificate of a renewal).
    pub effective_until: Option<OffsetDateTime>,
    /// 00:00 Vietnam time of the third working day after the day (Vietnam time) of
    /// `submitted_at`, counted with the document's holidays: before it, the
    /// registration is not effective whatever `effective_from` says
    /// (003 Điều 50 khoản 2).
    pub notice_ends: OffsetDateTime,
}

/// Where a certificate registration stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    /// Accepted now.
    Effective,
    /// Not yet: accepted from `from` (the later of `effective_from` and the end of
    /// the notice period).
    NotYetEffective {
        /// From when it will be accepted.
        from: OffsetDateTime,
    },
    /// No longer: it ended at `at`.
    Ended {
        /// When it ended.
        at: OffsetDateTime,
    },
}

impl CertificateEntry {
    /// Where the registration stands at `now`: effective when `now >= effective_from`,
    /// `now >= notice_ends` and, if it has an end, `now < effective_until`.
    pub fn status(&self, now: OffsetDateTime) -> CertificateStatus {
        if let Some(until) = self.effective_until
            && now >= until
        {
            return CertificateStatus::Ended { at: until };
        }
        let from = self.effective_from.max(self.notice_ends);
        if now < from {
            CertificateStatus::NotYetEffective { from }
        } else {
            CertificateStatus::Effective
        }
    }
}

/// A secure server (máy chủ bảo mật) of a member: a gateway of the federation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureServer {
    /// The member that runs it.
    pub member: MemberId,
    /// Its name, unique within the member.
    pub name: String,
    /// Base URL of its exchange listener (https, no query or fragment).
    pub address: Url,
    /// Its TLS certificates: usually one, two during a renewal.
    pub certificates: Vec<CertificateEntry>,
    /// The key that payloads for it are encrypted to (JWE).
    pub encryption_key: PublicJwk,
}

/// A hub (e.g. the NDXP) that relays exchanges between gateways without reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    /// Its name, unique in the document.
    pub name: String,
    /// The member that runs it.
    pub member: MemberId,
    /// Base URL of its exchange listener.
    pub address: Url,
    /// Its TLS certificates.
    pub certificates: Vec<CertificateEntry>,
}

/// A service of the federation and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service, whose provider is a listed subsystem of a listed member.
    pub id: ServiceId,
    /// Hubs to reach it through, in order; empty: directly.
    pub hubs: Vec<String>,
}

/// An identity provider whose tokens the federation accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProvider {
    /// Its issuer (`iss`), exactly as written (an https URL).
    pub issuer: String,
    /// Its public signing keys, each with a distinct `kid`.
    pub keys: Vec<PublicJwk>,
}

impl IdentityProvider {
    /// The key with this `kid`.
    pub fn key(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|key| key.kid() == Some(kid))
    }
}

/// A CA certificate the TLS layer trusts for exchange peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    pub(super) der: Vec<u8>,
}

impl CaCertificate {
    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Lowercase hex SHA-256 of the DER.
    pub fn fingerprint(&self) -> String {
        hex::encode(&openssl::sha::sha256(&self.der))
    }
}

/// A new anchor announced by the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorRotation {
    /// The new anchor.
    pub next_anchor: Anchor,
    /// From when documents signed by it are accepted, and those signed only by the
    /// current anchor are not.
    pub effective_from: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    Server { server: usize, certificate: usize },
    Hub { hub: usize, certificate: usize },
}

/// The validated global configuration.
#[derive(Debug, Clone)]
pub struct GlobalConfiguration {
    pub(super) instance: String,
    pub(super) version: u64,
    pub(super) issued_at: OffsetDateTime,
    pub(super) expires_at: OffsetDateTime,
    pub(super) trusted_cas: Vec<CaCertificate>,
    pub(super) members: Vec<Member>,
    /// Sorted by member (document order within a member), so each member's are a slice.
    pub(super) secure_servers: Vec<SecureServer>,
    pub(super) services: Vec<Service>,
    pub(super) hubs: Vec<Hub>,
    pub(super) identity_providers: Vec<IdentityProvider>,
    pub(super) holidays: Vec<Date>,
    pub(super) calendar: WorkingCalendar,
    pub(super) anchor_rotation: Option<AnchorRotation>,
    pub(super) raw_json: Vec<u8>,
    pub(super) member_index: HashMap<MemberId, usize>,
    pub(super) servers_of: HashMap<MemberId, Range<usize>>,
    pub(super) by_fingerprint: HashMap<String, Holder>,
    pub(super) service_index: HashMap<ServiceId, usize>,
    pub(super) hub_index: HashMap<String, usize>,
    pub(super) issuer_index: HashMap<String, usize>,
}

impl GlobalConfiguration {
    /// Parses and validates a payload **without any signature**. For the central
    /// authority's tooling (check a draft before signing it) and for tests; a
    /// gateway gets its configuration from [`Verifier::verify`](super::Verifier::verify).
    pub fn parse_unverified(payload_json: &[u8]) -> Result<Self, GlobalConfError> {
        let value =
            parse_strict(payload_json).map_err(|reason| GlobalConfError::Malformed { reason })?;
        build(payload_json, &value).map_err(|problems| GlobalConfError::Invalid { problems })
    }

    /// The federation instance, e.g. `VN`.
    pub fn instance(&self) -> &str {
        &self.instance
    }
    /// The version; each new document has a greater one.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// When the central authority issued it.
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }
    /// From when it may no longer be used.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }
    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }
    /// CA certificates (DER) for the TLS layer's verification of exchange peers.
    pub fn trusted_cas(&self) -> &[CaCertificate] {
        &self.trusted_cas
    }
    /// All members, in document order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
    /// One member.
    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.member_index.get(id).map(|&i| &self.members[i])
    }
    /// All secure servers, grouped by member.
    pub fn secure_servers(&self) -> &[SecureServer] {
        &self.secure_servers
    }
    /// The secure servers of one member (empty if it has none).
    pub fn secure_servers_of(&self, member: &MemberId) -> &[SecureServer] {
        self.servers_of
            .get(member)
            .and_then(|range| self.secure_servers.get(range.clone()))
            .unwrap_or(&[])
    }
    /// The secure server a certificate fingerprint is registered for, with the
    /// registration, whatever its dates (use [`Self::authenticate_peer`] to decide).
    /// Upper case and `:` separators are accepted.
    pub fn server_by_fingerprint(
        &self,
        fingerprint_hex: &str,
    ) -> Option<(&SecureServer, &CertificateEntry)> {
        match self.holder(fingerprint_hex)? {
            Holder::Server {
                server,
                certificate,
            } => {
                let server = &self.secure_servers[server];
                Some((server, &server.certificates[certificate]))
            }
            Holder::Hub { .. } => None,
        }
    }
    /// All hubs, in document order.
    pub fn hubs(&self) -> &[Hub] {
        &self.hubs
    }
    /// One hub by name.
    pub fn hub(&self, name: &str) -> Option<&Hub> {
        self.hub_index.get(name).map(|&i| &self.hubs[i])
    }
    /// The hub a certificate fingerprint is registered for, with the registration.
    pub fn hub_by_fingerprint(&self, fingerprint_hex: &str) -> Option<(&Hub, &CertificateEntry)> {
        match self.holder(fingerprint_hex)? {
            Holder::Hub { hub, certificate } => {
                let hub = &self.hubs[hub];
                Some((hub, &hub.certificates[certificate]))
            }
            Holder::Server { .. } => None,
        }
    }
    /// All services, in document order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }
    /// One service.
    pub fn service(&self, id: &ServiceId) -> Option<&Service> {
        self.service_index.get(id).map(|&i| &self.services[i])
    }
    /// All identity providers, in document order.
    pub fn identity_providers(&self) -> &[IdentityProvider] {
        &self.identity_providers
    }
    /// The identity provider with exactly this issuer.
    pub fn identity_provider(&self, issuer: &str) -> Option<&IdentityProvider> {
        self.issuer_index
            .get(issuer)
            .map(|&i| &self.identity_providers[i])
    }
    /// The public holidays the document lists, sorted.
    pub fn holidays(&self) -> &[Date] {
        &self.holidays
    }
    /// Working days under the document's holidays.
    pub fn calendar(&self) -> &WorkingCalendar {
        &self.calendar
    }
    /// The next anchor, if one is announced.
    pub fn anchor_rotation(&self) -> Option<&AnchorRotation> {
        self.anchor_rotation.as_ref()
    }
    /// The payload exactly as signed, to persist and to compare.
    pub fn raw_json(&self) -> &[u8] {
        &self.raw_json
    }

    /// Decides who the exchange peer presenting the certificate with
    /// `fingerprint_hex` is, at `now`: a secure server or a hub whose registration of
    /// that certificate is effective (003 Điều 50 khoản 2–3). A configuration that has
    /// expired authenticates nobody (`globalconf.expired`).
    pub fn authenticate_peer(
        &self,
        fingerprint_hex: &str,
        now: OffsetDateTime,
    ) -> Result<Peer, GlobalConfError> {
        if self.is_expired(now) {
            return Err(GlobalConfError::Expired {
                expires_at: self.expires_at,
            });
        }
        let (peer, entry) = match self.holder(fingerprint_hex) {
            None => return Err(GlobalConfError::PeerUnknown),
            Some(Holder::Server {
                server,
                certificate,
            }) => {
                let server = &self.secure_servers[server];
                (
                    Peer::SecureServer {
                        member: server.member.clone(),
                        name: server.name.clone(),
                    },
                    &server.certificates[certificate],
                )
            }
            Some(Holder::Hub { hub, certificate }) => {
                let hub = &self.hubs[hub];
                (
                    Peer::Hub {
                        name: hub.name.clone(),
                        member: hub.member.clone(),
                    },
                    &hub.certificates[certificate],
                )
            }
        };
        match entry.status(now) {
            CertificateStatus::Effective => Ok(peer),
            CertificateStatus::NotYetEffective { from } => {
                Err(GlobalConfError::PeerNotYetEffective { from })
            }
            CertificateStatus::Ended { at } => Err(GlobalConfError::PeerRegistrationEnded { at }),
        }
    }

    fn holder(&self, fingerprint_hex: &str) -> Option<Holder> {
        let fingerprint = normalise_fingerprint(fingerprint_hex)?;
        self.by_fingerprint.get(&fingerprint).copied()
    }
}
