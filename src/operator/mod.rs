//! Operator tools over files: what `datagate message …` and `datagate globalconf …`
//! do, as functions over readers and writers so that tests drive them without a
//! process.
//!
//! - [`message`]: sign and verify an HTTP/1.1 request (RFC 9421 signature, RFC 9530
//!   `Content-Digest`), encrypt a payload to a gateway and decrypt one (JWE compact);
//! - [`globalconf`]: sign a global configuration (the central authority's side) and
//!   verify one against an anchor, as a gateway would.
//!
//! Every input is bounded ([`MAX_INPUT_BYTES`] on standard input, the keystore's
//! bound on key files). Every failure is an [`OperatorError`] with a stable dotted
//! code, the one the library module underneath gives; messages name files, fields
//! and components, never key material, passwords or header values.
//!
//! Owns: reading the inputs, choosing defaults (covered components, algorithms, key
//! ids), the one-line reports. Does not own: the cryptography and the formats (in
//! `msgsig`, `jwe`, `keystore`, `trust::global`), the command line (`main.rs`),
//! or the clock: every function that decides by time takes `now`.

pub mod globalconf;
pub mod message;
pub mod progress;

use crate::jwe::JweError;
use crate::keystore::KeyError;
use crate::msgsig::SignatureError;
use crate::trust::global::GlobalConfError;
use std::io::Read;
use std::path::Path;

/// The most read from standard input (16 MiB): a message, a payload or a JWE the
/// size the gateway itself accepts; anything larger is refused, not truncated.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Standard input (or a file) is larger than the command reads.
    #[error("{what} is larger than {max} bytes")]
    InputTooLarge {
        /// What was read (`standard input`, a file name).
        what: String,
        /// The bound, in bytes.
        max: usize,
    },
    /// Standard input (or a file) could not be read.
    #[error("cannot read {what}: {kind}")]
    InputUnreadable {
        /// What was read.
        what: String,
        /// The operating system's reason.
        kind: std::io::ErrorKind,
    },
    /// Standard output could not be written.
    #[error("cannot write standard output: {0}")]
    OutputFailed(std::io::ErrorKind),
    /// An option cannot be used as given (e.g. `--password-env` names an unset variable).
    #[error("{0}")]
    Usage(String),
    /// The message to sign already carries a signature with this label.
    #[error("the message already carries a signature labelled {0}")]
    LabelInUse(String),
    /// A key or certificate file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Signing or verifying a message.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Encrypting or decrypting a payload.
    #[error(transparent)]
    Jwe(#[from] JweError),
    /// Signing or verifying a global configuration.
    #[error(transparent)]
    GlobalConf(#[from] GlobalConfError),
    /// The held global configuration given with `--held` was refused.
    #[error("the held configuration (--held) was refused: {0}")]
    HeldGlobalConf(GlobalConfError),
}

impl OperatorError {
    /// The stable dotted code, printed first on standard error.
    pub fn code(&self) -> &'static str {
        match self {
            OperatorError::InputTooLarge { .. } => "input.too_large",
            OperatorError::InputUnreadable { .. } => "input.unreadable",
            OperatorError::OutputFailed(_) => "output.failed",
            OperatorError::Usage(_) => "usage.invalid",
            OperatorError::LabelInUse(_) => "signature.label_in_use",
            OperatorError::Key(e) => e.code(),
            OperatorError::Signature(e) => e.code(),
            OperatorError::Jwe(e) => e.code(),
            OperatorError::GlobalConf(e) | OperatorError::HeldGlobalConf(e) => e.code(),
        }
    }

    /// The lines to print after the first on standard error: every problem of an
    /// invalid global configuration, each with its JSON path (never its value).
    pub fn details(&self) -> Vec<String> {
        match self {
            OperatorError::GlobalConf(GlobalConfError::Invalid { problems })
            | OperatorError::HeldGlobalConf(GlobalConfError::Invalid { problems }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Reads all of `input`, refusing more than `max` bytes (`what` names it in errors).
pub fn read_bounded(input: impl Read, max: usize, what: &str) -> Result<Vec<u8>, OperatorError> {
    let mut data = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    input
        .take(limit)
        .read_to_end(&mut data)
        .map_err(|e| OperatorError::InputUnreadable {
            what: what.to_owned(),
            kind: e.kind(),
        })?;
    if data.len() > max {
        return Err(OperatorError::InputTooLarge {
            what: what.to_owned(),
            max,
        });
    }
    Ok(data)
}

/// Reads a file, refusing more than `max` bytes.
pub(crate) fn read_file(path: &Path, max: usize) -> Result<Vec<u8>, OperatorError> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| OperatorError::InputUnreadable {
        what: what.clone(),
        kind: e.kind(),
    })?;
    read_bounded(file, max, &what)
}

/// The password in the environment variable `var` (named by `--password-env`), so
/// that it never appears in the process's arguments. `None` when no variable is named.
pub fn password_from_env(var: Option<&str>) -> Result<Option<String>, OperatorError> {
    let Some(var) = var else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(password) => Ok(Some(password)),
        Err(std::env::VarError::NotPresent) => Err(OperatorError::Usage(format!(
            "the environment variable {var} named by --password-env is not set"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(OperatorError::Usage(format!(
            "the environment variable {var} named by --password-env is not UTF-8"
        ))),
    }
}

/// Writes `bytes` to `output` and flushes it.
pub(crate) fn write_all(
    mut output: impl std::io::Write,
    bytes: &[u8],
) -> Result<(), OperatorError> {
    output
        .write_all(bytes)
        .and_then(|()| output.flush())
        .map_err(|e| OperatorError::OutputFailed(e.kind()))
}

/// A DER PKCS#8 key as a `PRIVATE KEY` PEM block (for APIs that take PEM text).
pub(crate) fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_over_the_bound_is_refused_not_truncated() {
        let data = [b'a'; 11];
        let err = read_bounded(&data[..], 10, "standard input").err();
        assert_eq!(err.map(|e| e.code()), Some("input.too_large"));
        let ok = read_bounded(&data[..], 11, "standard input").ok();
        assert_eq!(ok.map(|d| d.len()), Some(11));
    }

    #[test]
    fn an_unset_password_variable_is_a_usage_error_naming_only_the_variable() {
        let err = password_from_env(Some("DATAGATE_TEST_SURELY_UNSET_VARIABLE")).err();
        let err = err.expect("unset");
        assert_eq!(err.code(), "usage.invalid");
        assert!(
            err.to_string()
                .contains("DATAGATE_TEST_SURELY_UNSET_VARIABLE")
        );
        assert!(matches!(password_from_env(None), Ok(None)));
    }
}
