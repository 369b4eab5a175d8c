//! Helpers shared by the integration tests: keys made at test time.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datagate::keystore::PrivateKey;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// Runs the `openssl` command-line tool in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh key pair as a private JWK (for the interop script) and our PrivateKey.
pub struct Generated {
    pub key: PrivateKey,
    pub private_jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fixed-width big-endian encoding of an EC scalar or coordinate.
fn padded(n: &openssl::bn::BigNumRef, len: usize) -> Vec<u8> {
    n.to_vec_padded(i32::try_from(len).expect("small"))
        .expect("fits")
}

pub fn ec_p256() -> Generated {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let ec = EcKey::generate(&group).expect("generate");
    let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
    let mut x = openssl::bn::BigNum::new().expect("bn");
    let mut y = openssl::bn::BigNum::new().expect("bn");
    ec.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .expect("coordinates");
    let private_jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": b64(&padded(&x, 32)), "y": b64(&padded(&y, 32)),
        "d": b64(&padded(ec.private_key(), 32)),
    });
    let pkey = PKey::from_ec_key(ec).expect("pkey");
    let key =
        PrivateKey::from_pkcs8_der(&pkey.private_key_to_pkcs8().expect("pkcs8")).expect("key");
    Generated { key, private_jwk }
}

pub fn rsa(bits: u32) -> Generated {
    let rsa = Rsa::generate(bits).expect("generate");
    let v = |n: Option<&openssl::bn::BigNumRef>| b64(&n.expect("component").to_vec());
    let private_jwk = json!({
        "kty": "RSA",
        "n": v(Some(rsa.n())), "e": v(Some(rsa.e())), "d": v(Some(rsa.d())),
        "p": v(rsa.p()), "q": v(rsa.q()), "dp": v(rsa.dmp1()), "dq": v(rsa.dmq1()), "qi": v(rsa.iqmp()),
    });
    let pkey = PKey::from_rsa(rsa).expect("pkey");
    let key =
        PrivateKey::from_pkcs8_der(&pkey.private_key_to_pkcs8().expect("pkcs8")).expect("key");
    Generated { key, private_jwk }
}
