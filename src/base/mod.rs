//! The ground floor: small shared vocabulary every layer may import, and that
//! imports nothing of the crate itself.
//!
//! - [`diagnostics`]: [`ConfigError`](diagnostics::ConfigError), one problem in a
//!   configuration file (file, path, message), used by every loader;
//! - [`json_pointer`]: RFC 6901 pointers (parse, look up, insert), used by
//!   contracts (projection) and adapters (field mapping);
//! - [`clock`]: Vietnam's time zone and the [`Clock`](clock::Clock) that code which
//!   decides by time takes, so tests control time;
//! - [`hex`]: lowercase hex encoding;
//! - [`headers`]: the header names of the client-facing protocol;
//! - [`path`]: splitting paths and ids at `/` on the request path.
//!
//! Owns: vocabulary. Does not own: any policy; nothing here decides or does I/O.

pub mod clock;
pub mod diagnostics;
pub mod headers;
pub mod hex;
pub mod json_pointer;
pub mod path;
