//! Validation of the global configuration: parse, validate completely, build.
//!
//! Every problem of the document is collected with its JSON path (never its value)
//! before anything is built; one problem does not hide the next.

use super::document::{
    AnchorRotation, CaCertificate, CertificateEntry, FORMAT, GlobalConfiguration, Holder, Hub,
    IdentityProvider, Member, NOTICE_WORKING_DAYS, SecureServer, Service,
};
use super::json::{Object, Problem, Problems, as_string, field_path, index_path};
use super::keys::PublicJwk;
use crate::base::clock::VIETNAM_OFFSET;
use crate::identity::{ClientId, MemberId, ServiceId};
use crate::trust::calendar::WorkingCalendar;
use openssl::x509::X509;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
use url::Url;

pub use crate::base::hex::normalise_fingerprint;

/// A name (secure server, hub): 1–64 of `A-Z a-z 0-9 . _ -`, starting with a letter
/// or digit, so it is safe in logs and metric labels.
fn check_name(text: &str, path: &str, problems: &mut Problems) -> bool {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        problems.push(
            path,
            "must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
        );
    }
    ok
}

/// An https URL with a host, without credentials, query or fragment.
fn https_url(text: &str, path: &str, problems: &mut Problems) -> Option<Url> {
    let Ok(url) = Url::parse(text) else {
        problems.push(path, "must be an absolute URL");
        return None;
    };
    let mut ok = true;
    let mut refuse = |message: &str| {
        problems.push(path, message);
        ok = false;
    };
    if url.scheme() != "https" {
        refuse("must use https");
    }
    if url.host_str().is_none_or(str::is_empty) {
        refuse("must have a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        refuse("must not carry credentials");
    }
    if url.query().is_some() {
        refuse("must not have a query");
    }
    if url.fragment().is_some() {
        refuse("must not have a fragment");
    }
    ok.then_some(url)
}

/// The base URL of an exchange listener: an https origin with no path (every node of
/// a path computes `@target-uri` by appending `/exchange/v1/...` to it).
fn exchange_address(text: &str, path: &str, problems: &mut Problems) -> Option<Url> {
    let url = https_url(text, path, problems)?;
    if url.path() != "/" {
        problems.push(path, "must be an origin without a path");
        return None;
    }
    Some(url)
}

/// Builds the typed document from a parsed payload, or returns every problem.
pub(super) fn build(raw_json: &[u8], value: &Value) -> Result<GlobalConfiguration, Vec<Problem>> {
    let mut p = Problems::default();
    let Some(top) = Object::read(
        value,
        "",
        &[
            "format",
            "instance",
            "version",
            "issued_at",
            "expires_at",
            "trusted_cas",
            "members",
            "secure_servers",
            "services",
            "hubs",
            "identity_providers",
            "holidays",
            "anchor_rotation",
        ],
        &mut p,
    ) else {
        return Err(p.0);
    };

    if top.string("format", &mut p).is_some_and(|f| f != FORMAT) {
        p.push("format", "must be datagate-global-configuration/1");
    }
    let instance = top.string("instance", &mut p).filter(|instance| {
        let ok = !instance.is_empty()
            && instance.len() <= 64
            && instance.starts_with(|c: char| c.is_ascii_alphanumeric())
            && instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            p.push("instance", "must be 1-64 characters of A-Z a-z 0-9 -");
        }
        ok
    });
    let version = top.required("version", &mut p).and_then(|v| {
        let version = v.as_u64().filter(|&v| v >= 1);
        if version.is_none() {
            p.push("version", "must be an integer from 1 to 2^64-1");
        }
        version
    });
    let issued_at = top.timestamp("issued_at", &mut p);
    let expires_at = top.timestamp("expires_at", &mut p);
    if let (Some(issued), Some(expires)) = (issued_at, expires_at)
        && expires <= issued
    {
        p.push("expires_at", "must be later than issued_at");
    }

    let trusted_cas = trusted_cas(&top, &mut p);
    let holidays = holidays(&top, &mut p);
    let calendar = WorkingCalendar::new(holidays.iter().copied());
    let members = members(&top, instance, &mut p);
    let member_index: HashMap<MemberId, usize> = members
        .iter()
        .enumerate()
        .map(|(i, member)| (member.id.clone(), i))
        .collect();
    let mut fingerprints = HashSet::new();
    let mut secure_servers =
        secure_servers(&top, &member_index, &calendar, &mut fingerprints, &mut p);
    let hubs = hubs(&top, &member_index, &calendar, &mut fingerprints, &mut p);
    let hub_index: HashMap<String, usize> = hubs
        .iter()
        .enumerate()
        .map(|(i, hub)| (hub.name.clone(), i))
        .collect();
    let services = services(&top, &members, &member_index, &hub_index, &mut p);
    let identity_providers = identity_providers(&top, &mut p);
    let anchor_rotation = anchor_rotation(&top, &mut p);

    let (Some(instance), Some(version), Some(issued_at), Some(expires_at), true) =
        (instance, version, issued_at, expires_at, p.is_empty())
    else {
        return Err(p.0);
    };

    // Group each member's servers into one slice; the sort is stable, so document
    // order holds within a member.
    secure_servers.sort_by(|a, b| a.member.cmp(&b.member));
    let mut servers_of: HashMap<MemberId, Range<usize>> = HashMap::new();
    let mut by_fingerprint = HashMap::new();
    for (server_index, server) in secure_servers.iter().enumerate() {
        servers_of
            .entry(server.member.clone())
            .and_modify(|range| range.end = server_index + 1)
            .or_insert(server_index..server_index + 1);
        for (certificate, entry) in server.certificates.iter().enumerate() {
            by_fingerprint.insert(
                entry.sha256.clone(),
                Holder::Server {
                    server: server_index,
                    certificate,
                },
            );
        }
    }
    for (hub_position, hub) in hubs.iter().enumerate() {
        for (certificate, entry) in hub.certificates.iter().enumerate() {
            by_fingerprint.insert(
                entry.sha256.clone(),
                Holder::Hub {
                    hub: hub_position,
                    certificate,
                },
            );
        }
    }
    let service_index = services
        .iter()
        .enumerate()
        .map(|(i, service)| (service.id.clone(), i))
        .collect();
    let issuer_index = identity_providers
        .iter()
        .enumerate()
        .map(|(i, idp)| (idp.issuer.clone(), i))
        .collect();

    Ok(GlobalConfiguration {
        instance: instance.to_owned(),
        version,
        issued_at,
        expires_at,
        trusted_cas,
        members,
        secure_servers,
        services,
        hubs,
        identity_providers,
        holidays,
        calendar,
        anchor_rotation,
        raw_json: raw_json.to_vec(),
        member_index,
        servers_of,
        by_fingerprint,
        service_index,
        hub_index,
        issuer_index,
    })
}

