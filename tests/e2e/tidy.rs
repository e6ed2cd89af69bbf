//! Tidy checks over the repository's own files.

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository root").to_owned()
}

/// Every file under `dir` whose name ends with one of `extensions`, skipping `target`.
fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    crate::support::walk_files(dir, |name| name == "target" || name.starts_with('.'))
        .into_iter()
        .filter(|path| {
            path.file_name().is_some_and(|name| extensions.iter().any(|ext| name.to_string_lossy().ends_with(ext)))
        })
        .collect()
}

#[test]
fn every_crate_is_in_the_architecture_code_map() {
    let root = repo_root();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let code_map = architecture.split("## Code Map").nth(1).expect("ARCHITECTURE.md has a Code Map section");
    for entry in std::fs::read_dir(root.join("crates")).unwrap().map(Result::unwrap) {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(code_map.contains(&format!("### `crates/{name}`")), "crates/{name} is missing from the Code Map");
    }
}

/// The store owns its records' layout: above it, no code (tests aside, which damage
/// records on purpose) names a keyspace or reaches into the engines.
#[test]
fn only_the_store_names_its_keyspaces_and_engines() {
    let root = repo_root();
    let mut found = Vec::new();
    for krate in ["tio-broker", "tio-audit", "tio-audit-log", "tio", "tio-client", "tio-auditor", "tio-harness"] {
        for path in files(&root.join("crates").join(krate).join("src"), &[".rs"]) {
            if path.file_name().is_some_and(|name| name == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // A file's own unit tests sit at its end, after `#[cfg(test)]`.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
            for (number, line) in code.lines().enumerate() {
                if ["Keyspace", "tio_store::engine", "tio_kv"].iter().any(|name| line.contains(name)) {
                    found.push(format!(
                        "{}:{}: {}",
                        path.strip_prefix(&root).unwrap().display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "names the store's keyspaces or engines:\n{}", found.join("\n"));
}

/// Log and span messages are lowercase and have no trailing period (see the style
/// notes); a capitalised message usually means a sentence that may interpolate data.
#[test]
fn log_messages_are_lowercase_without_a_trailing_period() {
    let mut offences = Vec::new();
    let root = repo_root();
    for path in files(&root.join("crates"), &[".rs"]) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let Some(start) =
                ["tracing::trace!(", "tracing::debug!(", "tracing::info!(", "tracing::warn!(", "tracing::error!("]
                    .iter()
                    .find_map(|macro_call| line.find(macro_call).map(|index| index + macro_call.len()))
            else {
                continue;
            };
            // The message is the last string literal on the line of the call.
            let rest = &line[start..];
            let Some(end) = rest.rfind('"') else { continue };
            let Some(open) = rest[..end].rfind('"') else { continue };
            let message = &rest[open + 1..end];
            let bad_start = message.chars().next().is_some_and(char::is_uppercase);
            if bad_start || message.ends_with('.') {
                offences.push(format!("{}:{}: {message:?}", path.strip_prefix(&root).unwrap().display(), number + 1));
            }
        }
    }
    assert!(offences.is_empty(), "log messages must be lowercase with no trailing period:\n{}", offences.join("\n"));
}

/// Code, tests and docs use only test-range NHS numbers (999 ...) or the two public
/// examples, so that no real patient's number can end up in the repository.
#[test]
fn only_test_range_nhs_numbers_appear_in_the_repository() {
    let allowed_outside_test_range = ["9434765919", "9876544321"];
    let mut offences = Vec::new();
    let root = repo_root();
    for path in files(&root, &[".rs", ".md", ".proto", ".toml", ".yaml", ".yml", ".py", ".sh"]) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            for candidate in nhs_number_like(line) {
                if !candidate.starts_with("999") && !allowed_outside_test_range.contains(&candidate.as_str()) {
                    offences.push(format!(
                        "{}:{}: {candidate}",
                        path.strip_prefix(&root).unwrap().display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(offences.is_empty(), "NHS-number-like values outside the 999 test range:\n{}", offences.join("\n"));
}

/// Finds ten-digit numbers written `3 3 4` with spaces or hyphens, or as ten digits
/// standing alone, that pass the NHS modulus-11 check.
fn nhs_number_like(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let boundary_before = index == 0 || !(bytes[index - 1].is_ascii_alphanumeric() || bytes[index - 1] == b'_');
        if boundary_before && bytes[index].is_ascii_digit() {
            for length in [12usize, 10] {
                let Some(slice) = bytes.get(index..index + length) else { continue };
                let after = bytes.get(index + length);
                if after.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                    continue;
                }
                let digits: String = if length == 12 {
                    let separator = slice[3];
                    if !(separator == b' ' || separator == b'-') || slice[7] != separator {
                        continue;
                    }
                    slice.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 7).map(|(_, b)| char::from(*b)).collect()
                } else {
                    slice.iter().map(|b| char::from(*b)).collect()
                };
                if digits.len() == 10
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && tio_core::NhsNumber::parse_checked(&digits).is_ok()
                {
                    found.push(digits);
                }
            }
        }
        index += 1;
    }
    found
}

#[test]
fn the_nhs_number_finder_finds_what_it_should() {
    assert_eq!(nhs_number_like("see 943 476 5919 and 999-007-9196."), vec!["9434765919", "9990079196"]);
    assert_eq!(nhs_number_like("id 9990079196x and 1234567890"), Vec::<String>::new());
}

/// The crate graph's rules (ARCHITECTURE.md, "The crate graph"), read from `cargo
/// metadata`: what each crate may never depend on, directly or through another crate.
/// Normal dependencies only: a test may use anything.
#[test]
fn no_crate_depends_on_what_its_boundary_forbids() {
    use std::collections::{BTreeMap, BTreeSet};
    let output = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let name_of: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| (package["id"].as_str().unwrap(), package["name"].as_str().unwrap()))
        .collect();
    // Each package's normal (and build) dependencies, by name.
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let from = name_of[node["id"].as_str().unwrap()];
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|kind| kind["kind"].as_str() != Some("dev"));
            if normal {
                edges.entry(from).or_default().insert(name_of[dep["pkg"].as_str().unwrap()]);
            }
        }
    }
    let closure = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut next = vec![start.to_owned()];
        while let Some(name) = next.pop() {
            for dep in edges.get(name.as_str()).into_iter().flatten() {
                if seen.insert(dep.to_string()) {
                    next.push(dep.to_string());
                }
            }
        }
        seen
    };
    let direct = |start: &str| edges.get(start).into_iter().flatten().map(|d| d.to_string()).collect::<BTreeSet<_>>();

    let internal = [
        "tio-proto",
        "tio-core",
        "tio-kv",
        "tio-store",
        "tio-audit",
        "tio-audit-log",
        "tio-broker",
        "tio-client",
        "tio-auditor",
        "tio-harness",
        "tio-console",
        "tio-pgtest",
        "tio",
    ];
    let io_and_runtimes = ["tokio", "mio", "tonic", "hyper", "prost", "sled", "fjall", "tokio-postgres", "tempfile"];
    let engines = ["tio-kv", "sled", "fjall", "tokio-postgres"];
    // (crate, what it may not reach, through its whole graph or only directly, why)
    let rules: &[(&str, Vec<&str>, bool, &str)] = &[
        (
            "tio-core",
            io_and_runtimes.iter().chain(&internal).copied().filter(|name| *name != "tio-core").collect(),
            true,
            "the domain core does no I/O, runs on no runtime and knows no wire format or store",
        ),
        (
            "tio-proto",
            internal.iter().copied().filter(|name| *name != "tio-proto").collect(),
            true,
            "the contract is a leaf",
        ),
        (
            "tio-store",
            vec!["tonic", "hyper", "tio-proto", "tio-broker", "tio-client"],
            true,
            "the store knows no transport or broker",
        ),
        (
            "tio-audit",
            vec!["tokio", "tonic", "hyper", "tio-proto", "tio-store", "tio-kv", "tio-broker", "tio-client"],
            true,
            "the audit log's cryptography and formats are pure: an offline verifier needs no store or runtime",
        ),
        (
            "tio-audit-log",
            vec!["tonic", "hyper", "tio-proto", "tio-broker", "tio-client"],
            true,
            "the audit log in the store knows no transport or broker",
        ),
        (
            "tio-client",
            vec!["tio-core", "tio-store", "tio-audit", "tio-broker", "sled", "fjall"],
            true,
            "a client needs the contract only",
        ),
        (
            "tio-auditor",
            vec!["tio-broker", "tio-store", "tio-audit-log", "tio-kv", "sled", "fjall", "tio-harness", "tio"],
            true,
            "an auditor reads the log through the broker's contract, as any outside auditor would",
        ),
        (
            "tio-harness",
            vec!["tio-broker", "tio-store", "tio-audit-log", "tio-kv", "sled", "fjall", "tio"],
            true,
            "the demo and the benchmarks drive a broker as its clients do, through the contract",
        ),
        (
            "tio-console",
            vec!["tio-broker", "tio-store", "tio-audit-log", "tio-kv", "sled", "fjall", "tio-harness", "tio"],
            true,
            "the console is a client of the broker, adding no privileged surface: it reads what its certificate may",
        ),
        ("tio", engines.to_vec(), false, "the binary reaches storage engines only through the store"),
    ];
    // The walk itself must see edges, or every rule would pass: the store reaches its
    // engine through its own graph, and the binary reaches tokio through the broker.
    assert!(
        closure("tio-store").contains("sled") && closure("tio").contains("tokio") && !direct("tio").contains("sled")
    );
    let mut broken = Vec::new();
    for (krate, forbidden, transitive, why) in rules {
        let reached = if *transitive { closure(krate) } else { direct(krate) };
        assert!(edges.contains_key(krate), "{krate} is not in the graph");
        for name in forbidden {
            if reached.contains(*name) {
                broken.push(format!("{krate} -> {name}: {why}"));
            }
        }
    }
    assert!(broken.is_empty(), "forbidden dependency edges:\n{}", broken.join("\n"));
}
