//! Builds in every Fluent catalogue under `locales/` (`<language-tag>.ftl`), so that a
//! new language is a new file and no code.

use std::fmt::Write;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("locales");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ftl"))
        .collect();
    entries.sort();
    let mut out = String::from(
        "/// Each built-in catalogue: its language tag and its text.\nconst LOCALES: &[(&str, &str)] = &[\n",
    );
    for path in entries {
        println!("cargo::rerun-if-changed={}", path.display());
        let tag =
            path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_else(|| panic!("{}: not UTF-8", path.display()));
        let _ = writeln!(out, "    ({tag:?}, include_str!({:?})),", path.display().to_string());
    }
    out.push_str("];\n");
    let target = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("locales.rs");
    std::fs::write(&target, out).unwrap_or_else(|err| panic!("cannot write {}: {err}", target.display()));
}
