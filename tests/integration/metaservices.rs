//! What a calling information system may discover (issue 11 items 7–8), over real mTLS:
//! its OpenAPI 3.1 document on the consumer listener, and X-Road's service metadata for REST
//! (PR-MREST: `listMethods`, `allowedMethods`, `getOpenAPI`). Deny by default holds for
//! discovery: a caller learns of no service some contract of its own does not name.

use crate::support::*;
use datagate::pki::IssuedCertificate;
use serde_json::{Value, json};

const POPULATION: &str = "VN/GOV/000.00.00.G10/population-db";
const HOUSEHOLD_SERVICE: &str = "VN/GOV/000.00.00.G10/population-db/household";
/// On the portal's provider, but only the ministry may call it.
const RESIDENCE_SERVICE: &str = "VN/GOV/000.00.00.G10/population-db/residence";
/// A provider subsystem only the ministry has a contract with.
const LAND: &str = "VN/GOV/000.00.00.G10/land-db";
const PARCEL_SERVICE: &str = "VN/GOV/000.00.00.G10/land-db/parcel";

/// A REST adapter with `GET /{id}` (query `year`) and `GET /{id}/members`.
fn adapter(name: &str) -> String {
    format!(
        "name = \"{name}\"\nkind = \"rest\"\naddress = \"http://127.0.0.1:9\"\n\n\
         [[operations]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/{{id}}\"\nquery = [\"year\"]\n\n\
         [operations.rest]\npath = \"/records/{{id}}\"\n\n\
         [[operations]]\nname = \"members\"\nmethod = \"GET\"\npath = \"/{{id}}/members\"\n\n\
         [operations.rest]\npath = \"/records/{{id}}/members\"\n"
    )
}

/// A contract in force for `consumer` on `service` allowing `operations` (YAML flow items).
fn contract(id: &str, consumer: &str, service: &str, operations: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: 1\nconsumer: {consumer}\nservice: {service}\n\
         operations: [{operations}]\npurposes: [HOUSEHOLD-REGISTRATION]\n\
         legal_basis: {id} legal basis (test)\nclassification: internal\n\
         allowed_fields: [\"\"]\nvalid_from: 2020-01-01T00:00:00+07:00\n\
         valid_until: 2099-12-31T23:59:59+07:00\n{extra}approved_by: Test approver\n"
    )
}

fn form(id: &str, consumer: &str, service: &str, pointer: &str) -> String {
    format!(
        "id: {id}\ntitle: Biểu mẫu {id} (test)\nprocedure: \"2.000575\"\n\
         legal_basis: Nghị định 01/2021/NĐ-CP (test)\npurpose: HOUSEHOLD-REGISTRATION\n\
         assurance_level: medium\nconsumers: [{consumer}]\ndeadline_ms: 3000\n\
         sources:\n  source: {{ service: {service}, path: \"/{{subject}}\" }}\n\
         fields:\n  - {{ name: value, label: Giá trị, source: source, pointer: {pointer} }}\n"
    )
}

fn dataset() -> String {
    r#"id: internal-units
title: Đơn vị hành chính (nội bộ)
title_en: Administrative units (internal)
description: Danh mục đơn vị hành chính (dữ liệu thử nghiệm)
publisher: VN/GOV/000.00.00.G10
publisher_name: Bộ Nội vụ (test)
licence: { id: cc-by-4.0, title: Creative Commons Attribution 4.0, url: "https://creativecommons.org/licenses/by/4.0/" }
update_frequency: monthly
retention_months: 60
provenance: agency_database
attribution: "Nguồn: Bộ Nội vụ (test)"
classification: open
audience: members
keywords: [hanh-chinh]
fields:
  - { name: code, type: text, title: Mã }
  - { name: population, type: integer, title: Dân số }
key: code
source: { kind: csv, path: units.csv }
"#
    .to_owned()
}

