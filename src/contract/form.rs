//! Once-only forms (`contracts/forms/*.yaml`): which fields an e-form is filled with,
//! from which shared-data services, for which administrative procedure.
//!
//! Owns: the form file's grammar ([`RawForm`]), its compilation ([`compile`]: every field
//! names a declared source, a JSON pointer, a known transform), the check of a form
//! against the contracts behind its sources ([`FormSet::check_against`]: a local source
//! needs a contract for every consumer of the form that allows the source request, the
//! form's purpose, a level the form asks for, and every field the form reads), and
//! turning a source's answer into a field's value ([`FormField::extract`]).
//!
//! Does not own: fetching (the gateway's fan-out sends each source request through the
//! normal pipeline, where the contract, quota, citizen assertion and journal apply), or
//! the answer's shape (`gateway::autofill`).

use super::{AssuranceLevel, ContractSet};
use crate::base::diagnostics::ConfigError;
use crate::base::json_pointer::{lookup, pointer_tokens};
use crate::identity::{ClientId, ServiceId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A sample data subject, to check that a source's request matches a contract operation.
const SAMPLE_SUBJECT: &str = "000000000000";
/// The placeholder of the citizen's id in a source's path.
const SUBJECT_PLACEHOLDER: &str = "{subject}";

/// A form file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawForm {
    /// Form id: 1-64 of `A-Z a-z 0-9 - _ .`; the `{form}` of `/autofill/v1/{form}`.
    pub id: String,
    /// Title (Vietnamese).
    pub title: String,
    /// Title in English, optional.
    #[serde(default)]
    pub title_en: Option<String>,
    /// The administrative procedure's code (national procedures database); sent to every
    /// source in `X-Road-Issue`.
    pub procedure: String,
    /// The legal basis of the procedure.
    pub legal_basis: String,
    /// The purpose code every source request carries (`X-Purpose`).
    pub purpose: String,
    /// The citizen's assurance level the form needs (003 Điều 9–11).
    pub assurance_level: AssuranceLevel,
    /// The portals (subsystems) that may use the form.
    pub consumers: Vec<String>,
    /// The whole form's deadline.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Sources by name.
    pub sources: BTreeMap<String, RawSource>,
    /// The fields, in the form's order.
    pub fields: Vec<RawField>,
}

fn default_deadline_ms() -> u64 {
    3_000
}

/// One source of a form: a `GET` of a shared-data service about the citizen.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The service id.
    pub service: String,
    /// The path after the service, with `{subject}` where the citizen's id goes.
    pub path: String,
    /// This source's deadline, within the form's (default: the form's).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// One field of a form.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    /// The field's name in the answer.
    pub name: String,
    /// Its label on the form.
    pub label: String,
    /// The source it is read from.
    pub source: String,
    /// JSON pointer into the source's record (exactly one of `pointer` and `join`).
    #[serde(default)]
    pub pointer: Option<String>,
    /// Several pointers whose text values are joined (full name from parts, an address
    /// from its components); missing parts are skipped.
    #[serde(default)]
    pub join: Option<Vec<String>>,
    /// The separator of `join` (default a space).
    #[serde(default)]
    pub separator: Option<String>,
    /// A transform of the value.
    #[serde(default)]
    pub transform: Option<Transform>,
}

/// A transform of a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// `YYYY-MM-DD` to `DD/MM/YYYY`, as Vietnamese forms write dates.
    DateDmy,
    /// The number of elements of an array (for example, enterprises represented).
    Count,
}

/// A compiled source.
#[derive(Debug, Clone)]
pub struct FormSource {
    /// Its name in the form.
    pub name: String,
    /// The service.
    pub service: ServiceId,
    path: String,
    /// Its deadline, from the start of the form request.
    pub timeout: Duration,
}

impl FormSource {
    /// The path after the service for `subject` (12 digits, checked by the caller).
    pub fn path(&self, subject: &str) -> String {
        self.path.replace(SUBJECT_PLACEHOLDER, subject)
    }
}

