//! The cryptographic floor of a federated exchange: exactly the operations each role
//! does per exchange (`benches/common/federation_crypto.rs`), with the library's own
//! functions, on a GET lookup (no body) and a POST with a 1 KiB JSON body, answered
//! with a ~300-byte JSON record; EC P-256 keys (the default) and RSA-2048
//! (rsa-pss-sha512 + RSA-OAEP-256). Then the primitives the roles are made of, and the
//! per-message certificate-to-key step the gateway adds on top of the floor.
//!
//! `taskset -c 1 cargo bench --bench crypto_floor`. Figures are in docs/BENCHMARKS.md
//! ("(c) Federation"); the load harness measures the same floor in its own run.

// A benchmark: set-up failures may panic.
#![allow(clippy::disallowed_methods, clippy::expect_used)]

#[allow(dead_code)]
#[path = "common/federation_crypto.rs"]
mod federation_crypto;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use federation_crypto::{Exchange, KeyType, Role, Shape, small_record};
use std::hint::black_box;
use std::time::Duration;

fn roles(c: &mut Criterion) {
    for keys in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        for shape in [Shape::Get, Shape::Post1k] {
            let exchange = Exchange::new(keys, shape, small_record()).expect("keys");
            let prepared = exchange.prepare().expect("a valid round trip");
            let mut group = c.benchmark_group(format!("floor/{}/{}", keys.name(), shape.name()));
            group
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(3))
                .sample_size(50);
            for role in Role::ALL {
                group.bench_function(role.name(), |b| {
                    b.iter(|| exchange.role(role, &prepared).expect("role"))
                });
            }
            group.finish();
        }
    }
}

fn primitives(c: &mut Criterion) {
    for keys in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        let exchange = Exchange::new(keys, Shape::Get, small_record()).expect("keys");
        let prepared = exchange.prepare().expect("a valid round trip");
        let mut group = c.benchmark_group(format!("primitive/{}", keys.name()));
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .sample_size(50);
        group.bench_function("sign_request", |b| {
            b.iter(|| exchange.consumer_send().expect("sign"))
        });
        group.bench_function("verify_request", |b| {
            b.iter(|| exchange.verify_request(&prepared.request).expect("verify"))
        });
        group.bench_function("jwe_encrypt_300B", |b| {
            b.iter(|| exchange.encrypt_answer().expect("encrypt"))
        });
        group.bench_function("jwe_decrypt_300B", |b| {
            b.iter(|| exchange.decrypt_answer(&prepared.answer).expect("decrypt"))
        });
        group.finish();
    }

    // What `verify_signer` does per message before the signature is checked: decode the
    // signer's certificate from its header, hash it (the keyid), parse it for its key.
    let ca = datagate::pki::CertificateAuthority::new("crypto floor CA").expect("CA");
    let leaf = ca
        .issue(&datagate::pki::LeafSpec::server(
            "lgsp-a",
            &["localhost"],
            &[std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)],
        ))
        .expect("certificate");
    let header = base64::engine::general_purpose::STANDARD.encode(&leaf.cert_der);
    c.bench_function("overhead/ec-p256/signer_certificate_to_key", |b| {
        b.iter(|| {
            let der = base64::engine::general_purpose::STANDARD
                .decode(black_box(&header))
                .expect("base64");
            let key_id = datagate::trust::fingerprint_sha256(&der);
            let key =
                datagate::msgsig::VerifyingKey::from_certificate_der(&der, None).expect("key");
            (key_id, key)
        })
    });
}

/// What ECDH-ES's key agreement costs with aws-lc-rs directly (the library msgsig signs
/// with), for comparison with `jwe_encrypt_300B` / `jwe_decrypt_300B`, which go through
/// josekit and OpenSSL and parse the keys on every call.
fn reference(c: &mut Criterion) {
    use aws_lc_rs::agreement::{
        self, ECDH_P256, EphemeralPrivateKey, PrivateKey, UnparsedPublicKey,
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let recipient = PrivateKey::generate(&ECDH_P256).expect("key");
    let recipient_public = UnparsedPublicKey::new(
        &ECDH_P256,
        recipient
            .compute_public_key()
            .expect("public")
            .as_ref()
            .to_vec(),
    );
    c.bench_function("reference/aws-lc-rs/ecdh_p256_sender", |b| {
        b.iter(|| {
            let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &rng).expect("key");
            let public = ephemeral.compute_public_key().expect("public");
            let shared = agreement::agree_ephemeral(ephemeral, &recipient_public, (), |secret| {
                Ok(secret.len())
            });
            (public.as_ref().len(), shared)
        })
    });
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &rng).expect("key");
    let ephemeral_public = UnparsedPublicKey::new(
        &ECDH_P256,
        ephemeral
            .compute_public_key()
            .expect("public")
            .as_ref()
            .to_vec(),
    );
    c.bench_function("reference/aws-lc-rs/ecdh_p256_recipient", |b| {
        b.iter(|| {
            agreement::agree(&recipient, black_box(&ephemeral_public), (), |secret| {
                Ok(secret.len())
            })
        })
    });
}

/// What `inbound::seal` and `remote` add per exchange before `jwe::encrypt`: the peer's
/// published encryption key, parsed from its SPKI DER with OpenSSL.
fn key_parsing(c: &mut Criterion) {
    let group =
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("curve");
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("key"))
        .expect("pkey");
    let spki = key.public_key_to_der().expect("spki");
    c.bench_function("overhead/ec-p256/encryption_key_from_spki_der", |b| {
        b.iter(|| datagate::keystore::PublicKey::from_spki_der(black_box(&spki)).expect("key"))
    });
}

criterion_group!(crypto_floor, roles, primitives, reference, key_parsing);
criterion_main!(crypto_floor);