/// The usual node, plus: the household service (the portal may read a household, the
/// ministry also its members), the residence service (the ministry only), the land
/// register's parcel service (the ministry only), a form for each, and a members' dataset.
async fn node(pki: &TestPki) -> TestNode {
    let idp = Idp::new();
    let builder = NodeBuilder::standard(pki, "http://127.0.0.1:9")
        .adapter("household-rest", &adapter("household-rest"))
        .service(HOUSEHOLD_SERVICE, "household-rest")
        .adapter("residence-rest", &adapter("residence-rest"))
        .service(RESIDENCE_SERVICE, "residence-rest")
        .adapter("parcel-rest", &adapter("parcel-rest"))
        .service(PARCEL_SERVICE, "parcel-rest")
        .contract(
            "portal-household",
            &contract(
                "portal-household",
                PORTAL,
                HOUSEHOLD_SERVICE,
                "{ method: GET, path: \"/{id}\" }",
                "response_schema: { type: object, required: [household_id], properties: { household_id: { type: string } } }\n",
            ),
        )
        .contract(
            "ministry-household",
            &contract(
                "ministry-household",
                MINISTRY,
                HOUSEHOLD_SERVICE,
                "{ method: GET, path: \"/{id}\" }, { method: GET, path: \"/{id}/members\" }",
                "",
            ),
        )
        .contract(
            "ministry-residence",
            &contract(
                "ministry-residence",
                MINISTRY,
                RESIDENCE_SERVICE,
                "{ method: GET, path: \"/{id}\" }",
                "",
            ),
        )
        .contract(
            "ministry-parcel",
            &contract(
                "ministry-parcel",
                MINISTRY,
                PARCEL_SERVICE,
                "{ method: GET, path: \"/{id}\" }",
                "",
            ),
        )
        .file(
            "contracts/forms/portal-form.yaml",
            form("portal-form", PORTAL, CITIZEN_SERVICE, "/full_name"),
        )
        .file(
            "contracts/forms/ministry-form.yaml",
            form("ministry-form", MINISTRY, PARCEL_SERVICE, "/area"),
        )
        .file("contracts/datasets/units.csv", "code,population\n00001,1000\n")
        .file("contracts/datasets/internal.yaml", dataset());
    idp.trusted_by(builder).start().await
}

/// `GET {path}` on the consumer listener with `cert`, claiming `client`.
async fn get(
    node: &TestNode,
    cert: &IssuedCertificate,
    client: &str,
    path: &str,
) -> reqwest::Response {
    node.client(cert)
        .get(node.url(path))
        .header("X-Road-Client", client)
        .send()
        .await
        .expect("request")
}

