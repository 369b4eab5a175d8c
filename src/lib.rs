//! datagate: the data-integration gateway (secure server, máy chủ bảo mật) of
//! an LGSP or of the NDXP.
//!
//! A consumer information system calls this node over mTLS with the X-Road REST
//! protocol; the node decides under a data-sharing contract and answers from a
//! backend through an adapter:
//!
//! ```text
//! consumer ──mTLS──▶ accept loop (chain, CRL) ─▶ message id ─▶ load shed ─▶ identity (registry)
//!   ─▶ contract (deny by default) ─▶ quota ─▶ body + request schema ─▶ adapter (REST | SOAP)
//!   ─▶ response schema ─▶ projection ─▶ journal (durable) ─▶ response
//! ```
//!
//! Modules, outermost first:
//! - [`config`]: node configuration, parsed → validated completely → built;
//! - [`operator`]: the operator tools over files (`datagate message …`, `datagate globalconf …`);
//! - [`gateway`]: listeners, the exchange pipeline, ops endpoints, reload;
//! - [`trust`]: TLS, secure-server registry, working-day calendar;
//! - [`protocol`]: X-Road REST headers and paths;
//! - [`identity`]: member, client and service identifiers;
//! - [`contract`]: data-sharing contracts, projection, quotas;
//! - [`adapters`]: backend kinds (REST/JSON, SOAP/XML) behind one transport;
//! - [`journal`]: the durable record of every exchange;
//! - [`msgsig`]: HTTP Message Signatures (RFC 9421) and `Content-Digest` (RFC 9530);
//! - [`jwe`]: payload encryption between gateways (JWE compact, RFC 7516);
//! - [`keystore`]: keys and certificates from PEM and PKCS#12 files;
//! - [`error`]: the one error type and its problem+json rendering;
//! - [`base`]: the ground floor (diagnostics, JSON pointers, clock, hex, header names);
//! - [`observe`]: logs and metrics;
//! - `pki`: the dev PKI; `demo`: the local federation of `datagate demo` (both only
//!   with the default `dev` feature, so a production build carries neither).

#![forbid(unsafe_code)]
// Unit tests read the answers of local test servers whole and take the real time; the
// non-test build, which clippy also checks, keeps clippy.toml's disallowed methods out.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod adapters;
pub mod base;
pub mod config;
pub mod contract;
#[cfg(feature = "dev")]
pub mod demo;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod journal;
pub mod jwe;
pub mod keystore;
pub mod msgsig;
pub mod observe;
pub mod opendata;
pub mod operator;
pub mod pattern;
#[cfg(feature = "dev")]
pub mod pki;
pub mod protocol;
pub mod trust;

/// Installs aws-lc-rs as the process's rustls crypto provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