fn trusted_cas(top: &Object<'_>, p: &mut Problems) -> Vec<CaCertificate> {
    let mut out = Vec::new();
    let Some(items) = top.array("trusted_cas", p) else {
        return out;
    };
    if items.is_empty() {
        p.push("trusted_cas", "list at least one CA certificate");
    }
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = index_path("trusted_cas", i);
        let Some(pem) = as_string(item, &path, p) else {
            continue;
        };
        let certificates = X509::stack_from_pem(pem.as_bytes()).unwrap_or_default();
        let der = match (
            pem.trim_start().starts_with("-----BEGIN CERTIFICATE-----"),
            &certificates[..],
        ) {
            (true, [one]) => one.to_der().ok(),
            _ => None,
        };
        match der {
            Some(der) if seen.insert(der.clone()) => out.push(CaCertificate { der }),
            Some(_) => p.push(path, "listed twice"),
            None => p.push(path, "must be exactly one PEM CERTIFICATE block"),
        }
    }
    out
}

fn holidays(top: &Object<'_>, p: &mut Problems) -> Vec<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in top.optional_array("holidays", p).iter().enumerate() {
        let path = index_path("holidays", i);
        let Some(text) = as_string(item, &path, p) else {
            continue;
        };
        match Date::parse(text, &format) {
            Ok(day) if !seen.insert(day) => p.push(path, "listed twice"),
            Ok(day) => out.push(day),
            Err(_) => p.push(path, "must be a date YYYY-MM-DD"),
        }
    }
    out.sort();
    out
}

