//! Integration tests of datagate: real nodes on 127.0.0.1 with certificates
//! generated at test time, mock upstreams, and real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests fail loudly on purpose.
// Tests read the answers of their own local servers whole and take the real time.
#![allow(clippy::disallowed_methods)]

mod support;

mod adapters;
mod admin;
mod autofill;
mod cases;
mod check;
mod citizen;
mod contracts;
mod errors;
mod federation;
mod global;
mod global_interop;
mod hardening;
mod journal;
mod journal_backends;
mod layering;
mod message_cli;
mod metaservices;
mod opendata;
mod opendata_backends;
mod opendata_dcat;
mod opendata_proxy;
mod ops;
mod properties;
mod trust;
