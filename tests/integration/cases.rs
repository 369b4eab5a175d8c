//! The data-driven contract cases of `contracts/cases/*.yaml`, run against the
//! repository's own contracts and adapters in front of the synthetic registers.

use crate::support::*;
use datagate::demo::registers::{EnterpriseRegister, InsuranceRegister, PopulationRegister};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    certificate: String,
    client: String,
    request: CaseRequest,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    method: String,
    path: String,
    #[serde(default)]
    purpose: Option<String>,
    /// The citizen who signed in: an assertion from the test identity provider, consenting
    /// to every service of the repository's contracts.
    #[serde(default)]
    assertion: Option<CaseAssertion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseAssertion {
    subject: String,
    level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: u16,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// Every leaf of a JSON document as a JSON pointer.
fn leaves(value: &Value, at: String, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let token = key.replace('~', "~0").replace('/', "~1");
                leaves(child, format!("{at}/{token}"), out);
            }
        }
        _ => {
            out.insert(at);
        }
    }
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// 004 Điều 3, 6 khoản 2, 13 khoản 4, 55 khoản 3, 69 khoản 3: the repository's contracts, case by case (contracts/cases).
#[tokio::test]
async fn repository_contract_cases_hold() {
    init();
    let pki = TestPki::new();
    let population = MockUpstream::router(Arc::new(PopulationRegister::synthetic()).router()).await;
    let enterprises =
        MockUpstream::router(Arc::new(EnterpriseRegister::synthetic()).router()).await;
    let insurance = MockUpstream::router(Arc::new(InsuranceRegister::synthetic()).router()).await;
    let unregistered = pki.client("unregistered");
    let idp = Idp::new();

    // The repository's adapters, pointed at the registers, and every contract and schema.
    let mut builder = NodeBuilder::new(&pki)
        .register(&pki.portal, PORTAL)
        .register(&pki.ministry, MINISTRY)
        .adapter(
            "population-db",
            &read("adapters/population-db.toml")
                .replace("http://127.0.0.1:18081", &population.url()),
        )
        .adapter(
            "enterprise-db",
            &read("adapters/enterprise-db.toml")
                .replace("http://127.0.0.1:18082", &enterprises.url()),
        )
        .adapter(
            "insurance-db",
            &read("adapters/insurance-db.toml").replace("http://127.0.0.1:18083", &insurance.url()),
        )
        .service(CITIZEN_SERVICE, "population-db")
        .service(datagate::demo::ENTERPRISE_SERVICE, "enterprise-db")
        .service(datagate::demo::INSURANCE_SERVICE, "insurance-db");
    builder = idp.trusted_by(builder);
    let listing = |dir: &str, extension: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(repo_root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(extension))
            .collect();
        names.sort();
        names
    };
    for schema in listing("contracts/schemas", ".json") {
        builder = builder.schema(&schema, &read(&format!("contracts/schemas/{schema}")));
    }
    let contracts = listing("contracts", ".yaml");
    assert!(contracts.len() >= 3, "{contracts:?}");
    for contract in &contracts {
        let name = contract.trim_end_matches(".yaml");
        builder = builder.contract(name, &read(&format!("contracts/{contract}")));
    }
    let node = builder.start().await;

    let mut ran = 0;
    for file in listing("contracts/cases", ".yaml") {
        let cases: Vec<Case> = yaml_serde::from_str(&read(&format!("contracts/cases/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for case in cases {
            let certificate = match case.certificate.as_str() {
                "portal" => &pki.portal,
                "ministry" => &pki.ministry,
                "unregistered" => &unregistered,
                other => panic!("{}: unknown certificate {other}", case.name),
            };
            let method = reqwest::Method::from_bytes(case.request.method.as_bytes())
                .unwrap_or_else(|_| panic!("{}: bad method", case.name));
            let mut request = node
                .client(certificate)
                .request(method, node.url(&case.request.path))
                .header("X-Road-Client", &case.client);
            if let Some(purpose) = &case.request.purpose {
                request = request.header("X-Purpose", purpose);
            }
            if let Some(assertion) = &case.request.assertion {
                let token = idp.assertion(&assertion.subject, &assertion.level, |claims| {
                    claims["consent"]["services"] =
                        serde_json::json!(datagate::demo::identity::DEMO_SERVICES);
                });
                request = request.header("X-Citizen-Assertion", token);
            }
            let response = request.send().await.expect("exchange");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON answer");
            assert_eq!(status, case.expect.status, "{}: {body}", case.name);
            if let Some(code) = &case.expect.code {
                assert_eq!(body["code"].as_str(), Some(code.as_str()), "{}", case.name);
            }
            if let Some(fields) = &case.expect.fields {
                let mut got = BTreeSet::new();
                leaves(&body, String::new(), &mut got);
                let want: BTreeSet<String> = fields.iter().cloned().collect();
                assert_eq!(got, want, "{}: answer fields", case.name);
            }
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} cases ran");
}
