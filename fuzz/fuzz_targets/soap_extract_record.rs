//! `datagate::adapters::soap_mapping::extract_record`: a SOAP backend's answer.
//! Two operations: the demo population register's (from
//! adapters/population-db.toml, through `AdapterSpec::validate`) and one with
//! typed, repeated, nested and nil-able fields. Never panics; a record is a
//! JSON object holding only configured fields.
#![no_main]

use datagate::adapters::soap_mapping::{SoapOperation, extract_record};
use datagate::adapters::{AdapterSpec, OperationMapping, RawAdapter};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::LazyLock;

const TYPED_OPERATION: &str = r#"
element = "GetCitizen"
action = "urn:vn:gov:population:1#GetCitizen"
namespace = "urn:vn:gov:population:1"
record = "GetCitizenResponse/Citizen"
not_found_faults = ["Client.NotFound", "soap:Server.Missing"]

[[params]]
element = "CitizenId"
from = "path:id"

[fields]
"/id" = "CitizenId"
"/name~1full" = "p:FullName"
"/address/province" = "PermanentAddress/Province"
"/address/lines" = { path = "PermanentAddress/Line", repeated = true }
"/household/size" = { path = "HouseholdSize", type = "integer" }
"/household/income" = { path = "Income", type = "number" }
"/alive" = { path = "Alive", type = "boolean" }
"/phones" = { path = "Phones/Phone", type = "integer", repeated = true }
"/flags" = { path = "Flag", type = "boolean", repeated = true }
"#;

static OPERATIONS: LazyLock<Vec<SoapOperation>> = LazyLock::new(|| {
    let raw: RawAdapter = toml::from_str(include_str!("../../adapters/population-db.toml"))
        .expect("the demo adapter parses");
    let spec = AdapterSpec::validate(raw, Path::new("population-db.toml"))
        .expect("the demo adapter is valid");
    let mut operations: Vec<SoapOperation> = spec
        .operations
        .iter()
        .filter_map(|op| match &op.mapping {
            OperationMapping::Soap(soap) => Some((**soap).clone()),
            OperationMapping::Rest(_) => None,
        })
        .collect();
    let typed: SoapOperation = toml::from_str(TYPED_OPERATION).expect("typed operation parses");
    assert!(typed.validate().is_empty());
    operations.push(typed);
    operations
});

fuzz_target!(|data: &[u8]| {
    for op in OPERATIONS.iter() {
        if let Ok(record) = extract_record(op, data) {
            let record = record.as_object().expect("a record is an object");
            for key in record.keys() {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                let prefix = format!("/{escaped}");
                assert!(
                    op.fields
                        .keys()
                        .any(|p| p == &prefix || p.starts_with(&format!("{prefix}/"))),
                    "only configured fields"
                );
            }
        }
    }
});
