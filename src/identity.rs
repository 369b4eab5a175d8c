//! X-Road identifiers as types: members, subsystems (client ids) and services.
//!
//! Parsed once at the edge (a header, a path, a config file) and passed down as
//! values, so no layer re-parses strings. The textual form is the X-Road REST
//! one: `VN/GOV/000.00.00.H29/dvc-portal` for a client, plus `/service-code`
//! for a service.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why an identifier did not parse. Names the part, never echoes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Wrong number of `/`-separated parts.
    #[error("expected {expected} '/'-separated parts")]
    Parts {
        /// How many parts the identifier kind has.
        expected: usize,
    },
    /// A part has characters outside its alphabet or a bad length.
    #[error("invalid {0}")]
    Part(&'static str),
}

/// Member class: government, commercial or other organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberClass {
    /// State agencies.
    Gov,
    /// Enterprises.
    Com,
    /// Other organisations.
    Org,
}

impl MemberClass {
    fn parse(s: &str) -> Result<Self, IdError> {
        match s {
            "GOV" => Ok(MemberClass::Gov),
            "COM" => Ok(MemberClass::Com),
            "ORG" => Ok(MemberClass::Org),
            _ => Err(IdError::Part("member class (GOV, COM or ORG)")),
        }
    }

    /// The class as written in identifiers.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberClass::Gov => "GOV",
            MemberClass::Com => "COM",
            MemberClass::Org => "ORG",
        }
    }
}

/// A part is 1–64 characters of its alphabet and starts with a letter or digit,
/// so `.`, `..` and other dot-led names can never be a part.
fn check_part(part: &str, what: &'static str, extra: &[u8]) -> Result<(), IdError> {
    let bytes = part.as_bytes();
    let ok = bytes.len() <= 64
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(b));
    if ok { Ok(()) } else { Err(IdError::Part(what)) }
}

/// `text` split at `/` into exactly `N` parts, without collecting them (issue 12: ids are
/// parsed on every request).
fn split_parts<const N: usize>(text: &str) -> Result<[&str; N], IdError> {
    let mut parts = crate::base::path::segments(text);
    let mut out = [""; N];
    for slot in &mut out {
        *slot = parts.next().ok_or(IdError::Parts { expected: N })?;
    }
    match parts.next() {
        None => Ok(out),
        Some(_) => Err(IdError::Parts { expected: N }),
    }
}

/// A member: instance, class and electronic ID code (mã định danh điện tử).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    /// Federation instance, e.g. `VN`.
    pub instance: String,
    /// Member class.
    pub class: MemberClass,
    /// Electronic ID code, e.g. `000.00.00.H29`.
    pub code: String,
}

impl MemberId {
    fn from_parts(instance: &str, class: &str, code: &str) -> Result<Self, IdError> {
        check_part(instance, "instance", b"-")?;
        check_part(code, "member code", b".-")?;
        Ok(MemberId {
            instance: instance.to_owned(),
            class: MemberClass::parse(class)?,
            code: code.to_owned(),
        })
    }
}

impl std::str::FromStr for MemberId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let [instance, class, code] = split_parts(s)?;
        MemberId::from_parts(instance, class, code)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.instance, self.class.as_str(), self.code)
    }
}

/// A subsystem of a member: the identity of a calling or providing information system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    /// The owning member.
    pub member: MemberId,
    /// Subsystem code, e.g. `dvc-portal`.
    pub subsystem: String,
}

impl ClientId {
    /// Builds a client id from its four path parts.
    pub fn from_parts(
        instance: &str,
        class: &str,
        member: &str,
        subsystem: &str,
    ) -> Result<Self, IdError> {
        check_part(subsystem, "subsystem code", b"-_.")?;
        Ok(ClientId {
            member: MemberId::from_parts(instance, class, member)?,
            subsystem: subsystem.to_owned(),
        })
    }
}

impl std::str::FromStr for ClientId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let [i, c, m, s] = split_parts(s)?;
        ClientId::from_parts(i, c, m, s)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.member, self.subsystem)
    }
}

/// A service: the providing subsystem plus a service code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    /// The providing subsystem.
    pub provider: ClientId,
    /// Service code, e.g. `citizen`.
    pub code: String,
}

impl ServiceId {
    /// Builds a service id from its five path parts.
    pub fn from_parts(parts: [&str; 5]) -> Result<Self, IdError> {
        let [i, c, m, s, code] = parts;
        check_part(code, "service code", b"-_.")?;
        Ok(ServiceId {
            provider: ClientId::from_parts(i, c, m, s)?,
            code: code.to_owned(),
        })
    }
}

impl std::str::FromStr for ServiceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        ServiceId::from_parts(split_parts(s)?)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.code)
    }
}

macro_rules! serde_via_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_str!(MemberId, ClientId, ServiceId);

#[cfg(test)]
mod tests {
    use super::*;

    /// 004 Điều 57 khoản 5: members are addressed by their electronic ID codes.
    #[test]
    fn parses_and_prints_identifiers() {
        let client: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("valid");
        assert_eq!(client.member.code, "000.00.00.H29");
        assert_eq!(client.to_string(), "VN/GOV/000.00.00.H29/dvc-portal");
        let service: ServiceId = "VN/GOV/000.00.00.G10/population-db/citizen"
            .parse()
            .expect("valid");
        assert_eq!(service.code, "citizen");
        assert_eq!(service.provider.subsystem, "population-db");
    }

    /// 004 Điều 57 khoản 5: a malformed electronic ID code is refused without being echoed.
    #[test]
    fn rejects_bad_identifiers_without_echoing_them() {
        for bad in [
            "VN/GOV/000.00.00.H29",
            "VN/XYZ/000.00.00.H29/portal",
            "VN/GOV/000 00/portal",
            "VN/GOV//portal",
            "VN/GOV/a/b/c",
            "VN/GOV/000.00.00.H29/<script>",
            "VN/GOV/000.00.00.H29/..",
            "VN/GOV/000.00.00.H29/.",
            "VN/GOV/../portal",
        ] {
            let err = bad.parse::<ClientId>().expect_err(bad);
            assert!(!err.to_string().contains(bad));
        }
    }
}
