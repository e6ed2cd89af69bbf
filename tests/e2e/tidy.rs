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