/// How a field's value is found.
#[derive(Debug, Clone)]
pub enum FieldValue {
    /// The value at one pointer.
    Pointer(String),
    /// Text values at several pointers, joined.
    Join {
        /// The pointers.
        pointers: Vec<String>,
        /// The separator.
        separator: String,
    },
}

impl FieldValue {
    /// The pointers the field reads.
    pub fn pointers(&self) -> Vec<&str> {
        match self {
            FieldValue::Pointer(pointer) => vec![pointer.as_str()],
            FieldValue::Join { pointers, .. } => pointers.iter().map(String::as_str).collect(),
        }
    }
}

/// Why a field could not be filled from its source's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfilled {
    /// The answer has no value there (absent, null, or not allowed by the contract).
    Missing,
    /// The value is there but the transform cannot use it.
    Unusable,
}

/// A compiled field.
#[derive(Debug, Clone)]
pub struct FormField {
    /// Its name.
    pub name: String,
    /// Its label.
    pub label: String,
    /// The index of its source in [`Form::sources`].
    pub source: usize,
    /// Where its value is.
    pub value: FieldValue,
    /// Its transform.
    pub transform: Option<Transform>,
}

fn at<'a>(record: &'a Value, pointer: &str) -> Option<&'a Value> {
    let tokens = pointer_tokens(pointer)?;
    lookup(record, &tokens).filter(|value| !value.is_null())
}

impl FormField {
    /// The field's value in its source's (projected) record.
    pub fn extract(&self, record: &Value) -> Result<Value, Unfilled> {
        let value = match &self.value {
            FieldValue::Pointer(pointer) => {
                at(record, pointer).cloned().ok_or(Unfilled::Missing)?
            }
            FieldValue::Join {
                pointers,
                separator,
            } => {
                let parts: Vec<String> = pointers
                    .iter()
                    .filter_map(|pointer| match at(record, pointer)? {
                        Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
                        Value::Number(number) => Some(number.to_string()),
                        _ => None,
                    })
                    .collect();
                if parts.is_empty() {
                    return Err(Unfilled::Missing);
                }
                Value::String(parts.join(separator))
            }
        };
        match self.transform {
            None => Ok(value),
            Some(Transform::Count) => match value {
                Value::Array(items) => Ok(Value::from(items.len())),
                _ => Err(Unfilled::Unusable),
            },
            Some(Transform::DateDmy) => {
                let text = value.as_str().ok_or(Unfilled::Unusable)?;
                let date = time::Date::parse(
                    text,
                    time::macros::format_description!("[year]-[month]-[day]"),
                )
                .map_err(|_| Unfilled::Unusable)?;
                Ok(Value::String(format!(
                    "{:02}/{:02}/{:04}",
                    date.day(),
                    u8::from(date.month()),
                    date.year()
                )))
            }
        }
    }
}

/// A compiled form.
#[derive(Debug, Clone)]
pub struct Form {
    /// Its id.
    pub id: String,
    /// Its title (Vietnamese).
    pub title: String,
    /// Its English title.
    pub title_en: Option<String>,
    /// The administrative procedure's code.
    pub procedure: String,
    /// The procedure's legal basis.
    pub legal_basis: String,
    /// The purpose code of its source requests.
    pub purpose: String,
    /// The assurance level it needs.
    pub assurance_level: AssuranceLevel,
    /// Who may use it.
    pub consumers: HashSet<ClientId>,
    /// The whole form's deadline.
    pub deadline: Duration,
    /// Its sources.
    pub sources: Vec<FormSource>,
    /// Its fields, in order.
    pub fields: Vec<FormField>,
}

