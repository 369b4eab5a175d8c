//! Micro-benchmarks of the per-request hot path: contract lookup, request and
//! response schema validation, and projection. Figures are in docs/BENCHMARKS.md.

// A benchmark measures real time and reads its own local servers' answers whole.
#![allow(clippy::disallowed_methods)]

use axum::http::Method;
use criterion::{Criterion, criterion_group, criterion_main};
use datagate::contract::{self, ContractSet, RawContract};
use datagate::identity::{ClientId, ServiceId};
use std::hint::black_box;
use std::path::Path;

fn contract_yaml(consumer: &str, service: &str, id: &str) -> String {
    format!(
        r#"id: {id}
version: 1
consumer: {consumer}
service: {service}
operations: [{{ method: GET, path: "/{{citizen_id}}" }}]
purposes: [HOUSEHOLD-REGISTRATION, SOCIAL-ALLOWANCE]
legal_basis: Nghị định 47/2024/NĐ-CP
classification: sensitive
allowed_fields: [/citizen_id, /full_name, /date_of_birth, /permanent_address/province]
valid_from: 2026-01-01T00:00:00+07:00
valid_until: 2030-01-01T00:00:00+07:00
approved_by: bench
"#
    )
}

/// A set of `n` contracts: n/10 consumers × 10 services.
fn contract_set(n: usize) -> ContractSet {
    let mut compiled = Vec::with_capacity(n);
    for i in 0..n {
        let consumer = format!(
            "VN/GOV/000.00.{:02}.H{:02}/portal",
            i / 1000,
            (i / 10) % 100
        );
        let service = format!("VN/GOV/000.00.00.G{:02}/db/service-{}", i % 10, i % 10);
        let raw: RawContract =
            yaml_serde::from_str(&contract_yaml(&consumer, &service, &format!("c-{i}")))
                .expect("valid contract");
        let compiled_one =
            contract::compile(&raw, Path::new("bench.yaml"), Path::new(".")).expect("compiles");
        compiled.push((compiled_one, "bench.yaml".into()));
    }
    ContractSet::new(compiled).expect("unique ids")
}

fn citizen_record() -> serde_json::Value {
    serde_json::json!({
        "citizen_id": "001085012345",
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1985-03-02",
        "sex": "F",
        "permanent_address": {"province": "Hà Nội", "district": "Quận Ba Đình",
                              "ward": "Phường Điện Biên", "street": "Số 12 Hoàng Diệu"},
        "ethnicity": "Kinh",
        "nationality": "VN",
        "household_size": 4,
        "notes": "x".repeat(600)
    })
}

fn benches(c: &mut Criterion) {
    let now = time::macros::datetime!(2026-06-01 00:00 +7);
    let set = contract_set(1000);
    let client: ClientId = "VN/GOV/000.00.00.H42/portal".parse().expect("id");
    let service: ServiceId = "VN/GOV/000.00.00.G02/db/service-2".parse().expect("id");
    assert!(
        set.authorise(
            &client,
            &service,
            &Method::GET,
            "/001085012345",
            Some("SOCIAL-ALLOWANCE"),
            now
        )
        .is_ok()
    );
    c.bench_function("contract_lookup_1000_contracts", |b| {
        b.iter(|| {
            set.authorise(
                black_box(&client),
                black_box(&service),
                &Method::GET,
                black_box("/001085012345"),
                Some("SOCIAL-ALLOWANCE"),
                now,
            )
        })
    });

    let (repo, errors) = datagate::config::load_contracts(Path::new("contracts"));
    assert!(errors.is_empty(), "{errors:?}");
    let citizen = repo
        .iter()
        .map(|(c, _)| c)
        .find(|c| c.id == "hcm-portal-citizen-2026")
        .expect("demo contract");
    let request = serde_json::json!({"path": {"citizen_id": "001085012345"}, "query": {}});
    let bad_request = serde_json::json!({"path": {"citizen_id": "12AB"}, "query": {}});
    let record = citizen_record();
    c.bench_function("request_schema_valid", |b| {
        b.iter(|| citizen.validate_request(black_box(&request)))
    });
    c.bench_function("request_schema_invalid", |b| {
        b.iter(|| citizen.validate_request(black_box(&bad_request)))
    });
    c.bench_function("response_schema_1kb_record", |b| {
        b.iter(|| citizen.validate_response(black_box(&record)))
    });
    c.bench_function("projection_1kb_record", |b| {
        b.iter_batched(
            || record.clone(),
            |doc| citizen.projection.apply(doc),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