fn members(top: &Object<'_>, instance: Option<&str>, p: &mut Problems) -> Vec<Member> {
    let mut out: Vec<Member> = Vec::new();
    // Sets, not scans: the document may list thousands of members.
    let mut seen = HashSet::new();
    let Some(items) = top.array("members", p) else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = index_path("members", i);
        let Some(object) = Object::read(item, &path, &["id", "name", "subsystems"], p) else {
            continue;
        };
        let name = object.text("name", p);
        let id = object.string("id", p).and_then(|text| {
            let id = text
                .parse::<MemberId>()
                .map_err(|error| p.push(object.at("id"), error.to_string()))
                .ok()?;
            if instance.is_some_and(|instance| instance != id.instance) {
                p.push(
                    object.at("id"),
                    "is in another instance than the document's",
                );
                return None;
            }
            if !seen.insert(id.clone()) {
                p.push(object.at("id"), "listed twice");
                return None;
            }
            Some(id)
        });
        let mut subsystems: Vec<ClientId> = Vec::new();
        for (j, code) in object.optional_array("subsystems", p).iter().enumerate() {
            let code_path = index_path(&object.at("subsystems"), j);
            let (Some(code), Some(id)) = (as_string(code, &code_path, p), &id) else {
                continue;
            };
            match ClientId::from_parts(&id.instance, id.class.as_str(), &id.code, code) {
                Ok(client) if subsystems.contains(&client) => p.push(code_path, "listed twice"),
                Ok(client) => subsystems.push(client),
                Err(error) => p.push(code_path, error.to_string()),
            }
        }
        if let (Some(id), Some(name)) = (id, name) {
            out.push(Member {
                id,
                name: name.to_owned(),
                subsystems,
            });
        }
    }
    out
}

/// A listed member named by field `key` of `object`.
fn listed_member(
    object: &Object<'_>,
    key: &str,
    members: &HashMap<MemberId, usize>,
    p: &mut Problems,
) -> Option<MemberId> {
    let text = object.string(key, p)?;
    let id = text
        .parse::<MemberId>()
        .map_err(|error| p.push(object.at(key), error.to_string()))
        .ok()?;
    if !members.contains_key(&id) {
        p.push(object.at(key), "is not a listed member");
        return None;
    }
    Some(id)
}

/// The `certificates` of a server or hub: at least one, each fingerprint unique in the document.
fn certificates(
    object: &Object<'_>,
    calendar: &WorkingCalendar,
    fingerprints: &mut HashSet<String>,
    p: &mut Problems,
) -> Vec<CertificateEntry> {
    let mut out = Vec::new();
    let Some(items) = object.array("certificates", p) else {
        return out;
    };
    if items.is_empty() {
        p.push(object.at("certificates"), "list at least one certificate");
    }
    for (i, item) in items.iter().enumerate() {
        let path = index_path(&object.at("certificates"), i);
        let Some(entry) = Object::read(
            item,
            &path,
            &[
                "sha256",
                "submitted_at",
                "effective_from",
                "effective_until",
            ],
            p,
        ) else {
            continue;
        };
        let sha256 = entry.string("sha256", p).and_then(|text| {
            let Some(fingerprint) = normalise_fingerprint(text) else {
                p.push(
                    entry.at("sha256"),
                    "must be 64 hex digits (SHA-256 of the certificate DER)",
                );
                return None;
            };
            if !fingerprints.insert(fingerprint.clone()) {
                p.push(entry.at("sha256"), "this certificate is registered twice");
                return None;
            }
            Some(fingerprint)
        });
        let submitted_at = entry.timestamp("submitted_at", p);
        let effective_from = entry.timestamp("effective_from", p);
        let effective_until = entry.optional_timestamp("effective_until", p);
        if let (Some(from), Some(until)) = (effective_from, effective_until)
            && until <= from
        {
            p.push(
                entry.at("effective_until"),
                "must be later than effective_from",
            );
        }
        let notice_ends = submitted_at.and_then(|submitted_at| {
            let ends = notice_ends(submitted_at, calendar);
            if ends.is_none() {
                p.push(
                    entry.at("submitted_at"),
                    "too close to the end of the calendar",
                );
            }
            ends
        });
        if let (Some(sha256), Some(submitted_at), Some(effective_from), Some(notice_ends)) =
            (sha256, submitted_at, effective_from, notice_ends)
        {
            out.push(CertificateEntry {
                sha256,
                submitted_at,
                effective_from,
                effective_until,
                notice_ends,
            });
        }
    }
    out
}