fn valid_id(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Validates and compiles one form, returning every problem found (paths, never values).
pub fn compile(raw: &RawForm, file: &Path) -> Result<Form, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: &str| {
        errors.push(ConfigError::new(file, path, message.to_owned()));
    };
    if !valid_id(&raw.id, 64) {
        error("id", "must be 1-64 characters of A-Z a-z 0-9 - _ .");
    }
    for (name, text) in [
        ("title", &raw.title),
        ("procedure", &raw.procedure),
        ("legal_basis", &raw.legal_basis),
    ] {
        if text.trim().is_empty() {
            error(name, "must not be empty");
        }
    }
    let purpose_ok = axum::http::HeaderValue::from_str(&raw.purpose)
        .ok()
        .and_then(|value| crate::protocol::parse_purpose(Some(&value)).ok())
        .is_some();
    if !purpose_ok {
        error(
            "purpose",
            "must be a purpose code: 1-64 characters of A-Z a-z 0-9 - _ .",
        );
    }
    if raw.procedure.len() > 64
        || !raw
            .procedure
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        error(
            "procedure",
            "must be a procedure code (A-Z a-z 0-9 - _ ., at most 64)",
        );
    }
    if raw.deadline_ms == 0 || raw.deadline_ms > 60_000 {
        error("deadline_ms", "must be between 1 and 60000");
    }
    let mut consumers = HashSet::new();
    if raw.consumers.is_empty() {
        error("consumers", "a form needs at least one consumer");
    }
    for (i, consumer) in raw.consumers.iter().enumerate() {
        match consumer.parse::<ClientId>() {
            Ok(client) => {
                consumers.insert(client);
            }
            Err(_) => error(&format!("consumers[{i}]"), "must be a subsystem id"),
        }
    }
    let mut sources = Vec::new();
    if raw.sources.is_empty() {
        error("sources", "a form needs at least one source");
    }
    for (name, source) in &raw.sources {
        let at = format!("sources.{name}");
        if !valid_id(name, 64) {
            error(
                &at,
                "a source name must be 1-64 characters of A-Z a-z 0-9 - _ .",
            );
        }
        let service = source
            .service
            .parse::<ServiceId>()
            .map_err(|_| error(&format!("{at}.service"), "must be a service id"))
            .ok();
        if !source.path.starts_with('/') || source.path.matches(SUBJECT_PLACEHOLDER).count() != 1 {
            error(
                &format!("{at}.path"),
                "must start with / and name the citizen once, as {subject}",
            );
        }
        if source.path.contains('?') || source.path.contains('#') {
            error(&format!("{at}.path"), "must not hold a query or a fragment");
        }
        let timeout = source.timeout_ms.unwrap_or(raw.deadline_ms);
        if timeout == 0 || timeout > raw.deadline_ms {
            error(
                &format!("{at}.timeout_ms"),
                "must be between 1 and the form's deadline_ms",
            );
        }
        if let Some(service) = service {
            sources.push(FormSource {
                name: name.clone(),
                service,
                path: source.path.clone(),
                timeout: Duration::from_millis(timeout),
            });
        }
    }
    let mut fields = Vec::new();
    let mut names = HashSet::new();
    if raw.fields.is_empty() {
        error("fields", "a form needs at least one field");
    }
    for (i, field) in raw.fields.iter().enumerate() {
        let at = format!("fields[{i}]");
        if !valid_id(&field.name, 64) {
            error(
                &format!("{at}.name"),
                "must be 1-64 characters of A-Z a-z 0-9 - _ .",
            );
        }
        if !names.insert(field.name.clone()) {
            error(&format!("{at}.name"), "another field has the same name");
        }
        if field.label.trim().is_empty() {
            error(&format!("{at}.label"), "must not be empty");
        }
        let source = sources.iter().position(|s| s.name == field.source);
        if source.is_none() && raw.sources.contains_key(&field.source) {
            // The source itself is in error; reported there.
        } else if source.is_none() {
            error(&format!("{at}.source"), "names no source of this form");
        }
        let value = match (&field.pointer, &field.join) {
            (Some(pointer), None) => Some(FieldValue::Pointer(pointer.clone())),
            (None, Some(pointers)) if !pointers.is_empty() => Some(FieldValue::Join {
                pointers: pointers.clone(),
                separator: field.separator.clone().unwrap_or_else(|| " ".to_owned()),
            }),
            _ => {
                error(
                    &at,
                    "needs exactly one of pointer and join (a non-empty list)",
                );
                None
            }
        };
        if field.separator.is_some() && field.join.is_none() {
            error(&format!("{at}.separator"), "only a join has a separator");
        }
        if let Some(value) = &value {
            for pointer in value.pointers() {
                if pointer.is_empty() || pointer_tokens(pointer).is_none() {
                    error(
                        &at,
                        "every pointer must be a non-empty JSON pointer (RFC 6901)",
                    );
                }
            }
        }
        if let (Some(source), Some(value)) = (source, value) {
            fields.push(FormField {
                name: field.name.clone(),
                label: field.label.clone(),
                source,
                value,
                transform: field.transform,
            });
        }
    }
    if errors.is_empty() {
        Ok(Form {
            id: raw.id.clone(),
            title: raw.title.clone(),
            title_en: raw.title_en.clone(),
            procedure: raw.procedure.clone(),
            legal_basis: raw.legal_basis.clone(),
            purpose: raw.purpose.clone(),
            assurance_level: raw.assurance_level,
            consumers,
            deadline: Duration::from_millis(raw.deadline_ms),
            sources,
            fields,
        })
    } else {
        Err(errors)
    }
}

