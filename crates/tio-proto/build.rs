//! Compiles `proto/tio/v1/*.proto` with the pure-Rust `protox`, so that a fresh machine
//! needs nothing but cargo, and writes the encoded descriptor set for reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let proto_dir = proto_root.join("tio/v1");

    let mut files: Vec<PathBuf> = std::fs::read_dir(&proto_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let descriptors = protox::compile(&files, [&proto_root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("tio_v1_descriptor.bin"), encoded)?;

    // No default stubs: an RPC added to the contract does not compile until the broker
    // implements it, rather than answering UNIMPLEMENTED. Requests that do not decode
    // are the caller's fault: see `src/codec.rs`.
    tonic_prost_build::configure()
        .codec_path("crate::codec::ContractCodec")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
