//! `[admin]`: the journal admin API's listener and who may call it. Each client is a
//! certificate (by its SHA-256 fingerprint, as the registry names certificates) with a
//! role; every problem is reported at its path (`admin.clients[1].role`).
//!
//! Owns: the roles and the validated client list. Does not own: serving the API
//! (`gateway::admin`) or the TLS trust of the listener (the `[tls]` CAs).

use super::ConfigError;
use super::raw::RawAdmin;
use crate::base::hex::normalise_fingerprint;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

/// What an admin client may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    /// Inspection (thanh tra, kiểm toán): every route, the data subject's accesses included.
    Auditor,
    /// Running the node: exchanges and summaries, never one citizen's accesses.
    Operator,
}

impl AdminRole {
    /// The name written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Auditor => "auditor",
            AdminRole::Operator => "operator",
        }
    }
}

/// One certificate allowed on the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClient {
    /// Lowercase hex SHA-256 of the certificate's DER.
    pub fingerprint: String,
    /// What it may ask.
    pub role: AdminRole,
    /// Who holds it (journaled as `admin:{name}`), if given.
    pub name: Option<String>,
}

impl AdminClient {
    /// How the journal of admin queries names this caller: `admin:{name}`, or the
    /// certificate's fingerprint when no name is configured.
    pub fn journal_name(&self) -> String {
        match &self.name {
            Some(name) => format!("admin:{name}"),
            None => self.fingerprint.clone(),
        }
    }
}

/// The admin clients by fingerprint (empty: every caller is refused).
#[derive(Debug, Clone, Default)]
pub struct AdminClients(HashMap<String, AdminClient>);

impl AdminClients {
    /// The client whose certificate has `fingerprint` (lowercase hex), if listed.
    pub fn get(&self, fingerprint: &str) -> Option<&AdminClient> {
        self.0.get(fingerprint)
    }

    /// How many are listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `[admin]` as validated.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// The admin listener's address (taken at start; a reload does not move it).
    pub listen: SocketAddr,
    /// Who may call it (applied again on every reload, so a removed certificate loses
    /// access at the next SIGHUP).
    pub clients: AdminClients,
}

/// The longest `name`, in characters.
const MAX_NAME_CHARS: usize = 128;

/// Whether two listener addresses would collide: the same port on the same address, or
/// on an unspecified one (`0.0.0.0`, `[::]`). Port 0 (the system picks) never collides.
fn collides(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Validates `[admin]` against the node's other listeners (`(name, address)`); every
/// problem is pushed to `errors`.
pub fn build(
    raw: &RawAdmin,
    other_listeners: &[(&str, SocketAddr)],
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<AdminSettings> {
    let before = errors.len();
    let mut fail = |path: &str, message: String| {
        errors.push(ConfigError::new(file, &format!("admin.{path}"), message));
    };
    for (name, address) in other_listeners {
        if collides(raw.listen, *address) {
            fail(
                "listen",
                format!("is the address of the {name} listener; the admin API needs its own"),
            );
        }
    }
    // Position of each fingerprint, to name the first listing of a duplicate.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut clients = HashMap::new();
    for (index, entry) in raw.clients.iter().enumerate() {
        let at = |field: &str| format!("clients[{index}].{field}");
        let fingerprint = normalise_fingerprint(&entry.fingerprint);
        if fingerprint.is_none() {
            fail(
                &at("fingerprint"),
                "must be the certificate's SHA-256: 64 hex digits".into(),
            );
        }
        let role = match entry.role.as_str() {
            "auditor" => Some(AdminRole::Auditor),
            "operator" => Some(AdminRole::Operator),
            _ => {
                fail(&at("role"), "must be \"auditor\" or \"operator\"".into());
                None
            }
        };
        let name = entry.name.as_ref().map(|name| name.trim().to_owned());
        if let Some(name) = &name
            && (name.is_empty()
                || name.chars().count() > MAX_NAME_CHARS
                || name.chars().any(char::is_control))
        {
            fail(
                &at("name"),
                format!("must be 1-{MAX_NAME_CHARS} characters without control characters"),
            );
        }
        let Some(fingerprint) = fingerprint else {
            continue;
        };
        if let Some(first) = seen.insert(fingerprint.clone(), index) {
            fail(
                &at("fingerprint"),
                format!("the same certificate is already listed as clients[{first}]"),
            );
            continue;
        }
        if let Some(role) = role {
            clients.insert(
                fingerprint.clone(),
                AdminClient {
                    fingerprint,
                    role,
                    name,
                },
            );
        }
    }
    (errors.len() == before).then_some(AdminSettings {
        listen: raw.listen,
        clients: AdminClients(clients),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawAdminClient;

    fn client(fingerprint: &str, role: &str) -> RawAdminClient {
        RawAdminClient {
            fingerprint: fingerprint.to_owned(),
            role: role.to_owned(),
            name: Some("Thanh tra Bộ".to_owned()),
        }
    }

    fn paths(raw: &RawAdmin, others: &[(&str, SocketAddr)]) -> Vec<String> {
        let mut errors = Vec::new();
        let built = build(raw, others, Path::new("datagate.toml"), &mut errors);
        assert_eq!(built.is_some(), errors.is_empty());
        errors.into_iter().map(|error| error.path).collect()
    }

    /// 003 Điều 3 khoản 1, Điều 48: admin rights are bound to certificates, each listed
    /// once with a known role; anything else is named at its path and refused.
    #[test]
    fn refuses_bad_fingerprints_unknown_roles_duplicates_and_taken_addresses() {
        let good = "AB:".repeat(31) + "AB";
        let raw = RawAdmin {
            listen: "127.0.0.1:9443".parse().expect("address"),
            clients: vec![
                client(&good, "auditor"),
                client("abc", "operator"),
                client(&"cd".repeat(32), "root"),
                client(&"ab".repeat(32), "operator"),
            ],
        };
        let consumer: SocketAddr = "0.0.0.0:9443".parse().expect("address");
        assert_eq!(
            paths(&raw, &[("consumer", consumer)]),
            [
                "admin.listen",
                "admin.clients[1].fingerprint",
                "admin.clients[2].role",
                "admin.clients[3].fingerprint",
            ]
        );
    }

    #[test]
    fn accepts_listed_certificates_and_names_them_for_the_journal() {
        let mut unnamed = client(&"01".repeat(32), "operator");
        unnamed.name = None;
        let raw = RawAdmin {
            listen: "127.0.0.1:0".parse().expect("address"),
            clients: vec![client(&"AB".repeat(32), "auditor"), unnamed],
        };
        let mut errors = Vec::new();
        let others = [("ops", "127.0.0.1:0".parse().expect("address"))];
        let settings =
            build(&raw, &others, Path::new("datagate.toml"), &mut errors).expect("valid");
        let auditor = settings.clients.get(&"ab".repeat(32)).expect("listed");
        assert_eq!(auditor.role, AdminRole::Auditor);
        assert_eq!(auditor.journal_name(), "admin:Thanh tra Bộ");
        let operator = settings.clients.get(&"01".repeat(32)).expect("listed");
        assert_eq!(operator.journal_name(), "01".repeat(32));
        assert_eq!(settings.clients.len(), 2);
    }
}
