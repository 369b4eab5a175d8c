//! Diagnostics of configuration files: one problem with its file, its path
//! inside the file and a message that never carries a secret or a payload value.
//!
//! Every loader (node, registry, contracts, adapters) returns these, so
//! `datagate check` can print all of them at once.

use std::path::{Path, PathBuf};

/// One configuration problem: which file, where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The path inside the file (`operations[0].path`), or empty for the whole file.
    pub path: String,
    /// What is wrong. Never a secret or a payload value.
    pub message: String,
}

impl ConfigError {
    /// A new problem.
    pub fn new(file: &Path, path: &str, message: String) -> Self {
        ConfigError {
            file: file.to_owned(),
            path: path.to_owned(),
            message,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.path,
                self.message
            )
        }
    }
}
