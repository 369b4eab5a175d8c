//! `datagate check --config FILE`: every problem of every file at once, exit 64.

use crate::support::*;
use std::path::Path;
use std::process::{Command, Output};

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_datagate"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("DATAGATE_CONFIG")
        .output()
        .expect("run datagate check")
}

/// 003 Điều 44 khoản 3, 004 Điều 55 khoản 1: a secret contract never loads; design §10 invariant 5: every error is named.
#[test]
fn check_names_every_broken_contract_file_and_path() {
    init();
    let pki = TestPki::new();
    let valid = portal_citizen_contract();
    let broken = [
        (
            "bad-consumer",
            valid
                .replace("id: portal-citizen", "id: broken-consumer")
                .replace(&format!("consumer: {PORTAL}"), "consumer: nobody-at-all"),
            "consumer",
        ),
        (
            "secret-data",
            valid
                .replace("id: portal-citizen", "id: broken-secret")
                .replace("classification: sensitive", "classification: secret"),
            "classification",
        ),
        (
            "bad-pointer",
            valid
                .replace("id: portal-citizen", "id: broken-pointer")
                .replace(
                    "allowed_fields: [/citizen_id,",
                    "allowed_fields: [citizen_id,",
                ),
            "allowed_fields[0]",
        ),
        (
            "missing-schema",
            valid
                .replace("id: portal-citizen", "id: broken-schema")
                .replace(
                    "response_schema: schemas/citizen.json",
                    "response_schema: schemas/nowhere.json",
                ),
            "response_schema",
        ),
        ("not-yaml", "id: [unclosed\nversion: {\n".to_owned(), ""),
    ];
    let mut builder = NodeBuilder::standard(&pki, "http://127.0.0.1:9");
    for (name, yaml, _) in &broken {
        assert_ne!(yaml, &valid, "{name} must differ from the valid contract");
        builder = builder.contract(name, yaml);
    }
    let written = builder.write();

    let output = check(&written.config_file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    for (name, _, path) in &broken {
        let file = written.path(&format!("contracts/{name}.yaml"));
        let needle = if path.is_empty() {
            format!("{}: ", file.display())
        } else {
            format!("{}: {path}: ", file.display())
        };
        assert!(
            stderr.contains(&needle),
            "stderr does not name {needle:?}:\n{stderr}"
        );
    }
    // The valid contracts are not blamed.
    for valid_name in ["portal-citizen", "portal-search", "ministry-citizen"] {
        let file = written.path(&format!("contracts/{valid_name}.yaml"));
        assert!(
            !stderr.contains(&file.display().to_string()),
            "{valid_name} blamed:\n{stderr}"
        );
    }
}

#[test]
fn check_accepts_a_valid_test_node_configuration() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9").write();

    let output = check(&written.config_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout
            .contains("configuration valid: 3 contracts, 1 adapters, 1 services, 2 registrations"),
        "{stdout}"
    );
}

/// Issue 9, fix first (003 Điều 33: a citizen's records must be findable across restarts):
/// the journal key is configured, never made up at start. `check` refuses a
/// configuration without `hmac_key_file`, with a key file that is missing, or with one
/// too short to be a key.
#[test]
fn check_refuses_a_missing_or_short_journal_key() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9").write();
    let key = written.path("journal.key");

    std::fs::write(&key, [1u8; 16]).expect("short key");
    let output = check(&written.config_file);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("journal.hmac_key_file"),
        "{output:?}"
    );

    std::fs::remove_file(&key).expect("remove key");
    let output = check(&written.config_file);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("journal.hmac_key_file"));

    let text = std::fs::read_to_string(&written.config_file).expect("config");
    std::fs::write(
        &written.config_file,
        text.replace("hmac_key_file = \"journal.key\"\n", ""),
    )
    .expect("config");
    let output = check(&written.config_file);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("hmac_key_file"),
        "{output:?}"
    );
}