async fn json_of(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The `(service_code, [(method, path)])` pairs of an X-Road service list, in its order.
fn services_of(list: &Value) -> Vec<(String, Vec<(String, String)>)> {
    list["service"]
        .as_array()
        .expect("a service array")
        .iter()
        .map(|service| {
            let endpoints = service["endpoint_list"]
                .as_array()
                .expect("endpoints")
                .iter()
                .map(|e| {
                    (
                        e["method"].as_str().expect("method").to_owned(),
                        e["path"].as_str().expect("path").to_owned(),
                    )
                })
                .collect();
            (
                service["service_code"].as_str().expect("code").to_owned(),
                endpoints,
            )
        })
        .collect()
}

fn endpoints(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

/// 000 Điều 8 k6, Điều 23 k3: the data shared with a system is published to it as APIs with
/// their usage. The portal's document names the `/r1/…` operations its contracts allow, with
/// the headers the exchange requires and the contract's response schema, its form and the
/// members' datasets; nothing of the ministry's contracts, services or form. Generated, so
/// the same configuration gives the same document.
#[tokio::test]
async fn the_callers_document_lists_its_services_and_forms_and_nothing_of_another_consumers() {
    init();
    let pki = TestPki::new();
    let node = node(&pki).await;
    let text = get(&node, &pki.portal, PORTAL, "/openapi.json")
        .await
        .text()
        .await
        .expect("body");
    let document: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");

    let lookup = &paths[&format!("/r1/{CITIZEN_SERVICE}/{{citizen_id}}")]["get"];
    let parameters = lookup["parameters"].as_array().expect("parameters");
    let parameter = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {lookup}"))
    };
    assert_eq!(parameter("citizen_id")["in"], "path");
    assert_eq!(parameter("X-Road-Client")["required"], true);
    assert_eq!(parameter("X-Road-Client")["schema"]["const"], PORTAL);
    assert_eq!(parameter("X-Purpose")["required"], true);
    assert_eq!(
        parameter("X-Purpose")["schema"]["enum"],
        json!(["HOUSEHOLD-REGISTRATION", "SOCIAL-ALLOWANCE"])
    );
    assert_eq!(
        lookup["responses"]["200"]["content"]["application/json"]["schema"]["required"],
        json!(["citizen_id", "full_name", "permanent_address"]),
        "the contract's response schema"
    );
    assert_eq!(lookup["x-datagate-contracts"][0]["id"], "portal-citizen");
    let search = &paths[&format!("/r1/{CITIZEN_SERVICE}/search")];
    assert!(search["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["citizen_id"].is_object());
    assert!(search.get("get").is_none(), "only the methods allowed");

    // The household: the one operation the portal may call, with the adapter's query.
    let household = &paths[&format!("/r1/{HOUSEHOLD_SERVICE}/{{id}}")]["get"];
    assert!(
        household["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "year" && p["in"] == "query")
    );
    assert!(!paths.contains_key(&format!("/r1/{HOUSEHOLD_SERVICE}/{{id}}/members")));

    // The metadata calls for its one provider, its form, the members' datasets.
    assert!(paths.contains_key(&format!("/r1/{POPULATION}/listMethods")));
    assert_eq!(
        paths[&format!("/r1/{POPULATION}/getOpenAPI")]["get"]["parameters"][0]["schema"]["enum"],
        json!(["citizen", "household"])
    );
    assert!(paths["/autofill/v1/portal-form"]["post"]["requestBody"].is_object());
    assert!(paths.contains_key("/opendata/v1/api/3/action/datastore_search"));

    for secret in [
        "ministry-",
        "land-db",
        "residence",
        "ministry-form",
        "land-registry",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the portal's document"
        );
    }

    // The ministry's own document has its services and form, none of the portal's.
    let ministry = get(&node, &pki.ministry, MINISTRY, "/openapi.json")
        .await
        .text()
        .await
        .expect("body");
    assert!(ministry.contains(&format!("/r1/{PARCEL_SERVICE}/{{id}}")));
    assert!(ministry.contains("/autofill/v1/ministry-form"));
    assert!(
        !ministry.contains("portal-"),
        "no contract or form of the portal"
    );
    assert!(
        !ministry.contains("/citizen/"),
        "its expired contract is not in force"
    );

    let again = get(&node, &pki.portal, PORTAL, "/openapi.json")
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(text, again, "deterministic");
}

/// Against an independent validator: the consumer document and a `getOpenAPI` answer are
/// valid OpenAPI 3.1 (`openapi-spec-validator`).
#[tokio::test]
async fn the_callers_documents_are_valid_openapi() {
    init();
    let pki = TestPki::new();
    let node = node(&pki).await;
    for (cert, client, path) in [
        (&pki.portal, PORTAL, "/openapi.json".to_owned()),
        (&pki.ministry, MINISTRY, "/openapi.json".to_owned()),
        (
            &pki.portal,
            PORTAL,
            format!("/r1/{POPULATION}/getOpenAPI?serviceCode=citizen"),
        ),
    ] {
        let document = json_of(get(&node, cert, client, &path).await).await;
        assert_eq!(document["openapi"], "3.1.0", "{path}");
        assert_valid_openapi(&document.to_string());
    }
}

/// PR-MREST §4 (listMethods), with deny by default: the provider's services some contract of
/// the caller names, in X-Road's shape, with every endpoint each offers (`{…}` as `*`);
/// the residence service, which only the ministry may call, is not listed.
#[tokio::test]
async fn list_methods_lists_the_callers_services_of_the_provider_with_every_endpoint() {
    init();
    let pki = TestPki::new();
    let node = node(&pki).await;
    let list = json_of(
        get(
            &node,
            &pki.portal,
            PORTAL,
            &format!("/r1/{POPULATION}/listMethods"),
        )
        .await,
    )
    .await;
    let first = &list["service"][0];
    assert_eq!(first["object_type"], "SERVICE");
    assert_eq!(first["xroad_instance"], "VN");
    assert_eq!(first["member_class"], "GOV");
    assert_eq!(first["member_code"], "000.00.00.G10");
    assert_eq!(first["subsystem_code"], "population-db");
    assert_eq!(first["service_type"], "OPENAPI");
    assert_eq!(
        services_of(&list),
        vec![
            (
                "citizen".to_owned(),
                endpoints(&[("GET", "/*"), ("POST", "/search")])
            ),
            (
                "household".to_owned(),
                endpoints(&[("GET", "/*"), ("GET", "/*/members")])
            ),
        ]
    );
}

/// PR-MREST §4 (allowedMethods): the same services, with only the endpoints the caller's
/// contracts allow; the ministry sees its own, and nothing of the portal's.
#[tokio::test]
async fn allowed_methods_lists_only_what_the_callers_contracts_allow() {
    init();
    let pki = TestPki::new();
    let node = node(&pki).await;
    let portal = json_of(
        get(
            &node,
            &pki.portal,
            PORTAL,
            &format!("/r1/{POPULATION}/allowedMethods"),
        )
        .await,
    )
    .await;
    assert_eq!(
        services_of(&portal),
        vec![
            (
                "citizen".to_owned(),
                endpoints(&[("GET", "/*"), ("POST", "/search")])
            ),
            ("household".to_owned(), endpoints(&[("GET", "/*")])),
        ]
    );
    let ministry = json_of(
        get(
            &node,
            &pki.ministry,
            MINISTRY,
            &format!("/r1/{POPULATION}/allowedMethods"),
        )
        .await,
    )
    .await;
    assert_eq!(
        services_of(&ministry),
        vec![
            (
                "household".to_owned(),
                endpoints(&[("GET", "/*"), ("GET", "/*/members")])
            ),
            ("residence".to_owned(), endpoints(&[("GET", "/*")])),
        ],
        "the ministry's expired citizen contract is not in force"
    );
}

/// PR-MREST §5 (getOpenAPI): an allowed service is described as the caller may call it; a
/// service of the provider only another consumer may call and a service that does not exist
/// get the same refusal, so the answer reveals nothing.
#[tokio::test]
async fn get_openapi_describes_an_allowed_service_and_refuses_others_alike() {
    init();
    let pki = TestPki::new();
    let node = node(&pki).await;
    let base = format!("/r1/{POPULATION}/getOpenAPI?serviceCode=");
    let household =
        json_of(get(&node, &pki.portal, PORTAL, &format!("{base}household")).await).await;
    let paths = household["paths"].as_object().expect("paths");
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        vec![&format!("/r1/{HOUSEHOLD_SERVICE}/{{id}}")],
        "only the household, only what the portal may call"
    );
    assert_eq!(
        paths[&format!("/r1/{HOUSEHOLD_SERVICE}/{{id}}")]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["required"],
        json!(["household_id"])
    );

    let not_allowed = expect_problem(
        get(&node, &pki.portal, PORTAL, &format!("{base}residence")).await,
        404,
        "metadata.service_unknown",
    )
    .await;
    let unknown = expect_problem(
        get(
            &node,
            &pki.portal,
            PORTAL,
            &format!("{base}no-such-service"),
        )
        .await,
        404,
        "metadata.service_unknown",
    )
    .await;
    assert_eq!(not_allowed["detail"], unknown["detail"]);
}

/// 000 Điều 8 k6 is for systems the registry knows: a certificate the registry does not
/// bind, or a subsystem the certificate is not bound to, gets the same refusal on the
/// metadata calls as on a service call.
#[tokio::test]
async fn unauthenticated_callers_are_refused_as_on_every_consumer_path() {
    init();
    let pki = TestPki::new();
    let node = node(&pki).await;
    let stranger = pki.client("stranger");
    for (cert, client) in [(&stranger, PORTAL), (&pki.portal, MINISTRY)] {
        let service_call = node
            .client(cert)
            .get(node.citizen_url(CITIZEN_ID))
            .header("X-Road-Client", client)
            .header("X-Purpose", PURPOSE)
            .send()
            .await
            .expect("request");
        let status = service_call.status().as_u16();
        let expected: Value = service_call.json().await.expect("problem");
        let code = expected["code"].as_str().expect("code");
        assert!(code.starts_with("trust."), "{expected}");
        for path in [
            "/openapi.json".to_owned(),
            format!("/r1/{POPULATION}/listMethods"),
            format!("/r1/{POPULATION}/allowedMethods"),
            format!("/r1/{POPULATION}/getOpenAPI?serviceCode=citizen"),
        ] {
            expect_problem(get(&node, cert, client, &path).await, status, code).await;
        }
    }
    let anonymous = node
        .client(&pki.portal)
        .get(node.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    expect_problem(anonymous, 400, "request.client_missing").await;
}

/// Bad input gets problem+json with a stable code, and an unknown provider the same answer
/// as a provider the caller has no contract with (decision 0010).
#[tokio::test]
async fn bad_metadata_input_gets_a_problem_with_a_stable_code() {
    init();
    let pki = TestPki::new();
    let node = node(&pki).await;
    let long = "a".repeat(65);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("/r1/{LAND}/listMethods"),
            404,
            "metadata.provider_unknown",
        ),
        (
            "/r1/VN/GOV/000.00.00.G10/no-such-db/allowedMethods".to_owned(),
            404,
            "metadata.provider_unknown",
        ),
        (
            format!("/r1/{LAND}/getOpenAPI?serviceCode=parcel"),
            404,
            "metadata.provider_unknown",
        ),
        (
            format!("/r1/{POPULATION}/getOpenAPI"),
            400,
            "metadata.service_code_invalid",
        ),
        (
            format!("/r1/{POPULATION}/getOpenAPI?serviceCode="),
            400,
            "metadata.service_code_invalid",
        ),
        (
            format!("/r1/{POPULATION}/getOpenAPI?serviceCode={long}"),
            400,
            "metadata.service_code_invalid",
        ),
        (
            format!("/r1/{POPULATION}/getOpenAPI?serviceCode=a%2Fb"),
            400,
            "metadata.service_code_invalid",
        ),
        (
            format!("/r1/{POPULATION}/getOpenAPI?serviceCode=citizen&serviceCode=household"),
            400,
            "request.query_not_allowed",
        ),
        (
            format!("/r1/{POPULATION}/getOpenAPI?serviceCode=citizen&x=1"),
            400,
            "request.query_not_allowed",
        ),
        (
            format!("/r1/{POPULATION}/listMethods?serviceId=x"),
            400,
            "request.query_not_allowed",
        ),
        (
            format!("/r1/VN/GOV/{long}/population-db/listMethods"),
            400,
            "request.path_invalid",
        ),
        (
            format!("/r1/{POPULATION}/listMethods/extra"),
            404,
            "request.route_not_found",
        ),
        (
            "/openapi.json?x=1".to_owned(),
            400,
            "request.query_not_allowed",
        ),
    ];
    for (path, status, code) in cases {
        let response = get(&node, &pki.portal, PORTAL, &path).await;
        let actual = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert!(
            actual == status && text.contains(&format!("\"code\":\"{code}\"")),
            "{path}: expected {status} {code}, got {actual} {text}"
        );
    }
    // Problem bodies in full, with X-Road-Id and X-Road-Error, for one of each kind.
    expect_problem(
        get(
            &node,
            &pki.portal,
            PORTAL,
            &format!("/r1/{LAND}/allowedMethods"),
        )
        .await,
        404,
        "metadata.provider_unknown",
    )
    .await;
    let post = node
        .client(&pki.portal)
        .post(node.url(&format!("/r1/{POPULATION}/listMethods")))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("request");
    assert_eq!(
        post.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET")
    );
    expect_problem(post, 405, "metadata.method_not_allowed").await;
}

/// PR-MREST: the metadata calls' names are X-Road's, so `check` refuses a service named like
/// one (it could never be called).
#[test]
fn check_refuses_a_service_named_like_a_metadata_call() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .adapter("household-rest", &adapter("household-rest"))
        .service(&format!("{POPULATION}/listMethods"), "household-rest")
        .write();
    let output = written.check();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("metadata calls"), "{stderr}");
}
