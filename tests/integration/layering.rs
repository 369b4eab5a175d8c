//! The layering of `docs/ARCHITECTURE.md`, kept: every module imports only
//! modules of lower layers (issue 7, finding 15).

use crate::support::repo_root;
use std::collections::BTreeMap;
use std::path::Path;

/// Module → layer, read from the "Layers" table of docs/ARCHITECTURE.md.
fn layers() -> BTreeMap<String, usize> {
    let text =
        std::fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut layers = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<usize>().ok()) else {
            continue;
        };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                layers.insert(module.to_owned(), layer).is_none(),
                "{module} is in two layers"
            );
        }
    }
    assert!(
        layers.len() > 5,
        "the Layers table was not found: {layers:?}"
    );
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_lower_layers() {
    let layers = layers();
    let src = repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a path");
        let module = first.trim_end_matches(".rs");
        if module == "main" || module == "lib" {
            continue;
        }
        let own = *layers
            .get(module)
            .unwrap_or_else(|| panic!("src/{module} is in no layer of ARCHITECTURE.md"));
        let text = std::fs::read_to_string(&file).expect("read");
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if target == module || target.is_empty() {
                    continue;
                }
                let Some(&theirs) = layers.get(&target) else {
                    continue; // a crate-root item such as `install_crypto_provider`
                };
                if theirs >= own {
                    violations.push(format!(
                        "{}:{}: {module} (layer {own}) imports {target} (layer {theirs})",
                        relative.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against docs/ARCHITECTURE.md's layers:\n{}",
        violations.join("\n")
    );
}