/// The configuration `datagate demo` generates: the repository's own `adapters/`
/// and `contracts/`, a dev PKI and a registry of the portal and the ministry.
#[test]
fn check_accepts_the_demo_configuration_with_the_repository_contracts_and_adapters() {
    init();
    let state = tempfile::tempdir().expect("temp dir");
    let pki = datagate::pki::write_dev_pki(&state.path().join("certs")).expect("dev PKI");
    let mut registry = String::new();
    for client in &pki.clients {
        let client_id = match client.name.as_str() {
            "portal" => PORTAL,
            "ministry" => MINISTRY,
            other => panic!("unexpected dev client {other}"),
        };
        let (member, subsystem) = client_id.rsplit_once('/').expect("client id");
        registry.push_str(&format!(
            "[[information_systems]]\nmember = \"{member}\"\nname = \"{}\"\n\
             subsystems = [\"{subsystem}\"]\nfingerprint_sha256 = \"{}\"\n\n",
            client.name, client.fingerprint_sha256
        ));
    }
    std::fs::write(state.path().join("registry.toml"), registry).expect("registry");
    let toml_path = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let config = format!(
        r#"[node]
member = "{NODE_MEMBER}"
name = "demo-provider-gateway"

[listeners]
consumer = "127.0.0.1:0"
ops = "127.0.0.1:0"

[tls]
certificate = {cert}
key = {key}
trusted_cas = [{ca}]

[registry]
file = "registry.toml"

[calendar]
holidays = ["2026-01-01", "2026-02-16", "2026-02-17", "2026-04-30", "2026-05-01", "2026-09-01", "2026-09-02"]

[contracts]
dir = {contracts}

[adapters]
dir = {adapters}

[journal]
path = "journal.sqlite"
hmac_key_file = "journal.key"

[[services]]
id = "{CITIZEN_SERVICE}"
adapter = "population-db"

[[services]]
id = "{enterprise}"
adapter = "enterprise-db"

[[services]]
id = "{insurance}"
adapter = "insurance-db"

[[identity_providers]]
issuer = "{IDP_ISSUER}"
jwks_file = "idp-jwks.json"
"#,
        cert = toml_path(&pki.gateway_cert),
        key = toml_path(&pki.gateway_key),
        ca = toml_path(&pki.ca_cert),
        contracts = toml_path(&repo_root().join("contracts")),
        adapters = toml_path(&repo_root().join("adapters")),
        enterprise = datagate::demo::ENTERPRISE_SERVICE,
        insurance = datagate::demo::INSURANCE_SERVICE,
    );
    std::fs::write(state.path().join("idp-jwks.json"), Idp::new().jwks).expect("jwks");
    let file = state.path().join("datagate.toml");
    std::fs::write(&file, config).expect("config");
    std::fs::write(state.path().join("journal.key"), [7u8; 32]).expect("journal key");

    let output = check(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(
            "configuration valid: 5 contracts, 3 adapters, 3 services, 2 registrations, 1 forms"
        ),
        "{stdout}"
    );
}

