//! The demo's **provincial portal**: a small server-rendered page (no JavaScript, no asset
//! from the internet) that plays the portal's part of a once-only form. For a synthetic
//! citizen it asks its gateway which fields and sources the form uses (the preview), has
//! the dev identity provider issue the citizen's assertion with consent to exactly those
//! sources, fills the form over mTLS with the portal's certificate, and shows every field
//! with its provenance; a field left to the citizen is an empty input with the reason. A
//! sign-in below the form's level shows the step-up answer. Nothing here is for production.

use super::identity::{AssertionRequest, DevIdentityProvider};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// Where the portal page listens (plain HTTP, loopback).
pub const ADDR: &str = "127.0.0.1:18080";

/// The largest answer the portal reads from its gateway.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The portal's state: its mTLS client, its gateway, the dev identity provider.
#[derive(Debug, Clone)]
pub struct Portal {
    client: reqwest::Client,
    gateway: String,
    idp: Arc<DevIdentityProvider>,
    citizens: Vec<String>,
    forms: Vec<(String, String)>,
}

impl Portal {
    /// A portal calling `gateway` (`https://…`) as `identity_pem` (certificate and key),
    /// trusting `ca_pem`, offering `forms` (id, title) for `citizens`.
    pub fn new(
        gateway: String,
        identity_pem: &[u8],
        ca_pem: &[u8],
        idp: Arc<DevIdentityProvider>,
        citizens: Vec<String>,
        forms: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem)?])
            .identity(reqwest::Identity::from_pem(identity_pem)?)
            .timeout(std::time::Duration::from_secs(10))
            .no_proxy()
            .build()?;
        Ok(Portal {
            client,
            gateway,
            idp,
            citizens,
            forms,
        })
    }

    /// The portal's pages.
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/", axum::routing::get(index))
            .route("/forms/{form}", axum::routing::get(form_page))
            .with_state(self)
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
        let mut response = request
            .header("X-Road-Client", super::PORTAL_CLIENT)
            .send()
            .await
            .map_err(|e| format!("the gateway could not be reached: {e}"))?;
        let status = response.status().as_u16();
        let body =
            crate::gateway::federation::read_limited(&mut response, MAX_ANSWER_BYTES).await?;
        let value =
            serde_json::from_slice(&body).map_err(|_| "the gateway's answer is not JSON")?;
        Ok((status, value))
    }
}

#[derive(Template)]
#[template(path = "demo/portal-index.html")]
struct IndexPage<'a> {
    citizens: &'a [String],
    forms: &'a [(String, String)],
}

/// One field as the page shows it.
struct FieldView {
    name: String,
    label: String,
    value: String,
    filled: bool,
    reason: String,
    source: String,
    provider: String,
    mode: String,
    retrieved_at: String,
    legal_basis: String,
    classification: String,
}

#[derive(Template)]
#[template(path = "demo/portal-form.html")]
struct FormPage {
    title: String,
    procedure: String,
    legal_basis: String,
    citizen: String,
    level: String,
    complete: bool,
    fields: Vec<FieldView>,
    /// A refusal: its code, detail and the level to sign in at again, if any.
    problem: Option<(String, String, String)>,
    form: String,
}

#[derive(Debug, serde::Deserialize)]
struct FormQuery {
    citizen: String,
    #[serde(default = "high")]
    level: String,
}

fn high() -> String {
    "high".to_owned()
}

fn html(status: StatusCode, page: Result<String, askama::Error>) -> Response {
    match page {
        Ok(text) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be rendered",
        )
            .into_response(),
    }
}

async fn index(State(portal): State<Arc<Portal>>) -> Response {
    html(
        StatusCode::OK,
        IndexPage {
            citizens: &portal.citizens,
            forms: &portal.forms,
        }
        .render(),
    )
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn form_page(
    State(portal): State<Arc<Portal>>,
    Path(form): Path<String>,
    Query(query): Query<FormQuery>,
) -> Response {
    let mut page = FormPage {
        title: form.clone(),
        procedure: String::new(),
        legal_basis: String::new(),
        citizen: query.citizen.clone(),
        level: query.level.clone(),
        complete: false,
        fields: Vec::new(),
        problem: None,
        form: form.clone(),
    };
    let outcome = fill(&portal, &form, &query, &mut page).await;
    if let Err(problem) = outcome {
        page.problem = Some(problem);
    }
    html(StatusCode::OK, page.render())
}

/// Preview, consent, fill: what the portal does for one citizen.
async fn fill(
    portal: &Portal,
    form: &str,
    query: &FormQuery,
    page: &mut FormPage,
) -> Result<(), (String, String, String)> {
    let failed = |detail: String| ("portal.error".to_owned(), detail, String::new());
    let url = format!("{}/autofill/v1/{form}", portal.gateway);
    let (status, preview) = portal.call(portal.client.get(&url)).await.map_err(failed)?;
    if status != 200 {
        return Err(problem(&preview));
    }
    page.title = text(&preview["title"]);
    page.procedure = text(&preview["procedure"]);
    page.legal_basis = text(&preview["legalBasis"]);
    // The citizen consents to exactly the sources the preview names.
    let services: Vec<String> = preview["consent"]["services"]
        .as_array()
        .map(|list| list.iter().map(text).collect())
        .unwrap_or_default();
    #[allow(clippy::disallowed_methods)] // The demo's identity provider stamps the time it issues.
    let now = time::OffsetDateTime::now_utc();
    let assertion = portal
        .idp
        .issue(
            &AssertionRequest {
                subject: query.citizen.clone(),
                level: query.level.clone(),
                audience: None,
                form: Some(form.to_owned()),
                services: Some(services.join(",")),
                lifetime_seconds: None,
            },
            now,
        )
        .map_err(failed)?;
    let (status, answer) = portal
        .call(
            portal
                .client
                .post(&url)
                .header("X-Citizen-Assertion", assertion)
                .json(&serde_json::json!({ "subject": query.citizen })),
        )
        .await
        .map_err(failed)?;
    if status != 200 {
        return Err(problem(&answer));
    }
    page.complete = answer["complete"] == Value::Bool(true);
    page.fields = answer["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|field| {
                    let provenance = &field["provenance"];
                    let mode = match (
                        text(&provenance["mode"]).as_str(),
                        provenance["ageSeconds"].as_i64(),
                    ) {
                        ("cached", Some(age)) => format!("bộ nhớ đệm, {age} giây trước (cached)"),
                        ("cached", None) => "bộ nhớ đệm (cached)".to_owned(),
                        _ => "trực tiếp (live)".to_owned(),
                    };
                    FieldView {
                        name: text(&field["name"]),
                        label: text(&field["label"]),
                        value: text(&field["value"]),
                        filled: field["status"] == "filled",
                        reason: text(&field["reason"]),
                        source: text(&provenance["service"]),
                        provider: text(&provenance["provider"]),
                        mode,
                        retrieved_at: text(&provenance["retrievedAt"]),
                        legal_basis: text(&provenance["legalBasis"]),
                        classification: text(&provenance["classification"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(())
}

fn problem(body: &Value) -> (String, String, String) {
    (
        text(&body["code"]),
        text(&body["detail"]),
        text(&body["requiredLevel"]),
    )
}