/// The forms of a node, by id.
#[derive(Debug, Default)]
pub struct FormSet {
    forms: BTreeMap<String, Arc<Form>>,
}

impl FormSet {
    /// Builds the set; duplicate form ids are an error.
    pub fn new(forms: Vec<(Form, std::path::PathBuf)>) -> Result<Self, Vec<ConfigError>> {
        let mut set = FormSet::default();
        let mut errors = Vec::new();
        for (form, file) in forms {
            if set.forms.contains_key(&form.id) {
                errors.push(ConfigError::new(
                    &file,
                    "id",
                    "another form has the same id".into(),
                ));
            } else {
                set.forms.insert(form.id.clone(), Arc::new(form));
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// The form called `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Form>> {
        self.forms.get(id)
    }

    /// All forms.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Form>> {
        self.forms.values()
    }

    /// The number of forms.
    pub fn len(&self) -> usize {
        self.forms.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

/// Checks `form` (from `file`) against the contracts behind its sources. A source of a
/// service this node serves (`served`) needs, for every consumer of the form, a contract
/// of that consumer that allows `GET` of the source's path, the form's purpose, at most
/// the form's assurance level, and every pointer the form reads from it. A source of
/// another member's service is checked on every request against the owner's published
/// copy (`federated`); without a federation it has no contract behind it.
pub fn check_against(
    form: &Form,
    file: &Path,
    contracts: &ContractSet,
    served: &dyn Fn(&ServiceId) -> bool,
    federated: bool,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (index, source) in form.sources.iter().enumerate() {
        let at = format!("sources.{}", source.name);
        if !served(&source.service) {
            if !federated {
                errors.push(ConfigError::new(
                    file,
                    &at,
                    "no contract is behind this source: this node does not serve the service \
                     and has no [federation] to reach its owner"
                        .into(),
                ));
            }
            continue;
        }
        let path = source.path(SAMPLE_SUBJECT);
        let mut consumers: Vec<&ClientId> = form.consumers.iter().collect();
        consumers.sort_by_key(|client| client.to_string());
        for consumer in consumers {
            let candidates = contracts.for_pair(consumer, &source.service);
            if candidates.is_empty() {
                errors.push(ConfigError::new(
                    file,
                    &at,
                    format!("no contract lets {consumer} call this source's service"),
                ));
                continue;
            }
            let usable: Vec<_> = candidates
                .iter()
                .filter(|contract| {
                    contract
                        .operations
                        .iter()
                        .any(|op| op.matches(&axum::http::Method::GET, &path).is_some())
                        && (contract.purposes.is_empty()
                            || contract.purposes.contains(&form.purpose))
                })
                .collect();
            if usable.is_empty() {
                errors.push(ConfigError::new(
                    file,
                    &at,
                    format!(
                        "no contract of {consumer} for this service allows GET of the source's \
                         path for the form's purpose"
                    ),
                ));
                continue;
            }
            if usable.iter().all(|contract| {
                contract
                    .assurance_level
                    .is_some_and(|level| level > form.assurance_level)
            }) {
                errors.push(ConfigError::new(
                    file,
                    "assurance_level",
                    format!(
                        "the contract behind source {} asks for a higher assurance level than \
                         the form: every fill would need a step-up",
                        source.name
                    ),
                ));
            }
            for (i, field) in form.fields.iter().enumerate() {
                if field.source != index {
                    continue;
                }
                for pointer in field.value.pointers() {
                    if !usable
                        .iter()
                        .any(|contract| contract.projection.allows(pointer))
                    {
                        errors.push(ConfigError::new(
                            file,
                            &format!("fields[{i}]"),
                            format!(
                                "the contract behind source {} does not allow this field for {consumer}",
                                source.name
                            ),
                        ));
                    }
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(value: FieldValue, transform: Option<Transform>) -> FormField {
        FormField {
            name: "f".into(),
            label: "F".into(),
            source: 0,
            value,
            transform,
        }
    }

    #[test]
    fn dates_are_written_day_month_year() {
        let f = field(FieldValue::Pointer("/dob".into()), Some(Transform::DateDmy));
        assert_eq!(
            f.extract(&json!({"dob": "1990-03-07"})),
            Ok(json!("07/03/1990"))
        );
        assert_eq!(
            f.extract(&json!({"dob": "07/03/1990"})),
            Err(Unfilled::Unusable)
        );
        assert_eq!(f.extract(&json!({"other": 1})), Err(Unfilled::Missing));
    }

    #[test]
    fn joins_skip_missing_parts() {
        let f = field(
            FieldValue::Join {
                pointers: vec!["/a/ward".into(), "/a/district".into(), "/a/province".into()],
                separator: ", ".into(),
            },
            None,
        );
        assert_eq!(
            f.extract(&json!({"a": {"ward": "Phường 1", "province": "TP. Hồ Chí Minh"}})),
            Ok(json!("Phường 1, TP. Hồ Chí Minh"))
        );
        assert_eq!(f.extract(&json!({"a": {}})), Err(Unfilled::Missing));
    }

    #[test]
    fn counts_need_an_array() {
        let f = field(FieldValue::Pointer("/items".into()), Some(Transform::Count));
        assert_eq!(f.extract(&json!({"items": [1, 2, 3]})), Ok(json!(3)));
        assert_eq!(f.extract(&json!({"items": "x"})), Err(Unfilled::Unusable));
    }

    #[test]
    fn a_null_value_is_missing() {
        let f = field(FieldValue::Pointer("/x".into()), None);
        assert_eq!(f.extract(&json!({"x": null})), Err(Unfilled::Missing));
    }

    fn raw(text: &str) -> RawForm {
        yaml_serde::from_str(text).expect("form yaml")
    }

    const FORM: &str = "id: f1\ntitle: T\nprocedure: '1.0001'\nlegal_basis: L\npurpose: P\n\
        assurance_level: medium\nconsumers: [VN/GOV/000.00.00.H29/portal]\n\
        sources:\n  citizen: { service: VN/GOV/000.00.00.G10/db/citizen, path: '/{subject}' }\n\
        fields:\n  - { name: a, label: A, source: citizen, pointer: /a }\n";

    #[test]
    fn a_well_formed_form_compiles() {
        let form = compile(&raw(FORM), Path::new("f.yaml")).expect("compiles");
        assert_eq!(form.sources[0].path("012345678901"), "/012345678901");
        assert_eq!(form.deadline, Duration::from_millis(3000));
    }

    #[test]
    fn faults_are_named_by_path() {
        let text = FORM
            .replace(
                "source: citizen, pointer: /a",
                "source: nowhere, pointer: a",
            )
            .replace("path: '/{subject}'", "path: '/fixed'");
        let errors = compile(&raw(&text), Path::new("f.yaml")).expect_err("refused");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"sources.citizen.path"), "{paths:?}");
        assert!(paths.contains(&"fields[0].source"), "{paths:?}");
    }
}