/// 00:00 Vietnam time of the third working day after the day (Vietnam time) of
/// `submitted_at`: the registry's convention (003 Điều 50 khoản 2). `None` where
/// that day would be past the last date `time` represents: `to_offset` would panic
/// there, and `add_working_days` would never return once it saturates on a day off.
fn notice_ends(submitted_at: OffsetDateTime, calendar: &WorkingCalendar) -> Option<OffsetDateTime> {
    let submitted = submitted_at.checked_to_offset(VIETNAM_OFFSET)?.date();
    let mut day = submitted;
    let mut left = NOTICE_WORKING_DAYS;
    while left > 0 {
        day = day.next_day()?;
        if calendar.is_working_day(day) {
            left -= 1;
        }
    }
    let earliest = calendar.add_working_days(submitted, NOTICE_WORKING_DAYS);
    Some(PrimitiveDateTime::new(earliest, Time::MIDNIGHT).assume_offset(VIETNAM_OFFSET))
}

fn secure_servers(
    top: &Object<'_>,
    members: &HashMap<MemberId, usize>,
    calendar: &WorkingCalendar,
    fingerprints: &mut HashSet<String>,
    p: &mut Problems,
) -> Vec<SecureServer> {
    let mut out: Vec<SecureServer> = Vec::new();
    let mut seen = HashSet::new();
    let Some(items) = top.array("secure_servers", p) else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = index_path("secure_servers", i);
        let Some(object) = Object::read(
            item,
            &path,
            &[
                "member",
                "name",
                "address",
                "certificates",
                "encryption_key",
            ],
            p,
        ) else {
            continue;
        };
        let member = listed_member(&object, "member", members, p);
        let name = object
            .string("name", p)
            .filter(|name| check_name(name, &object.at("name"), p));
        if let (Some(member), Some(name)) = (&member, name)
            && !seen.insert((member.clone(), name))
        {
            p.push(
                object.at("name"),
                "the member has two secure servers of this name",
            );
        }
        let address = object
            .string("address", p)
            .and_then(|text| exchange_address(text, &object.at("address"), p));
        let certificates = certificates(&object, calendar, fingerprints, p);
        let encryption_key = object
            .required("encryption_key", p)
            .and_then(|jwk| PublicJwk::parse(jwk, &object.at("encryption_key"), true, p));
        if let (Some(member), Some(name), Some(address), Some(encryption_key)) =
            (member, name, address, encryption_key)
        {
            out.push(SecureServer {
                member,
                name: name.to_owned(),
                address,
                certificates,
                encryption_key,
            });
        }
    }
    out
}

fn hubs(
    top: &Object<'_>,
    members: &HashMap<MemberId, usize>,
    calendar: &WorkingCalendar,
    fingerprints: &mut HashSet<String>,
    p: &mut Problems,
) -> Vec<Hub> {
    let mut out: Vec<Hub> = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in top.optional_array("hubs", p).iter().enumerate() {
        let path = index_path("hubs", i);
        let Some(object) = Object::read(
            item,
            &path,
            &["name", "member", "address", "certificates"],
            p,
        ) else {
            continue;
        };
        let name = object
            .string("name", p)
            .filter(|name| check_name(name, &object.at("name"), p))
            .filter(|name| {
                let unique = seen.insert(*name);
                if !unique {
                    p.push(object.at("name"), "two hubs have this name");
                }
                unique
            });
        let member = listed_member(&object, "member", members, p);
        let address = object
            .string("address", p)
            .and_then(|text| exchange_address(text, &object.at("address"), p));
        let certificates = certificates(&object, calendar, fingerprints, p);
        if let (Some(name), Some(member), Some(address)) = (name, member, address) {
            out.push(Hub {
                name: name.to_owned(),
                member,
                address,
                certificates,
            });
        }
    }
    out
}

