//! Cryptography of the federation, on its own: RFC 9421 message signatures and RFC 9530
//! digests (`msgsig_*`), JWE (`jwe_*`), key files (`jwe_keystore_files`), each against
//! the RFCs' examples and, in both directions, against independent implementations
//! (Python `http-message-signatures` and `jwcrypto`; `DATAGATE_REQUIRE_INTEROP=1` turns
//! a missing module into a failure instead of a skip).
#![allow(clippy::disallowed_methods)]

mod citizen_interop;
mod jwe_common;
mod jwe_interop;
mod jwe_keystore_files;
mod jwe_rfc7520;
mod jwe_roundtrip;
mod msgsig_common;
mod msgsig_interop;
mod msgsig_proptest;
mod msgsig_rfc9421;
mod msgsig_roundtrip;
mod tsa;