/// Issue 7, finding 12: what would make `serve` fail, or silently weaken a contract,
/// fails `check` first: an unset credentials variable, a contract operation the
/// adapter does not offer (or spells with other parameter names, which would drop
/// the subject digest), a bulkhead larger than the node can count.
#[test]
fn check_fails_where_serve_would_fail_or_a_contract_would_be_weakened() {
    init();
    let pki = TestPki::new();
    let unset = "DATAGATE_TEST_CREDENTIALS_THAT_ARE_NEVER_SET";
    assert!(std::env::var_os(unset).is_none());
    let adapter = citizen_rest_adapter(
        "population-rest",
        "http://127.0.0.1:9",
        &format!("credentials = \"env:{unset}\"\nmax_in_flight = 5000000"),
        None,
    );
    let renamed = portal_citizen_contract()
        .replace("id: portal-citizen", "id: renamed-param")
        .replace("path: \"/{citizen_id}\"", "path: \"/{id}\"")
        .replace("subject: path:citizen_id", "subject: path:id");
    let unknown_operation = portal_citizen_contract()
        .replace("id: portal-citizen", "id: unknown-operation")
        .replace(
            "method: GET, path: \"/{citizen_id}\"",
            "method: DELETE, path: \"/{citizen_id}\"",
        );
    // An adapter file that `serve` could not build.
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .adapter("population-rest", &adapter)
        .write();
    let output = check(&written.config_file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    let adapter_file = written.path("adapters/population-rest.toml");
    for needle in [
        format!("{}: credentials: ", adapter_file.display()),
        format!("{}: max_in_flight: ", adapter_file.display()),
    ] {
        assert!(stderr.contains(&needle), "no {needle:?} in:\n{stderr}");
    }

    // Contracts whose operations the (valid) adapter does not offer as spelled.
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .contract("renamed-param", &renamed)
        .contract("unknown-operation", &unknown_operation)
        .write();
    let output = check(&written.config_file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    for name in ["renamed-param", "unknown-operation"] {
        let needle = format!(
            "{}: operations[0]: ",
            written.path(&format!("contracts/{name}.yaml")).display()
        );
        assert!(stderr.contains(&needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("portal-citizen.yaml"),
        "the valid contract is blamed:\n{stderr}"
    );
}

/// The limits are checked as a whole: a share above the node's cap is refused.
#[test]
fn check_refuses_a_consumer_share_above_the_node_cap() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .limit("max_concurrent_requests = 10")
        .limit("max_in_flight_per_consumer = 11")
        .write();
    let errors = datagate::config::load(&written.config_file).expect_err("share above cap");
    assert!(
        errors
            .iter()
            .any(|e| e.path == "limits.max_in_flight_per_consumer"),
        "{errors:#?}"
    );
}

/// Issue 9 (no control fails open): every `[journal]` setting is enforced or refused. A
/// setting of the other backend, a PostgreSQL journal without its chain or URL, a bad
/// schema name, archiving without a directory, retention shorter than the archive age,
/// and a TSA without the roots its answers are verified with are each refused, naming
/// the path.
#[test]
fn check_refuses_journal_settings_that_would_be_ignored_or_unsafe() {
    init();
    let pki = TestPki::new();
    for (section, path) in [
        (
            "path = \"journal.sqlite\"\nurl = \"postgres://x@127.0.0.1/test\"",
            "journal.url",
        ),
        ("path = \"journal.sqlite\"\nchain = \"a\"", "journal.chain"),
        (
            "backend = \"postgres\"\nurl = \"postgres://x@127.0.0.1/test\"",
            "journal.chain",
        ),
        ("backend = \"postgres\"\nchain = \"a\"", "journal.url"),
        (
            "backend = \"postgres\"\nurl = \"postgres://x@127.0.0.1/test\"\nchain = \"a\"\nschema = \"Bad-Name\"",
            "journal.schema",
        ),
        (
            "backend = \"postgres\"\nurl = \"postgres://x@127.0.0.1/test\"\nchain = \"a\"\nmin_free_mb = 1",
            "journal.min_free_mb",
        ),
        (
            "path = \"journal.sqlite\"\narchive_after_days = 1",
            "journal.archive_after_days",
        ),
        (
            "path = \"journal.sqlite\"\narchive_dir = \"a\"\narchive_after_days = 10\nretention_days = 5",
            "journal.retention_days",
        ),
        (
            "path = \"journal.sqlite\"\nretention_days = -1",
            "journal.retention_days",
        ),
        (
            "path = \"journal.sqlite\"\ntsa_url = \"http://127.0.0.1:9/tsa\"",
            "journal.tsa_ca_file",
        ),
        (
            "path = \"journal.sqlite\"\ntsa_url = \"ftp://x\"\ntsa_ca_file = \"certs/ca.pem\"",
            "journal.tsa_url",
        ),
        ("backend = \"sqlite\"", "journal.path"),
        (
            "path = \"journal.sqlite\"\ncommit_window_us = 20000",
            "journal.commit_window_us",
        ),
        (
            "path = \"journal.sqlite\"\nmaintenance_interval_secs = 0",
            "journal.maintenance_interval_secs",
        ),
        (
            "path = \"journal.sqlite\"\narchive_dir = \"a\"\narchive_after_days = 0",
            "journal.archive_after_days",
        ),
    ] {
        let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
            .journal(section)
            .write();
        let output = check(&written.config_file);
        assert!(!output.status.success(), "{section}: accepted");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(path),
            "{section}: {output:?}"
        );
    }
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .journal(
            "path = \"journal.sqlite\"\narchive_dir = \"archive\"\narchive_after_days = 30\n\
             retention_days = 1825\ntsa_url = \"http://127.0.0.1:9/tsa\"\ntsa_ca_file = \"certs/ca.pem\"",
        )
        .write();
    let output = check(&written.config_file);
    assert!(output.status.success(), "{output:?}");
}

/// Issue 10 §2; 002 Điều 11 k2c (data only as a contract allows it): a form is refused by
/// `check` when a field reads what the contract behind its source does not allow, when a
/// source has no contract behind it, when the form asks for less than the contract's
/// assurance level, and when it is malformed; each problem named by file and path.
#[test]
fn check_refuses_forms_their_contracts_do_not_cover() {
    init();
    let pki = TestPki::new();
    let idp = Idp::new();
    let form = |id: &str, source: &str, field: &str, level: &str| {
        format!(
            "id: {id}\ntitle: T\nprocedure: \"1.000001\"\nlegal_basis: L\npurpose: {PURPOSE}\n\
             assurance_level: {level}\nconsumers: [{PORTAL}]\n\
             sources:\n  citizen: {{ service: {source}, path: \"/{{subject}}\" }}\n\
             fields:\n  - {{ name: f, label: F, source: citizen, pointer: {field} }}\n"
        )
    };
    let medium_contract = portal_citizen_contract().replace(
        "subject: path:citizen_id",
        "subject: path:citizen_id\nassurance_level: high",
    );
    let cases = [
        // The portal's contract allows /permanent_address/province, not the street.
        (
            "street",
            form(
                "street",
                CITIZEN_SERVICE,
                "/permanent_address/street",
                "high",
            ),
            "fields[0]",
        ),
        // Nobody serves this service here and the node has no federation.
        (
            "nowhere",
            form("nowhere", "VN/GOV/000.00.00.G99/db/thing", "/a", "high"),
            "sources.citizen",
        ),
        // The contract asks for `high`: a `medium` form could never be filled.
        (
            "low",
            form("low", CITIZEN_SERVICE, "/full_name", "medium"),
            "assurance_level",
        ),
        (
            "broken",
            form("broken", CITIZEN_SERVICE, "full_name", "high"),
            "fields[0]",
        ),
    ];
    let mut builder = idp.trusted_by(
        NodeBuilder::standard(&pki, "http://127.0.0.1:9")
            .contract("portal-citizen", &medium_contract),
    );
    for (name, text, _) in &cases {
        builder = builder.file(&format!("contracts/forms/{name}.yaml"), text.clone());
    }
    builder = builder.file(
        "contracts/forms/good.yaml",
        form(
            "good",
            CITIZEN_SERVICE,
            "/permanent_address/province",
            "high",
        ),
    );
    let written = builder.write();
    let output = check(&written.config_file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    for (name, _, path) in &cases {
        let needle = format!(
            "{}: {path}: ",
            written
                .path(&format!("contracts/forms/{name}.yaml"))
                .display()
        );
        assert!(stderr.contains(&needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("good.yaml"), "{stderr}");

    // The good form alone passes, and is counted.
    for (name, _, _) in &cases {
        std::fs::remove_file(written.path(&format!("contracts/forms/{name}.yaml"))).expect("rm");
    }
    let output = check(&written.config_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(", 1 forms"), "{stdout}");
}