fn services(
    top: &Object<'_>,
    members: &[Member],
    member_index: &HashMap<MemberId, usize>,
    hub_index: &HashMap<String, usize>,
    p: &mut Problems,
) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in top.optional_array("services", p).iter().enumerate() {
        let path = index_path("services", i);
        let Some(object) = Object::read(item, &path, &["id", "hubs"], p) else {
            continue;
        };
        let id = object.string("id", p).and_then(|text| {
            let id = text
                .parse::<ServiceId>()
                .map_err(|error| p.push(object.at("id"), error.to_string()))
                .ok()?;
            let Some(&member) = member_index.get(&id.provider.member) else {
                p.push(object.at("id"), "its provider is not a listed member");
                return None;
            };
            if !members[member].subsystems.contains(&id.provider) {
                p.push(
                    object.at("id"),
                    "its provider is not a listed subsystem of its member",
                );
                return None;
            }
            if !seen.insert(id.clone()) {
                p.push(object.at("id"), "listed twice");
                return None;
            }
            Some(id)
        });
        let mut hubs: Vec<String> = Vec::new();
        for (j, hub) in object.optional_array("hubs", p).iter().enumerate() {
            let hub_path = index_path(&object.at("hubs"), j);
            let Some(hub) = as_string(hub, &hub_path, p) else {
                continue;
            };
            if !hub_index.contains_key(hub) {
                p.push(hub_path, "is not a listed hub");
            } else if hubs.iter().any(|h| h == hub) {
                p.push(hub_path, "listed twice");
            } else {
                hubs.push(hub.to_owned());
            }
        }
        if let Some(id) = id {
            out.push(Service { id, hubs });
        }
    }
    out
}

fn identity_providers(top: &Object<'_>, p: &mut Problems) -> Vec<IdentityProvider> {
    let mut out: Vec<IdentityProvider> = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in top
        .optional_array("identity_providers", p)
        .iter()
        .enumerate()
    {
        let path = index_path("identity_providers", i);
        let Some(object) = Object::read(item, &path, &["issuer", "jwks"], p) else {
            continue;
        };
        let issuer = object.string("issuer", p).filter(|issuer| {
            if https_url(issuer, &object.at("issuer"), p).is_none() {
                return false;
            }
            let unique = seen.insert(*issuer);
            if !unique {
                p.push(object.at("issuer"), "listed twice");
            }
            unique
        });
        let mut keys: Vec<PublicJwk> = Vec::new();
        if let Some(jwks) = object
            .required("jwks", p)
            .and_then(|jwks| Object::read(jwks, &object.at("jwks"), &["keys"], p))
        {
            let keys_path = jwks.at("keys");
            let items = jwks.array("keys", p).unwrap_or(&[]);
            if items.is_empty() && jwks.has("keys") {
                p.push(&keys_path, "list at least one key");
            }
            for (j, key) in items.iter().enumerate() {
                let key_path = index_path(&keys_path, j);
                let Some(key) = PublicJwk::parse(key, &key_path, true, p) else {
                    continue;
                };
                if keys.iter().any(|k| k.kid() == key.kid()) {
                    p.push(field_path(&key_path, "kid"), "two keys have this kid");
                } else {
                    keys.push(key);
                }
            }
        }
        if let Some(issuer) = issuer {
            out.push(IdentityProvider {
                issuer: issuer.to_owned(),
                keys,
            });
        }
    }
    out
}

fn anchor_rotation(top: &Object<'_>, p: &mut Problems) -> Option<AnchorRotation> {
    let value = top.optional("anchor_rotation")?;
    let object = Object::read(
        value,
        "anchor_rotation",
        &["next_anchor", "effective_from"],
        p,
    )?;
    let next_anchor = object
        .required("next_anchor", p)
        .and_then(|jwk| PublicJwk::parse(jwk, &object.at("next_anchor"), false, p));
    let effective_from = object.timestamp("effective_from", p);
    Some(AnchorRotation {
        next_anchor: next_anchor?.anchor(),
        effective_from: effective_from?,
    })
}
