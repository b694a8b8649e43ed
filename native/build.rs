//! Embeds a digest of this crate's sources in the module (`SOURCE_DIGEST`), so that the Python
//! side can refuse a module built from other sources than the ones beside it (an editable
//! install whose Rust was edited since `pip install -e .`), as it does for its Cython modules.

use std::fs;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// FNV-1a over each file's path (relative, '/'-separated) and bytes, in path order; the same
/// walk as `otel_processor._compiled.native_source_digest`.
fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("src"), &mut paths);
    paths.push(root.join("Cargo.toml"));
    let mut named: Vec<(String, PathBuf)> = paths
        .into_iter()
        .map(|p| (p.strip_prefix(&root).expect("under the crate").to_string_lossy().replace('\\', "/"), p))
        .collect();
    named.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, path) in &named {
        let bytes = fs::read(path).expect("a source file is readable");
        for b in name.as_bytes().iter().chain([0u8].iter()).chain(bytes.iter()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rustc-env=NHI_NATIVE_SOURCE_DIGEST={h:016x}");
}
